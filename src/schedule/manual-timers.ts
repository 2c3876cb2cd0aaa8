/**
 * A TimerHost that moves a ManualClock instead of waiting: deterministic tests
 * of the scheduler (and of anything built on it) run in microseconds. Timers
 * fire when the test advances the clock; the sleep and spin stages advance the
 * clock themselves, so a fire happens exactly at its raw deadline unless the
 * test injects lateness.
 */
import type { ManualClock, RawClock } from '../time/clock.js';
import type { TimerHandle, TimerHost } from './timers.js';

interface ManualTimer {
  dueRawNs: bigint;
  seq: number;
  callback: () => void;
  cancelled: boolean;
}

export interface ManualTimerOptions {
  /** Extra lateness of each coarse timer wake, ns (may be negative: early). */
  wakeLatenessNs?: () => number;
  /** Extra time each precise sleep oversleeps, ns. */
  oversleepNs?: () => number;
}

/** Bounds advanceTo(): a scheduler that keeps re-arming at the same instant is a bug, not a long test. */
const MAX_TIMERS_PER_ADVANCE = 10_000_000;

export class ManualTimerHost implements TimerHost {
  private timers: ManualTimer[] = [];
  private seq = 0;
  /** Sum of all delays asked of setTimeout (checks the cap on long waits). */
  readonly requestedDelaysMs: number[] = [];
  spunNs = 0n;
  sleptNs = 0n;

  constructor(readonly clock: ManualClock, private readonly options: ManualTimerOptions = {}) {}

  setTimeout(callback: () => void, delayMs: number): TimerHandle {
    this.requestedDelaysMs.push(delayMs);
    const lateness = BigInt(Math.round(this.options.wakeLatenessNs?.() ?? 0));
    let due = this.clock.nowNs() + BigInt(Math.max(0, delayMs)) * 1_000_000n + lateness;
    if (due < this.clock.nowNs()) due = this.clock.nowNs();
    const timer: ManualTimer = { dueRawNs: due, seq: this.seq++, callback, cancelled: false };
    this.timers.push(timer);
    return { cancel: () => (timer.cancelled = true) };
  }

  sleepNs(ns: number): void {
    const total = BigInt(Math.round(Math.max(0, ns) + (this.options.oversleepNs?.() ?? 0)));
    this.sleptNs += total;
    this.clock.advance(total);
  }

  spinUntil(clock: RawClock, rawNs: bigint): bigint {
    const now = clock.nowNs();
    if (now < rawNs) {
      this.spunNs += rawNs - now;
      this.clock.set(rawNs);
    }
    return clock.nowNs();
  }

  /** Live (not cancelled) timers. */
  get pending(): number {
    this.timers = this.timers.filter((t) => !t.cancelled);
    return this.timers.length;
  }

  /** The raw instant the next live timer is due, if any. */
  nextDueRawNs(): bigint | undefined {
    return this.earliest()?.dueRawNs;
  }

  /** Runs every timer due up to rawNs in order (the clock set to each one's due time), then sets the clock to rawNs. */
  advanceTo(rawNs: bigint): void {
    for (let n = 0; n < MAX_TIMERS_PER_ADVANCE; n++) {
      const next = this.earliest();
      if (next === undefined || next.dueRawNs > rawNs) {
        if (this.clock.nowNs() < rawNs) this.clock.set(rawNs);
        return;
      }
      next.cancelled = true;
      if (this.clock.nowNs() < next.dueRawNs) this.clock.set(next.dueRawNs);
      next.callback();
    }
    throw new Error(`more than ${MAX_TIMERS_PER_ADVANCE} timers before ${rawNs}: a timer loop`);
  }

  advance(ns: bigint | number): void {
    this.advanceTo(this.clock.nowNs() + BigInt(ns));
  }

  private earliest(): ManualTimer | undefined {
    let best: ManualTimer | undefined;
    for (const t of this.timers) {
      if (t.cancelled) continue;
      if (!best || t.dueRawNs < best.dueRawNs || (t.dueRawNs === best.dueRawNs && t.seq < best.seq)) best = t;
    }
    if (this.timers.length > 64) this.timers = this.timers.filter((t) => !t.cancelled);
    return best;
  }
}
