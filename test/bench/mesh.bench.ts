/**
 * Mesh benchmark: the spread of TRUE fire instants across 10 simulated node
 * processes (clocks off by up to ±5 s, ±100 ppm), over 20 triggers, on
 * loopback and with NTP through the Wi-Fi-like relay; and the latency from
 * publishing a trigger to the last node's ack.
 *
 * All 10 nodes, the broker and the hub share this machine's 2 cores
 * (and whatever else runs): every node busy-waits
 * for the same instant, so the worst cases here are the scheduler losing the
 * CPU, not the clocks disagreeing. So next to the true fire spread the
 * table shows the clock agreement spread: per fire, the true instants at
 * which each node's disciplined clock read the planned instant (simulated
 * clocks know it), spread across nodes. That is what one-node-per-computer
 * deployments get, plus each node's own fire latency, which the "1 node"
 * row measures alone (true fire − the clock's reading of the instant).
 *
 * Knobs for experiments (defaults are the benchmark):
 *   LOCKSTEP_BENCH_MODES=loopback,loopback-settled,wifi,wifi-settled,loopback2,single   which rows
 *   LOCKSTEP_BENCH_SETTLE_S=60    how long the settled rows wait after start
 *   LOCKSTEP_BENCH_TRIGGERS=20    triggers per row
 *   LOCKSTEP_BENCH_SPIN=DUR       every node's fixed spin (lockstep node --spin); default: learnt
 *   LOCKSTEP_BENCH_NICE=-5        node priority
 *   LOCKSTEP_BENCH_SLACK=0        skip the one-process timer slack A/B at the end
 */
import { loadavg, cpus } from 'node:os';
import { writeFileSync } from 'node:fs';
import { realClock } from '../../src/time/clock.js';
import { Timescale } from '../../src/time/timescale.js';
import { Scheduler } from '../../src/schedule/scheduler.js';
import { lowerTimerSlack, readTimerSlackNs } from '../../src/schedule/process-tuning.js';
import { Cluster } from '../../src/cli/mesh/cluster.js';
import { quantiles, type Quantiles, TRUE_SPREAD_LABEL, CLOCK_SPREAD_LABEL } from '../../src/mesh/spread.js';
import { formatNs } from '../../src/mesh/readiness.js';
import { writeSvg, benchResultPath } from './svg-plot.js';

const NODES = 10;
const TRIGGERS = Number(process.env.LOCKSTEP_BENCH_TRIGGERS ?? 20);
const SPIN = process.env.LOCKSTEP_BENCH_SPIN;
const MODES = (process.env.LOCKSTEP_BENCH_MODES ?? 'loopback,loopback-settled,wifi,wifi-settled,loopback2,single').split(',');

interface ModeResult {
  mode: string;
  triggers: number;
  syncSeconds: number;
  trueSpreadNs?: Quantiles;
  /** Per edge, spread of the true instants at which the nodes' clocks read the planned instant. */
  clockSpreadNs?: Quantiles;
  /** Per report, true fire instant − the true instant the node's clock read the planned one: its own fire latency. */
  fireLatencyNs?: Quantiles;
  reportedSpreadNs?: Quantiles;
  /** |reported − true| spread difference: what the clocks contribute. */
  clockDisagreementNs?: Quantiles;
  allAcksMs?: Quantiles;
  latenessNs?: Quantiles;
  missing: number;
}

/** Node priority as in the systemd unit (Nice=-5); LOCKSTEP_BENCH_NICE=0 to compare. */
const NICE = Number(process.env.LOCKSTEP_BENCH_NICE ?? -5);

/**
 * Settled rows wait this long after start before the first trigger. The other
 * rows fire as soon as the gate opens (a few s after start), when each node's
 * frequency rests on a handful of samples: a few ppm off, tens to hundreds of
 * µs of clock error within seconds. Nodes in use have run for minutes or
 * hours; 60 s of samples is what the NTP benchmark's frequency row needs.
 */
const SETTLE_MS = Number(process.env.LOCKSTEP_BENCH_SETTLE_S ?? 60) * 1000;

async function runMode(wifi: boolean, nodes = NODES, settleMs = 0): Promise<ModeResult> {
  const NODES = nodes;
  const cluster = new Cluster({ nodes, wifi, nice: NICE, ...(SPIN !== undefined ? { spin: SPIN } : {}) });
  const trueSpreads: number[] = [];
  const clockSpreads: number[] = [];
  const fireLatency: number[] = [];
  const reportedSpreads: number[] = [];
  const disagreement: number[] = [];
  const acks: number[] = [];
  const lateness: number[] = [];
  let missing = 0;
  const t0 = Date.now();
  let syncSeconds = 0;
  try {
    await cluster.start();
    if (settleMs > 0) await new Promise((r) => setTimeout(r, settleMs));
    for (let i = 0; i < TRIGGERS; i++) {
      const result = await cluster.coordinator!.run({
        action: { kind: 'blink', line: 17, onNs: 50_000_000, periodNs: 100_000_000, count: 1 },
        inNs: 600_000_000n,
        // Over the relay an honest NTP bound includes half the round trip (~4 ms here); the true error is far smaller.
        readyWithinNs: wifi ? 10_000_000 : 1_000_000,
        readyTimeoutMs: 60_000,
        collectGraceMs: 3_000,
      });
      if (i === 0) syncSeconds = (Date.now() - t0) / 1000;
      if (result.allAcksMs !== undefined) acks.push(result.allAcksMs);
      missing += result.missingAcks.length;
      for (const e of result.edges) {
        if (e.nodes !== NODES) {
          missing += NODES - e.nodes;
          continue;
        }
        if (e.trueSpreadNs !== undefined) trueSpreads.push(e.trueSpreadNs);
        if (e.clockSpreadNs !== undefined) clockSpreads.push(e.clockSpreadNs);
        reportedSpreads.push(e.spreadNs);
      }
      // Per report: how far the node's own idea of the instant was from truth, relative to the trigger's mean.
      const withTruth = result.reports.filter((r) => r.trueNs !== undefined);
      if (withTruth.length) {
        const offsets = withTruth.map((r) => Number(r.trueNs! - r.actualNs));
        const mean = offsets.reduce((a, b) => a + b, 0) / offsets.length;
        for (const o of offsets) disagreement.push(Math.abs(o - mean));
      }
      for (const r of result.reports) {
        lateness.push(Math.abs(r.latenessNs));
        if (r.trueNs !== undefined && r.clockTrueNs !== undefined) fireLatency.push(Number(r.trueNs - r.clockTrueNs));
      }
    }
  } finally {
    await cluster.stop();
  }
  const out: ModeResult = { mode: modeName(wifi, nodes, settleMs), triggers: TRIGGERS, syncSeconds, missing };
  if (nodes > 1) perEdge.set(out.mode, { trueSpreadNs: trueSpreads, clockSpreadNs: clockSpreads }); // one node has no spread
  const put = <K extends keyof ModeResult>(k: K, v: ModeResult[K] | undefined) => {
    if (v !== undefined) out[k] = v;
  };
  put('trueSpreadNs', quantiles(trueSpreads));
  put('clockSpreadNs', quantiles(clockSpreads));
  put('fireLatencyNs', quantiles(fireLatency));
  put('reportedSpreadNs', quantiles(reportedSpreads));
  put('clockDisagreementNs', quantiles(disagreement));
  put('allAcksMs', quantiles(acks));
  put('latenessNs', quantiles(lateness));
  return out;
}

/** Every edge's spreads per mode, for the plots (the JSON keeps quantiles only). */
const perEdge = new Map<string, { trueSpreadNs: number[]; clockSpreadNs: number[] }>();

/** Per-edge spread distributions, one curve per mode: the fire spread, and the clocks' agreement alone. */
function plotSpreads(): string[] {
  const modes = [...perEdge].filter(([, v]) => v.trueSpreadNs.length > 0);
  if (modes.length === 0) return [];
  const subtitle = `${TRIGGERS} triggers per mode, every edge (on and off) of a 50 ms pulse; one ${cpus().length}-core machine, load ${loadavg()[0]!.toFixed(2)}`;
  return [
    writeSvg(benchResultPath('mesh-fire-spread.svg'), {
      kind: 'cdf', logX: true, unit: 'ns', title: `${TRUE_SPREAD_LABEL} per edge across nodes (simulated LEDs)`, subtitle,
      xLabel: 'max − min of the true instants, per edge (log)', series: modes.map(([mode, v]) => ({ label: mode, values: v.trueSpreadNs })),
    }),
    writeSvg(benchResultPath('mesh-clock-spread.svg'), {
      kind: 'cdf', logX: true, unit: 'ns', title: `${CLOCK_SPREAD_LABEL} per edge (when each clock read the instant)`, subtitle,
      xLabel: 'max − min across nodes, per edge (log)', series: modes.filter(([, v]) => v.clockSpreadNs.length > 0).map(([mode, v]) => ({ label: mode, values: v.clockSpreadNs })),
    }),
  ];
}

function modeName(wifi: boolean, nodes: number, settleMs: number): string {
  return `${wifi ? 'wifi' : 'loopback'}, ${nodes} nodes${settleMs > 0 ? `, after ${settleMs / 1000} s` : ''}`;
}

interface SlackRow {
  slack: string;
  /** Atomics.wait(1 ms) oversleep. */
  oversleepNs?: Quantiles;
  /** One node's scheduler, fires 5 ms apart: its lateness, the spin margin it learnt, CPU spun per fire. */
  latenessNs?: Quantiles;
  spinMarginNs: number;
  spinPerFireNs: number;
  lateSleeps: number;
  fires: number;
}

/**
 * Timer slack's effect on one process, A/B in the same process (writing 0 to
 * /proc/self/timerslack_ns restores the default 50 µs, 1 lowers it), blocks
 * alternated so drifting machine load hits both alike.
 */
async function timerSlackEffect(): Promise<SlackRow[] | undefined> {
  if (readTimerSlackNs() === undefined) return undefined;
  const word = new Int32Array(new SharedArrayBuffer(4));
  const rows = new Map<string, { over: number[]; late: number[]; margins: number[]; spin: number; fires: number; lateSleeps: number }>();
  const settings: [string, string][] = [['default (50 µs)', '0'], ['lowered (1 ns)', '1']];
  for (let block = 0; block < 4; block++) {
    const [label, value] = settings[block % 2]!;
    writeFileSync('/proc/self/timerslack_ns', value); // synchronous: the main thread's own slack
    const row = rows.get(label) ?? { over: [], late: [], margins: [], spin: 0, fires: 0, lateSleeps: 0 };
    rows.set(label, row);
    for (let i = 0; i < 200; i++) {
      const t0 = process.hrtime.bigint();
      Atomics.wait(word, 0, 0, 1);
      row.over.push(Number(process.hrtime.bigint() - t0) - 1_000_000);
    }
    const timescale = new Timescale(realClock(), { trustRawClock: { errorBoundNs: 1_000_000 } });
    const scheduler = new Scheduler({ timescale });
    const FIRES = 150;
    await new Promise<void>((resolve) => {
      let n = 0;
      scheduler.every({ epochNs: timescale.nowNs() + 50_000_000n, periodNs: 5_000_000n, count: FIRES }, (r) => {
        row.late.push(Math.abs(r.latenessNs));
        if (++n === FIRES) resolve();
      });
    });
    const st = scheduler.stats();
    scheduler.stop();
    row.spin += st.spinNs;
    row.fires += st.fires;
    row.lateSleeps += st.lateSleeps;
    row.margins.push(st.spinMarginNs);
  }
  lowerTimerSlack();
  return [...rows].map(([slack, r]) => ({
    slack,
    ...(quantiles(r.over) ? { oversleepNs: quantiles(r.over)! } : {}),
    ...(quantiles(r.late) ? { latenessNs: quantiles(r.late)! } : {}),
    spinMarginNs: Math.round(r.margins.reduce((a, b) => a + b, 0) / r.margins.length),
    spinPerFireNs: Math.round(r.spin / Math.max(1, r.fires)),
    lateSleeps: r.lateSleeps,
    fires: r.fires,
  }));
}

export async function run(): Promise<unknown> {
  console.log(`${NODES} node processes (nice ${NICE}${SPIN !== undefined ? `, spin ${SPIN}` : ''}), ${TRIGGERS} triggers per mode (each a 50 ms pulse: on and off edges); load average ${loadavg().map((x) => x.toFixed(2)).join(' ')}.`);
  console.log(`NOTE: this one ${cpus().length}-core machine hosts the broker, the hub and all nodes at once.\n`);
  const results: ModeResult[] = [];
  const rowsWanted: Record<string, [boolean, number, number?]> = {
    loopback: [false, NODES],
    'loopback-settled': [false, NODES, SETTLE_MS],
    wifi: [true, NODES],
    'wifi-settled': [true, NODES, SETTLE_MS],
    loopback2: [false, 2],
    single: [false, 1],
  };
  // loopback2: as many nodes as cores, so no two spin tails compete for a core at the instant.
  // single: one node alone: its own fire latency, what each node of a one-per-computer deployment adds.
  for (const name of MODES) {
    if (!rowsWanted[name]) continue; // e.g. LOCKSTEP_BENCH_MODES=none: only the timer slack A/B
    const [wifi, nodes, settleMs = 0] = rowsWanted[name]!;
    try {
      results.push(await runMode(wifi, nodes, settleMs));
    } catch (error) {
      console.log(`${modeName(wifi, nodes, settleMs)}: ${(error as Error).message}`);
      results.push({ mode: modeName(wifi, nodes, settleMs), triggers: 0, syncSeconds: 0, missing: TRIGGERS * nodes });
    }
  }
  const q = (x: Quantiles | undefined, f: (n: number) => string) => (x ? `${f(x.p50)} / ${f(x.p99)} / ${f(x.max)}` : '-');
  const ms = (n: number) => `${n.toFixed(1)} ms`;
  const rows = results.map((r) => [
    r.mode,
    q(r.trueSpreadNs, formatNs),
    q(r.clockSpreadNs, formatNs),
    q(r.fireLatencyNs, formatNs),
    q(r.reportedSpreadNs, formatNs),
    q(r.clockDisagreementNs, formatNs),
    q(r.latenessNs, formatNs),
    q(r.allAcksMs, ms),
    `${r.syncSeconds.toFixed(1)} s`,
    String(r.missing),
  ]);
  const header = [
    'mode (p50 / p99 / max)',
    `${TRUE_SPREAD_LABEL} (N processes on ${cpus().length} cores)`,
    `${CLOCK_SPREAD_LABEL}`,
    'own fire latency',
    'reported spread',
    'clock error vs truth',
    'lateness',
    'trigger→all acks',
    'start→1st trigger',
    'missing',
  ];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (c: string[]) => c.map((x, i) => x.padEnd(widths[i]!)).join('  ');
  console.log(line(header));
  console.log(line(widths.map((w) => '-'.repeat(w))));
  for (const r of rows) console.log(line(r));
  console.log(
    `\n${TRUE_SPREAD_LABEL}: when the simulated LEDs really switched, all node processes sharing this machine's cores.` +
      `\n${CLOCK_SPREAD_LABEL}: when each node's disciplined clock read the planned instant (simulation truth), across nodes;` +
      `\n  one node per computer (a Pi each) sees about this plus its own fire latency (the '1 node' row measures it alone).` +
      `\nown fire latency: true fire − the clock's reading of the instant, per report.` +
      '\ntargets: true spread p99 ≤ 100 µs loopback, ≤ 1 ms wifi; trigger→all acks p99 ≤ 50 ms.',
  );
  for (const path of plotSpreads()) console.log(`(plot ${path})`);
  const slack = process.env.LOCKSTEP_BENCH_SLACK === '0' ? undefined : await timerSlackEffect();
  if (slack) {
    console.log('\ntimer slack, one process (Atomics.wait(1 ms) oversleep; a scheduler firing every 5 ms: lateness, learnt spin margin, CPU spun per fire):');
    const f = (x: Quantiles | undefined) => (x ? `${formatNs(x.p50)} / ${formatNs(x.p99)}` : '-');
    for (const r of slack) {
      console.log(
        `  ${r.slack.padEnd(16)} oversleep p50/p99 ${f(r.oversleepNs).padEnd(20)} lateness p50/p99 ${f(r.latenessNs).padEnd(18)} spin margin ${formatNs(r.spinMarginNs).padEnd(9)} spun ${formatNs(r.spinPerFireNs)}/fire, ${r.lateSleeps}/${r.fires} sleeps past the margin`,
      );
    }
  }
  return { nodes: NODES, triggers: TRIGGERS, nice: NICE, spin: SPIN ?? 'learnt', results, timerSlack: slack, sharedMachine: true, cores: cpus().length, loadAverage: loadavg() };
}
