/**
 * `npm run bench -- ntp-cost`: the CPU one NTP client spends per sample in
 * its source statistics (SourceStats.add: the regression and the delay
 * envelope), over seeded sample streams, by window size. A swarm of a
 * thousand clients on one machine pays this a thousand times per poll.
 *
 * It also prints a digest of every estimate the streams produced: a change
 * meant to make the statistics cheaper must leave it as it was.
 * LOCKSTEP_BENCH_COST_SAMPLES sets the samples per stream (default 1500).
 */
import { createHash } from 'node:crypto';
import { SourceStats, MAX_SAMPLES } from '../../src/ntp/sourcestats.js';
import type { Sample } from '../../src/ntp/source.js';
import { seededRandom } from '../support/random.js';

const SAMPLES = Number(process.env.LOCKSTEP_BENCH_COST_SAMPLES ?? 1500) || 1500;
/** A window this full counts as full: the runs test trims a few now and then. */
const FULL_WINDOW = MAX_SAMPLES - 12;
/** Batches of adds whose mean is taken; the best batch is the cost without the other processes' share of the CPU. */
const BATCH = 50;

const exponential = (random: () => number, mean: number) => -mean * Math.log(1 - random());

/** Seeded samples of a path: Wi-Fi (1 ms + exp(3 ms) each way, 2 % loss) or loopback (late T4 reads). */
function stream(path: 'wifi' | 'loopback', seed: number, n: number, pollSeconds: number): Sample[] {
  const random = seededRandom(seed);
  const frequencyPpm = (random() * 2 - 1) * 100;
  const offset0 = BigInt(Math.round((random() * 2 - 1) * 5e9));
  const raw0 = 10_000_000_000_000n;
  const samples: Sample[] = [];
  let t = 0;
  for (let i = 0; samples.length < n; i++) {
    let outNs: number;
    let inNs: number;
    if (path === 'wifi') {
      const leg = () => 40_000 + exponential(random, 20_000) + 1e6 + exponential(random, 3e6) + (random() < 0.05 ? exponential(random, 500_000) : 0);
      outNs = leg();
      inNs = leg();
    } else {
      outNs = 25_000 + exponential(random, 5_000);
      inNs = 25_000 + exponential(random, 5_000) + (random() < 0.1 ? exponential(random, 150_000) : 0);
    }
    const lost = random() < 0.02;
    if (!lost) {
      const midNs = raw0 + BigInt(Math.round(t * 1e9 + (outNs + inNs) / 2));
      const trueOffset = offset0 + BigInt(Math.round(Number(midNs - raw0) * frequencyPpm * 1e-6));
      samples.push({ rawNs: midNs, offsetNs: trueOffset + BigInt(Math.round((outNs - inNs) / 2)), delayNs: outNs + inNs, stratum: 2, leap: 0, refId: 0, rootDelayNs: 0, rootDispersionNs: 0 });
    }
    t += i < 4 ? 0.25 : pollSeconds;
  }
  return samples;
}

const ROWS = [
  { name: 'wifi, 1/16 s polls', path: 'wifi' as const, seed: 1, pollSeconds: 1 / 16 },
  { name: 'wifi, 1 s polls', path: 'wifi' as const, seed: 2, pollSeconds: 1 },
  { name: 'loopback, 1/16 s polls', path: 'loopback' as const, seed: 3, pollSeconds: 1 / 16 },
];

export async function run(): Promise<unknown> {
  const digest = createHash('sha256');
  const rows = [];
  for (const row of ROWS) {
    const samples = stream(row.path, row.seed, SAMPLES, row.pollSeconds);
    const stats = new SourceStats();
    const fullNs: number[] = [];
    const batchMeans: number[] = [];
    let batch = 0;
    let batchCount = 0;
    for (const sample of samples) {
      const deviation = stats.deviation(sample);
      const started = process.hrtime.bigint();
      const e = stats.add(sample);
      const ns = Number(process.hrtime.bigint() - started);
      digest.update(JSON.stringify(e, (_k, v) => (typeof v === 'bigint' ? v.toString() : v)) + String(deviation));
      if (e.samples < FULL_WINDOW) continue;
      fullNs.push(ns);
      batch += ns;
      if (++batchCount === BATCH) {
        batchMeans.push(batch / BATCH);
        batch = 0;
        batchCount = 0;
      }
    }
    fullNs.sort((a, b) => a - b);
    const q = (p: number) => (fullNs.length ? fullNs[Math.min(fullNs.length - 1, Math.floor(p * fullNs.length))]! / 1e3 : NaN);
    rows.push({ name: row.name, fullWindowSamples: fullNs.length, p50Us: q(0.5), p99Us: q(0.99), bestBatchMeanUs: Math.min(...batchMeans) / 1e3 });
  }
  const width = Math.max(...rows.map((r) => r.name.length));
  console.log(`${'stream'.padEnd(width)}  adds at a full window  p50 µs  p99 µs  best mean of ${BATCH} µs`);
  for (const r of rows) {
    console.log(`${r.name.padEnd(width)}  ${String(r.fullWindowSamples).padStart(21)}  ${r.p50Us.toFixed(1).padStart(6)}  ${r.p99Us.toFixed(1).padStart(6)}  ${r.bestBatchMeanUs.toFixed(1).padStart(17)}`);
  }
  const estimates = digest.digest('hex');
  console.log(`digest of every estimate: ${estimates}`);
  return { samplesPerStream: SAMPLES, rows, estimatesDigest: estimates };
}
