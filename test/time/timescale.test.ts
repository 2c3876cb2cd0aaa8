import { expect } from 'chai';
import { ManualClock, SimulatedClock } from '../../src/time/clock.js';
import { Timescale, type TimescaleChange } from '../../src/time/timescale.js';
import { NS_PER_SECOND, NS_PER_MS } from '../../src/time/units.js';

const T0 = 1_700_000_000n * NS_PER_SECOND;

describe('time/timescale', () => {
  it('is unsynchronized with an infinite error bound until the first estimate', () => {
    const ts = new Timescale(new ManualClock(T0));
    expect(ts.synchronized).to.equal(false);
    expect(ts.errorBoundNs()).to.equal(Infinity);
    expect(ts.nowNs()).to.equal(T0);
  });

  it('steps on the first estimate, then holds offset and frequency', () => {
    const clock = new ManualClock(T0);
    const ts = new Timescale(clock);
    const changes: TimescaleChange[] = [];
    ts.onChange((c) => changes.push(c));
    ts.apply({ rawNs: T0, offsetNs: -3_200_000_000n, frequencyPpm: -50, errorBoundNs: 1000 });
    expect(changes.map((c) => c.kind)).to.deep.equal(['step']);
    expect(ts.nowNs()).to.equal(T0 - 3_200_000_000n);
    clock.advance(10n * NS_PER_SECOND);
    // 10 s at −50 ppm is −500 µs more.
    expect(ts.offsetNs()).to.equal(-3_200_000_000n - 500_000n);
    expect(ts.offsetSeconds()).to.be.closeTo(-3.2005, 1e-9);
  });

  it('slews small corrections at the bounded rate and never runs backwards', () => {
    const clock = new ManualClock(T0);
    const ts = new Timescale(clock, { maxSlewPpm: 1000 });
    ts.apply({ rawNs: T0, offsetNs: 0n, frequencyPpm: 0, errorBoundNs: 0 });
    clock.advance(NS_PER_SECOND);
    const change = ts.apply({ rawNs: clock.nowNs(), offsetNs: -2n * NS_PER_MS, frequencyPpm: 0, errorBoundNs: 0 });
    expect(change.kind).to.equal('slew');
    expect(change.correctionNs).to.equal(-2n * NS_PER_MS);
    // −2 ms at 1000 ppm takes 2 s; halfway, half of it is in.
    let previous = ts.nowNs();
    for (let i = 0; i < 40; i++) {
      clock.advance(50n * NS_PER_MS);
      const now = ts.nowNs();
      expect(now > previous, 'monotonic').to.equal(true);
      previous = now;
    }
    expect(ts.offsetNs()).to.equal(-2n * NS_PER_MS);
    expect(ts.remainingSlewNs()).to.equal(0);
  });

  it('steps when the correction is beyond the threshold, and reports it', () => {
    const clock = new ManualClock(T0);
    const ts = new Timescale(clock, { stepThresholdNs: 10_000_000 });
    ts.apply({ rawNs: T0, offsetNs: 0n, frequencyPpm: 0, errorBoundNs: 0 });
    const change = ts.apply({ rawNs: T0, offsetNs: NS_PER_SECOND, frequencyPpm: 0, errorBoundNs: 0 });
    expect(change.kind).to.equal('step');
    expect(ts.steps).to.equal(2);
    expect(ts.offsetNs()).to.equal(NS_PER_SECOND);
  });

  it('inverts utcAt with rawAt, during and after a slew', () => {
    const clock = new ManualClock(T0);
    const ts = new Timescale(clock, { maxSlewPpm: 1000 });
    ts.apply({ rawNs: T0, offsetNs: 5n * NS_PER_SECOND, frequencyPpm: 30, errorBoundNs: 0 });
    ts.apply({ rawNs: T0, offsetNs: 5n * NS_PER_SECOND + 3n * NS_PER_MS, frequencyPpm: 30, errorBoundNs: 0 });
    for (const afterMs of [0n, 1n, 1500n, 2999n, 3000n, 3001n, 60_000n]) {
      const raw = T0 + afterMs * NS_PER_MS;
      const utc = ts.utcAt(raw);
      const back = ts.rawAt(utc);
      expect(Number(back - raw)).to.be.within(-2, 2);
    }
  });

  it('grows the error bound with time since the estimate (holdover)', () => {
    const clock = new ManualClock(T0);
    const ts = new Timescale(clock, { holdoverWanderPpm: 0.5 });
    ts.apply({ rawNs: T0, offsetNs: 0n, frequencyPpm: 0, errorBoundNs: 2000, frequencyErrorPpm: 0.1 });
    expect(ts.errorBoundNs()).to.equal(2000);
    clock.advance(100n * NS_PER_SECOND);
    // 100 s × 0.6 ppm = 60 µs more.
    expect(ts.errorBoundNs()).to.be.closeTo(62_000, 1);
  });

  it('a listener that throws does not keep later listeners from hearing the change', () => {
    const clock = new ManualClock(T0);
    const hookErrors: unknown[] = [];
    const ts = new Timescale(clock, { onListenerError: (e) => hookErrors.push(e) });
    const heard: string[] = [];
    ts.onChange(() => {
      throw new Error('listener bug');
    });
    ts.onChange((c) => heard.push(c.kind));
    const change = ts.apply({ rawNs: T0, offsetNs: NS_PER_MS, frequencyPpm: 0, errorBoundNs: 0 });
    expect(change.kind).to.equal('step');
    expect(heard).to.deep.equal(['step']);
    expect(hookErrors.map((e) => (e as Error).message)).to.deep.equal(['listener bug']);
    expect(ts.offsetNs()).to.equal(NS_PER_MS);
  });

  it('without a hook, reports the first listener failure on stderr once', () => {
    const ts = new Timescale(new ManualClock(T0));
    let heard = 0;
    ts.onChange(() => {
      throw new Error('listener bug');
    });
    ts.onChange(() => heard++);
    const logged: string[] = [];
    const original = console.error;
    console.error = (...args: unknown[]) => void logged.push(args.join(' '));
    try {
      ts.apply({ rawNs: T0, offsetNs: 0n, frequencyPpm: 0, errorBoundNs: 0 });
      ts.apply({ rawNs: T0, offsetNs: 0n, frequencyPpm: 0, errorBoundNs: 0 });
    } finally {
      console.error = original;
    }
    expect(heard).to.equal(2);
    expect(logged).to.have.length(1);
    expect(logged[0]).to.match(/timescale change listener threw.*listener bug/s);
  });

  it('refuses absurd frequencies', () => {
    const ts = new Timescale(new ManualClock(T0));
    expect(() => ts.apply({ rawNs: T0, offsetNs: 0n, frequencyPpm: 5000, errorBoundNs: 0 })).to.throw(RangeError);
  });
});

describe('time/clock', () => {
  it('a simulated clock reads truth + offset + drift × elapsed, and inverts', () => {
    const truth = new ManualClock(T0);
    const sim = new SimulatedClock({ offsetSeconds: 3.2, driftPpm: 50, truth });
    expect(sim.nowNs()).to.equal(T0 + 3_200_000_000n);
    truth.advance(100n * NS_PER_SECOND);
    expect(sim.nowNs()).to.equal(T0 + 100n * NS_PER_SECOND + 3_200_000_000n + 5_000_000n);
    expect(sim.truthAtRaw(sim.nowNs())).to.equal(truth.nowNs());
  });
});
