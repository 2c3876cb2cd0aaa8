/**
 * Cold benchmark: the instant as users meet it, one FRESH process each time
 * (`npm run bench -- cold`). Truth is CLOCK_REALTIME (the system clock, one
 * machine); every child runs with test/bench/gc-recorder.js loaded, so each
 * garbage-collection pause is known and those overlapping an instant (from
 * SPIN_WINDOW_NS before it to the moment the action ran) are counted.
 *
 * Rows (COLD_RUNS fresh processes each, 30 by default):
 *  - fire blink --driver sim --count 2: the simulated recorder's true instant
 *    of the first edge and of every edge;
 *  - node + one trigger: a fresh `lockstep node --system-clock --driver sim`
 *    gets a blink train from 3 s to 14 s after its start
 *    (V8's memory reducer used to collect at ~8.5 and ~9 s): its first edge,
 *    every edge, GC pauses at an instant. NODE_CONCURRENCY nodes at a time,
 *    their trains NODE_PHASE_MS apart so no two spins meet;
 *  - at @T -- stamp (a static C program whose first act is to read
 *    CLOCK_REALTIME), and the same program after the shell sleep loop and
 *    after `sleep N`: when the program really started;
 *  - cron '* * * * * *' --count 5 -- stamp: ticks 1–5 of a fresh process,
 *    CRON_CONCURRENCY processes at a time.
 * The rows run one after the other, so they do not disturb each other.
 */
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir, loadavg, cpus } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { PrivateBroker } from '../../src/mesh/broker.js';
import { MqttSession } from '../../src/mesh/mqtt-session.js';
import { Topics } from '../../src/mesh/topics.js';
import { decodeReport, decodeState, parseMessage, toWire, type ReportMessage, type TriggerMessage } from '../../src/mesh/messages.js';
import { writeSvg, benchResultPath, type DistributionSeries } from './svg-plot.js';
import { lateCauses, causesText } from './late-causes.js';

const RUNS = Number(process.env.COLD_RUNS ?? 30);
/** Nodes started together: their trains are NODE_PHASE_MS apart (period 500 ms), so no two spins overlap. */
const NODE_CONCURRENCY = 5;
const NODE_PHASE_MS = 100;
const NODE_PERIOD_MS = 500;
/**
 * The node's train: from 3 s to 14 s after the node was started (a loaded
 * machine needs up to ~2 s to start a node and see it online; V8's memory
 * reducer used to collect at ~8.5 and ~9 s).
 */
const NODE_TRAIN_AFTER_NS = 3_000_000_000n;
const NODE_TRAIN_PULSES = 22;
/** Two cron processes at a time: both tick on the same whole seconds, one core each. */
const CRON_CONCURRENCY = 2;
const CRON_TICKS = 5;
/** `at @T` is given T this far ahead: a loaded machine takes up to ~2 s to start Node and load lockstep. */
const AT_LEAD_NS = 2_500_000_000n;
/** The shell loop and `sleep N` start at once, nothing to load first. */
const COMPARISON_LEAD_NS = 700_000_000n;
/** A GC pause this close before an instant (the spin and its rehearsal) or up to the action counts as overlapping it. */
const SPIN_WINDOW_NS = 2_000_000n;

const CLI = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));
const GC_RECORDER = pathToFileURL(fileURLToPath(new URL('./gc-recorder.js', import.meta.url))).href;

/** Planning only (ms resolution is enough to choose an instant); measurements come from the children. */
const nowNs = () => BigInt(Date.now()) * 1_000_000n;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

interface Quantiles {
  n: number;
  p50: number;
  p99: number;
  max: number;
}
function quantiles(values: number[]): Quantiles {
  const s = [...values].sort((a, b) => a - b);
  const q = (p: number) => s[Math.min(s.length - 1, Math.max(0, Math.ceil(p * s.length) - 1))] ?? NaN;
  return { n: s.length, p50: q(0.5), p99: q(0.99), max: s[s.length - 1] ?? NaN };
}

interface Pause {
  startNs: bigint;
  durationNs: number;
}
interface Instant {
  plannedNs: bigint;
  /** When the action ran (truth), or plannedNs + lateness. */
  doneNs: bigint;
}
function overlaps(pauses: Pause[], instants: Instant[]): number {
  let n = 0;
  for (const p of pauses) {
    const end = p.startNs + BigInt(p.durationNs);
    if (instants.some((i) => end >= i.plannedNs - SPIN_WINDOW_NS && p.startNs <= i.doneNs)) n++;
  }
  return n;
}

interface Child {
  stdout: string;
  stderr: string;
  code: number | null;
  pauses: Pause[];
}

interface Running {
  done: Promise<Child>;
  /** SIGTERM to this child, by its pid (the gc recorder writes its file at exit). */
  stop(): void;
}

/** Runs `node --import gc-recorder lockstep ARGS` (or, node: false, ARGS as a command) to its end. */
function startChild(args: string[], options: { env?: NodeJS.ProcessEnv; node?: boolean; gcDir: string; timeoutMs?: number }): Running {
  let stop = () => {};
  const done = new Promise<Child>((resolve) => {
    stop = spawnChild(args, options, resolve);
  });
  return { done, stop: () => stop() };
}

function runChild(args: string[], options: { env?: NodeJS.ProcessEnv; node?: boolean; gcDir: string; timeoutMs?: number }): Promise<Child> {
  return startChild(args, options).done;
}

function spawnChild(args: string[], options: { env?: NodeJS.ProcessEnv; node?: boolean; gcDir: string; timeoutMs?: number }, resolve: (c: Child) => void): () => void {
  const gcFile = join(options.gcDir, `gc-${process.hrtime.bigint()}-${Math.random().toString(36).slice(2)}.json`);
  const argv = options.node === false ? args.slice(1) : ['--import', GC_RECORDER, CLI, ...args];
  const command = options.node === false ? args[0]! : process.execPath;
  {
    const child = spawn(command, argv, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...options.env, LOCKSTEP_BENCH_GC_FILE: gcFile } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 30_000);
    child.once('close', (code) => {
      clearTimeout(timer);
      let pauses: Pause[] = [];
      if (existsSync(gcFile)) {
        pauses = (JSON.parse(readFileSync(gcFile, 'utf8')) as { startNs: string; durationNs: number }[]).map((p) => ({ startNs: BigInt(p.startNs), durationNs: p.durationNs }));
        rmSync(gcFile, { force: true });
      }
      resolve({ stdout, stderr, code, pauses });
    });
    return () => child.kill('SIGTERM');
  }
}

const jsonLines = (text: string) => text.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Record<string, unknown>);

/** The stamp program: its first act reads CLOCK_REALTIME; prints it and its lateness against LOCKSTEP_INSTANT_NS. */
const STAMP_C = `#include <stdio.h>
#include <stdlib.h>
#include <time.h>
int main(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  long long now = (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
  const char *instant = getenv("LOCKSTEP_INSTANT_NS");
  printf("stamp %lld %lld\\n", now, instant ? now - atoll(instant) : 0LL);
  return 0;
}
`;
function buildStamp(dir: string): { path: string; kind: string } {
  const source = join(dir, 'stamp.c');
  writeFileSync(source, STAMP_C);
  const path = join(dir, 'stamp');
  for (const flags of [['-O2', '-static'], ['-O2']]) {
    try {
      execFileSync('cc', [...flags, '-o', path, source], { stdio: 'ignore' });
      return { path, kind: `C (cc ${flags.join(' ')})` };
    } catch {
      /* next */
    }
  }
  // No compiler: a shell script reading the clock with date(1) (one more exec: slower, said so in the table).
  const script = join(dir, 'stamp.sh');
  writeFileSync(script, '#!/bin/sh\nnow=$(date +%s%N); echo "stamp $now $((now - ${LOCKSTEP_INSTANT_NS:-$now}))"\n', { mode: 0o755 });
  return { path: script, kind: 'sh + date (no cc)' };
}
const stamps = (text: string) => [...text.matchAll(/^stamp (\d+) (-?\d+)$/gm)].map((m) => ({ nowNs: BigInt(m[1]!), lateNs: Number(m[2]!) }));

/** An edge later than this is asked why (the every-edge target). */
const LATE_NS = 50_000;

// ------------------------------------------------------------------ rows

async function fireBlinkRow(gcDir: string) {
  const first: number[] = [];
  const every: number[] = [];
  const path: number[] = [];
  const judged: Parameters<typeof lateCauses>[0] = [];
  let gcOverlaps = 0;
  let gcPauses = 0;
  const failures: string[] = [];
  for (let i = 0; i < RUNS; i++) {
    const r = await runChild(['fire', 'blink', '--line', '17', '--driver', 'sim', '--count', '2', '--every', '100ms', '--on', '50ms', '--at', '+800ms', '--json', '--quiet'], { gcDir });
    const fires = jsonLines(r.stdout).filter((l) => l.event === 'fire');
    if (r.code !== 0 || fires.length !== 4) {
      failures.push(`fire blink run ${i}: exit ${r.code}, ${fires.length} fires: ${r.stderr.trim()}`);
      continue;
    }
    const instants: Instant[] = [];
    fires.forEach((f, k) => {
      const trueErrorNs = f.trueErrorNs as number;
      if (k === 0) first.push(trueErrorNs);
      every.push(trueErrorNs);
      path.push(trueErrorNs - (f.latenessNs as number));
      judged.push({ trueErrorNs, latenessNs: f.latenessNs as number, wakeLeadNs: f.wakeLeadNs as number | undefined, spinLeadNs: f.spinLeadNs as number | undefined });
      const plannedNs = BigInt(f.plannedNs as string);
      instants.push({ plannedNs, doneNs: plannedNs + BigInt(trueErrorNs) });
    });
    gcPauses += r.pauses.length;
    gcOverlaps += overlaps(r.pauses, instants);
  }
  return { first: quantiles(first), every: quantiles(every), spinToRecorder: quantiles(path), lateCauses: lateCauses(judged, LATE_NS), gcPauses, gcOverlaps, failures, raw: { first, every } };
}

async function nodeRow(gcDir: string) {
  const broker = new PrivateBroker();
  await broker.start();
  const topics = new Topics('cold');
  const watcher = new MqttSession({ url: broker.url, clientId: 'cold-bench', persistent: false });
  const reports: ReportMessage[] = [];
  const online = new Set<string>();
  watcher.onMessage((topic, payload) => {
    const where = topics.parseNodeTopic(topic);
    if (where?.channel === 'report') {
      const r = parseMessage(payload, decodeReport);
      if (r.ok) reports.push(r.value);
    } else if (where?.channel === 'state') {
      const s = parseMessage(payload, decodeState);
      if (s.ok && s.value.status === 'online' && s.value.synchronized) online.add(s.value.node);
    }
  });
  await watcher.waitConnected(5000);
  await watcher.subscribe([topics.allNodes('report'), topics.allNodes('state')]);
  const first: number[] = [];
  const every: number[] = [];
  const perNodeMax: number[] = [];
  const judged: Parameters<typeof lateCauses>[0] = [];
  let gcOverlaps = 0;
  let gcPauses = 0;
  let missing = 0;
  let notOnline = 0;
  try {
    for (let done = 0; done < RUNS; done += NODE_CONCURRENCY) {
      const batch = Math.min(NODE_CONCURRENCY, RUNS - done);
      const startedNs = nowNs();
      const ids = Array.from({ length: batch }, (_, k) => `cold${done + k}`);
      // Slot k's edges are on base + k·phase + m·period: no two nodes of a batch spin together.
      const base = startedNs + NODE_TRAIN_AFTER_NS;
      const triggers: (TriggerMessage | undefined)[] = ids.map(() => undefined);
      const children = ids.map((id) =>
        startChild(['node', '--id', id, '--broker', broker.url, '--group', 'cold', '--system-clock', '--driver', 'sim', '--quiet', '--state-file', join(gcDir, `${id}.json`)], { gcDir, timeoutMs: 60_000 }),
      );
      // Each trigger goes out as soon as its node is online (retained state), for the first slot edge
      // at least NODE_TRAIN_AFTER_NS after the start and 1 s after it came online (a loaded machine starts slowly).
      const deadline = Date.now() + 30_000;
      while (triggers.some((t) => t === undefined) && Date.now() < deadline) {
        for (const [k, id] of ids.entries()) {
          if (triggers[k] === undefined && online.has(id)) {
            const now = nowNs();
            const slot = base + BigInt(k * NODE_PHASE_MS) * 1_000_000n;
            const period = BigInt(NODE_PERIOD_MS) * 1_000_000n;
            const earliest = now + 1_000_000_000n;
            const startNs = slot >= earliest ? slot : slot + ((earliest - slot + period - 1n) / period) * period;
            const t: TriggerMessage = { v: 1, type: 'trigger', id: `t-${id}-${startedNs}`, issuedNs: now, expiresNs: now + 60_000_000_000n, startNs, nodes: [id], action: { kind: 'blink', line: 17, onNs: 50_000_000, periodNs: NODE_PERIOD_MS * 1_000_000, count: NODE_TRAIN_PULSES } };
            triggers[k] = t;
            await watcher.publish(topics.trigger, JSON.stringify(toWire(t)), { qos: 1 });
          }
        }
        await sleep(20);
      }
      const sent = triggers.filter((t): t is TriggerMessage => t !== undefined);
      notOnline += batch - sent.length;
      const lastNs = sent.reduce((m, t) => (t.startNs > m ? t.startNs : m), 0n) + BigInt(NODE_TRAIN_PULSES * NODE_PERIOD_MS) * 1_000_000n;
      await sleep(Math.max(0, Number((lastNs - nowNs()) / 1_000_000n)) + 1500);
      // Stop them (SIGTERM: the gc recorder writes at exit) and collect.
      for (const c of children) c.stop();
      const results = await Promise.all(children.map((c) => c.done));
      for (const [k, id] of ids.entries()) {
        const trigger = triggers[k];
        if (trigger === undefined) continue;
        const mine = reports.filter((r) => r.node === id && r.triggerId === trigger.id && r.trueNs !== undefined).sort((a, b) => (a.plannedNs < b.plannedNs ? -1 : 1));
        const edges = new Map(mine.map((r) => [`${r.index}:${r.level}`, r]));
        const list = [...edges.values()];
        missing += NODE_TRAIN_PULSES * 2 - list.length;
        if (list.length === 0) continue;
        const lateness = list.map((r) => Number(r.trueNs! - r.plannedNs));
        first.push(lateness[0]!);
        every.push(...lateness);
        for (const [j, r] of list.entries()) judged.push({ trueErrorNs: lateness[j]!, latenessNs: r.latenessNs, wakeLeadNs: r.wakeLeadNs, spinLeadNs: r.spinLeadNs });
        perNodeMax.push(Math.max(...lateness));
        gcPauses += results[k]!.pauses.length;
        gcOverlaps += overlaps(results[k]!.pauses, list.map((r) => ({ plannedNs: r.plannedNs, doneNs: r.trueNs! })));
      }
    }
  } finally {
    await watcher.close(false);
    await broker.dispose();
  }
  return { first: quantiles(first), every: quantiles(every), maxPerNode: quantiles(perNodeMax), lateCauses: lateCauses(judged, LATE_NS), gcPauses, gcOverlaps, missingEdges: missing, notOnline, raw: { first, every } };
}

async function startRows(gcDir: string, stamp: string) {
  const at: number[] = [];
  const atReleased: number[] = [];
  const loop: number[] = [];
  const sleepRow: number[] = [];
  let gcOverlaps = 0;
  let gcPauses = 0;
  const failures: string[] = [];
  for (let i = 0; i < RUNS; i++) {
    const t = nowNs() + AT_LEAD_NS;
    const whenArg = `@${t / 1_000_000_000n}.${(t % 1_000_000_000n).toString().padStart(9, '0')}`;
    // Alone: the comparisons below fork `date` every 50 ms, which took the CPU from its exec (p50 2.76 ms beside
    // them, ~1.0 ms alone, on the same quiet machine); they run together afterwards, as they do not measure lockstep.
    const a = await runChild(['at', whenArg, '--json', '--', stamp], { gcDir });
    const tLoop = nowNs() + COMPARISON_LEAD_NS;
    const tSleep = tLoop + 300_000_000n;
    // The shell loop `lockstep wait` replaces, generalised to ns: test the clock every 50 ms.
    const loopRun = runChild(['sh', '-c', `while [ "$(date +%s%N)" -lt ${tLoop} ]; do sleep 0.05; done; exec ${stamp}`], { gcDir, node: false, env: { LOCKSTEP_INSTANT_NS: tLoop.toString() } });
    const seconds = Number(tSleep - nowNs()) / 1e9;
    const sleepRun = runChild(['sh', '-c', `sleep ${seconds.toFixed(3)}; exec ${stamp}`], { gcDir, node: false, env: { LOCKSTEP_INSTANT_NS: tSleep.toString() } });
    const [l, s] = await Promise.all([loopRun, sleepRun]);
    const aStamp = stamps(a.stdout)[0];
    const report = jsonLines(a.stdout).find((x) => x.event === 'fire');
    if (!aStamp || !report) {
      failures.push(`at run ${i}: exit ${a.code}: ${a.stderr.trim()}`);
      continue;
    }
    at.push(aStamp.lateNs);
    atReleased.push((report.actionLatenessNs as number) + (report.spawnLatencyNs as number));
    loop.push(stamps(l.stdout)[0]!.lateNs);
    sleepRow.push(stamps(s.stdout)[0]!.lateNs);
    gcPauses += a.pauses.length;
    // lockstep's part ends when the helper is released: a pause after that does not delay the program.
    gcOverlaps += overlaps(a.pauses, [{ plannedNs: t, doneNs: t + BigInt((report.actionLatenessNs as number) + (report.spawnLatencyNs as number)) }]);
  }
  return { at: quantiles(at), atReleased: quantiles(atReleased), shellLoop: quantiles(loop), sleepN: quantiles(sleepRow), gcPauses, gcOverlaps, failures, raw: { at, shellLoop: loop, sleepN: sleepRow } };
}

async function cronRow(gcDir: string, stamp: string) {
  const perTick: number[][] = Array.from({ length: CRON_TICKS }, () => []);
  const perTickReport: number[][] = Array.from({ length: CRON_TICKS }, () => []);
  let gcOverlaps = 0;
  let gcPauses = 0;
  const failures: string[] = [];
  for (let done = 0; done < RUNS; done += CRON_CONCURRENCY) {
    const batch = Math.min(CRON_CONCURRENCY, RUNS - done);
    const results = await Promise.all(Array.from({ length: batch }, () => runChild(['cron', '* * * * * *', '--count', String(CRON_TICKS), '--json', '--', stamp], { gcDir, timeoutMs: 20_000 })));
    for (const r of results) {
      const fires = jsonLines(r.stdout).filter((x) => x.event === 'fire');
      const ran = stamps(r.stdout).sort((x, y) => (x.nowNs < y.nowNs ? -1 : 1));
      if (fires.length !== CRON_TICKS || ran.length !== CRON_TICKS) {
        failures.push(`cron: exit ${r.code}, ${fires.length} fires, ${ran.length} stamps: ${r.stderr.trim()}`);
        continue;
      }
      ran.forEach((s, k) => perTick[k]!.push(s.lateNs));
      fires.forEach((f, k) => perTickReport[k]!.push(f.actionLatenessNs as number));
      gcPauses += r.pauses.length;
      gcOverlaps += overlaps(r.pauses, fires.map((f) => ({ plannedNs: BigInt(f.plannedNs as string), doneNs: BigInt(f.plannedNs as string) + BigInt((f.actionLatenessNs as number) + (f.spawnLatencyNs as number)) })));
    }
  }
  return { programStart: perTick.map(quantiles), atAction: perTickReport.map(quantiles), gcPauses, gcOverlaps, failures, raw: { programStart: perTick } };
}

// ------------------------------------------------------------------ plots

export interface ColdRaw {
  fire: { first: number[]; every: number[] };
  node: { first: number[]; every: number[] };
  starts: { at: number[]; shellLoop: number[]; sleepN: number[] };
  cron: { programStart: number[][] };
}

/** p50 and max of one row, for its legend label (the table has the rest). */
function legend(label: string, values: number[]): DistributionSeries {
  const q = quantiles(values);
  return { label: `${label} (n ${q.n}, p50 ${us(q.p50)}, max ${us(q.max)})`, values: values.map((v) => Math.abs(v)) };
}

/**
 * Three CDFs of the rows' lateness, on log axes (the rows span µs to tens of
 * ms): the edges of fresh fire/node processes, a program's start (at vs the
 * shell loop vs sleep N), and the five ticks of a fresh cron process.
 * Absolute values: an early edge would otherwise vanish from a log axis.
 */
export function plotCold(raw: ColdRaw, subtitle: string, stampKind: string): string[] {
  const xLabel = '|true instant − planned| (log)';
  return [
    writeSvg(benchResultPath('cold-edges.svg'), {
      kind: 'cdf', logX: true, unit: 'ns', title: 'A fresh process\'s edges: fire blink and node + one trigger', subtitle, xLabel,
      series: [legend('fire blink: first edge', raw.fire.first), legend('fire blink: every edge', raw.fire.every), legend('node: first edge', raw.node.first), legend('node: every edge', raw.node.every)],
    }),
    writeSvg(benchResultPath('cold-program-start.svg'), {
      kind: 'cdf', logX: true, unit: 'ns', title: `When a program started: lockstep at vs a shell loop vs sleep N`, subtitle: `${subtitle}; stamp ${stampKind}`,
      xLabel: '|program start − planned| (log)',
      series: [legend('at @T -- stamp', raw.starts.at), legend('shell loop (date; sleep 0.05)', raw.starts.shellLoop), legend('sleep N', raw.starts.sleepN)],
    }),
    writeSvg(benchResultPath('cold-cron-ticks.svg'), {
      kind: 'cdf', logX: true, unit: 'ns', title: `lockstep cron in a fresh process: program start per tick`, subtitle: `${subtitle}; stamp ${stampKind}`,
      xLabel: '|program start − planned| (log)',
      series: raw.cron.programStart.map((v, k) => legend(`tick ${k + 1}`, v)),
    }),
  ];
}

// ------------------------------------------------------------------ table

const us = (ns: number) => (Number.isFinite(ns) ? (Math.abs(ns) >= 1e6 ? `${(ns / 1e6).toFixed(2)} ms` : `${(ns / 1e3).toFixed(1)} µs`) : '—');
function row(label: string, q: Quantiles, extra = ''): string {
  return `${label.padEnd(58)} ${String(q.n).padStart(4)} ${us(q.p50).padStart(10)} ${us(q.p99).padStart(10)} ${us(q.max).padStart(10)}  ${extra}`;
}

export async function run(): Promise<unknown> {
  const dir = mkdtempSync(join(tmpdir(), 'lockstep-cold-'));
  const loadBefore = loadavg();
  const started = Date.now();
  try {
    const stamp = buildStamp(dir);
    console.log(`cold: ${RUNS} fresh processes per row, ${cpus().length} CPUs, load ${loadBefore.map((l) => l.toFixed(2)).join(' ')}; stamp: ${stamp.kind}`);
    const fire = await fireBlinkRow(dir);
    const node = await nodeRow(dir);
    const starts = await startRows(dir, stamp.path);
    const cron = await cronRow(dir, stamp.path);
    const loadAfter = loadavg();
    const header = `${'row'.padEnd(58)} ${'n'.padStart(4)} ${'p50'.padStart(10)} ${'p99'.padStart(10)} ${'max'.padStart(10)}`;
    console.log(header);
    console.log(row('fire blink sim: first edge (true instant)', fire.first, `target p50 ≤ 5 µs`));
    console.log(row('fire blink sim: every edge (true instant)', fire.every, `target p99 ≤ 50 µs; GC pauses ${fire.gcPauses}, at an instant ${fire.gcOverlaps}`));
    console.log(row('fire blink sim: spin end → recorder (every edge)', fire.spinToRecorder));
    console.log(`  fire blink: ${causesText(fire.lateCauses, LATE_NS)}`);
    console.log(row('node + one trigger: first edge (true instant)', node.first, `target p50 ≤ 5 µs`));
    console.log(row('node started 3–14 s before the edges: every edge', node.every, `target max ≤ 1 ms; GC pauses ${node.gcPauses}, at an instant ${node.gcOverlaps}; missing edges ${node.missingEdges}, nodes never online ${node.notOnline}`));
    console.log(`  node: ${causesText(node.lateCauses, LATE_NS)}`);
    console.log(row('at @T -- stamp: program started', starts.at, `target p50 ≤ 1 ms, p99 ≤ 2 ms; GC at an instant ${starts.gcOverlaps}`));
    console.log(row('at @T -- stamp: helper released (report)', starts.atReleased));
    console.log(row('shell loop (date; sleep 0.05) then exec stamp', starts.shellLoop, 'comparison'));
    console.log(row('sleep N; exec stamp', starts.sleepN, 'comparison'));
    cron.programStart.forEach((q, k) => console.log(row(`cron fresh process, tick ${k + 1}: program started`, q, `at the action: p50 ${us(cron.atAction[k]!.p50)}, p99 ${us(cron.atAction[k]!.p99)}`)));
    console.log(`cron: GC pauses ${cron.gcPauses}, at an instant ${cron.gcOverlaps}`);
    for (const f of [...fire.failures, ...starts.failures, ...cron.failures]) console.log(`run not counted: ${f}`);
    const seconds = (Date.now() - started) / 1000;
    const subtitle = `${RUNS} fresh processes per row; ${cpus().length} shared cores, load ${loadBefore[0]!.toFixed(2)} before, ${loadAfter[0]!.toFixed(2)} after`;
    for (const p of plotCold({ fire: fire.raw, node: node.raw, starts: starts.raw, cron: cron.raw }, subtitle, stamp.kind)) console.log(`(plot ${p})`);
    console.log(`(${seconds.toFixed(0)} s; load after ${loadAfter.map((l) => l.toFixed(2)).join(' ')})`);
    // The raw lateness lists feed the plots only: the JSON keeps its quantiles, as before.
    const { raw: _f, ...fireJson } = fire;
    const { raw: _n, ...nodeJson } = node;
    const { raw: _s, ...startsJson } = starts;
    const { raw: _c, ...cronJson } = cron;
    return { runs: RUNS, stamp: stamp.kind, loadBefore, loadAfter, seconds, fire: fireJson, node: nodeJson, starts: startsJson, cron: cronJson };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
