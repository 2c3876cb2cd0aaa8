/**
 * Camera benchmark: 10 simulated camera nodes (node processes with clocks
 * off by up to ±5 s and ±100 ppm, as in the demo, NTP to the hub on
 * loopback), each camera the simulated sensor (hardware/sensor-sim.ts) with
 * its own random frame phase; 20 capture triggers per mode. Per mode:
 *   - true exposure spread: per trigger, latest − earliest TRUE exposure
 *     mid-point across the nodes (the sensors' truth), p50/p99/max;
 *   - reported − true: each node's reported exposure mid-point against the
 *     truth of the same frame (found by its SensorTimestamp);
 *   - clock agreement: per trigger, the spread of the true instants at which
 *     the nodes' clocks read the instant (what no camera can beat).
 * Modes: signal (a waiting rpicam-still at a 30 fps viewfinder, today's
 * path), stream (frame select at 60 fps), phase (stream + frame-phase lock,
 * 60 fps), trigger (GS, our own 1 ms pulse, all ten nodes at one instant on
 * this machine's two cores), trigger-slots (the same, but each node alone
 * in its own 50 ms slot, judged against its own instant: what ten Pis with a
 * CPU each would do). The stream sensors' crystals are off by up to ±20 ppm.
 *
 * Knobs: LOCKSTEP_BENCH_TRIGGERS=20, LOCKSTEP_BENCH_CAMERA_MODES=signal,stream,phase,trigger,trigger-slots.
 */
import { cpus, loadavg, tmpdir } from 'node:os';
import { mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { Cluster } from '../../src/cli/mesh/cluster.js';
import { runPhotos, runSlottedPhotos, type PhotoRun } from '../../src/cli/mesh/photo-run.js';
import { quantiles, type Quantiles } from '../../src/mesh/spread.js';
import { formatNs } from '../../src/mesh/readiness.js';
import type { CaptureAction } from '../../src/schedule/actions.js';
import { writeSvg, benchResultPath } from './svg-plot.js';
import { lateCauses, causesText, type LateCauses } from './late-causes.js';

const NODES = 10;
const TRIGGERS = Number(process.env.LOCKSTEP_BENCH_TRIGGERS ?? 20);
const MODES = (process.env.LOCKSTEP_BENCH_CAMERA_MODES ?? 'signal,stream,phase,trigger,trigger-slots').split(',');
/** trigger-slots: node j fires 50 ms after node j−1, long after its pulse (1 ms) and spin (≤ 2 ms) ended. */
const SLOT_NS = 50_000_000n;
/** As the demo: every node within 1 ms before a trigger. */
const READY_WITHIN_NS = 1_000_000;

interface ModeResult {
  mode: string;
  description: string;
  triggers: number;
  photos: number;
  missing: number;
  /** Triggers skipped: the readiness gate timed out (a loaded machine). */
  notReady: number;
  trueSpreadNs?: Quantiles;
  /** |reported mid-point − true mid-point| per photo. */
  reportErrorNs?: Quantiles;
  /** |true mid-point − instant| per photo. */
  trueErrorNs?: Quantiles;
  clockSpreadNs?: Quantiles;
  /** Trigger modes: the photos more than LATE_NS from the instant, by cause (late-causes.ts). */
  lateCauses?: LateCauses;
  /** Trigger modes, per photo: true mid − instant − the clock's error − the spin's lateness (what came after the first edge's spin: the pulse's own spin, the writes). */
  afterSpinNs?: Quantiles;
  seconds: number;
  load: string;
}

/** |true mid − instant| per judged photo (ns), per mode: the plot's data, not in the JSON (which has its quantiles). */
const trueErrorsByMode = new Map<string, number[]>();

/** One CDF per mode of |true exposure mid-point − instant|, log x (the modes differ by orders of magnitude). */
export function plotCamera(results: { description: string; values: number[] }[], subtitle: string): string | undefined {
  const series = results.filter((r) => r.values.length > 0);
  if (series.length === 0) return undefined;
  return writeSvg(benchResultPath('camera-exposure-error.svg'), {
    kind: 'cdf', logX: true, unit: 'ns', title: 'When the exposure really happened, per camera mode', subtitle,
    xLabel: '|true exposure mid-point − instant| per photo (log)',
    series: series.map((r) => {
      const q = quantiles(r.values);
      return { label: `${r.description}${q ? ` (n ${q.n}, p50 ${formatNs(q.p50)}, p99 ${formatNs(q.p99)})` : ''}`, values: r.values };
    }),
  });
}

/** A trigger-mode photo further than this from its instant is asked why (the issue's "clock agreement + 100 µs"). */
const LATE_NS = 100_000;

const SETUPS: Record<string, { action: CaptureAction; description: string; env?: Record<string, string>; nodeArgs?: string[]; slotted?: boolean }> = {
  signal: { action: { kind: 'capture', mode: 'signal', name: 'bench' }, description: 'signal, 30 fps viewfinder (rpicam-still --signal --zsl)', env: { STANDIN_SENSOR_FPS: '30' } },
  stream: { action: { kind: 'capture', mode: 'stream', fps: 60, shutterUs: 4000, name: 'bench' }, description: 'stream, frame select, 60 fps', env: { STANDIN_SENSOR_PPM: 'random:20' } },
  phase: { action: { kind: 'capture', mode: 'stream', fps: 60, shutterUs: 4000, phaseLock: true, name: 'bench' }, description: 'stream + phase lock, 60 fps', env: { STANDIN_SENSOR_PPM: 'random:20' } },
  trigger: { action: { kind: 'capture', mode: 'trigger', shutterUs: 1000, name: 'bench' }, description: 'GS trigger, 1 ms pulse, 10 nodes at once on 2 cores', nodeArgs: ['--trigger-line', '17'] },
  'trigger-slots': { action: { kind: 'capture', mode: 'trigger', shutterUs: 1000, name: 'bench' }, description: 'GS trigger, 1 ms pulse, each node in its own 50 ms slot', nodeArgs: ['--trigger-line', '17'], slotted: true },
};

async function runMode(mode: string): Promise<ModeResult> {
  const setup = SETUPS[mode];
  if (!setup) throw new Error(`no camera mode '${mode}' (${Object.keys(SETUPS).join(', ')})`);
  const dir = mkdtempSync(join(tmpdir(), `lockstep-bench-camera-${mode}-`));
  const saved = { ...process.env };
  process.env.STANDIN_SENSOR_TRUTH = join(dir, 'sensor-truth.jsonl');
  Object.assign(process.env, setup.env ?? {});
  const t0 = Date.now();
  let notReady = 0;
  const cluster = new Cluster({ nodes: NODES, nice: -5, nodeArgs: ['--camera-sim', '--out', dir, ...(setup.nodeArgs ?? [])] });
  let runs: PhotoRun[];
  try {
    await cluster.start();
    runs = await (setup.slotted ? (c: Cluster, o: Parameters<typeof runPhotos>[1]) => runSlottedPhotos(c, { ...o, slotNs: SLOT_NS }) : runPhotos)(cluster, {
      action: setup.action,
      count: TRIGGERS,
      truthFile: process.env.STANDIN_SENSOR_TRUTH,
      readyWithinNs: READY_WITHIN_NS,
      warmUp: true,
      onNotReady: (error) => {
        notReady++;
        console.log(`  ${mode}: a trigger skipped: ${error.message.slice(0, 160)}`);
      },
    });
  } finally {
    await cluster.stop();
    process.env = saved;
    rmSync(dir, { recursive: true, force: true, maxRetries: 5, retryDelay: 200 });
  }
  const photos = runs.flatMap((r) => r.nodes);
  const judged = photos.filter((p) => p.reportErrorNs !== undefined);
  const result: ModeResult = {
    mode,
    description: setup.description,
    triggers: runs.length,
    photos: judged.length,
    missing: photos.length - judged.length,
    notReady,
    seconds: (Date.now() - t0) / 1000,
    load: loadavg().map((l) => l.toFixed(2)).join(' '),
  };
  const q = (xs: number[]) => quantiles(xs) ?? undefined;
  const spread = q(runs.filter((r) => r.trueSpreadNs !== undefined).map((r) => r.trueSpreadNs!));
  if (spread) result.trueSpreadNs = spread;
  const report = q(judged.map((p) => Math.abs(p.reportErrorNs!)));
  if (report) result.reportErrorNs = report;
  const trueErrors = judged.map((p) => Math.abs(p.trueErrorNs!));
  trueErrorsByMode.set(mode, trueErrors);
  const truth = q(trueErrors);
  if (truth) result.trueErrorNs = truth;
  const clocks = q(runs.map((r) => r.clockSpreadNs ?? r.result.clockSpread?.max).filter((c): c is number => c !== undefined));
  if (clocks) result.clockSpreadNs = clocks;
  if (setup.action.mode === 'trigger') {
    const timed = judged.filter((p) => p.latenessNs !== undefined).map((p) => ({ ...p, trueErrorNs: p.trueErrorNs!, latenessNs: p.latenessNs! }));
    result.lateCauses = lateCauses(timed, LATE_NS);
    const after = q(timed.filter((p) => p.clockErrorNs !== undefined).map((p) => p.trueErrorNs - p.clockErrorNs! - p.latenessNs));
    if (after) result.afterSpinNs = after;
  }
  const missing = photos.filter((p) => p.reportErrorNs === undefined).map((p) => `${p.node}: ${p.unknown}`);
  if (missing.length) console.log(`  ${mode}: ${missing.length} photos not judged, e.g. ${missing.slice(0, 3).join('; ')}`);
  return result;
}

function table(results: ModeResult[]): string {
  const f = (q: Quantiles | undefined) => (q ? `${formatNs(q.p50)} / ${formatNs(q.p99)} / ${formatNs(q.max)}` : '-');
  const header = ['mode', 'photos', 'true exposure spread p50/p99/max', '|reported − true| p50/p99/max', '|true mid − instant| p50/p99/max', 'clock agreement p50/p99/max', 'load'];
  const rows = results.map((r) => [r.description, `${r.photos}${r.missing ? ` (+${r.missing} missing)` : ''}${r.notReady ? ` (${r.notReady} triggers not ready)` : ''}`, f(r.trueSpreadNs), f(r.reportErrorNs), f(r.trueErrorNs), f(r.clockSpreadNs), r.load]);
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i]!.length)));
  return [header, ...rows].map((row) => row.map((x, i) => x.padEnd(widths[i]!)).join('  ').trimEnd()).join('\n');
}

export async function run(): Promise<unknown> {
  console.log(`${NODES} simulated camera nodes, ${TRIGGERS} triggers per mode, ${cpus().length} cores, load ${loadavg().map((l) => l.toFixed(2)).join(' ')}`);
  const results: ModeResult[] = [];
  for (const mode of MODES) {
    try {
      const result = await runMode(mode);
      results.push(result);
      console.log(`  ${mode}: ${result.photos} photos in ${result.seconds.toFixed(0)} s\n${table([result]).split('\n').slice(0, 2).join('\n')}`);
    } catch (error) {
      // One mode that cannot run here (a machine too loaded to synchronize) must not cost the others' figures.
      console.log(`  ${mode} FAILED: ${(error as Error).message}`);
    }
  }
  console.log('\n' + table(results));
  for (const r of results) {
    if (!r.lateCauses) continue;
    const a = r.afterSpinNs;
    console.log(
      `${r.mode}: ${causesText(r.lateCauses, LATE_NS, 'after the first edge (the CPU lost inside the pulse\'s spin: a late rising edge)')}; ` +
        `after the first edge, per photo (true mid − instant − clock error − spin lateness) p50 / p99 / max ${a ? `${formatNs(a.p50)} / ${formatNs(a.p99)} / ${formatNs(a.max)}` : '-'}`,
    );
  }
  console.log(
    '\ntrue exposure spread: per trigger, latest − earliest real exposure mid-point (first row) across nodes, from the simulated sensors.\n' +
      '|reported − true|: a node\'s reported exposure mid-point against the truth of the same frame: its clock error plus the stand-in\'s.\n' +
      'clock agreement: per trigger, the spread of the true instants at which the nodes\' clocks read the instant.',
  );
  const plot = plotCamera(
    results.map((r) => ({ description: r.description, values: trueErrorsByMode.get(r.mode) ?? [] })),
    `${NODES} simulated camera nodes, ${TRIGGERS} triggers per mode; ${cpus().length} shared cores, load after ${loadavg()[0]!.toFixed(2)}`,
  );
  if (plot) console.log(`(plot ${plot})`);
  return { nodes: NODES, triggersPerMode: TRIGGERS, cores: cpus().length, results };
}
