import { expect } from 'chai';
import { ManualClock } from '../../src/time/clock.js';
import { Timescale } from '../../src/time/timescale.js';
import { NS_PER_MS, NS_PER_SECOND } from '../../src/time/units.js';
import {
  Scheduler,
  ManualTimerHost,
  InstantPassed,
  MAX_COARSE_WAIT_MS,
  DEFAULT_COARSE_MARGIN,
  SETTIMEOUT_LIMIT_MS,
  type FireReport,
  type SkipReport,
  type SchedulerOptions,
} from '../../src/schedule/index.js';

const T0 = 1_800_000_000n * NS_PER_SECOND;

function setup(options: Partial<SchedulerOptions> & { wakeLatenessNs?: () => number; oversleepNs?: () => number } = {}) {
  const clock = new ManualClock(T0);
  const timescale = new Timescale(clock, { trustRawClock: { errorBoundNs: 1000 } });
  const timers = new ManualTimerHost(clock, { wakeLatenessNs: options.wakeLatenessNs, oversleepNs: options.oversleepNs });
  const scheduler = new Scheduler({ timescale, timers, ...options });
  const fires: FireReport[] = [];
  const skips: SkipReport[] = [];
  scheduler.onFire((r) => fires.push(r));
  scheduler.onSkip((r) => skips.push(r));
  return { clock, timescale, timers, scheduler, fires, skips };
}

describe('schedule/scheduler (deterministic, ManualClock)', () => {
  it('fires at() exactly at the instant, with a full report', () => {
    const { timers, scheduler, fires } = setup();
    const seen: bigint[] = [];
    const job = scheduler.at(T0 + 1500n * NS_PER_MS, (r) => {
      seen.push(timers.clock.nowNs());
      expect(r.index).to.equal(0);
    }, { id: 'one' });
    expect(job.nextInstantNs()).to.equal(T0 + 1500n * NS_PER_MS);
    timers.advance(NS_PER_SECOND);
    expect(fires).to.have.length(0);
    timers.advance(NS_PER_SECOND);
    expect(seen).to.deep.equal([T0 + 1500n * NS_PER_MS]);
    expect(fires).to.have.length(1);
    expect(fires[0]).to.include({ jobId: 'one', index: 0, latenessNs: 0, policy: 'on-time' });
    // The trusted bound, grown by 0.5 ppm of holdover wander over 1.5 s.
    expect(fires[0]!.errorBoundNs).to.be.closeTo(1000 + 1.5e9 * 0.5e-6, 1);
    expect(fires[0]!.actualNs).to.equal(fires[0]!.plannedNs);
    expect(job.fired).to.equal(1);
    expect(job.nextInstantNs()).to.equal(undefined);
    expect(timers.pending).to.equal(0);
    // A wait over PRE_WAKE_ABOVE_MS wakes PRE_WAKE_NS early first (a VM's first wake after idling is late), then the coarse wake.
    expect(scheduler.stats()).to.include({ preWakes: 1, coarseWakes: 1 });
  });

  it('rehearses each fire when placed, before the precise sleep and 30 µs before the instant (src/schedule/warm-up.ts): scratch copies, the action runs once, at the instant', () => {
    const { timers, scheduler, fires } = setup();
    const events: string[] = [];
    const rehearsed: { at: bigint; plannedNs: bigint; index: number; edge: bigint | undefined }[] = [];
    const period = 100n * NS_PER_MS;
    scheduler.every({ epochNs: T0 + NS_PER_SECOND, periodNs: period, count: 2 }, (r) => void events.push(`fire ${r.index} at ${timers.clock.nowNs() - T0}`), {
      rehearse: (r) => {
        rehearsed.push({ at: timers.clock.nowNs(), plannedNs: r.plannedNs, index: r.index, edge: r.edge });
        r.actualNs = 0n; // a scratch object: the real report must not see this
        events.push(`rehearse ${r.index}`);
      },
    });
    scheduler.at(T0 + 3n * NS_PER_SECOND, () => void events.push('plain'), {
      rehearse: () => {
        throw new Error('a broken rehearsal must not stop the fire');
      },
    });
    timers.advance(4n * NS_PER_SECOND);
    const times = (n: number, e: string) => new Array<string>(n).fill(e);
    // Edge 0: twice when placed, twice after the coarse wake, once in the spin; edge 1 is not placed anew.
    expect(events).to.deep.equal([...times(5, 'rehearse 0'), `fire 0 at ${NS_PER_SECOND}`, ...times(3, 'rehearse 1'), `fire 1 at ${NS_PER_SECOND + period}`, 'plain']);
    const coarse = BigInt(DEFAULT_COARSE_MARGIN.initialNs);
    expect(rehearsed.map((r) => r.plannedNs - r.at)).to.deep.equal([NS_PER_SECOND, NS_PER_SECOND, coarse, coarse, 30_000n, coarse, coarse, 30_000n]);
    expect(rehearsed.map((r) => [r.index, r.edge])).to.deep.equal([...new Array(5).fill([0, 0n]), ...new Array(3).fill([1, 1n])]);
    expect(fires.map((f) => f.actualNs - f.plannedNs)).to.deep.equal([0n, 0n, 0n]);
  });

  it('a fire listener that throws neither silences the other listeners nor stops the loop; its error still surfaces', async () => {
    const { timers, scheduler, fires } = setup();
    const mochas = process.listeners('uncaughtException');
    process.removeAllListeners('uncaughtException');
    const surfaced: unknown[] = [];
    process.on('uncaughtException', (e) => surfaced.push(e));
    try {
      scheduler.onFire(() => {
        throw new Error('listener bug');
      });
      const seen: number[] = [];
      scheduler.onFire((r) => seen.push(r.index));
      scheduler.every({ epochNs: T0 + NS_PER_SECOND, periodNs: NS_PER_SECOND, count: 3 }, () => undefined);
      timers.advance(5n * NS_PER_SECOND);
      expect(seen, 'the listener after the broken one').to.deep.equal([0, 1, 2]);
      expect(fires).to.have.length(3); // and the setup's own listener: all three fires, so the loop went on
      await new Promise((r) => setImmediate(r));
      expect(surfaced.map((e) => (e as Error).message)).to.deep.equal(['listener bug', 'listener bug', 'listener bug']);
    } finally {
      process.removeAllListeners('uncaughtException');
      for (const l of mochas) process.on('uncaughtException', l);
    }
  });

  it('the action receives its report complete: the exact lateness, even when late', () => {
    // Every coarse wake 10 ms late: beyond the 4 ms initial margin, so the first fire is late.
    const { timers, scheduler, fires } = setup({ wakeLatenessNs: () => 10_000_000 });
    const inAction: number[] = [];
    scheduler.at(T0 + NS_PER_SECOND, (r) => void inAction.push(r.latenessNs));
    timers.advance(2n * NS_PER_SECOND);
    expect(inAction).to.deep.equal([6_000_000]); // woke 4 ms early + 10 ms late = 6 ms after the instant
    expect(fires[0]!.latenessNs).to.equal(6_000_000);
    expect(fires[0]!.actualNs).to.equal(T0 + NS_PER_SECOND + 6_000_000n);
    expect(fires[0]!.policy).to.equal('on-time'); // within the 50 ms late tolerance
  });

  it('uses the three stages: a coarse timer a margin early, a sleep, a short spin', () => {
    const { timers, scheduler } = setup();
    scheduler.at(T0 + NS_PER_SECOND, () => {});
    timers.advance(2n * NS_PER_SECOND);
    const stats = scheduler.stats();
    expect(stats.fires).to.equal(1);
    // The spin covers only the spin margin; the rest of the coarse margin was slept.
    expect(Number(timers.spunNs)).to.be.at.most(stats.spinMarginNs + 1);
    expect(Number(timers.sleptNs)).to.be.greaterThan(0);
  });

  it('fires jobs in instant order, and same-instant jobs in one tail in arming order', () => {
    const { timers, scheduler, fires } = setup();
    const order: string[] = [];
    const instants = [700n, 100n, 400n, 400n, 900n, 400n, 100n].map((ms) => T0 + ms * NS_PER_MS);
    // How many fire reports were out when each action ran: listeners hear a group only after all its actions.
    const reportedBefore: number[] = [];
    instants.forEach((t, i) =>
      scheduler.at(t, () => {
        order.push(`j${i}`);
        reportedBefore.push(fires.length);
      }, { id: `j${i}` }),
    );
    timers.advance(NS_PER_SECOND);
    expect(order).to.deep.equal(['j1', 'j6', 'j2', 'j3', 'j5', 'j0', 'j4']);
    expect(reportedBefore).to.deep.equal([0, 0, 2, 2, 2, 5, 6]);
    expect(fires.map((f) => f.jobId)).to.deep.equal(order);
    for (const f of fires) expect(f.latenessNs).to.equal(0);
    // One coarse wake per distinct instant (100, 400, 700, 900 ms): the three jobs at 400 ms
    // shared one tail; a group split across two tails would take a fifth wake.
    expect(scheduler.stats().coarseWakes).to.equal(4);
  });

  it('applies the past-instant policies and reports each', () => {
    const { timers, scheduler, fires, skips } = setup();
    timers.advance(NS_PER_SECOND);
    const past = T0 + 500n * NS_PER_MS;
    let thrown: unknown;
    try {
      scheduler.at(past, () => {});
    } catch (error) {
      thrown = error;
    }
    expect(thrown).to.be.instanceOf(InstantPassed);
    expect((thrown as InstantPassed).plannedNs).to.equal(past);
    expect((thrown as InstantPassed).nowNs).to.equal(T0 + NS_PER_SECOND);
    expect((thrown as Error).message).to.match(/passed 500\.000 ms ago/);
    const skipped = scheduler.at(past, () => expect.fail('skip must not fire'), { ifPast: 'skip', id: 's' });
    expect(skipped.nextInstantNs()).to.equal(undefined);
    scheduler.at(past, () => {}, { ifPast: 'fire-late', id: 'late' });
    timers.advance(10n * NS_PER_MS);
    expect(skips.map((s) => s.reason)).to.deep.equal(['rejected', 'past']);
    expect(fires).to.have.length(1);
    expect(fires[0]).to.include({ jobId: 'late', policy: 'fired-late', latenessNs: 500_000_000 });
  });

  it('caps every coarse wait far below the 2^31−1 ms setTimeout limit and fires 40 days ahead exactly', () => {
    const { timers, scheduler, fires } = setup();
    const instant = T0 + 40n * 86_400n * NS_PER_SECOND + 123_456_789n;
    scheduler.at(instant, () => {});
    timers.advanceTo(instant + NS_PER_SECOND);
    expect(fires).to.have.length(1);
    expect(fires[0]!.actualNs).to.equal(instant);
    expect(Math.max(...timers.requestedDelaysMs)).to.be.at.most(MAX_COARSE_WAIT_MS);
    expect(MAX_COARSE_WAIT_MS).to.be.lessThan(SETTIMEOUT_LIMIT_MS);
    expect(timers.requestedDelaysMs.length).to.be.greaterThan(40 * 1440 - 10); // one wake a minute
  });

  it('re-arms pending deadlines when the Timescale steps', () => {
    const { clock, timescale, timers, scheduler, fires } = setup();
    const instant = T0 + 10n * NS_PER_SECOND;
    let firedAtRaw = 0n;
    scheduler.at(instant, () => void (firedAtRaw = clock.nowNs()));
    timers.advance(NS_PER_SECOND);
    // We learn our clock was 2 s slow: disciplined UTC jumps ahead by 2 s (a step, beyond 50 ms).
    const change = timescale.apply({ rawNs: clock.nowNs(), offsetNs: 2n * NS_PER_SECOND, frequencyPpm: 0, errorBoundNs: 500 });
    expect(change.kind).to.equal('step');
    timers.advanceTo(T0 + 20n * NS_PER_SECOND);
    expect(firedAtRaw).to.equal(T0 + 8n * NS_PER_SECOND);
    expect(fires[0]!.latenessNs).to.equal(0);
    expect(fires[0]!.errorBoundNs).to.be.closeTo(500 + 7e9 * 0.5e-6, 1); // 7 s of holdover at 0.5 ppm
  });

  it('re-arms on a slew: fires when slewed UTC reaches the instant', () => {
    const { clock, timescale, timers, scheduler, fires } = setup();
    const instant = T0 + 5n * NS_PER_SECOND;
    let firedAtRaw = 0n;
    scheduler.at(instant, () => void (firedAtRaw = clock.nowNs()));
    timers.advance(NS_PER_SECOND);
    // 20 ms fast: slewed out at 10,000 ppm over 2 s, so the instant comes 20 ms of raw time later.
    const change = timescale.apply({ rawNs: clock.nowNs(), offsetNs: -20n * NS_PER_MS, frequencyPpm: 0, errorBoundNs: 0 });
    expect(change.kind).to.equal('slew');
    timers.advanceTo(T0 + 6n * NS_PER_SECOND);
    expect(firedAtRaw).to.equal(T0 + 5n * NS_PER_SECOND + 20n * NS_PER_MS);
    expect(timescale.utcAt(firedAtRaw)).to.equal(instant);
    expect(fires[0]!.latenessNs).to.equal(0);
  });

  it('learns the coarse margin from late wakes, then fires on time', () => {
    // Every coarse timer wakes 6 ms late: more than the 4 ms initial margin.
    const { timers, scheduler, fires } = setup({ wakeLatenessNs: () => 6_000_000 });
    const job = scheduler.every({ epochNs: T0, periodNs: 100n * NS_PER_MS }, () => {});
    timers.advance(5n * NS_PER_SECOND);
    expect(fires.length).to.be.greaterThan(45);
    expect(fires[0]!.latenessNs).to.be.greaterThan(0); // the first one missed...
    expect(fires.slice(1).every((f) => f.latenessNs === 0)).to.equal(true); // ...then the margin covered it
    expect(scheduler.stats().coarseMarginNs).to.be.at.least(6_000_000);
    job.cancel();
  });

  it('learns the spin margin from oversleeping', () => {
    const { timers, scheduler, fires } = setup({ oversleepNs: () => 700_000 });
    scheduler.every({ epochNs: T0, periodNs: 100n * NS_PER_MS, count: 60 }, () => {});
    timers.advance(7n * NS_PER_SECOND);
    expect(fires).to.have.length(59); // edge 0 is at T0 = now: only edges after now
    expect(scheduler.stats().spinMarginNs).to.be.at.least(700_000);
    expect(fires.slice(2).every((f) => f.latenessNs === 0)).to.equal(true);
  });

  describe('every(): phase-locked periodic patterns', () => {
    it('puts edge k at epoch + k·period + offset, with late joiners in phase', () => {
      const { timers, scheduler, fires } = setup();
      timers.advance(10_300n * NS_PER_MS); // join 10.3 s after the epoch
      scheduler.every({ epochNs: T0, periodNs: NS_PER_SECOND, offsetNs: 100n * NS_PER_MS, count: 14 }, () => {}, { id: 'blink' });
      timers.advance(10n * NS_PER_SECOND);
      expect(fires.map((f) => f.edge)).to.deep.equal([11n, 12n, 13n]);
      expect(fires.map((f) => f.index)).to.deep.equal([0, 1, 2]);
      expect(fires.map((f) => f.plannedNs - T0)).to.deep.equal([11_100n, 12_100n, 13_100n].map((ms) => ms * NS_PER_MS));
    });

    it('never accumulates: edges stay exact whatever the wake-up jitter', () => {
      let n = 0;
      const { timers, scheduler, fires } = setup({ wakeLatenessNs: () => ((n++ * 7919) % 3000) * 1000 });
      scheduler.every({ epochNs: T0, periodNs: 33_333_333n, startNs: T0 + 1n }, () => {});
      timers.advance(10n * NS_PER_SECOND);
      expect(fires.length).to.equal(300);
      fires.forEach((f, i) => expect(f.plannedNs).to.equal(T0 + BigInt(i + 1) * 33_333_333n));
    });

    it('skips edges missed in a stall (reported once), resumes in phase without a catch-up storm', () => {
      const { clock, timers, scheduler, fires, skips } = setup();
      scheduler.every({ epochNs: T0, periodNs: 10n * NS_PER_MS }, () => {});
      timers.advance(100n * NS_PER_MS);
      const before = fires.length;
      clock.advance(5n * NS_PER_SECOND); // the process was suspended: no timer ran
      timers.advance(35n * NS_PER_MS);
      expect(skips.filter((s) => s.reason === 'late')).to.have.length(1);
      const after = fires.slice(before);
      expect(after.map((f) => Number((f.plannedNs - T0) / NS_PER_MS))).to.deep.equal([5100, 5110, 5120, 5130]);
      expect(scheduler.stats().coarseMarginNs).to.be.lessThan(10_000_000); // a stall is not timer jitter
      for (const f of after) {
        expect(f.latenessNs).to.equal(0);
        expect((f.plannedNs - T0) % (10n * NS_PER_MS)).to.equal(0n);
      }
    });

    it('overlap skip: an edge whose previous action still runs is skipped and reported; allow fires', async () => {
      const { timers, scheduler, fires, skips } = setup();
      let release!: () => void;
      const slow = () => new Promise<void>((resolve) => (release = resolve));
      scheduler.every({ epochNs: T0, periodNs: 100n * NS_PER_MS, count: 6 }, slow, { id: 'skip' });
      timers.advance(250n * NS_PER_MS); // edge 1 fires and runs on, edge 2 overlaps
      expect(fires.map((f) => f.edge)).to.deep.equal([1n]);
      expect(skips.map((s) => [s.reason, s.edge])).to.deep.equal([['overlap', 2n]]);
      release();
      await Promise.resolve();
      await Promise.resolve();
      timers.advance(100n * NS_PER_MS);
      expect(fires.map((f) => f.edge)).to.deep.equal([1n, 3n]);

      const b = setup();
      b.scheduler.every({ epochNs: T0, periodNs: 100n * NS_PER_MS, count: 4 }, () => new Promise<void>(() => {}), { overlap: 'allow' });
      b.timers.advance(NS_PER_SECOND);
      expect(b.fires.map((f) => f.edge)).to.deep.equal([1n, 2n, 3n]);
      expect(b.skips).to.have.length(0);
    });
  });

  it('cancel: the pending instant is reported and never fires; the timer is cleared', () => {
    const { timers, scheduler, fires, skips } = setup();
    const job = scheduler.at(T0 + NS_PER_SECOND, () => expect.fail('cancelled'), { id: 'c' });
    job.cancel();
    job.cancel();
    expect(skips).to.have.length(1);
    expect(skips[0]).to.include({ jobId: 'c', reason: 'cancelled', plannedNs: T0 + NS_PER_SECOND });
    expect(timers.pending).to.equal(0);
    timers.advance(2n * NS_PER_SECOND);
    expect(fires).to.have.length(0);
  });

  it('a job can cancel itself from its action; stop() reports every pending job and clears the timer', () => {
    const { timers, scheduler, fires, skips } = setup();
    const job = scheduler.every({ epochNs: T0, periodNs: NS_PER_SECOND }, (r) => {
      if (r.index === 2) job.cancel();
    });
    timers.advance(10n * NS_PER_SECOND);
    expect(fires).to.have.length(3);
    scheduler.at(T0 + 20n * NS_PER_SECOND, () => {});
    scheduler.at(T0 + 30n * NS_PER_SECOND, () => {});
    scheduler.stop();
    expect(skips.map((s) => s.reason)).to.deep.equal(['stopped', 'stopped']);
    expect(timers.pending).to.equal(0);
    expect(() => scheduler.at(T0 + 40n * NS_PER_SECOND, () => {})).to.throw(/stopped/);
  });

  it('a same-instant job cancelled by an earlier job\'s action is reported cancelled, never fires', () => {
    const { timers, scheduler, fires, skips } = setup();
    const instant = T0 + NS_PER_SECOND;
    let second!: ReturnType<Scheduler['at']>;
    scheduler.at(instant, () => second.cancel(), { id: 'first' });
    second = scheduler.at(instant, () => expect.fail('cancelled before its turn'), { id: 'second' });
    const third = scheduler.every({ epochNs: instant, periodNs: NS_PER_SECOND, startNs: instant }, () => {}, { id: 'third' });
    timers.advance(NS_PER_SECOND + NS_PER_MS);
    expect(fires.map((f) => f.jobId)).to.deep.equal(['first', 'third']);
    expect(skips.map((s) => [s.jobId, s.reason, s.plannedNs])).to.deep.equal([['second', 'cancelled', instant]]);
    expect(second.nextInstantNs()).to.equal(undefined);
    third.cancel();
  });

  it('stop() from an action reports the same-instant jobs not yet fired as stopped; they never fire', () => {
    const { timers, scheduler, fires, skips } = setup();
    const instant = T0 + NS_PER_SECOND;
    scheduler.at(instant, () => scheduler.stop(), { id: 'stopper' });
    scheduler.at(instant, () => expect.fail('stopped before its turn'), { id: 'after' });
    scheduler.every({ epochNs: instant, periodNs: NS_PER_SECOND, startNs: instant }, () => expect.fail('stopped'), { id: 'periodic' });
    scheduler.at(instant + NS_PER_SECOND, () => expect.fail('stopped'), { id: 'later' });
    timers.advance(3n * NS_PER_SECOND);
    expect(fires.map((f) => f.jobId)).to.deep.equal(['stopper']);
    expect(skips.map((s) => `${s.jobId}:${s.reason}`).sort()).to.deep.equal(['after:stopped', 'later:stopped', 'periodic:stopped']);
    expect(timers.pending).to.equal(0);
  });

  it('an action that throws goes to onError; the others still fire', () => {
    const { timers, scheduler, fires } = setup();
    const errors: unknown[] = [];
    scheduler.onError((e) => errors.push(e));
    scheduler.at(T0 + NS_PER_SECOND, () => {
      throw new Error('boom');
    });
    scheduler.at(T0 + NS_PER_SECOND, () => {});
    timers.advance(2n * NS_PER_SECOND);
    expect(errors.map((e) => (e as Error).message)).to.deep.equal(['boom']);
    expect(fires).to.have.length(2);
  });

  it('holds 100,000 pending jobs: arms and cancels in microseconds, fires the rest in order', () => {
    const { timers, scheduler, fires } = setup();
    const n = 100_000;
    const jobs = [];
    let seed = 12345;
    const random = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < n; i++) {
      jobs.push(scheduler.at(T0 + NS_PER_SECOND + BigInt(Math.floor(random() * 60e9)), () => {}));
    }
    const armed = process.hrtime.bigint();
    for (let i = 0; i < n; i += 2) jobs[i]!.cancel();
    const cancelled = process.hrtime.bigint();
    expect(scheduler.pending).to.equal(n / 2);
    // Generous bounds (shared machine): the benchmark measures precisely.
    expect(Number(armed - t0) / n).to.be.lessThan(30_000);
    expect(Number(cancelled - armed) / (n / 2)).to.be.lessThan(30_000);
    timers.advance(62n * NS_PER_SECOND);
    expect(fires).to.have.length(n / 2);
    for (let i = 1; i < fires.length; i++) expect(fires[i]!.plannedNs >= fires[i - 1]!.plannedNs).to.equal(true);
    expect(fires.every((f) => f.latenessNs === 0)).to.equal(true);
  });
});
