/**
 * System-clock mode for long-running processes: realClock() is anchored to
 * CLOCK_REALTIME once, at start, and then runs on the monotonic clock. An
 * admin's `date -s`, or chrony stepping the clock, would never reach it. This
 * follower notices when the system clock has moved away from our Timescale and
 * feeds a fresh anchor as an estimate, which the Timescale slews in (or steps,
 * beyond its threshold) — and the scheduler re-arms.
 *
 * Linux applies NTP frequency corrections to CLOCK_MONOTONIC as well, so
 * REALTIME − MONOTONIC only changes on steps: a cheap ms-resolution check
 * each second finds them, and a precise re-anchor (up to ~5 ms of spinning)
 * runs only then, or every few minutes, and never just before a deadline.
 */
import { anchorToSystemClock } from '../time/clock.js';
import type { Timescale } from '../time/timescale.js';
import { NS_PER_MS } from '../time/units.js';

/** Once a second: a step is noticed within a second, at the cost of one Date.now(). */
export const SYSTEM_CLOCK_CHECK_MS = 1000;
/** Re-anchor even without a visible step every 10 min: catches sub-ms steps the ms check cannot see. */
export const SYSTEM_CLOCK_REANCHOR_MS = 600_000;
/**
 * Date.now() floors to the ms, so (Date.now() − our UTC) is normally in
 * (−1 ms, 0]; outside (−1.5 ms, +0.5 ms) the system clock has moved.
 */
const STEP_LOW_NS = -1_500_000n;
const STEP_HIGH_NS = 500_000n;

export interface SystemClockFollowerOptions {
  /** Error bound given to each re-anchor estimate (how far we trust the system clock). */
  errorBoundNs: number;
  /** False while a deadline is near: the precise re-anchor spins for up to ~5 ms. */
  isQuiet?: () => boolean;
  /** Hears of every correction applied (ns, UTC − previous UTC). */
  onCorrection?: (correctionNs: bigint, kind: 'step' | 'slew') => void;
}

export interface SystemClockFollower {
  stop(): void;
  /** Runs one check now (tests); returns the correction applied, if any. */
  check(force?: boolean): bigint | undefined;
}

export function followSystemClock(timescale: Timescale, options: SystemClockFollowerOptions): SystemClockFollower {
  let lastAnchorMs = Date.now();
  const check = (force = false): bigint | undefined => {
    const utcNs = timescale.nowNs();
    const diffNs = BigInt(Date.now()) * NS_PER_MS - utcNs;
    const moved = diffNs < STEP_LOW_NS || diffNs > STEP_HIGH_NS;
    const due = Date.now() - lastAnchorMs >= SYSTEM_CLOCK_REANCHOR_MS;
    if (!(moved || due || force)) return undefined;
    if (options.isQuiet && !options.isQuiet()) return undefined; // try again next second
    lastAnchorMs = Date.now();
    const anchor = anchorToSystemClock();
    // Our raw reading at the anchor's hrtime instant (two reads back to back: ~100 ns apart).
    const rawNs = timescale.clock.nowNs() - (process.hrtime.bigint() - anchor.hrtimeNs);
    const change = timescale.apply({ rawNs, offsetNs: anchor.epochNs - rawNs, frequencyPpm: 0, errorBoundNs: options.errorBoundNs });
    options.onCorrection?.(change.correctionNs, change.kind);
    return change.correctionNs;
  };
  const interval = setInterval(() => check(), SYSTEM_CLOCK_CHECK_MS);
  interval.unref(); // never the reason the process stays alive
  return { stop: () => clearInterval(interval), check };
}
