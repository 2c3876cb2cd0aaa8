/**
 * `npm run bench -- ntp-honesty`: thousands of seeded offline start-ups
 * (test/ntp/honesty-sim.ts) through a Wi-Fi-like and a loopback-like path;
 * prints how many runs ever claimed an offset or frequency bound below the
 * true error (the target is 0) and the worst error/bound ratio.
 * LOCKSTEP_BENCH_HONESTY_RUNS sets the runs per row (default 1000).
 */
import { runMany, type HonestyOptions } from '../ntp/honesty-sim.js';

const RUNS = Number(process.env.LOCKSTEP_BENCH_HONESTY_RUNS ?? 1000) || 1000;

const ROWS: { name: string; options: Omit<HonestyOptions, 'seed'> }[] = [
  { name: 'wifi, 1/16 s polls, 10 % loss, 30 s', options: { path: 'wifi', pollSeconds: 1 / 16, seconds: 30 } },
  { name: 'wifi, 0.25 s polls, 10 % loss, 15 s', options: { path: 'wifi', pollSeconds: 0.25, seconds: 15 } },
  { name: 'loopback, 0.5 s polls, 8 s', options: { path: 'loopback', pollSeconds: 0.5, seconds: 8 } },
  { name: 'loopback, 1/16 s polls, 10 s', options: { path: 'loopback', pollSeconds: 1 / 16, seconds: 10 } },
];

export async function run(): Promise<unknown> {
  const seeds = Array.from({ length: RUNS }, (_, i) => i + 1);
  const rows = [];
  for (const row of ROWS) {
    const started = Date.now();
    const s = runMany(row.options, seeds);
    rows.push({ name: row.name, ...s, failedSeeds: s.failedSeeds.slice(0, 20), seconds: (Date.now() - started) / 1000 });
  }
  const width = Math.max(...rows.map((r) => r.name.length));
  console.log(`${'path'.padEnd(width)}  runs  offset bound < truth  frequency bound < truth  worst err/bound (offset, freq)  first failed seeds`);
  for (const r of rows) {
    console.log(
      `${r.name.padEnd(width)}  ${String(r.runs).padStart(4)}  ${String(r.offsetMisses).padStart(20)}  ${String(r.frequencyMisses).padStart(23)}  ${r.worstOffsetRatio.toFixed(2).padStart(14)}, ${r.worstFrequencyRatio.toFixed(2).padEnd(14)}  ${r.failedSeeds.slice(0, 6).join(' ')}`,
    );
  }
  return { runsPerRow: RUNS, rows };
}
