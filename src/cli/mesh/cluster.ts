/**
 * A whole mesh on this machine: a private Mosquitto, the hub's NTP server
 * (optionally behind the Wi-Fi-like relay), and N `lockstep node` PROCESSES
 * with simulated clocks and the simulated recorder. Used by `lockstep demo`,
 * the mesh tests and the mesh benchmark. Everything it starts it stops, by
 * pid, also on Ctrl-C and on errors.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { realClock } from '../../time/clock.js';
import { Timescale } from '../../time/timescale.js';
import { UdpRelay } from '../../ntp/relay.js';
import { PrivateBroker } from '../../mesh/broker.js';
import { MeshHub } from '../../mesh/hub.js';
import { Topics } from '../../mesh/topics.js';
import { MqttSession, WATCH_QOS } from '../../mesh/mqtt-session.js';
import { Coordinator } from '../../mesh/coordinator.js';
import { KeyRing } from '../../mesh/signing.js';
import { simulatedNodeSpec } from './swarm.js';

/** The CLI entry point, relative to this compiled file (works from any outDir). */
export const CLI_MAIN = fileURLToPath(new URL('../main.js', import.meta.url));

/** The hub serves this machine's clock, which IS the truth of the simulation: claim a tight bound. */
const HUB_ERROR_NS = 10_000;

export interface ClusterOptions {
  nodes: number;
  wifi?: boolean;
  /** Max |simulated offset|, s, and |drift|, ppm (spread evenly, deterministic). */
  maxOffsetSeconds?: number;
  maxDriftPpm?: number;
  /** Node process priority (best effort; see lockstep node --nice). */
  nice?: number;
  /** Fixed spin tail for every node (lockstep node --spin); the scheduler's learnt margin when absent. */
  spin?: string;
  /** Extra arguments for every node (e.g. --keys FILE). */
  nodeArgs?: string[];
  keys?: KeyRing;
  keyId?: string;
  /** The hub also runs its own coordinator and hears every ack and report (the demo's --http page). */
  hubControl?: boolean;
  /** Node stderr goes here (default: dropped unless LOCKSTEP_DEMO_DEBUG is set). */
  onNodeLog?: (id: string, line: string) => void;
  /**
   * 'processes' (default): one `lockstep node` process per node, fires spun
   * to the instant. 'swarm': `lockstep swarm` processes of nodesPerProcess
   * simulated nodes each (src/cli/mesh/swarm.ts), for the control plane at
   * hundreds of nodes; the hub's NTP server then keeps its rate limiter on
   * (each swarm node sends from its own loopback address).
   */
  layout?: 'processes' | 'swarm';
  nodesPerProcess?: number;
  /** Swarm: the nodes' longest interval between two state messages, ms (default the node's). */
  statePeriodMs?: number;
  /**
   * Broker URLs per node: node i connects to brokers[i % brokers.length]
   * (with the rest as failover when `failover`); the coordinator to the first.
   * Default: the cluster's own private broker.
   */
  brokers?: string[];
  /** Nodes may fail over to the other brokers in `brokers` (default false: each stays on its own). */
  failover?: boolean;
  /** Topic prefix (default demo-PID; a bridge carrying lockstep/# needs one under lockstep/). */
  prefix?: string;
  /** Extra mosquitto.conf lines for the private broker (sys_interval 1 for a benchmark's $SYS counters). */
  brokerConfig?: string[];
  /** Node options for every node and swarm process (a benchmark's --cpu-prof). */
  execArgv?: string[];
}

/** Swarm layout: nodes per `lockstep swarm` process (10 × 100 for a thousand). */
export const DEFAULT_NODES_PER_PROCESS = 100;
/** Above this many nodes `lockstep demo` picks the swarm layout: a process per node is ~50 MB and a spinning core each. */
export const SWARM_ABOVE_NODES = 50;

export interface ClusterNode {
  id: string;
  offsetSeconds: number;
  driftPpm: number;
  child: ChildProcess;
  stateFile: string;
  brokerArgs: string[];
}

/** Tracks every process we start, so an exit for any reason kills them by pid. */
const started = new Set<number>();
let exitHookInstalled = false;
function track(pid: number | undefined): void {
  if (pid === undefined) return;
  started.add(pid);
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    process.on('exit', () => {
      for (const p of started) {
        try {
          process.kill(p, 'SIGKILL');
        } catch {
          /* gone */
        }
      }
    });
  }
}

function stopChild(child: ChildProcess, signal: NodeJS.Signals = 'SIGTERM', graceMs = 3000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) {
    started.delete(child.pid!);
    return Promise.resolve();
  }
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      try {
        process.kill(child.pid!, 'SIGKILL');
      } catch {
        /* gone */
      }
    }, graceMs);
    child.once('exit', () => {
      clearTimeout(timer);
      started.delete(child.pid!);
      resolve();
    });
    try {
      process.kill(child.pid!, signal);
    } catch {
      /* gone */
    }
  });
}

export class Cluster {
  readonly broker: PrivateBroker;
  readonly topics: Topics;
  readonly timescale = new Timescale(realClock(), { trustRawClock: { errorBoundNs: HUB_ERROR_NS } });
  readonly nodes: ClusterNode[] = [];
  /** Swarm layout: the `lockstep swarm` processes. */
  readonly swarms: ChildProcess[] = [];
  hub: MeshHub | undefined;
  relay: UdpRelay | undefined;
  session: MqttSession | undefined;
  coordinator: Coordinator | undefined;
  ntpPort = 0;
  private readonly dir: string;

  constructor(private readonly o: ClusterOptions) {
    // tmpfs when there is one: the nodes fsync their state file before each ack.
    this.topics = new Topics(`demo-${process.pid}`, o.prefix);
    this.broker = new PrivateBroker(o.brokerConfig ? { extraConfig: o.brokerConfig } : {});
    this.dir = mkdtempSync(join(existsSync('/dev/shm') ? '/dev/shm' : tmpdir(), 'lockstep-cluster-'));
  }

  get layout(): 'processes' | 'swarm' {
    return this.o.layout ?? 'processes';
  }

  /** Every node id of the group, in order. */
  nodeIds(): string[] {
    if (this.layout === 'processes') return this.nodes.map((n) => n.id);
    return Array.from({ length: this.o.nodes }, (_, i) => simulatedNodeSpec({ index: i, total: this.o.nodes, maxOffsetSeconds: 0, maxDriftPpm: 0 }).id);
  }

  /** The broker URL the coordinator and hub use. */
  get brokerUrl(): string {
    return this.o.brokers?.[0] ?? this.broker.url;
  }

  /** Node i's broker options for its command line. */
  private brokerArgs(i: number): string[] {
    const list = this.o.brokers;
    if (!list || list.length === 0) return ['--broker', this.broker.url];
    const own = list[i % list.length]!;
    return ['--broker', this.o.failover ? [own, ...list.filter((u) => u !== own)].join(',') : own];
  }

  async start(): Promise<void> {
    if (!this.o.brokers) {
      const { pid } = await this.broker.start();
      track(pid);
    }
    this.hub = new MeshHub({
      topics: this.topics,
      mqtt: { url: this.brokerUrl, clientId: `lockstep-demo-hub-${process.pid}` },
      timescale: this.timescale,
      // A process per node all send from 127.0.0.1: one address to a per-address limiter. Swarm nodes each have their own.
      ntp: { port: 0, bind: '127.0.0.1', rateLimit: this.layout === 'swarm' ? {} : false },
      ...(this.o.hubControl ? { control: { keys: this.o.keys, keyId: this.o.keyId }, watchTriggers: true } : {}),
    });
    await this.hub.start();
    this.ntpPort = this.hub.ntpAddress!.port;
    let ntpTarget = `127.0.0.1:${this.ntpPort}`;
    if (this.o.wifi) {
      // Wi-Fi as the issue defines it: 1 ms + exponential(mean 3 ms) each way.
      this.relay = new UdpRelay({ targetHost: '127.0.0.1', targetPort: this.ntpPort, delayMs: 1, jitterMeanMs: 3 });
      const relay = await this.relay.start();
      ntpTarget = `${relay.host}:${relay.port}`;
    }
    const maxOffset = this.o.maxOffsetSeconds ?? 5;
    const maxDrift = this.o.maxDriftPpm ?? 100;
    if (this.layout === 'swarm') this.spawnSwarms(ntpTarget, maxOffset, maxDrift);
    else for (let i = 0; i < this.o.nodes; i++) this.spawnNode(i, ntpTarget, maxOffset, maxDrift);
    this.session = new MqttSession({ url: this.brokerUrl, clientId: `lockstep-demo-trigger-${process.pid}` });
    this.coordinator = new Coordinator({
      session: this.session,
      topics: this.topics,
      directory: this.hub.directory,
      timescale: this.timescale,
      keys: this.o.keys,
      keyId: this.o.keyId,
      // The hub's session feeds the directory already.
      feedsDirectory: false,
    });
    await this.session.waitConnected(10_000);
    await this.session.subscribe(this.coordinator.filters(), { qos: WATCH_QOS });
  }

  /** Node i's simulated clock: offsets and drifts spread over ±max, alternating signs. */
  private spawnNode(i: number, ntpTarget: string, maxOffset: number, maxDrift: number): void {
    const { id, offsetSeconds, driftPpm } = simulatedNodeSpec({ index: i, total: this.o.nodes, maxOffsetSeconds: maxOffset, maxDriftPpm: maxDrift });
    const stateFile = join(this.dir, `${id}.json`);
    this.launch({ id, offsetSeconds, driftPpm, stateFile, brokerArgs: this.brokerArgs(i) }, ntpTarget);
  }

  /** `lockstep swarm` processes of nodesPerProcess nodes each; with several brokers, each process uses one. */
  private spawnSwarms(ntpTarget: string, maxOffset: number, maxDrift: number): void {
    const per = this.o.nodesPerProcess ?? DEFAULT_NODES_PER_PROCESS;
    for (let first = 0, p = 0; first < this.o.nodes; first += per, p++) {
      const count = Math.min(per, this.o.nodes - first);
      const args = [
        ...(this.o.execArgv ?? []),
        CLI_MAIN, 'swarm',
        ...this.brokerArgs(p),
        '--prefix', this.topics.prefix,
        '--ntp', ntpTarget,
        '--first', String(first),
        '--count', String(count),
        '--total', String(this.o.nodes),
        `--max-offset=${maxOffset}`,
        `--max-drift=${maxDrift}`,
        ...(this.o.statePeriodMs !== undefined ? ['--state-period', `${this.o.statePeriodMs}ms`] : []),
        '--exit-with-stdin',
        ...(process.env.LOCKSTEP_DEMO_DEBUG ? [] : ['--quiet']),
      ];
      const child = spawn(process.execPath, args, { stdio: ['pipe', 'ignore', process.env.LOCKSTEP_DEMO_DEBUG ? 'inherit' : 'ignore'] });
      track(child.pid);
      this.swarms.push(child);
    }
  }

  private ntpTargetOf = '';

  private launch(spec: { id: string; offsetSeconds: number; driftPpm: number; stateFile: string; brokerArgs: string[] }, ntpTarget: string): ClusterNode {
    this.ntpTargetOf = ntpTarget;
    const args = [
      ...(this.o.execArgv ?? []),
      CLI_MAIN, 'node',
      '--id', spec.id,
      ...spec.brokerArgs,
      '--prefix', this.topics.prefix,
      '--ntp', ntpTarget,
      // The node's own default polls (16 a second while it learns its frequency), backing off to 2 s.
      '--max-poll', '2',
      '--driver', 'sim',
      `--sim-offset=${spec.offsetSeconds}`,
      `--sim-drift=${spec.driftPpm}`,
      '--state-file', spec.stateFile,
      '--exit-with-stdin',
      ...(this.o.spin !== undefined ? [`--spin=${this.o.spin}`] : []),
      ...(this.o.nice !== undefined ? [`--nice=${this.o.nice}`] : []),
      ...(this.o.nodeArgs ?? []),
    ];
    // stdin is a pipe we never write: if this process dies without stopping the node, the pipe closes and the node stops.
    const child = spawn(process.execPath, args, { stdio: ['pipe', 'ignore', 'pipe'] });
    track(child.pid);
    const onLog = this.o.onNodeLog ?? (process.env.LOCKSTEP_DEMO_DEBUG ? (id: string, l: string) => process.stderr.write(`${l}\n`) : undefined);
    let buffered = '';
    child.stderr!.on('data', (d: Buffer) => {
      buffered += d.toString();
      const lines = buffered.split('\n');
      buffered = lines.pop()!;
      for (const line of lines) onLog?.(spec.id, line);
    });
    const node: ClusterNode = { ...spec, child };
    const existing = this.nodes.findIndex((x) => x.id === spec.id);
    if (existing >= 0) this.nodes[existing] = node;
    else this.nodes.push(node);
    return node;
  }

  /** Kills a node process (SIGKILL: a crash) and starts it again with the same clock and state file. */
  async restartNode(id: string): Promise<void> {
    const node = this.nodes.find((x) => x.id === id);
    if (!node) throw new Error(`no node ${id}`);
    await stopChild(node.child, 'SIGKILL');
    this.launch(node, this.ntpTargetOf);
  }

  async stop(): Promise<void> {
    await Promise.all([...this.nodes.map((n) => stopChild(n.child)), ...this.swarms.map((c) => stopChild(c, 'SIGTERM', 8000))]);
    await this.session?.close(true).catch(() => undefined);
    await this.hub?.stop().catch(() => undefined);
    await this.relay?.stop().catch(() => undefined);
    if (this.broker.pid) started.delete(this.broker.pid);
    await this.broker.dispose();
    rmSync(this.dir, { recursive: true, force: true });
  }
}
