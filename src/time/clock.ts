/**
 * Raw clocks: this node's own, undisciplined idea of UTC in nanoseconds.
 *
 * A raw clock never steps: it is the monotonic clock (process.hrtime) given an
 * epoch once, at start. Everything precise is expressed against it, and the
 * Timescale maps it to disciplined UTC. A wall-clock step after start (an admin
 * running `date -s`, a Pi that booted in 1970 and then learnt the date) cannot
 * reach it.
 */
import { NS_PER_MS } from './units.js';

export interface RawClock {
  /** Nanoseconds since the Unix epoch on this clock's own (undisciplined) scale. */
  nowNs(): bigint;
  /**
   * What this clock read when CLOCK_MONOTONIC (process.hrtime) read
   * `monotonicNs`: a camera frame's SensorTimestamp is a CLOCK_MONOTONIC
   * reading taken by the kernel. Optional; rawAtMonotonic() falls back on
   * reading both clocks now.
   */
  atMonotonicNs?(monotonicNs: bigint): bigint;
}

/**
 * The raw-clock reading at a CLOCK_MONOTONIC instant (a kernel timestamp):
 * exact for the real and simulated clocks, else both clocks read now and the
 * age subtracted (wrong by the clock's rate error × the age).
 */
export function rawAtMonotonic(clock: RawClock, monotonicNs: bigint): bigint {
  if (clock.atMonotonicNs) return clock.atMonotonicNs(monotonicNs);
  return clock.nowNs() - (process.hrtime.bigint() - monotonicNs);
}

/**
 * How many Date.now() tick edges to sample when anchoring; the tightest wins.
 * Five, not fewer: under load one edge in a few is bracketed by a preemption
 * (its bracket is then wide and loses), and each edge costs up to 1 ms once.
 */
const ANCHOR_TICKS = 5;

/** The two clocks an anchor reads; replaceable so a test can script a preemption. */
export interface AnchorReader {
  /** CLOCK_REALTIME in whole milliseconds (Date.now()). */
  nowMs(): number;
  /** CLOCK_MONOTONIC in ns (process.hrtime.bigint()). */
  monotonicNs(): bigint;
}

const SYSTEM_ANCHOR_READER: AnchorReader = { nowMs: () => Date.now(), monotonicNs: () => process.hrtime.bigint() };

/**
 * Reads the system clock once with sub-microsecond accuracy: Date.now() only
 * has millisecond resolution, but the instant it changes value is the instant
 * CLOCK_REALTIME crosses a millisecond boundary. Monotonic reads interleave
 * the Date.now() reads (m0 D0 m1 D1 m2 ...): when D(k) is the first to show
 * the new millisecond, the edge came after D(k-1), so after m(k-1), and
 * before D(k), so before m(k+1). That bracket is certain whatever the
 * scheduler did; bracketing from m(k) instead is not (a preemption between
 * D(k-1) and m(k) hides the edge before m(k) with a narrow bracket: a node
 * once claimed 500 µs and was 887 µs off). Costs up to ANCHOR_TICKS ms once.
 * `uncertaintyNs` is half the chosen bracket: the anchor's error is below it.
 */
export function anchorToSystemClock(read: AnchorReader = SYSTEM_ANCHOR_READER): { epochNs: bigint; hrtimeNs: bigint; uncertaintyNs: bigint } {
  let best: { epochNs: bigint; hrtimeNs: bigint; widthNs: bigint } | undefined;
  for (let i = 0; i < ANCHOR_TICKS; i++) {
    let beforePrevious = read.monotonicNs();
    const startMs = read.nowMs();
    let before = read.monotonicNs();
    let nowMs = read.nowMs();
    while (nowMs === startMs) {
      beforePrevious = before;
      before = read.monotonicNs();
      nowMs = read.nowMs();
    }
    const after = read.monotonicNs();
    const width = after - beforePrevious;
    if (!best || width < best.widthNs) {
      best = { epochNs: BigInt(nowMs) * NS_PER_MS, hrtimeNs: beforePrevious + width / 2n, widthNs: width };
    }
  }
  return { epochNs: best!.epochNs, hrtimeNs: best!.hrtimeNs, uncertaintyNs: best!.widthNs / 2n };
}

/** The real clock: process.hrtime.bigint() given the system clock's epoch at start. */
export class RealClock implements RawClock {
  private readonly epochMinusHrtimeNs: bigint;

  constructor(anchor: { epochNs: bigint; hrtimeNs: bigint } = anchorToSystemClock()) {
    this.epochMinusHrtimeNs = anchor.epochNs - anchor.hrtimeNs;
  }

  nowNs(): bigint {
    return process.hrtime.bigint() + this.epochMinusHrtimeNs;
  }

  /** This clock's anchor: a RealClock in another thread built from it reads the same raw time (hrtime is one clock per process). */
  get anchor(): { epochNs: bigint; hrtimeNs: bigint } {
    return { epochNs: this.epochMinusHrtimeNs, hrtimeNs: 0n };
  }

  /** The raw clock IS CLOCK_MONOTONIC plus an epoch: exact. */
  atMonotonicNs(monotonicNs: bigint): bigint {
    return monotonicNs + this.epochMinusHrtimeNs;
  }
}

let sharedRealClock: RealClock | undefined;

/** One anchored real clock per process, so every component agrees on "raw". */
export function realClock(): RealClock {
  sharedRealClock ??= new RealClock();
  return sharedRealClock;
}

export interface SimulatedClockOptions {
  /** Constant error added to true time, seconds. */
  offsetSeconds: number;
  /** Rate error, parts per million: the clock gains driftPpm µs per real second. */
  driftPpm: number;
  /** The truth this clock is wrong against; the real clock by default. */
  truth?: RawClock;
}

/**
 * A raw clock that is wrong on purpose: it reads true time + offset + drift ×
 * the true time elapsed since it was made. One machine can host ten "Pis"
 * that disagree by seconds, and the simulation still knows the truth.
 */
export class SimulatedClock implements RawClock {
  readonly offsetSeconds: number;
  readonly driftPpm: number;
  readonly truth: RawClock;
  private readonly startTruthNs: bigint;
  private readonly offsetNs: bigint;

  constructor(options: SimulatedClockOptions) {
    if (!Number.isFinite(options.offsetSeconds)) throw new RangeError('offsetSeconds must be finite');
    if (!Number.isFinite(options.driftPpm) || Math.abs(options.driftPpm) >= 1e5) {
      throw new RangeError('driftPpm must be finite and within ±100000 ppm');
    }
    this.offsetSeconds = options.offsetSeconds;
    this.driftPpm = options.driftPpm;
    this.truth = options.truth ?? realClock();
    this.startTruthNs = this.truth.nowNs();
    this.offsetNs = BigInt(Math.round(options.offsetSeconds * 1e9));
  }

  nowNs(): bigint {
    return this.rawAtTruth(this.truth.nowNs());
  }

  /** Its reading when CLOCK_MONOTONIC read monotonicNs (the truth's reading then, made wrong). */
  atMonotonicNs(monotonicNs: bigint): bigint {
    return this.rawAtTruth(rawAtMonotonic(this.truth, monotonicNs));
  }

  /** The true time now (the truth clock's reading). */
  truthNs(): bigint {
    return this.truth.nowNs();
  }

  /** What this clock reads when the truth reads `truthNs`. */
  rawAtTruth(truthNs: bigint): bigint {
    const elapsed = Number(truthNs - this.startTruthNs);
    return truthNs + this.offsetNs + BigInt(Math.round(elapsed * this.driftPpm * 1e-6));
  }

  /** The true time at which this clock reads `rawNs` (the inverse of rawAtTruth). */
  truthAtRaw(rawNs: bigint): bigint {
    const elapsed = Number(rawNs - this.offsetNs - this.startTruthNs) / (1 + this.driftPpm * 1e-6);
    return this.startTruthNs + BigInt(Math.round(elapsed));
  }
}

/** A clock that moves only when told to: for deterministic tests. */
export class ManualClock implements RawClock {
  constructor(private currentNs: bigint = 0n) {}

  nowNs(): bigint {
    return this.currentNs;
  }

  set(ns: bigint): void {
    if (ns < this.currentNs) throw new RangeError('a raw clock never runs backwards');
    this.currentNs = ns;
  }

  advance(ns: bigint | number): void {
    this.set(this.currentNs + BigInt(ns));
  }
}
