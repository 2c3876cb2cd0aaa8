/**
 * Scale benchmark: the control plane with N = 10, 100, 1,000 nodes, and a
 * bridged pair of brokers. Nodes are the swarm (src/cli/mesh/swarm.ts):
 * `lockstep swarm` processes of 100 simulated nodes, each with its own MQTT
 * connection, NTP client (own 127.77.x.y address) against the hub's server,
 * simulated clock and LED; no spin (fire precision is the mesh bench's job).
 * The hub (NTP server, rate limiter on, and the node directory) and the
 * trigger (coordinator) run in THIS process, as `lockstep demo` runs them.
 *
 * Per N, a first trigger as soon as the gate opens after the nodes booted
 * (its acks in their own column), a settling minute, then the measured
 * triggers: gate open → trigger published; published → each node's ack (p50,
 * p99, all); last edge → last report; this process's RSS and CPU; the swarm
 * processes' RSS; broker messages/s in and out in steady state (Mosquitto's
 * $SYS counters) and state messages per node per s; the readiness gate's
 * evaluation time; NTP requests served and rate-limited; and at the largest
 * N the offset `chronyd -Q` measures from the hub's server meanwhile. Then
 * one `lockstep node` process's RSS after 10,000 hostile triggers.
 *
 * Knobs: LOCKSTEP_SCALE_NS=10,100,1000  LOCKSTEP_SCALE_BRIDGED=1000 (0: skip)
 *        LOCKSTEP_SCALE_TRIGGERS=3  LOCKSTEP_SCALE_HOSTILE=10000
 *        LOCKSTEP_SCALE_SETTLE_MS=60000 (between the boot trigger and the measured ones)
 *        LOCKSTEP_SCALE_FLOOR=1000 (0: skip)  LOCKSTEP_SCALE_FLOOR_BYTES (the floor's message size)
 *        LOCKSTEP_SCALE_HEAPSNAP=DIR (a heap snapshot of the hub + trigger process per N)
 *        LOCKSTEP_SCALE_PROFILE=DIR (the swarm processes write --cpu-prof profiles there;
 *        run this process with `node --cpu-prof --cpu-prof-dir DIR` for the hub's)
 */
import { loadavg, cpus, setPriority } from 'node:os';
import { getHeapSpaceStatistics, writeHeapSnapshot } from 'node:v8';
import { readFileSync, mkdtempSync, rmSync } from 'node:fs';
import { spawn } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Cluster } from '../../src/cli/mesh/cluster.js';
import { PrivateBroker } from '../../src/mesh/broker.js';
import { MqttSession } from '../../src/mesh/mqtt-session.js';
import { Topics } from '../../src/mesh/topics.js';
import { readiness } from '../../src/mesh/readiness.js';
import { quantiles } from '../../src/mesh/spread.js';
import { realClock } from '../../src/time/clock.js';
import { Timescale } from '../../src/time/timescale.js';
import { CLI_MAIN } from '../../src/cli/mesh/cluster.js';
import { chronydQuery, have } from '../support/ntp-clients.js';
import { hostileTrigger } from '../support/hostile-triggers.js';
import { writeSvg, benchResultPath } from './svg-plot.js';

const NS = (process.env.LOCKSTEP_SCALE_NS ?? '10,100,1000').split(',').map(Number).filter((n) => n > 0);
const BRIDGED = Number(process.env.LOCKSTEP_SCALE_BRIDGED ?? 1000);
/**
 * The swarm stands in for a thousand other computers: here it shares the
 * hub's and the broker's two cores, which real nodes never do. At this
 * niceness it yields them the CPU they would have on a machine of their own
 * (and still gets every idle cycle). LOCKSTEP_SCALE_SWARM_NICE=0: compete equally.
 */
const SWARM_NICE = Number(process.env.LOCKSTEP_SCALE_SWARM_NICE ?? 10);
/** N for the bare-client floor (0: skip). */
const FLOOR_NS = (process.env.LOCKSTEP_SCALE_FLOOR ?? '1000').split(',').map(Number).filter((n) => n > 0);
/** LOCKSTEP_SCALE_FLOOR_BYTES=N: the floor's trigger size (default: what a trigger naming every node weighs). */
const FLOOR_BYTES = process.env.LOCKSTEP_SCALE_FLOOR_BYTES ? Number(process.env.LOCKSTEP_SCALE_FLOOR_BYTES) : undefined;
/**
 * Between the first trigger (right after the gate opens: the nodes booted seconds ago, every
 * NTP client still polling at its fastest and every state changing) and the measured ones. A
 * show's triggers come minutes after its nodes booted; a swarm's first minute costs the CPU of a
 * thousand start-ups on two cores, which the first trigger's row shows on its own.
 */
const SETTLE_MS = Number(process.env.LOCKSTEP_SCALE_SETTLE_MS ?? 60_000);
const TRIGGERS = Number(process.env.LOCKSTEP_SCALE_TRIGGERS ?? 3);
const HOSTILE = Number(process.env.LOCKSTEP_SCALE_HOSTILE ?? 10_000);
/**
 * The gate asks 1 s: a swarm node's NTP bound honestly includes the time its
 * replies wait for a CPU (100 nodes per event loop, 1,000 on 2 shared cores:
 * hundreds of ms under load). This benchmark is about the control plane.
 */
const PROFILE_DIR = process.env.LOCKSTEP_SCALE_PROFILE;
/** LOCKSTEP_SCALE_HEAPSNAP=DIR: a heap snapshot of this process (hub + trigger) per one-broker N, after the steady state. */
const HEAP_SNAPSHOT_DIR = process.env.LOCKSTEP_SCALE_HEAPSNAP;
const execArgv = PROFILE_DIR ? { execArgv: ['--cpu-prof', '--cpu-prof-dir', PROFILE_DIR] } : {};
const GATE_NS = Number(process.env.LOCKSTEP_SCALE_GATE_NS ?? 1_000_000_000);
/** Rows with missing fires kept in the JSON, to tell lost messages from nodes that never planned them. */
const MAX_MISSES_KEPT = 50;
/** Fires per node per trigger (a blink train of this many pulses). */
const BLINK_COUNT = 2;
/** Steady state is measured over this window, after the triggers. */
const STEADY_MS = 10_000;

interface Row {
  setup: string;
  nodes: number;
  syncSeconds: number;
  gateToPublishedMs: number[];
  /** Over the triggers after the settling minute. */
  ackP50Ms?: number;
  ackP99Ms?: number;
  allAcksMs: number[];
  /** The first trigger, right after the gate opened (the nodes booted seconds before). */
  bootAckP50Ms?: number;
  bootAckP99Ms?: number;
  bootAllAcksMs?: number;
  reportsAfterLastMs: number[];
  missingAcks: number;
  /** Fires a node said it would make (its ack's count) with no report at the trigger: lost, a correctness bug. */
  missingReports: number;
  /**
   * Fires a node never planned: the trigger reached it after the first instant, so it joined the
   * train in phase (node.ts plan()) with fewer fires, or after the last, so it refused it
   * ('in-the-past'). Not a loss: the lead was shorter than the delivery.
   */
  joinedLateFires: number;
  /** Nodes that joined late or refused the trigger as past, summed over the triggers. */
  lateJoins: number;
  duplicates: number;
  /** Messages the broker(s) dropped since they started ($SYS/broker/publish/messages/dropped). */
  brokerDropped?: number;
  /** The first rows (of all triggers) with fewer fires than planned: what each node said and what arrived. */
  misses: { trigger: number; node: string; ack: string; reason?: string; expectedFires?: number; fires: number; reports: number; ackMs?: number }[];
  /** This process at the end: heap total, external and array buffers, MB (RSS minus these is code, stacks, malloc). */
  hubTriggerMemMB?: { heapTotal: number; external: number; arrayBuffers: number };
  /** The swarm processes' CPU in steady state, % of one core. */
  swarmSteadyCpuPct?: number;
  hubTriggerRssMB: number;
  hubTriggerHeapMB?: number;
  hubTriggerCpuPct: number;
  swarmRssMB: number;
  brokerInPerS?: number;
  brokerOutPerS?: number;
  statePerNodePerS: number;
  gateEvalMs: number;
  ntpServed: number;
  ntpRateLimited: number;
  /**
   * CPU while the triggers ran (each from its publish to its last report), % of ONE core
   * (this machine has cpus() of them): this process (hub + trigger), the broker(s), the swarm
   * processes together, and the rest of the machine (other work, the kernel's share of nobody).
   */
  triggerCpuPct?: { hubTrigger: number; broker: number; swarm: number; rest: number; machine: number };
  /** At start: while the N nodes connect and burst their first NTP polls; steady: N clients at their poll intervals. */
  chronydOffsetUs?: { atStart?: number; steady?: number };
  load: string;
}

/** Every ack latency (ms) of a row, for the plot only: the JSON keeps p50/p99 as before. */
const ackLatenciesOf = new WeakMap<Row, number[]>();

/** One CDF per setup and N of trigger published → node's ack, log x (10 nodes ack in ms, 1,000 queue for seconds). */
export function plotScaleAcks(rows: { setup: string; nodes: number; ackLatenciesMs: number[] }[], subtitle: string): string | undefined {
  const series = rows.filter((r) => r.ackLatenciesMs.length > 0);
  if (series.length === 0) return undefined;
  return writeSvg(benchResultPath('scale-ack-latency.svg'), {
    kind: 'cdf', logX: true, unit: 'ns', title: 'Trigger published → each node\'s ack, per N', subtitle,
    xLabel: 'ack latency (log)',
    series: series.map((r) => {
      const q = quantiles(r.ackLatenciesMs);
      return { label: `${r.setup}, N = ${r.nodes}${q ? ` (n ${q.n}, p50 ${q.p50.toFixed(1)} ms, p99 ${q.p99.toFixed(1)} ms)` : ''}`, values: r.ackLatenciesMs.map((ms) => ms * 1e6) };
    }),
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const uptime = () => loadavg().map((x) => x.toFixed(2)).join(' ');

function rssMB(pid: number): number {
  try {
    return Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]) / 1024;
  } catch {
    return 0;
  }
}

function renice(pid: number | undefined): void {
  if (pid === undefined || SWARM_NICE === 0) return;
  try {
    setPriority(pid, SWARM_NICE);
  } catch {
    /* gone already */
  }
}

/** utime + stime of a process, s (0 when it is gone). */
function cpuSecondsOf(pid: number | undefined): number {
  if (pid === undefined) return 0;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) / CLOCK_TICKS_PER_S;
  } catch {
    return 0;
  }
}
/** Linux's USER_HZ: /proc times are in these. */
const CLOCK_TICKS_PER_S = 100;

/** Busy CPU-seconds of the whole machine (all cores; idle and iowait excluded). */
function machineBusySeconds(): number {
  const f = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
  const total = f.reduce((a, b) => a + b, 0);
  return (total - f[3]! - f[4]!) / CLOCK_TICKS_PER_S;
}

/** Accumulates the CPU of this process, the broker(s) and the swarm processes over windows. */
class CpuWindows {
  private sums = { hubTrigger: 0, broker: 0, swarm: 0, machine: 0, seconds: 0 };
  private open: { t: number; hub: number; broker: number; swarm: number; machine: number } | undefined;
  constructor(private readonly brokers: () => (number | undefined)[], private readonly swarms: () => (number | undefined)[]) {}
  private read() {
    const u = process.cpuUsage();
    return {
      t: performance.now(),
      hub: (u.user + u.system) / 1e6,
      broker: this.brokers().reduce((n: number, p) => n + cpuSecondsOf(p), 0),
      swarm: this.swarms().reduce((n: number, p) => n + cpuSecondsOf(p), 0),
      machine: machineBusySeconds(),
    };
  }
  start(): void {
    this.open = this.read();
  }
  stop(): void {
    if (!this.open) return;
    const a = this.open;
    const b = this.read();
    this.open = undefined;
    this.sums.hubTrigger += b.hub - a.hub;
    this.sums.broker += b.broker - a.broker;
    this.sums.swarm += b.swarm - a.swarm;
    this.sums.machine += b.machine - a.machine;
    this.sums.seconds += (b.t - a.t) / 1000;
  }
  pct(): { hubTrigger: number; broker: number; swarm: number; rest: number; machine: number } | undefined {
    const s = this.sums;
    if (s.seconds <= 0) return undefined;
    const p = (x: number) => (100 * x) / s.seconds;
    return { hubTrigger: p(s.hubTrigger), broker: p(s.broker), swarm: p(s.swarm), machine: p(s.machine), rest: p(s.machine - s.hubTrigger - s.broker - s.swarm) };
  }
}

/** Messages Mosquitto dropped (a subscriber's queue full): a report lost there never reaches the trigger. */
const DROPPED_TOPIC = '$SYS/broker/publish/messages/dropped';

/** Mosquitto's cumulative message counters ($SYS, refreshed every sys_interval). */
async function brokerCounters(url: string): Promise<{ received: number; sent: number; dropped: number }> {
  const s = new MqttSession({ url, clientId: `scale-sys-${Date.now()}` });
  const got: Record<string, number> = {};
  s.onMessage((topic, payload) => (got[topic] = Number(payload.toString())));
  try {
    // Generous: right after a trigger at 1,000 nodes the broker answers late.
    await s.waitConnected(15_000);
    await s.subscribe(['$SYS/broker/messages/received', '$SYS/broker/messages/sent', DROPPED_TOPIC], { timeoutMs: 15_000 });
    const deadline = Date.now() + 3000;
    while (Object.keys(got).length < 3 && Date.now() < deadline) await sleep(50);
  } finally {
    await s.close();
  }
  return { received: got['$SYS/broker/messages/received'] ?? NaN, sent: got['$SYS/broker/messages/sent'] ?? NaN, dropped: got[DROPPED_TOPIC] ?? NaN };
}

async function measure(setup: string, nodes: number, bridged: boolean): Promise<Row> {
  let extra: { a: PrivateBroker; b: PrivateBroker } | undefined;
  let cluster: Cluster;
  const prefix = `lockstep/scale-${process.pid}`;
  if (bridged) {
    const a = new PrivateBroker({ extraConfig: ['sys_interval 1'] });
    await a.start();
    const conf = readFileSync(new URL('../../../hardware/mosquitto-bridge.conf', import.meta.url), 'utf8')
      .split('\n')
      .filter((l) => l.trim() && !l.trim().startsWith('#'))
      .map((l) => (l.startsWith('address ') ? `address 127.0.0.1:${a.port}` : l));
    const b = new PrivateBroker({ extraConfig: [...conf, 'sys_interval 1'] });
    await b.start();
    extra = { a, b };
    cluster = new Cluster({ nodes, layout: 'swarm', brokers: [a.url, b.url], prefix, ...execArgv });
  } else {
    cluster = new Cluster({ nodes, layout: 'swarm', brokerConfig: ['sys_interval 1'], prefix, ...execArgv });
  }
  const t0 = Date.now();
  const cpu0 = process.cpuUsage();
  const row: Row = {
    setup, nodes, syncSeconds: 0, gateToPublishedMs: [], allAcksMs: [], reportsAfterLastMs: [], missingAcks: 0, missingReports: 0, joinedLateFires: 0, lateJoins: 0, duplicates: 0, misses: [],
    hubTriggerRssMB: 0, hubTriggerCpuPct: 0, swarmRssMB: 0, statePerNodePerS: 0, gateEvalMs: 0, ntpServed: 0, ntpRateLimited: 0, load: '',
  };
  const ackLatencies: number[] = [];
  ackLatenciesOf.set(row, ackLatencies);
  const closeLater: (() => Promise<void>)[] = [];
  try {
    await cluster.start();
    for (const c of cluster.swarms) renice(c.pid);
    const withChrony = !bridged && nodes === Math.max(...NS) && have('chronyd', ['-v']);
    const chronyBefore = withChrony ? chronydQuery({ port: cluster.ntpPort, timeoutSeconds: 15 }) : undefined;
    const cpuWindows = new CpuWindows(() => (extra ? [extra.a.pid, extra.b.pid] : [cluster.broker.pid]), () => cluster.swarms.map((c) => c.pid));
    const bootAcks: number[] = [];
    // Trigger 0 at boot, then the settling minute, then TRIGGERS measured ones.
    for (let i = 0; i <= TRIGGERS; i++) {
      const atBoot = i === 0;
      if (i === 1 && SETTLE_MS > 0) {
        console.log(`  [${setup} N=${nodes} ${((Date.now() - t0) / 1000).toFixed(0)} s] letting the nodes settle ${SETTLE_MS / 1000} s`);
        await sleep(SETTLE_MS);
      }
      const result = await cluster.coordinator!.run({
        onPublished: () => (atBoot ? undefined : cpuWindows.start()),
        action: { kind: 'blink', line: 17, onNs: 50_000_000, periodNs: 200_000_000, count: BLINK_COUNT },
        inNs: BigInt(Math.round(1_000 + nodes) * 1_000_000),
        readyWithinNs: GATE_NS,
        readyTimeoutMs: 240_000,
        minNodes: nodes,
        collectGraceMs: 10_000,
        progress: (line) => console.log(`  [${setup} N=${nodes} ${((Date.now() - t0) / 1000).toFixed(0)} s] ${line}`),
      });
      cpuWindows.stop();
      // As the hub does after each trigger (page-triggers.ts), and a one-shot `lockstep trigger` by exiting.
      cluster.coordinator!.forget(result.triggerId);
      if (i === 0) row.syncSeconds = (Date.now() - t0) / 1000;
      if (result.gateToPublishedMs !== undefined) row.gateToPublishedMs.push(result.gateToPublishedMs);
      if (atBoot) row.bootAllAcksMs = result.allAcksMs;
      else if (result.allAcksMs !== undefined) row.allAcksMs.push(result.allAcksMs);
      if (result.reportsAfterLastMs !== undefined) row.reportsAfterLastMs.push(result.reportsAfterLastMs);
      row.missingAcks += result.missingAcks.length;
      for (const r of result.rows) {
        // A node that got the trigger after its last instant refused it ('in-the-past'): late, as a join in phase.
        const planned = r.ack === 'rejected' && r.reason === 'in-the-past' ? 0 : (r.expectedFires ?? BLINK_COUNT);
        row.missingReports += Math.max(0, planned - r.fires);
        if (planned > r.fires && row.misses.length < MAX_MISSES_KEPT) {
          row.misses.push({ trigger: i, node: r.node, ack: r.ack, ...(r.reason ? { reason: r.reason } : {}), ...(r.expectedFires !== undefined ? { expectedFires: r.expectedFires } : {}), fires: r.fires, reports: r.reports, ...(r.ackLatencyMs !== undefined ? { ackMs: Math.round(r.ackLatencyMs) } : {}) });
        }
        row.joinedLateFires += BLINK_COUNT - planned;
        if (planned < BLINK_COUNT) row.lateJoins++;
      }
      row.duplicates += result.duplicateReports;
      for (const r of result.rows) if (r.ackLatencyMs !== undefined) (atBoot ? bootAcks : ackLatencies).push(r.ackLatencyMs);
    }
    const boot = quantiles(bootAcks);
    if (boot) {
      row.bootAckP50Ms = boot.p50;
      row.bootAckP99Ms = boot.p99;
    }
    row.triggerCpuPct = cpuWindows.pct();
    const acks = quantiles(ackLatencies);
    if (acks) {
      row.ackP50Ms = acks.p50;
      row.ackP99Ms = acks.p99;
    }
    // Steady state: the triggers done, every node synchronized.
    const brokerUrls = extra ? [extra.a.url, extra.b.url] : [cluster.broker.url];
    const counter = new MqttSession({ url: brokerUrls[0]!, clientId: 'scale-state-counter' });
    let states = 0;
    counter.onMessage((_t, _p, packet) => {
      if (!packet.retain) states++;
    });
    // Closed whatever happens below: a session left open keeps reconnecting, and this process alive.
    closeLater.push(() => counter.close());
    await counter.waitConnected(5000);
    await counter.subscribe([cluster.topics.allNodes('state')]);
    const c0 = await Promise.all(brokerUrls.map(brokerCounters));
    const cpuS = process.cpuUsage();
    const swarmCpu0 = cluster.swarms.reduce((n, c) => n + cpuSecondsOf(c.pid), 0);
    const s0 = Date.now();
    const chronyDuring = withChrony ? chronydQuery({ port: cluster.ntpPort, timeoutSeconds: 15 }) : undefined;
    states = 0;
    await sleep(STEADY_MS);
    const seconds = (Date.now() - s0) / 1000;
    const c1 = await Promise.all(brokerUrls.map(brokerCounters));
    const cpu = process.cpuUsage(cpuS);
    row.hubTriggerCpuPct = ((cpu.user + cpu.system) / 1e6 / seconds) * 100;
    row.swarmSteadyCpuPct = ((cluster.swarms.reduce((n, c) => n + cpuSecondsOf(c.pid), 0) - swarmCpu0) / seconds) * 100;
    row.brokerDropped = c1.reduce((n, c) => n + c.dropped, 0);
    row.statePerNodePerS = states / seconds / nodes;
    await counter.close();
    const inSum = c1.reduce((n, c, i) => n + c.received - c0[i]!.received, 0);
    const outSum = c1.reduce((n, c, i) => n + c.sent - c0[i]!.sent, 0);
    // The counters move once a second: the window is the time between the two readings, give or take one.
    if (Number.isFinite(inSum)) row.brokerInPerS = inSum / seconds;
    if (Number.isFinite(outSum)) row.brokerOutPerS = outSum / seconds;
    row.hubTriggerRssMB = process.memoryUsage().rss / 2 ** 20;
    if (HEAP_SNAPSHOT_DIR && !bridged) {
      console.log(`  heap spaces: ${getHeapSpaceStatistics().map((h) => `${h.space_name} ${(h.space_size / 2 ** 20).toFixed(1)}/${(h.space_used_size / 2 ** 20).toFixed(1)}`).join(', ')} MB`);
      console.log(`  (heap snapshot ${writeHeapSnapshot(join(HEAP_SNAPSHOT_DIR, `scale-${nodes}.heapsnapshot`))})`);
    }
    const mem = process.memoryUsage();
    row.hubTriggerHeapMB = mem.heapUsed / 2 ** 20;
    row.hubTriggerMemMB = { heapTotal: mem.heapTotal / 2 ** 20, external: mem.external / 2 ** 20, arrayBuffers: mem.arrayBuffers / 2 ** 20 };
    row.swarmRssMB = cluster.swarms.reduce((n, c) => n + rssMB(c.pid!), 0);
    // One evaluation of the gate over the whole directory, as the trigger polls it.
    const g0 = process.hrtime.bigint();
    for (let i = 0; i < 10; i++) readiness(cluster.hub!.directory, { thresholdNs: 50_000_000, maxStateAgeMs: 5_000 });
    row.gateEvalMs = Number(process.hrtime.bigint() - g0) / 10 / 1e6;
    const ntp = cluster.hub!.ntpStats()!;
    row.ntpServed = ntp.served;
    row.ntpRateLimited = ntp.rateLimited;
    if (chronyBefore || chronyDuring) {
      const [before, during] = await Promise.all([chronyBefore, chronyDuring]);
      row.chronydOffsetUs = {};
      if (before?.offsetSeconds !== undefined) row.chronydOffsetUs.atStart = before.offsetSeconds * 1e6;
      if (during?.offsetSeconds !== undefined) row.chronydOffsetUs.steady = during.offsetSeconds * 1e6;
    }
    void cpu0;
  } finally {
    row.load = uptime();
    for (const close of closeLater) await close().catch(() => undefined);
    await cluster.stop();
    if (extra) {
      await extra.b.dispose();
      await extra.a.dispose();
    }
  }
  return row;
}

/** One `lockstep node` process (system clock, simulated LED): RSS before and after a flood of hostile triggers. */
/** As hardware/lockstep-node.service runs a node: a small heap collected early. */
const UNIT_NODE_OPTIONS = '--max-old-space-size=64 --max-semi-space-size=1';

export async function hostileRss(count: number, nodeOptions?: string): Promise<{ startMB: number; afterMB: number; settledMB: number; acks: number; maxAckBytes: number; pendingMax: number }> {
  const broker = new PrivateBroker();
  await broker.start();
  const dir = mkdtempSync(join(tmpdir(), 'lockstep-scale-hostile-'));
  const topics = new Topics('hostile');
  const child = spawn(process.execPath, [CLI_MAIN, 'node', '--id', 'h1', '--broker', broker.url, '--prefix', topics.prefix, '--system-clock', '--driver', 'sim', '--state-file', join(dir, 'h1.json'), '--quiet'], {
    stdio: 'ignore',
    env: { ...process.env, NODE_OPTIONS: nodeOptions ?? '' },
  });
  const s = new MqttSession({ url: broker.url, clientId: 'scale-hostile' });
  const timescale = new Timescale(realClock(), { trustRawClock: { errorBoundNs: 1_000_000 } });
  let acks = 0;
  let maxAckBytes = 0;
  let pendingMax = 0;
  s.onMessage((topic, p) => {
    if (topic.endsWith('/ack')) {
      acks++;
      maxAckBytes = Math.max(maxAckBytes, p.length);
    } else if (topic.endsWith('/state')) {
      const pending = (JSON.parse(p.toString()) as { pending?: number }).pending ?? 0;
      pendingMax = Math.max(pendingMax, pending);
    }
  });
  try {
    await s.waitConnected(5000);
    await s.subscribe([topics.allNodes('ack'), topics.allNodes('state')]);
    await sleep(3000);
    const startMB = rssMB(child.pid!);
    for (let i = 0; i < count; i++) {
      await s.publish(topics.trigger, hostileTrigger(i, timescale.nowNs()));
      if (i % 500 === 499) await sleep(100); // a flood, not a broker benchmark: let the node answer
    }
    const deadline = Date.now() + 60_000;
    while (acks < count && Date.now() < deadline) await sleep(200);
    const afterMB = rssMB(child.pid!);
    await sleep(5000);
    return { startMB, afterMB, settledMB: rssMB(child.pid!), acks, maxAckBytes, pendingMax };
  } finally {
    await s.close();
    child.kill('SIGTERM');
    await new Promise((r) => child.once('exit', r));
    await broker.dispose();
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * The same fan-out and fan-in with nothing of lockstep in it: `nodes` bare
 * mqtt.js clients in processes of 100 (scale-echo.ts) answer a trigger-sized
 * message with an ack-sized one; published → each answer, and the CPU spent.
 * What this machine and broker cost for the message count alone.
 */
export async function echoFloor(nodes: number, triggers: number): Promise<{ nodes: number; p50Ms?: number; p99Ms?: number; allMs: number[]; missing: number; cpu?: ReturnType<CpuWindows['pct']> }> {
  const broker = new PrivateBroker();
  await broker.start();
  const prefix = `lockstep/echo-${process.pid}`;
  const script = fileURLToPath(new URL('./scale-echo.js', import.meta.url));
  const children = [] as ReturnType<typeof spawn>[];
  const collector = new MqttSession({ url: broker.url, clientId: 'echo-collector' });
  const latencies: number[] = [];
  const allMs: number[] = [];
  let missing = 0;
  const cpu = new CpuWindows(() => [broker.pid], () => children.map((c) => c.pid));
  try {
    for (let first = 0; first < nodes; first += 100) {
      const child = spawn(process.execPath, [script, broker.url, prefix, String(first), String(Math.min(100, nodes - first))], { stdio: ['pipe', 'pipe', 'ignore'] });
      children.push(child);
      renice(child.pid);
    }
    await Promise.all(children.map((c) => new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('echo clients did not connect within 60 s')), 60_000);
      c.stdout!.on('data', (d: Buffer) => {
        if (d.toString().includes('ready')) {
          clearTimeout(timer);
          resolve();
        }
      });
    })));
    let arrivals: number[] = [];
    collector.onMessage(() => arrivals.push(performance.now()));
    await collector.waitConnected(10_000);
    await collector.subscribe([`${prefix}/nodes/+/ack`], { qos: 0 });
    // A trigger naming a thousand nodes is ~11 KB: the same size here.
    const payload = Buffer.alloc(FLOOR_BYTES ?? Math.max(300, 11 * nodes), 'x');
    for (let i = 0; i < triggers; i++) {
      await sleep(1_000);
      arrivals = [];
      cpu.start();
      const t0 = performance.now();
      await collector.publish(`${prefix}/trigger`, payload, { qos: 1 });
      const deadline = t0 + 15_000;
      while (arrivals.length < nodes && performance.now() < deadline) await sleep(5);
      cpu.stop();
      for (const t of arrivals) latencies.push(t - t0);
      if (arrivals.length >= nodes) allMs.push(Math.max(...arrivals) - t0);
      missing += Math.max(0, nodes - arrivals.length);
    }
  } finally {
    await collector.close();
    for (const c of children) {
      c.stdin!.end();
      c.kill('SIGTERM');
    }
    await Promise.all(children.map((c) => (c.exitCode !== null ? undefined : new Promise((r) => c.once('exit', r)))));
    await broker.dispose();
  }
  const q = quantiles(latencies);
  return { nodes, ...(q ? { p50Ms: q.p50, p99Ms: q.p99 } : {}), allMs, missing, cpu: cpu.pct() };
}

const fmt = (v: number | undefined, digits = 0) => (v === undefined || !Number.isFinite(v) ? '-' : v.toFixed(digits));
const med = (xs: number[]) => quantiles(xs)?.p50;
const worst = (xs: number[]) => (xs.length ? Math.max(...xs) : undefined);

export async function run(): Promise<unknown> {
  console.log(`scale: ${cpus().length} cores, load ${uptime()}; N = ${NS.join(', ')}${BRIDGED ? `, bridged ${BRIDGED}` : ''}; a trigger at boot, ${SETTLE_MS / 1000} s to settle, then ${TRIGGERS} triggers each; swarm and bare clients at nice ${SWARM_NICE}`);
  const rows: Row[] = [];
  for (const n of NS) rows.push(await measure('one broker', n, false));
  if (BRIDGED > 0) rows.push(await measure('bridged pair', BRIDGED, true));
  const floors = [];
  for (const n of FLOOR_NS) {
    console.log(`  the floor: ${n} bare MQTT clients answering a trigger-sized message ...`);
    floors.push(await echoFloor(n, TRIGGERS));
  }
  console.log(`  hostile triggers: ${HOSTILE} to one lockstep node ...`);
  const hostile = await hostileRss(HOSTILE);
  console.log(`  again, with the systemd unit's NODE_OPTIONS (${UNIT_NODE_OPTIONS}) ...`);
  const hostileUnit = await hostileRss(HOSTILE, UNIT_NODE_OPTIONS);

  console.log('\n| setup | N | sync s | gate → published ms (med/max) | acks p50 / p99 ms | all acks ms (max) | at boot: acks p50 / p99, all ms | last edge → all reports ms (max) | missing acks / reports / dup | late joins (fires not planned) | broker dropped | hub+trigger RSS MB, CPU % | swarm RSS MB, steady CPU | broker in / out msg/s | per node per s (in) | state msg/node/s | gate eval ms | NTP served / limited | chronyd -Q offset µs: start storm / steady | CPU % of a core while triggers ran: hub+trigger / broker / swarm / rest (machine, of ' + cpus().length * 100 + ') | load |');
  console.log('|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|');
  for (const r of rows) {
    console.log(
      `| ${r.setup} | ${r.nodes} | ${fmt(r.syncSeconds, 1)} | ${fmt(med(r.gateToPublishedMs), 1)} / ${fmt(worst(r.gateToPublishedMs), 1)} | ${fmt(r.ackP50Ms, 1)} / ${fmt(r.ackP99Ms, 1)} | ${fmt(worst(r.allAcksMs), 1)} | ${fmt(r.bootAckP50Ms, 0)} / ${fmt(r.bootAckP99Ms, 0)}, ${fmt(r.bootAllAcksMs, 0)} | ${fmt(worst(r.reportsAfterLastMs), 0)} | ` +
        `${r.missingAcks} / ${r.missingReports} / ${r.duplicates} | ${r.lateJoins} (${r.joinedLateFires}) | ${fmt(r.brokerDropped)} | ${fmt(r.hubTriggerRssMB)} (heap ${fmt(r.hubTriggerHeapMB)} of ${fmt(r.hubTriggerMemMB?.heapTotal)}, ext ${fmt(r.hubTriggerMemMB?.external)}), ${fmt(r.hubTriggerCpuPct, 1)} | ${fmt(r.swarmRssMB)}, steady CPU ${fmt(r.swarmSteadyCpuPct)} % | ${fmt(r.brokerInPerS)} / ${fmt(r.brokerOutPerS)} | ` +
        `${fmt((r.brokerInPerS ?? NaN) / r.nodes, 2)} | ${fmt(r.statePerNodePerS, 3)} | ${fmt(r.gateEvalMs, 2)} | ${r.ntpServed} / ${r.ntpRateLimited} | ` +
        `${r.chronydOffsetUs ? `${fmt(r.chronydOffsetUs.atStart, 1)} / ${fmt(r.chronydOffsetUs.steady, 1)}` : '-'} | ` +
        `${r.triggerCpuPct ? `${fmt(r.triggerCpuPct.hubTrigger)} / ${fmt(r.triggerCpuPct.broker)} / ${fmt(r.triggerCpuPct.swarm)} / ${fmt(r.triggerCpuPct.rest)} (${fmt(r.triggerCpuPct.machine)})` : '-'} | ${r.load} |`,
    );
  }
  for (const f of floors) {
    console.log(
      `\nfloor, ${f.nodes} bare mqtt.js clients (100 per process, QoS 1, no lockstep): published → answers p50 / p99 ${fmt(f.p50Ms, 1)} / ${fmt(f.p99Ms, 1)} ms, ` +
        `all ${f.allMs.map((x) => x.toFixed(0)).join(', ')} ms, missing ${f.missing}; CPU % of a core: publisher ${fmt(f.cpu?.hubTrigger)} / broker ${fmt(f.cpu?.broker)} / clients ${fmt(f.cpu?.swarm)} / rest ${fmt(f.cpu?.rest)} (machine ${fmt(f.cpu?.machine)} of ${cpus().length * 100})`,
    );
  }
  console.log(
    `\nnode RSS, ${HOSTILE} hostile triggers: ${hostile.startMB.toFixed(1)} MB before, ${hostile.afterMB.toFixed(1)} MB after (+${(hostile.afterMB - hostile.startMB).toFixed(1)}), ` +
      `${hostile.settledMB.toFixed(1)} MB 5 s later; ${hostile.acks} acks, largest ${hostile.maxAckBytes} B; pending at most ${hostile.pendingMax} (target ≤ start + 20 MB)`,
  );
  console.log(
    `  with the unit's NODE_OPTIONS: ${hostileUnit.startMB.toFixed(1)} MB before, ${hostileUnit.afterMB.toFixed(1)} MB after (+${(hostileUnit.afterMB - hostileUnit.startMB).toFixed(1)}), ` +
      `${hostileUnit.settledMB.toFixed(1)} MB 5 s later; ${hostileUnit.acks} acks. The heap itself stays flat (the growth is garbage V8 has not collected yet, not retention).`,
  );
  console.log(
    `\nwhere the machine is the limit: all N nodes, the broker, the hub and the trigger share ${cpus().length} cores (load ${uptime()} now, other work included);` +
      ` the last column but one says who had the CPU while the triggers ran (rest: other work on this machine), and the floor what bare MQTT clients` +
      ` need on this machine for the same fan-out and fan-in: acks slower than the floor by a little are the machine's, not lockstep's.`,
  );
  const plot = plotScaleAcks(
    rows.map((r) => ({ setup: r.setup, nodes: r.nodes, ackLatenciesMs: ackLatenciesOf.get(r) ?? [] })),
    `${TRIGGERS} triggers per N after ${SETTLE_MS / 1000} s up, every node's ack; swarm nodes on ${cpus().length} shared cores, load ${uptime()} after`,
  );
  if (plot) console.log(`(plot ${plot})`);
  return { cores: cpus().length, rows, floors, hostile, hostileUnit, unitNodeOptions: UNIT_NODE_OPTIONS };
}
