/**
 * The first fire of a fresh process as good as the thousandth: everything
 * lockstep does about it is here, so nothing is sprinkled through the layers.
 *
 * Why a fresh process is late (measured on the 2-core build machine):
 *  - V8 compiles a function the first time it is called. The path from the
 *    spin to the action (the scheduler's fire loop, the action's closure,
 *    the actuator's fire()) costs 50–400 µs on its first call, under 1 µs
 *    afterwards. A fresh `fire blink --driver sim` reached the recorder
 *    65–424 µs after the spin's end on its first edge; compiled eagerly,
 *    19–84 µs (load ~8 on 2 cores, 5 runs each).
 *  - Even compiled and rehearsed, a fresh process took 25–60 µs from the
 *    spin's end to the recorder on EVERY edge (2.3 µs warm). Measured
 *    (--trace-opt, perf, timestamps along the path, 2-core VM, 2026-12-02):
 *    a) V8 optimizes the spin's own functions (hrtime, performance.now,
 *       nowNs, spinUntil) once they are hot, during the first edges' spins,
 *       and installs the code on the main thread: tens of µs each, landing
 *       between the spin and the action;
 *    b) the rehearsal ran other closures and other report objects than the
 *       real fire: every inline cache first met at the instant went to V8's
 *       runtime (LoadIC_NoFeedback, TransitionToDataProperty in perf);
 *    c) after a sleep the CPU's caches and TLB are cold: on this VM a page
 *       first touched after a 5 ms sleep cost 60–80 ns, a trivial function
 *       4–8 µs instead of 0.4.
 *  - The rehearsal 30 µs before the instant was itself slow (16–96 µs cold)
 *    and so could make the instant late.
 *  - V8's memory reducer runs full collections (4–13 ms) ~8.5 s and ~9 s
 *    after start, wherever an instant happens to be.
 *
 * What is done:
 *  1. compileEagerly(): our code is compiled when it is loaded (V8's
 *     --no-lazy while the command's modules load), so no first call
 *     compiles anything. Costs ~50–150 ms of start-up and ~1.5 MB. With
 *     it, baseline (Sparkplug) code from each function's first call.
 *  2. warmUpSpin(): the spin is made hot once per clock when the first job
 *     is placed (~30 ms of CPU), so V8 optimizes and installs it then (a).
 *  3. The action is its own rehearsal (scheduleAction passes the same
 *     closure, called with `rehearsal` true, down to the actuator: its
 *     fire() itself where it rehearsesInFire, else its rehearse()),
 *     on a report made by the same code as the real one, running the same
 *     statements with other values (b). It is rehearsed when a job is
 *     placed and after the coarse wake, REHEARSALS times each, and once
 *     more in the spin, at least 3× its cold cost before the instant (c):
 *     never the cause of a late instant by design. That lead is worked out
 *     before the precise sleep, and the in-spin rehearsal and the instant
 *     share one loop and its call sites: code first met inside the spin
 *     (the lead's first call: 160–225 µs) ended a fresh first edge's spin
 *     that late.
 *  4. No collection at the instant: the memory reducer is off, and when the
 *     next instant is far the young generation is collected if it is more
 *     than half full (see collectIfFar), so the few KB the fire path
 *     allocates cannot trigger a scavenge at the instant.
 */
import { getHeapSpaceStatistics, setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import type { RawClock } from '../time/clock.js';

/** How many rehearsals at each stage: the first compiles and fills the caches, the next finds them warm. */
export const REHEARSALS = 2;
/**
 * The last rehearsal runs in the spin, this long before the instant at the
 * least: after milliseconds asleep the CPU's caches and TLB hold other
 * processes' memory (on the build machine, a VM, each page first touched
 * after a sleep cost 60–80 ns, and the interpreted path from the spin to the
 * recorder 25–60 µs; re-run just before, a few µs).
 */
export const MIN_IN_SPIN_REHEARSAL_LEAD_NS = 30_000n;
/** ...and at most this long: the spin margin is 50 µs–2 ms, and this much spinning is the price of the rehearsal. */
export const MAX_IN_SPIN_REHEARSAL_LEAD_NS = 200_000n;
/**
 * The lead is this many times what the first rehearsal took before the
 * precise sleep (also cold, just after the coarse wake), so that a slower
 * run still ends before the instant: cold runs here took 16–96 µs, their
 * pre-sleep first runs 4–38 µs.
 */
const IN_SPIN_LEAD_FACTOR = 3;

/**
 * How long before the instant the in-spin rehearsal starts, given what the
 * last rehearsal took (ns; Infinity: none ran); undefined: none, because it
 * could not be sure to end in time. It never makes an instant late by
 * design: it starts at least 3× its own measured cost before the instant.
 */
export function inSpinRehearsalLeadNs(rehearsalNs: number): bigint | undefined {
  if (!Number.isFinite(rehearsalNs)) return undefined;
  const leadNs = BigInt(Math.ceil(rehearsalNs * IN_SPIN_LEAD_FACTOR));
  if (leadNs > MAX_IN_SPIN_REHEARSAL_LEAD_NS) return undefined;
  return leadNs < MIN_IN_SPIN_REHEARSAL_LEAD_NS ? MIN_IN_SPIN_REHEARSAL_LEAD_NS : leadNs;
}
/**
 * The spin itself is warmed once per clock, when its first job is placed:
 * V8 compiles the spin's functions (the clock read, performance.now, the
 * loop) with TurboFan once they are hot, on a background thread, and
 * installs the result on the main thread at its next interrupt check. In a
 * fresh process that happened during the first few edges' spins, and the
 * install (tens of µs each, 4 functions) landed between the spin's end and
 * the action: spin end → recorder 10–270 µs on the first 5 edges of a fresh
 * `fire blink`, 3 µs once spinUntil was optimized (--trace-opt, 2-core VM).
 * This many short spins, SPIN_WARM_UP_CHUNK_NS each, make them hot.
 */
export const SPIN_WARM_UP_CHUNKS = 40;
/** Each warm-up spin: long enough for both of its phases (performance.now, then the exact tail). */
export const SPIN_WARM_UP_CHUNK_NS = 500_000n;
/** The background compiles take 2–10 ms here (more when loaded): the warm-up then keeps the main thread at JS this much longer, in 1 ms steps, so the code is installed now, not at an instant. */
const SPIN_WARM_UP_SETTLE_NS = 10_000_000n;
/** Not when the first instant is nearer than this: the warm-up itself (~30 ms of CPU) must end long before it. */
export const SPIN_WARM_UP_MIN_AHEAD_NS = 200_000_000n;

/** The clock classes the spin was warmed with: V8's code is per function, so once per kind of clock, not per clock (a demo runs ten, a swarm hundreds). */
const spinWarmed = new Set<unknown>();

/**
 * Spins on `clock` through `spinUntil` until V8 has compiled the spin, once
 * per process and clock class: called by the scheduler when a job is placed
 * at least SPIN_WARM_UP_MIN_AHEAD_NS ahead. Returns whether it ran.
 */
export function warmUpSpin(clock: RawClock, spinUntil: (clock: RawClock, rawNs: bigint) => bigint, aheadNs: bigint): boolean {
  const kind = Object.getPrototypeOf(clock) as unknown;
  if (spinWarmed.has(kind) || aheadNs < SPIN_WARM_UP_MIN_AHEAD_NS) return false;
  spinWarmed.add(kind);
  for (let i = 0; i < SPIN_WARM_UP_CHUNKS; i++) spinUntil(clock, clock.nowNs() + SPIN_WARM_UP_CHUNK_NS);
  // The exact tail alone (a spin that starts within its 20 µs), as the second group of an instant spins.
  for (let i = 0; i < SPIN_WARM_UP_CHUNKS; i++) spinUntil(clock, clock.nowNs() + 5_000n);
  const settleUntil = clock.nowNs() + SPIN_WARM_UP_SETTLE_NS;
  while (clock.nowNs() < settleUntil) spinUntil(clock, clock.nowNs() + 1_000_000n);
  return true;
}

/**
 * A collection only when the instant is at least this far (the coarse wait
 * about to start): a scavenge takes 0.1–2 ms here, a loaded machine more.
 */
export const COLLECT_WHEN_AHEAD_MS = 20;
/** Collect the young generation when it is fuller than this (it scavenges itself when full). */
const YOUNG_FULL_FRACTION = 0.5;

type Collector = (options?: { type?: 'major' | 'minor' }) => void;
let collector: Collector | undefined;
let processReady = false;

/**
 * Process-wide settings, once, before the command's modules load: the memory
 * reducer off (V8 then collects only when the heap needs it), and a handle
 * on V8's gc() so that collectIfFar can ask for a scavenge. Best effort:
 * where a flag cannot be set, precision suffers, correctness does not.
 */
export function readyProcess(): void {
  if (processReady) return;
  processReady = true;
  try {
    setFlagsFromString('--no-memory-reducer');
    // Baseline (Sparkplug) code from the first call: the interpreter's dispatch, several µs on the path from the spin to the action, is gone.
    setFlagsFromString('--always-sparkplug');
    setFlagsFromString('--expose-gc');
    // The gc function is installed in contexts made after the flag: a new one hands it over.
    const gc = runInNewContext('gc') as unknown;
    if (typeof gc === 'function') collector = gc as Collector;
  } catch {
    collector = undefined;
  }
}

/** Loads a module graph with eager compilation: every function compiled at load, none at its first call. */
export async function compileEagerly<T>(load: () => Promise<T>): Promise<T> {
  setFlagsFromString('--no-lazy');
  try {
    return await load();
  } finally {
    // Code made later (eval, a library's new Function) compiles lazily again: only our load pays.
    setFlagsFromString('--lazy');
  }
}

/**
 * Called by the scheduler as it arms a coarse wait of delayMs: when that is
 * long enough, and the young generation is more than half full, scavenge
 * now, so that no scavenge is due at the instant. Returns whether it did.
 */
export function collectIfFar(delayMs: number): boolean {
  if (collector === undefined || delayMs < COLLECT_WHEN_AHEAD_MS) return false;
  const young = getHeapSpaceStatistics().find((s) => s.space_name === 'new_space');
  if (young === undefined) return false;
  const capacity = young.space_used_size + young.space_available_size;
  if (capacity <= 0 || young.space_used_size < capacity * YOUNG_FULL_FRACTION) return false;
  collector({ type: 'minor' });
  return true;
}
