/**
 * A seeded, offline start-up of one source: simulated polls through a
 * simulated path feed SourceStats directly (no sockets, no timers), so a
 * thousand start-ups take seconds and any failure repeats from its seed.
 * After every sample the estimate's claimed offset and frequency bounds are
 * held to the truth: a run whose claim was ever below its true error is
 * counted. Used by test/ntp/honesty.test.ts (a few hundred runs) and
 * `npm run bench -- ntp-honesty` (thousands).
 *
 * The paths copy what the real runs see:
 *  - wifi: the relay of the tests and case E: 1 ms + exp(3 ms) each way,
 *    loss, and a loaded event loop's lateness now and then;
 *  - loopback: tens of µs, a node process that reads T4 late after waking
 *    up (inbound only), and load bursts that delay several samples in a row
 *    (serially correlated errors: what a few loopback samples show on a
 *    shared 2-core machine).
 */
import { SourceStats, type SourceEstimate } from '../../src/ntp/sourcestats.js';
import type { Sample } from '../../src/ntp/source.js';

export type PathKind = 'wifi' | 'loopback';

export interface HonestyOptions {
  path: PathKind;
  seed: number;
  /** Seconds simulated. */
  seconds: number;
  /** Poll interval after a 4-poll burst 0.25 s apart. */
  pollSeconds: number;
  lossRate?: number;
  /** True frequency (UTC − raw), ppm; default drawn in ±100 from the seed. */
  frequencyPpm?: number;
}

export interface HonestyResult {
  seed: number;
  frequencyPpm: number;
  samples: number;
  /** First sample index (from 1) whose claimed offset bound was below the true error, if any. */
  offsetMissAt?: { sample: number; errorNs: number; boundNs: number; estimator?: string };
  frequencyMissAt?: { sample: number; errorPpm: number; boundPpm: number; estimator?: string };
  /** Worst |frequency error| / claimed bound over the run (≤ 1 is honest). */
  worstFrequencyRatio: number;
  worstOffsetRatio: number;
  final: SourceEstimate;
}

import { seededRandom } from '../support/random.js';

const exponential = (random: () => number, mean: number) => -mean * Math.log(1 - random());

/** One start-up; checks start from the second sample (one sample claims no frequency). */
export function simulateStartup(options: HonestyOptions): HonestyResult {
  const random = seededRandom(options.seed * 7919 + 17);
  const frequencyPpm = options.frequencyPpm ?? (random() * 2 - 1) * 100;
  const offset0 = BigInt(Math.round((random() * 2 - 1) * 5e9));
  const raw0 = 10_000_000_000_000n;
  const lossRate = options.lossRate ?? (options.path === 'wifi' ? 0.1 : 0);
  const stats = new SourceStats();
  const result: Omit<HonestyResult, 'final'> & { final?: SourceEstimate } = { seed: options.seed, frequencyPpm, samples: 0, worstFrequencyRatio: 0, worstOffsetRatio: 0 };
  let burstUntil = -1; // loopback load burst: raw seconds it lasts to
  let t = 0;
  let polls = 0;
  while (t <= options.seconds) {
    const { outNs, inNs } = options.path === 'wifi' ? wifiLegs(random) : loopbackLegs(random, t, () => burstUntil, (v) => (burstUntil = v));
    const lost = random() < lossRate || random() < lossRate;
    if (!lost) {
      const midNs = raw0 + BigInt(Math.round(t * 1e9 + (outNs + inNs) / 2));
      const trueOffset = offset0 + BigInt(Math.round(Number(midNs - raw0) * frequencyPpm * 1e-6));
      const sample: Sample = {
        rawNs: midNs,
        offsetNs: trueOffset + BigInt(Math.round((outNs - inNs) / 2)),
        delayNs: outNs + inNs,
        stratum: 2,
        leap: 0,
        refId: 0,
        rootDelayNs: 0,
        rootDispersionNs: 0,
      };
      const e = stats.add(sample);
      result.samples++;
      result.final = e;
      if (result.samples >= 2) {
        const errorNs = Math.abs(Number(e.offsetNs - trueOffset));
        const boundNs = e.offsetBoundNs ?? Infinity;
        const errorPpm = Math.abs(e.frequencyPpm - frequencyPpm);
        const boundPpm = e.frequencyBoundPpm ?? Infinity;
        result.worstOffsetRatio = Math.max(result.worstOffsetRatio, errorNs / boundNs);
        result.worstFrequencyRatio = Math.max(result.worstFrequencyRatio, errorPpm / boundPpm);
        if (errorNs > boundNs && !result.offsetMissAt) result.offsetMissAt = { sample: result.samples, errorNs, boundNs, estimator: e.estimator };
        if (errorPpm > boundPpm && !result.frequencyMissAt) result.frequencyMissAt = { sample: result.samples, errorPpm, boundPpm, estimator: e.estimator };
      }
    }
    polls++;
    t += polls < 4 ? Math.min(0.25, options.pollSeconds) : options.pollSeconds;
  }
  return result as HonestyResult;
}

/**
 * The test relay's legs: 1 ms + exp(3 ms) (its last millisecond is spun in
 * setImmediate turns, so the delays are the model's), plus loopback's own
 * tens of µs, and now and then a loaded event loop's lateness.
 */
export function wifiLegs(random: () => number): { outNs: number; inNs: number } {
  const leg = () => 40_000 + exponential(random, 20_000) + 1e6 + exponential(random, 3e6) + (random() < 0.05 ? exponential(random, 500_000) : 0);
  return { outNs: leg(), inNs: leg() };
}

/** Loopback: ~25 µs each way, a late T4 now and then, and load bursts lasting ~1 s. */
function loopbackLegs(random: () => number, t: number, burstUntil: () => number, setBurst: (until: number) => void): { outNs: number; inNs: number } {
  if (t > burstUntil() && random() < 0.08) setBurst(t + exponential(random, 1));
  const loaded = t <= burstUntil();
  let outNs = 25_000 + exponential(random, 5_000);
  let inNs = 25_000 + exponential(random, 5_000);
  if (random() < 0.1) inNs += exponential(random, 150_000); // T4 read late
  if (loaded) {
    // The whole machine is busy: both sides' processes are late, the node's reading of T4 most.
    outNs += exponential(random, 60_000);
    inNs += exponential(random, 200_000);
  }
  return { outNs, inNs };
}

export interface HonestySummary {
  runs: number;
  offsetMisses: number;
  frequencyMisses: number;
  worstFrequencyRatio: number;
  worstOffsetRatio: number;
  failedSeeds: number[];
}

export function runMany(base: Omit<HonestyOptions, 'seed'>, seeds: number[]): HonestySummary {
  const s: HonestySummary = { runs: 0, offsetMisses: 0, frequencyMisses: 0, worstFrequencyRatio: 0, worstOffsetRatio: 0, failedSeeds: [] };
  for (const seed of seeds) {
    const r = simulateStartup({ ...base, seed });
    s.runs++;
    if (r.offsetMissAt) s.offsetMisses++;
    if (r.frequencyMissAt) s.frequencyMisses++;
    if (r.offsetMissAt || r.frequencyMissAt) s.failedSeeds.push(seed);
    s.worstFrequencyRatio = Math.max(s.worstFrequencyRatio, r.worstFrequencyRatio);
    s.worstOffsetRatio = Math.max(s.worstOffsetRatio, r.worstOffsetRatio);
  }
  return s;
}
