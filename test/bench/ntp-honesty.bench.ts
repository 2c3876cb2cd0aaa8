/**
 * `npm run bench -- ntp-honesty`: thousands of seeded offline start-ups
 * (test/ntp/honesty-sim.ts) through a Wi-Fi-like and a loopback-like path;
 * prints how many runs ever claimed an offset or frequency bound below the
 * true error (the target is 0) and the worst error/bound ratio.
 * Then whole-client start-ups (test/ntp/startup-sim.ts: poll schedule,
 * discipline, Timescale), with case E's figures offline.
 * LOCKSTEP_BENCH_HONESTY_RUNS sets the runs per row (default 1000).
 */
import { runMany, type HonestyOptions } from '../ntp/honesty-sim.js';
import { simulateClientStartup, summarize } from '../ntp/startup-sim.js';

const RUNS = Number(process.env.LOCKSTEP_BENCH_HONESTY_RUNS ?? 1000) || 1000;
/** Whole-client start-ups (startup-sim.ts) at most: each simulates a minute of 16 Hz polling. */
const CLIENT_RUNS = 200;

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
  // The whole client as case E of the ntp bench runs it, offline: fewer runs, each is a minute of polling.
  const clientRuns = Math.min(RUNS, CLIENT_RUNS);
  const started = Date.now();
  const client = summarize(seeds.slice(0, clientRuns).map((seed) => simulateClientStartup({ seed })));
  const f = (v: number, unit: string) => (Number.isFinite(v) ? `${v.toFixed(unit === 'ppm' ? 2 : 1)} ${unit}` : 'never');
  console.log(`\nwhole client (poll schedule, discipline, Timescale), wifi model, 2 % loss, 61 s, ${clientRuns} runs (${((Date.now() - started) / 1000).toFixed(0)} s):`);
  console.log(`  runs whose Timescale bound was ever below the truth: ${client.dishonestRuns}${client.dishonestSeeds.length ? ` (seeds ${client.dishonestSeeds.join(' ')})` : ''}`);
  console.log(`  |error| p99 after 5 / 10 / 25 / 60 s: ${['5', '10', '25', '60'].map((c) => f(client.errorP99Us[c]!, 'µs')).join(' / ')}`);
  console.log(`  |frequency error| after 30 s p50 / p99: ${f(client.frequencyP50Ppm, 'ppm')} / ${f(client.frequencyP99Ppm, 'ppm')} (worst seeds ${client.worstFrequencySeeds.join(' ')})`);
  console.log(`  1 ms gate passes after p50 / p99: ${f(client.gateP50S, 's')} / ${f(client.gateP99S, 's')} (worst seeds ${client.worstGateSeeds.join(' ')})`);
  return { runsPerRow: RUNS, rows, client };
}
