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
 *  - The rehearsal 30 µs before the instant is itself slow on its first
 *    run (it compiles what it touches) and so made the instant late.
 *  - V8's memory reducer runs full collections (4–13 ms) ~8.5 s and ~9 s
 *    after start, wherever an instant happens to be.
 *
 * What is done:
 *  1. compileEagerly(): our code is compiled when it is loaded (V8's
 *     --no-lazy while the command's modules load), so no first call
 *     compiles anything. Costs ~50–150 ms of start-up and ~1.5 MB.
 *  2. The scheduler rehearses the fire path (down to Actuator.rehearse(),
 *     never the action) when a job is placed and again after the coarse
 *     wake, before the precise sleep, REHEARSALS times each: any first-run
 *     cost lands milliseconds before the instant, never in the spin. The
 *     rehearsal 30 µs before the instant (cache warmth) runs only when the
 *     last one measured took under a third of that lead.
 *  3. No collection at the instant: the memory reducer is off, and when the
 *     next instant is far the young generation is collected if it is more
 *     than half full (see collectIfFar), so the few KB the fire path
 *     allocates cannot trigger a scavenge at the instant.
 */
import { getHeapSpaceStatistics, setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

/** How many rehearsals at each stage: the first compiles and fills the caches, the next finds them warm. */
export const REHEARSALS = 2;
/**
 * The last rehearsal, this long before the instant, brings the fire path back
 * into the CPU caches after milliseconds asleep (cold, spin end → action took
 * ~5–8 µs; warm, < 1 µs). 30 µs of spinning afterwards evicts nothing.
 */
export const REHEARSE_BEFORE_NS = 30_000n;
/** The in-spin rehearsal runs only when the previous one took less than this: it must never make the instant late. */
export const IN_SPIN_REHEARSAL_MAX_NS = Number(REHEARSE_BEFORE_NS) / 3;
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
