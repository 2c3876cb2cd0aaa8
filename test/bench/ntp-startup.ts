/**
 * The first minute over Wi-Fi (issue 14): RUNS start-ups of our client and
 * RUNS of chronyd 4.3 (-x) side by side, all at once, each run with its own
 * relay (1 ms + exp(3 ms) each way, 2 % loss) and its own wrong clock
 * (±5 s, ±100 ppm), default options. Per run: |error| after 5/10/25/60 s,
 * frequency error after 30 s, whether the claimed bound was ever below the
 * true error, and when the readiness gate would pass at 1 ms.
 *
 * Truth. Ours: a SimulatedClock knows it exactly (error and bound are
 * sampled every SAMPLE_MS and at every model update). chronyd: it runs on
 * the true clock, so its server's clock is the wrong one (see
 * ntp-startup-network.ts); its error is the offset of the time it serves on
 * loopback minus the offset of its server's time, both queried from here
 * back to back (a loopback query is good to ~10 µs), and its bound is what it
 * serves its own clients: root delay/2 + root dispersion. Its frequency
 * comes from its tracking log.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync, readFileSync, existsSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { NtpClient, LAN_HUB_MIN_POLL_SECONDS } from '../../src/ntp/client.js';
import { queryServer } from '../../src/ntp/query.js';
import { Timescale } from '../../src/time/timescale.js';
import { SimulatedClock, RealClock, anchorToSystemClock } from '../../src/time/clock.js';
import { chronydPath } from '../support/chronyd.js';
import { freeUdpPort } from '../support/ports.js';
import { start as startProcess, stopByPidFile, track, untrack, waitFor } from '../support/processes.js';
import type { NetworkConfig, NetworkPorts } from './ntp-startup-network.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export const CHECKPOINTS_S = [5, 10, 25, 60] as const;
const FREQUENCY_AT_S = 30;
const GATE_NS = 1_000_000;
const SAMPLE_MS = 50;
const TRACE_EVERY = 5;
/** chronyd is probed less often: two loopback queries per probe and per run. */
const CHRONYD_PROBE_MS = 250;
/** chronyd's fastest sane polling: 1/16 s while it learns, at most 1/4 s. */
export const CHRONYD_MINPOLL = -4;
export const CHRONYD_MAXPOLL = -2;
/** Debian's chrony.conf steps a clock that is more than 1 s off in the first 3 updates. */
const CHRONYD_MAKESTEP = 'makestep 1 3';

export interface StartupOptions {
  runs: number;
  seconds: number;
  chronyd: boolean;
  delayMs?: number;
  jitterMeanMs?: number;
  lossRate?: number;
  seed?: number;
}

export interface TracePoint {
  t: number;
  errorUs: number;
  boundUs: number;
}

export interface RunResult {
  offsetSeconds: number;
  driftPpm: number;
  /** |error| at each checkpoint, µs (null: not synchronized by then). */
  errorAtUs: Record<string, number | null>;
  frequencyErrorAt30Ppm: number | null;
  /** Times the bound was below the true error (0 = honest all along). */
  dishonest: number;
  worstBoundShortfallUs: number;
  worstErrorToBound: number;
  gatePassedAfterSeconds: number | null;
  steps?: number;
  trace: TracePoint[];
}

export interface StartupResult {
  ours: RunResult[];
  chronyd: RunResult[];
  config: Record<string, unknown>;
}

function seeded(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Trace bookkeeping shared by both kinds of run. */
class Recorder {
  readonly trace: TracePoint[] = [];
  dishonest = 0;
  worstShortfallNs = 0;
  /** Largest |error| / bound seen: how much room the bound left (≥ 1: it failed). */
  worstRatio = 0;
  gateAt: number | null = null;
  frequencyErrorAt30: number | null = null;
  private readonly errorAt = new Map<number, number>();

  note(t: number, errorNs: number, boundNs: number, keep: boolean): void {
    if (Math.abs(errorNs) > boundNs) {
      this.dishonest++;
      this.worstShortfallNs = Math.max(this.worstShortfallNs, Math.abs(errorNs) - boundNs);
    }
    if (boundNs > 0 && Number.isFinite(boundNs)) this.worstRatio = Math.max(this.worstRatio, Math.abs(errorNs) / boundNs);
    if (this.gateAt === null && boundNs <= GATE_NS) this.gateAt = t;
    for (const c of CHECKPOINTS_S) if (Math.abs(t - c) <= 0.5) this.setCheckpoint(c, t, errorNs);
    if (keep) this.trace.push({ t: round(t, 3), errorUs: round(errorNs / 1e3, 1), boundUs: round(Math.min(boundNs, 1e12) / 1e3, 1) });
  }

  /** The sample closest to each checkpoint (from either side within 0.5 s). */
  private readonly checkpointT = new Map<number, number>();
  private setCheckpoint(c: number, t: number, errorNs: number): void {
    const previous = this.checkpointT.get(c);
    if (previous === undefined || Math.abs(t - c) < Math.abs(previous - c)) {
      this.checkpointT.set(c, t);
      this.errorAt.set(c, Math.abs(errorNs));
    }
  }

  result(offsetSeconds: number, driftPpm: number): RunResult {
    const errorAtUs: Record<string, number | null> = {};
    for (const c of CHECKPOINTS_S) errorAtUs[String(c)] = this.errorAt.has(c) ? round(this.errorAt.get(c)! / 1e3, 1) : null;
    return {
      offsetSeconds,
      driftPpm,
      errorAtUs,
      frequencyErrorAt30Ppm: this.frequencyErrorAt30 === null ? null : round(this.frequencyErrorAt30, 3),
      dishonest: this.dishonest,
      worstBoundShortfallUs: round(this.worstShortfallNs / 1e3, 1),
      worstErrorToBound: round(this.worstRatio, 3),
      gatePassedAfterSeconds: this.gateAt === null ? null : round(this.gateAt, 2),
      trace: this.trace,
    };
  }
}

function round(v: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(v * f) / f;
}

async function startNetwork(config: NetworkConfig): Promise<{ ports: NetworkPorts; stop(): Promise<void> }> {
  const script = new URL('./ntp-startup-network.js', import.meta.url);
  const child = spawn(process.execPath, [script.pathname, JSON.stringify(config)], { stdio: ['pipe', 'pipe', 'inherit'] });
  track(child.pid!);
  const ports = await new Promise<NetworkPorts>((resolve, reject) => {
    let text = '';
    child.stdout!.on('data', (d: Buffer) => {
      text += d.toString();
      if (text.includes('\n')) resolve(JSON.parse(text.split('\n')[0]!) as NetworkPorts);
    });
    child.once('exit', () => reject(new Error('the network process exited')));
  });
  return {
    ports,
    stop: () =>
      new Promise<void>((resolve) => {
        child.once('exit', () => {
          untrack(child.pid!);
          resolve();
        });
        child.stdin!.end();
        setTimeout(() => child.kill('SIGKILL'), 3000).unref();
      }),
  };
}

/** Worker processes for our runs (see runStartup). */
const OURS_PROCESSES = 4;

export interface OursJob {
  /** The bench's real-clock anchor (decimal ns), shared by every process. */
  anchor: { epochNs: string; hrtimeNs: string };
  relayPort: number;
  offsetSeconds: number;
  driftPpm: number;
  seconds: number;
}

function runWorker(jobs: OursJob[]): Promise<RunResult[]> {
  const script = new URL('./ntp-startup-worker.js', import.meta.url);
  const child = spawn(process.execPath, [script.pathname, JSON.stringify(jobs)], { stdio: ['ignore', 'pipe', 'inherit'] });
  track(child.pid!);
  let text = '';
  child.stdout!.on('data', (d: Buffer) => (text += d.toString()));
  return new Promise((resolve, reject) => {
    child.once('exit', (code) => {
      untrack(child.pid!);
      if (code === 0) resolve(JSON.parse(text) as RunResult[]);
      else reject(new Error(`an ntp-startup worker exited with ${code}`));
    });
  });
}

/** One run of our client: default options, a simulated clock, error and bound against truth. */
export async function oursRun(job: OursJob): Promise<RunResult> {
  const { relayPort, offsetSeconds, driftPpm, seconds } = job;
  const truthClock = new RealClock({ epochNs: BigInt(job.anchor.epochNs), hrtimeNs: BigInt(job.anchor.hrtimeNs) });
  const sim = new SimulatedClock({ offsetSeconds, driftPpm, truth: truthClock });
  const timescale = new Timescale(sim);
  // A mesh node's defaults (`lockstep node`): only the fast start-up poll differs from NtpClient's.
  const client = new NtpClient({ servers: [{ host: '127.0.0.1', port: relayPort }], timescale, minPollSeconds: LAN_HUB_MIN_POLL_SECONDS });
  const rec = new Recorder();
  const startTruth = sim.truthNs();
  const d = driftPpm * 1e-6;
  const trueFrequencyPpm = (1 / (1 + d) - 1) * 1e6; // d(UTC − raw)/d raw for a raw clock running at 1 + d
  const check = (keep: boolean) => {
    if (!timescale.synchronized) return;
    const truth = sim.truthNs();
    const raw = sim.rawAtTruth(truth);
    const t = Number(truth - startTruth) / 1e9;
    rec.note(t, Number(timescale.utcAt(raw) - truth), timescale.errorBoundNs(raw), keep);
    if (rec.frequencyErrorAt30 === null && t >= FREQUENCY_AT_S) rec.frequencyErrorAt30 = timescale.frequencyPpm - trueFrequencyPpm;
  };
  // Right after every model update too: a bound is most at risk when it has just been tightened.
  client.onUpdate(() => check(false));
  // Every sample is checked; every TRACE_EVERY-th is kept for the JSON (a 250 ms trace is plenty to plot).
  let ticks = 0;
  const timer = setInterval(() => check(ticks++ % TRACE_EVERY === 0), SAMPLE_MS);
  await client.start();
  await sleep(seconds * 1000);
  clearInterval(timer);
  await client.stop();
  return { ...rec.result(offsetSeconds, driftPpm), steps: timescale.steps };
}

/** One chronyd -x client of a wrong-clock server through its relay, probed on loopback. */
async function chronydRun(clock: RealClock, serverPort: number, relayPort: number, offsetSeconds: number, driftPpm: number, seconds: number): Promise<RunResult> {
  const dir = mkdtempSync(join(tmpdir(), 'lockstep-bench-startup-'));
  const port = await freeUdpPort();
  const conf = join(dir, 'chrony.conf');
  writeFileSync(
    conf,
    [
      `server 127.0.0.1 port ${relayPort} minpoll ${CHRONYD_MINPOLL} maxpoll ${CHRONYD_MAXPOLL} iburst`,
      CHRONYD_MAKESTEP,
      `port ${port}`,
      'bindaddress 127.0.0.1',
      'allow 127.0.0.1',
      'cmdport 0',
      `pidfile ${join(dir, 'pid')}`,
      `driftfile ${join(dir, 'drift')}`,
      `logdir ${dir}`,
      'log tracking',
    ].join('\n') + '\n',
  );
  const rec = new Recorder();
  const startNs = clock.nowNs();
  const launcher = startProcess(chronydPath()!, ['-f', conf, '-x', '-u', 'root', '-L', '0', '-l', join(dir, 'log')]);
  const pidFile = join(dir, 'pid');
  try {
    await waitFor(() => existsSync(pidFile), 5000, 'chronyd client pidfile');
    await launcher.stop().catch(() => undefined);
    track(Number(readFileSync(pidFile, 'utf8').trim()));
    const deadline = startNs + BigInt(Math.round(seconds * 1e9));
    while (clock.nowNs() < deadline) {
      const next = sleep(CHRONYD_PROBE_MS);
      const q = { clock, samples: 1, intervalMs: 0, timeoutMs: 150 };
      const theirs = await queryServer({ host: '127.0.0.1', port }, q).catch(() => undefined);
      const truth = await queryServer({ host: '127.0.0.1', port: serverPort }, q).catch(() => undefined);
      if (theirs?.offsetSeconds !== undefined && truth?.offsetSeconds !== undefined) {
        const t = Number(clock.nowNs() - startNs) / 1e9;
        const errorNs = (theirs.offsetSeconds - truth.offsetSeconds) * 1e9;
        const boundNs = ((theirs.rootDelaySeconds ?? 0) / 2 + (theirs.rootDispersionSeconds ?? 0)) * 1e9;
        rec.note(t, errorNs, boundNs, true);
      }
      await next;
    }
    rec.frequencyErrorAt30 = chronydFrequencyError(join(dir, 'tracking.log'), startNs, driftPpm);
  } finally {
    await stopByPidFile(pidFile);
    rmSync(dir, { recursive: true, force: true });
  }
  return rec.result(offsetSeconds, driftPpm);
}

/**
 * chronyd's tracking log: "date time ip stratum freq-ppm skew-ppm offset ...", UTC.
 * Its frequency is the local clock's rate error it corrects (positive: the
 * clock is slow); the server runs driftPpm fast, so the truth is +driftPpm.
 */
function chronydFrequencyError(path: string, startNs: bigint, driftPpm: number): number | null {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch {
    return null;
  }
  let best: number | null = null;
  for (const line of text.split('\n')) {
    const f = line.trim().split(/\s+/);
    if (f.length < 6 || !/^\d{4}-\d\d-\d\d$/.test(f[0]!)) continue;
    const at = BigInt(Date.parse(`${f[0]}T${f[1]}Z`)) * 1_000_000n;
    if (Number(at - startNs) / 1e9 > FREQUENCY_AT_S + 0.5) break;
    best = Number(f[4]) - driftPpm;
  }
  return best;
}

export async function runStartup(o: StartupOptions): Promise<StartupResult> {
  const a = anchorToSystemClock();
  const anchor = { epochNs: String(a.epochNs), hrtimeNs: String(a.hrtimeNs) };
  const clock = new RealClock(a);
  const random = seeded(o.seed ?? 0x14);
  const draw = () => ({ offsetSeconds: round((random() * 2 - 1) * 5, 3), driftPpm: round((random() * 2 - 1) * 100, 1) });
  const oursClocks = Array.from({ length: o.runs }, draw);
  const chronydClocks = o.chronyd ? Array.from({ length: o.runs }, draw) : [];
  const config: NetworkConfig = {
    delayMs: o.delayMs ?? 1,
    jitterMeanMs: o.jitterMeanMs ?? 3,
    lossRate: o.lossRate ?? 0.02,
    oursSeeds: oursClocks.map((_, i) => 1000 + i),
    chronyd: chronydClocks.map((c, i) => ({ seed: 2000 + i, ...c })),
    anchor,
  };
  const network = await startNetwork(config);
  try {
    // Our runs in OURS_PROCESSES worker processes: twenty clients learning at 16 Hz in one event loop
    // would delay each other's receive timestamps far more than one node on its own machine sees.
    const jobs = oursClocks.map((c, i) => ({ anchor, relayPort: network.ports.oursRelayPorts[i]!, ...c, seconds: o.seconds }));
    const perProcess = Math.ceil(jobs.length / OURS_PROCESSES);
    const ours = Array.from({ length: Math.ceil(jobs.length / perProcess) }, (_, k) => runWorker(jobs.slice(k * perProcess, (k + 1) * perProcess)));
    const theirs = chronydClocks.map((c, i) => {
      const p = network.ports.chronyd[i]!;
      // The client's clock is off by −offset, −drift when the server's is off by +offset, +drift.
      return chronydRun(clock, p.serverPort, p.relayPort, c.offsetSeconds, c.driftPpm, o.seconds).then((r) => ({ ...r, offsetSeconds: -c.offsetSeconds, driftPpm: -c.driftPpm }));
    });
    return {
      ours: (await Promise.all(ours)).flat(),
      chronyd: await Promise.all(theirs),
      config: { ...config, runs: o.runs, seconds: o.seconds, chronydPoll: [CHRONYD_MINPOLL, CHRONYD_MAXPOLL], chronydMakestep: CHRONYD_MAKESTEP, sampleMs: SAMPLE_MS, chronydProbeMs: CHRONYD_PROBE_MS },
    };
  } finally {
    await network.stop();
  }
}

export function percentile(values: number[], p: number): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil(sorted.length * p) - 1)]!;
}

export interface StartupRow {
  figure: string;
  ours: string;
  chronyd: string;
  target: string;
}

/** The table rows: p50/p99 over runs (with 20 runs p99 is the worst run). */
export function startupRows(r: StartupResult): StartupRow[] {
  const fmt = (v: number) => (Number.isNaN(v) ? '-' : v >= 1000 ? `${(v / 1000).toFixed(2)} ms` : `${v.toFixed(0)} µs`);
  const pp = (runs: RunResult[], get: (x: RunResult) => number | null, unit: (v: number) => string) => {
    if (runs.length === 0) return 'not run';
    const vals = runs.map(get);
    const missing = vals.filter((v) => v === null).length;
    const have = vals.filter((v): v is number => v !== null);
    if (have.length === 0) return `never (${missing}/${runs.length})`;
    return `${unit(percentile(have, 0.5))} / ${unit(percentile(have, 0.99))}${missing ? ` (${missing} never)` : ''}`;
  };
  const targets: Record<number, string> = { 5: '', 10: 'p99 ≤ 1 ms', 25: 'p99 ≤ 300 µs', 60: '' };
  const rows: StartupRow[] = CHECKPOINTS_S.map((c) => ({
    figure: `|error| after ${c} s, p50 / p99`,
    ours: pp(r.ours, (x) => x.errorAtUs[String(c)] ?? null, fmt),
    chronyd: pp(r.chronyd, (x) => x.errorAtUs[String(c)] ?? null, fmt),
    target: targets[c]!,
  }));
  const ppm = (v: number) => `${v.toFixed(2)} ppm`;
  rows.push({
    figure: `|frequency error| after ${FREQUENCY_AT_S} s, p50 / p99`,
    ours: pp(r.ours, (x) => (x.frequencyErrorAt30Ppm === null ? null : Math.abs(x.frequencyErrorAt30Ppm)), ppm),
    chronyd: pp(r.chronyd, (x) => (x.frequencyErrorAt30Ppm === null ? null : Math.abs(x.frequencyErrorAt30Ppm)), ppm),
    target: 'p99 ≤ 5 ppm',
  });
  const dishonest = (runs: RunResult[]) => (runs.length === 0 ? 'not run' : `${runs.filter((x) => x.dishonest > 0).length} of ${runs.length}`);
  rows.push({ figure: 'runs whose bound was ever below the true error', ours: dishonest(r.ours), chronyd: dishonest(r.chronyd), target: '0' });
  const sec = (v: number) => `${v.toFixed(1)} s`;
  rows.push({
    figure: 'readiness gate at 1 ms passes after, p50 / p99',
    ours: pp(r.ours, (x) => x.gatePassedAfterSeconds, sec),
    chronyd: pp(r.chronyd, (x) => x.gatePassedAfterSeconds, sec),
    target: 'p99 ≤ 10 s',
  });
  return rows;
}

export function printStartupRows(rows: StartupRow[]): void {
  const w = (k: keyof StartupRow) => Math.max(k.length, ...rows.map((r) => r[k].length));
  const widths = { figure: w('figure'), ours: w('ours'), chronyd: w('chronyd') };
  console.log(`${'figure'.padEnd(widths.figure)}  ${'lockstep'.padEnd(widths.ours)}  ${'chronyd 4.3'.padEnd(widths.chronyd)}  target`);
  for (const r of rows) console.log(`${r.figure.padEnd(widths.figure)}  ${r.ours.padEnd(widths.ours)}  ${r.chronyd.padEnd(widths.chronyd)}  ${r.target}`);
}
