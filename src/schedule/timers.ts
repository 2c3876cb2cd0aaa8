/**
 * How the scheduler waits. Three stages, from coarse to exact:
 *   1. a coarse timer (setTimeout) that wakes the process a margin early,
 *   2. a blocking sleep (Atomics.wait) that yields the CPU to the other
 *      processes of a 2-core machine until a short spin margin remains,
 *   3. a busy-wait on the raw clock to the exact nanosecond.
 * All three are behind TimerHost so tests can drive them with a ManualClock.
 */
import { performance } from 'node:perf_hooks';
import type { RawClock } from '../time/clock.js';

export interface TimerHandle {
  cancel(): void;
}

export interface TimerHost {
  /** Calls back after about delayMs (0: as soon as the event loop turns). */
  setTimeout(callback: () => void, delayMs: number): TimerHandle;
  /** Blocks the thread for about ns without using the CPU (may oversleep). */
  sleepNs(ns: number): void;
  /** Busy-waits until clock reads ≥ rawNs; returns the reading that ended it. */
  spinUntil(clock: RawClock, rawNs: bigint): bigint;
}

/**
 * setTimeout measures its delay as a 32-bit signed number of ms: anything
 * beyond 2^31−1 ms (24.8 days) fires after 1 ms instead. We stay far below.
 */
export const SETTIMEOUT_LIMIT_MS = 2 ** 31 - 1;

/**
 * The spin reads performance.now() (a double: nothing on the heap) until
 * this close to the deadline, then the raw clock itself (a bigint per read).
 * Reading the clock all the way allocated ~50 bytes per 50 ns of spin,
 * ~0.4 MB per fire with a 400 µs margin: a scavenge every few fires, which
 * may land on an instant (src/schedule/warm-up.ts). 20 µs covers the rate
 * difference of a simulated clock (±1000 ppm over a 2 ms spin: 2 µs).
 */
export const EXACT_SPIN_TAIL_NS = 20_000;

/** The one word Atomics.wait blocks on; nobody ever notifies it. */
const sleepWord = new Int32Array(new SharedArrayBuffer(4));

/** Node's own timers, Atomics.wait and a spin on the raw clock. */
export const realTimerHost: TimerHost = {
  setTimeout(callback, delayMs) {
    if (delayMs <= 0) {
      // setTimeout(fn, 0) waits a whole ms; setImmediate runs after pending I/O.
      const immediate = setImmediate(callback);
      return { cancel: () => clearImmediate(immediate) };
    }
    const timeout = setTimeout(callback, Math.min(delayMs, SETTIMEOUT_LIMIT_MS));
    return { cancel: () => clearTimeout(timeout) };
  },
  sleepNs(ns) {
    // Atomics.wait takes fractional milliseconds: sub-ms sleeps work, and the
    // main thread of Node (unlike a browser's) is allowed to block.
    if (ns > 0) Atomics.wait(sleepWord, 0, 0, ns / 1e6);
  },
  spinUntil(clock, rawNs) {
    let now = clock.nowNs();
    const remainingNs = Number(rawNs - now);
    if (remainingNs > EXACT_SPIN_TAIL_NS) {
      const untilMs = performance.now() + (remainingNs - EXACT_SPIN_TAIL_NS) / 1e6;
      while (performance.now() < untilMs);
      now = clock.nowNs();
    }
    while (now < rawNs) now = clock.nowNs();
    return now;
  },
};
