/** The scheduler on the real clock and real timers: generous bounds only (2-core shared machine); precise figures are the benchmark's. */
import { expect } from 'chai';
import { realClock } from '../../src/time/clock.js';
import { Timescale } from '../../src/time/timescale.js';
import { NS_PER_MS } from '../../src/time/units.js';
import { Scheduler, followSystemClock, DEFAULT_SPIN_MARGIN, type FireReport } from '../../src/schedule/index.js';

describe('schedule/real timing (generous bounds)', function () {
  this.timeout(20_000);

  it('fires 30 instants in order, never early, each within 20 ms', async () => {
    const timescale = new Timescale(realClock(), { trustRawClock: { errorBoundNs: 0 } });
    const scheduler = new Scheduler({ timescale });
    const start = timescale.nowNs() + 100n * NS_PER_MS;
    const instants = Array.from({ length: 30 }, (_, i) => start + BigInt(i) * 20n * NS_PER_MS + BigInt((i * 7919) % 1000) * 1000n);
    const seen: { planned: bigint; truth: bigint; report: FireReport }[] = [];
    await new Promise<void>((resolve) => {
      for (const t of [...instants].reverse()) {
        scheduler.at(t, (report) => {
          seen.push({ planned: t, truth: realClock().nowNs(), report });
          if (seen.length === instants.length) resolve();
        });
      }
    });
    scheduler.stop();
    expect(seen.map((s) => s.planned)).to.deep.equal(instants);
    for (const s of seen) {
      expect(s.truth >= s.planned, 'never early').to.equal(true);
      expect(Number(s.truth - s.planned)).to.be.lessThan(20_000_000);
      expect(s.report.latenessNs).to.be.within(0, 20_000_000);
    }
    expect(scheduler.stats().spinMarginNs).to.be.at.most(DEFAULT_SPIN_MARGIN.maxNs);
  });

  it('a periodic job keeps its phase on the real clock', async () => {
    const timescale = new Timescale(realClock(), { trustRawClock: { errorBoundNs: 0 } });
    const scheduler = new Scheduler({ timescale });
    const epochNs = timescale.nowNs();
    const fires: FireReport[] = [];
    await new Promise<void>((resolve) => {
      scheduler.every({ epochNs, periodNs: 50n * NS_PER_MS, offsetNs: 7n * NS_PER_MS, count: 12 }, (r) => {
        fires.push(r);
        if (r.edge === 11n) resolve();
      });
    });
    scheduler.stop();
    for (const f of fires) expect(f.plannedNs).to.equal(epochNs + f.edge! * 50n * NS_PER_MS + 7n * NS_PER_MS);
    expect(fires.length).to.be.at.least(10); // a stall may skip one, never shift them
  });

  it('the system-clock follower notices when our Timescale and the system clock disagree, and corrects', () => {
    const timescale = new Timescale(realClock(), { trustRawClock: { errorBoundNs: 1_000_000 } });
    // Pretend our model went 80 ms wrong (a step) (as if the system clock had been stepped under us).
    timescale.apply({ rawNs: timescale.clock.nowNs(), offsetNs: 80n * NS_PER_MS, frequencyPpm: 0, errorBoundNs: 1_000_000 });
    const corrections: bigint[] = [];
    const follower = followSystemClock(timescale, { errorBoundNs: 1_000_000, onCorrection: (c) => corrections.push(c) });
    try {
      const correction = follower.check();
      expect(correction, 'detected').to.not.equal(undefined);
      expect(Number(correction!)).to.be.closeTo(-80_000_000, 2_000_000);
      // In agreement: a check does nothing, unless forced (the periodic precise re-anchor).
      const quiet = new Timescale(realClock(), { trustRawClock: { errorBoundNs: 1_000_000 } });
      const f2 = followSystemClock(quiet, { errorBoundNs: 1_000_000 });
      expect(f2.check()).to.equal(undefined);
      expect(Math.abs(Number(f2.check(true)!))).to.be.lessThan(1_000_000);
      f2.stop();
    } finally {
      follower.stop();
    }
  });
});
