/**
 * The Timescale: disciplined UTC as a function of the raw clock.
 *
 *   utc(raw) = utcRef + (raw − rawRef)·(1 + frequencyPpm·1e-6) + slew(raw − rawRef)
 *
 * where slew() moves the pending correction in at no more than maxSlewPpm.
 * The first estimate steps the model; later ones are slewed, so disciplined
 * time never runs backwards, unless the correction is beyond the step
 * threshold (like chrony's makestep), which is a reported step event.
 */
import type { RawClock } from './clock.js';

/** What a discipline (the NTP client, or a trusted system clock) concludes. */
export interface ClockEstimate {
  /** The raw instant the estimate refers to. */
  rawNs: bigint;
  /** UTC − raw at rawNs (NTP's θ), nanoseconds. bigint: a Pi in 1970 is 1.7e18 ns off. */
  offsetNs: bigint;
  /** d(offset)/d(raw), parts per million: the rate correction for the raw clock. */
  frequencyPpm: number;
  /** Bound on |true UTC − estimated UTC| at rawNs, nanoseconds. */
  errorBoundNs: number;
  /** Uncertainty of frequencyPpm; the error bound grows by it as time passes. */
  frequencyErrorPpm?: number;
}

export type TimescaleChangeKind = 'step' | 'slew';

/** Every listener hears of every change, and re-expresses what it stored. */
export interface TimescaleChange {
  kind: TimescaleChangeKind;
  /** Raw instant of the change. */
  rawNs: bigint;
  /** UTC at rawNs under the previous model. */
  previousUtcNs: bigint;
  /** Correction the estimate asked for at rawNs: stepped at once, or to be slewed. */
  correctionNs: bigint;
  frequencyPpm: number;
  errorBoundNs: number;
}

export interface TimescaleOptions {
  /** How fast a correction is slewed in (ppm of elapsed time). */
  maxSlewPpm?: number;
  /** Corrections larger than this are stepped instead of slewed. */
  stepThresholdNs?: number;
  /** Frequency wander assumed on top of the estimate's own frequency error. */
  holdoverWanderPpm?: number;
  /** Start synchronized, trusting the raw clock as UTC (the system-clock mode). */
  trustRawClock?: { errorBoundNs: number };
  /**
   * Hears of a change listener that threw (the other listeners still hear
   * the change). Default: the first such error goes to stderr.
   */
  onListenerError?: (error: unknown) => void;
}

/**
 * 10,000 ppm (1 %): this model lives in our process only, so slewing fast
 * harms nobody, and a 1 ms correction is absorbed in 0.1 s. It is far below
 * 1 − |frequency|, so the slope stays positive: time never runs backwards.
 */
export const DEFAULT_MAX_SLEW_PPM = 10_000;
/** 50 ms: at the slew rate above, larger corrections would take over 5 s. */
export const DEFAULT_STEP_THRESHOLD_NS = 50_000_000;
/** A quartz oscillator's frequency wanders ~0.1–1 ppm with temperature. */
export const DEFAULT_HOLDOVER_WANDER_PPM = 0.5;
/** Frequencies beyond this are a broken estimate, not a crystal. */
export const MAX_FREQUENCY_PPM = 1_000;

export type TimescaleListener = (change: TimescaleChange) => void;

/**
 * Everything a Timescale computes from, as plain data (bigints as they are:
 * structured-clonable), so another thread on the same raw clock can answer
 * with the same time: the hub's NTP server runs in a worker (server-thread.ts).
 */
export interface TimescaleModel {
  rawRefNs: bigint;
  utcRefNs: bigint;
  frequencyPpm: number;
  pendingSlewNs: number;
  estimateRawNs: bigint;
  /** null: Infinity (unsynchronized). */
  estimateErrorNs: number | null;
  frequencyErrorPpm: number;
  synchronized: boolean;
  updates: number;
  maxSlewPpm: number;
  holdoverWanderPpm: number;
}

export class Timescale {
  readonly clock: RawClock;
  readonly maxSlewPpm: number;
  readonly stepThresholdNs: number;
  readonly holdoverWanderPpm: number;

  private rawRefNs = 0n;
  private utcRefNs = 0n;
  private frequency = 0; // ppm
  private pendingSlewNs = 0; // correction still to slew in after rawRef
  private estimateRawNs = 0n;
  private estimateErrorNs = Infinity;
  private frequencyErrorPpm = 0;
  private isSynchronized = false;
  private stepCount = 0;
  private updateCount = 0;
  private readonly listeners = new Set<TimescaleListener>();
  private readonly onListenerError: (error: unknown) => void;

  constructor(clock: RawClock, options: TimescaleOptions = {}) {
    this.clock = clock;
    this.maxSlewPpm = options.maxSlewPpm ?? DEFAULT_MAX_SLEW_PPM;
    this.stepThresholdNs = options.stepThresholdNs ?? DEFAULT_STEP_THRESHOLD_NS;
    this.holdoverWanderPpm = options.holdoverWanderPpm ?? DEFAULT_HOLDOVER_WANDER_PPM;
    this.onListenerError = options.onListenerError ?? reportFirstListenerError();
    if (!(this.maxSlewPpm > 0 && this.maxSlewPpm + MAX_FREQUENCY_PPM < 1e6)) {
      throw new RangeError('maxSlewPpm must be positive and leave the model monotonic');
    }
    const now = clock.nowNs();
    this.rawRefNs = now;
    this.utcRefNs = now;
    if (options.trustRawClock) {
      this.isSynchronized = true;
      this.estimateRawNs = now;
      this.estimateErrorNs = options.trustRawClock.errorBoundNs;
    }
  }

  get synchronized(): boolean {
    return this.isSynchronized;
  }

  /** Disciplined UTC now. */
  nowNs(): bigint {
    return this.utcAt(this.clock.nowNs());
  }

  /** Disciplined UTC at a raw instant (past instants extrapolate linearly). */
  utcAt(rawNs: bigint): bigint {
    const elapsed = Number(rawNs - this.rawRefNs);
    let utc = this.utcRefNs + (rawNs - this.rawRefNs) + BigInt(Math.round(elapsed * this.frequency * 1e-6));
    if (elapsed > 0 && this.pendingSlewNs !== 0) {
      const slewable = elapsed * this.maxSlewPpm * 1e-6;
      const applied = Math.abs(this.pendingSlewNs) <= slewable ? this.pendingSlewNs : Math.sign(this.pendingSlewNs) * slewable;
      utc += BigInt(Math.round(applied));
    }
    return utc;
  }

  /** The raw instant at which disciplined UTC reaches utcNs, under the model in force. */
  rawAt(utcNs: bigint): bigint {
    const rate = 1 + this.frequency * 1e-6;
    const sinceRef = Number(utcNs - this.utcRefNs);
    if (sinceRef <= 0 || this.pendingSlewNs === 0) {
      return this.rawRefNs + BigInt(Math.round(sinceRef / rate));
    }
    const slewRate = Math.sign(this.pendingSlewNs) * this.maxSlewPpm * 1e-6;
    const slewEndElapsed = Math.abs(this.pendingSlewNs) / (this.maxSlewPpm * 1e-6);
    const utcAtSlewEnd = slewEndElapsed * rate + this.pendingSlewNs;
    const elapsed = sinceRef <= utcAtSlewEnd
      ? sinceRef / (rate + slewRate)
      : slewEndElapsed + (sinceRef - utcAtSlewEnd) / rate;
    return this.rawRefNs + BigInt(Math.round(elapsed));
  }

  /** UTC − raw under the model in force (NTP's θ applied), nanoseconds. */
  offsetNs(rawNs: bigint = this.clock.nowNs()): bigint {
    return this.utcAt(rawNs) - rawNs;
  }

  offsetSeconds(rawNs?: bigint): number {
    return Number(this.offsetNs(rawNs)) / 1e9;
  }

  /** The rate correction in force, ppm. */
  get frequencyPpm(): number {
    return this.frequency;
  }

  /** Correction not yet slewed in at rawNs, nanoseconds. */
  remainingSlewNs(rawNs: bigint = this.clock.nowNs()): number {
    const slewable = Math.max(0, Number(rawNs - this.rawRefNs)) * this.maxSlewPpm * 1e-6;
    const left = Math.abs(this.pendingSlewNs) - slewable;
    return left > 0 ? Math.sign(this.pendingSlewNs) * left : 0;
  }

  /**
   * How fast errorBoundNs grows without a new estimate, ppm (ns per s of raw
   * time, / 1000): a reader of a bound published earlier can extrapolate it.
   */
  get errorBoundGrowthPpm(): number {
    return this.frequencyErrorPpm + this.holdoverWanderPpm;
  }

  /**
   * An honest bound on |true UTC − disciplined UTC| at rawNs: the estimate's
   * own bound, plus what is not slewed in yet, plus frequency error and
   * wander × the time since the estimate (holdover). Infinity before sync.
   */
  errorBoundNs(rawNs: bigint = this.clock.nowNs()): number {
    if (!this.isSynchronized) return Infinity;
    const sinceEstimate = Math.abs(Number(rawNs - this.estimateRawNs));
    const growth = sinceEstimate * (this.frequencyErrorPpm + this.holdoverWanderPpm) * 1e-6;
    return this.estimateErrorNs + Math.abs(this.remainingSlewNs(rawNs)) + growth;
  }

  /** Applies a new estimate: the first one (or one beyond the threshold) steps, others slew. */
  apply(estimate: ClockEstimate, rawNowNs: bigint = this.clock.nowNs()): TimescaleChange {
    if (!Number.isFinite(estimate.frequencyPpm) || Math.abs(estimate.frequencyPpm) > MAX_FREQUENCY_PPM) {
      throw new RangeError(`estimate frequency ${estimate.frequencyPpm} ppm is beyond ±${MAX_FREQUENCY_PPM} ppm`);
    }
    if (!(estimate.errorBoundNs >= 0)) throw new RangeError('estimate errorBoundNs must be ≥ 0');
    const previousUtcNs = this.utcAt(rawNowNs);
    const sinceEstimate = Number(rawNowNs - estimate.rawNs);
    const estimatedUtcNs = rawNowNs + estimate.offsetNs + BigInt(Math.round(sinceEstimate * estimate.frequencyPpm * 1e-6));
    const correctionNs = estimatedUtcNs - previousUtcNs;
    const magnitude = correctionNs < 0n ? -correctionNs : correctionNs;
    const kind: TimescaleChangeKind =
      !this.isSynchronized || magnitude > BigInt(Math.round(this.stepThresholdNs)) ? 'step' : 'slew';

    this.rawRefNs = rawNowNs;
    this.frequency = estimate.frequencyPpm;
    if (kind === 'step') {
      this.utcRefNs = estimatedUtcNs;
      this.pendingSlewNs = 0;
      this.stepCount++;
    } else {
      this.utcRefNs = previousUtcNs;
      this.pendingSlewNs = Number(correctionNs);
    }
    this.estimateRawNs = estimate.rawNs;
    this.estimateErrorNs = estimate.errorBoundNs;
    this.frequencyErrorPpm = estimate.frequencyErrorPpm ?? 0;
    this.isSynchronized = true;
    this.updateCount++;

    const change: TimescaleChange = {
      kind,
      rawNs: rawNowNs,
      previousUtcNs,
      correctionNs,
      frequencyPpm: this.frequency,
      errorBoundNs: this.errorBoundNs(rawNowNs),
    };
    // Each listener in isolation: one that throws must not keep the others
    // (the scheduler re-arming its deadlines) from hearing of the change,
    // nor undo a model that is already in force.
    for (const listener of [...this.listeners]) {
      try {
        listener(change);
      } catch (error) {
        try {
          this.onListenerError(error);
        } catch {
          /* a failing error hook must not stop the other listeners either */
        }
      }
    }
    return change;
  }

  /** The model in force, as data (see TimescaleModel). */
  model(): TimescaleModel {
    return {
      rawRefNs: this.rawRefNs,
      utcRefNs: this.utcRefNs,
      frequencyPpm: this.frequency,
      pendingSlewNs: this.pendingSlewNs,
      estimateRawNs: this.estimateRawNs,
      estimateErrorNs: Number.isFinite(this.estimateErrorNs) ? this.estimateErrorNs : null,
      frequencyErrorPpm: this.frequencyErrorPpm,
      synchronized: this.isSynchronized,
      updates: this.updateCount,
      maxSlewPpm: this.maxSlewPpm,
      holdoverWanderPpm: this.holdoverWanderPpm,
    };
  }

  /**
   * A mirror of another Timescale on the same raw clock (another thread's):
   * takes its model as it is. No change event: a mirror only answers.
   */
  static mirror(clock: RawClock, model: TimescaleModel): Timescale {
    const t = new Timescale(clock, { maxSlewPpm: model.maxSlewPpm, holdoverWanderPpm: model.holdoverWanderPpm });
    t.adopt(model);
    return t;
  }

  /** Takes another Timescale's model (a mirror's update). */
  adopt(model: TimescaleModel): void {
    this.rawRefNs = model.rawRefNs;
    this.utcRefNs = model.utcRefNs;
    this.frequency = model.frequencyPpm;
    this.pendingSlewNs = model.pendingSlewNs;
    this.estimateRawNs = model.estimateRawNs;
    this.estimateErrorNs = model.estimateErrorNs ?? Infinity;
    this.frequencyErrorPpm = model.frequencyErrorPpm;
    this.isSynchronized = model.synchronized;
    this.updateCount = model.updates;
  }

  /** Hear of every step and slew; returns the unsubscribe function. */
  onChange(listener: TimescaleListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  get steps(): number {
    return this.stepCount;
  }

  get updates(): number {
    return this.updateCount;
  }

  /** The raw instant of the last estimate applied (for "time of last good sample"). */
  get lastEstimateRawNs(): bigint | undefined {
    return this.updateCount > 0 ? this.estimateRawNs : undefined;
  }
}

/** Stderr, once: a listener that throws on every change would otherwise flood it. */
function reportFirstListenerError(): (error: unknown) => void {
  let reported = false;
  return (error) => {
    if (reported) return;
    reported = true;
    console.error(`lockstep: a timescale change listener threw (later failures not shown): ${error instanceof Error ? error.stack ?? error.message : String(error)}`);
  };
}
