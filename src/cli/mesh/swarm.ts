/**
 * A swarm: many simulated mesh nodes in ONE process, for measuring the
 * control plane (hub, broker, coordinator) at hundreds or thousands of
 * nodes on one machine. Each node is whole where the control plane can see
 * it: its own MQTT connection (own client id, will, persistent session), its
 * own NTP client against the hub's server over real UDP (from its own
 * loopback address, 127.77.x.y, so the server's per-address rate limit sees
 * separate clients as on a LAN), its own simulated clock (offset, drift) and
 * its own simulated recorder.
 *
 * What it does not measure is fire precision: each node has its own
 * scheduler, but with no coarse margin and no spin (a fire happens when its
 * timer wakes, a millisecond or more late, and a hundred nodes of one process
 * take turns on one event loop), nodes keep no state file, and the nodes of a
 * process decode a trigger's bytes once between them. Real nodes
 * (`lockstep node`, one per computer) spin to the instant.
 */
import { SimulatedClock } from '../../time/clock.js';
import { Timescale } from '../../time/timescale.js';
import { NtpClient } from '../../ntp/client.js';
import { Scheduler } from '../../schedule/scheduler.js';
import { realTimerHost, type TimerHost } from '../../schedule/timers.js';
import type { ActionSpec } from '../../schedule/actions.js';
import { MeshNode } from '../../mesh/node.js';
import { decodeTrigger, parseMessage, type TriggerMessage } from '../../mesh/messages.js';
import { Topics } from '../../mesh/topics.js';
import type { MqttSessionOptions } from '../../mesh/mqtt-session.js';
import { SimulatedRecorder } from '../../../hardware/sim.js';
import { syncSnapshot } from './sync-snapshot.js';

/**
 * The timer's wake is the fire, and never a wait that holds the event loop:
 * Node's timers count whole ms and wake up to 1 ms early, and the scheduler
 * handles an early wake by sleeping the rest (Atomics.wait) and spinning.
 * For one node on its own CPU that is the point; here it held the other 99
 * nodes of the process, up to 1 ms per edge, four edges per node per trigger,
 * while their acks and reports waited. One ms more, and the wake comes after
 * the instant, which is then fired at once (a ms late, as the file comment says).
 */
const SWARM_TIMERS: TimerHost = {
  setTimeout: (callback, delayMs) => realTimerHost.setTimeout(callback, delayMs > 0 ? delayMs + 1 : 0),
  sleepNs: (ns) => realTimerHost.sleepNs(ns),
  spinUntil: (clock, rawNs) => realTimerHost.spinUntil(clock, rawNs),
};

/** Distinct trigger payloads a swarm process remembers the decoding of (a few triggers in flight at once). */
const SHARED_DECODES = 4;

/**
 * One trigger decoder for the nodes of a process: the same ~11 KB (a
 * thousand node ids) reaches each of them, and parsing it a hundred times on
 * one event loop cost a tenth of the swarm's CPU while the acks were due. On
 * a Pi of its own each node parses once, on a CPU nobody else waits for.
 */
export function sharedTriggerDecoder(): (payload: Buffer) => ReturnType<typeof parseMessage<TriggerMessage>> {
  const recent: { payload: Buffer; result: ReturnType<typeof parseMessage<TriggerMessage>> }[] = [];
  return (payload) => {
    const hit = recent.find((r) => r.payload.equals(payload));
    if (hit) return hit.result;
    const result = parseMessage(payload, decodeTrigger);
    recent.push({ payload: Buffer.from(payload), result });
    if (recent.length > SHARED_DECODES) recent.shift();
    return result;
  };
}

/** No coarse margin, no spin: the timer's wake is the fire (see the file comment). */
const NO_SPIN = { initialNs: 0, minNs: 0, maxNs: 0, adapt: false };
/** A hundred nodes share an event loop: a fire seconds late is still a fire to count, not a skip. */
const SWARM_LATE_TOLERANCE_NS = 10_000_000_000;
/** Connections and NTP starts are spread over this long, as a group that powers up does not do it in one ms. */
const START_SPREAD_MS = 2_000;
/** How long the swarm waits for its nodes' MQTT connections before starting their NTP clients anyway. */
const CONNECTED_WAIT_MS = 30_000;

export interface SwarmSpec {
  /** Node i (0-based, across the whole group): its id and simulated clock. */
  index: number;
  /** Total nodes in the group (for the spread of offsets). */
  total: number;
  maxOffsetSeconds: number;
  maxDriftPpm: number;
}

/** Node i's id and clock, the same rule as the process layout (offsets over ±max, alternating drift signs). */
export function simulatedNodeSpec({ index: i, total: n, maxOffsetSeconds, maxDriftPpm }: SwarmSpec): { id: string; offsetSeconds: number; driftPpm: number } {
  const frac = n === 1 ? 1 : i / (n - 1);
  const offsetSeconds = Math.round((2 * frac - 1) * maxOffsetSeconds * 1000) / 1000;
  const driftPpm = Math.round((i % 2 === 0 ? 1 : -1) * (0.3 + (0.7 * ((i * 7) % n)) / Math.max(1, n - 1)) * maxDriftPpm);
  const width = Math.max(2, String(n).length);
  return { id: `node${String(i + 1).padStart(width, '0')}`, offsetSeconds, driftPpm };
}

/** Node i's own loopback source address for NTP, 127.77.x.y with y in 1..254 (all of 127/8 is loopback on Linux). */
export function swarmLocalAddress(index: number): string {
  return `127.${77 + Math.floor(index / (254 * 256))}.${Math.floor(index / 254) % 256}.${(index % 254) + 1}`;
}

export interface SwarmOptions {
  mqtt: Omit<MqttSessionOptions, 'clientId' | 'will' | 'persistent'>;
  prefix: string;
  ntp: { host: string; port: number };
  first: number;
  count: number;
  total: number;
  maxOffsetSeconds?: number;
  maxDriftPpm?: number;
  minPollSeconds?: number;
  maxPollSeconds?: number;
  statePeriodMs?: number;
  /** Give each node its own 127.77.x.y for NTP (default true). */
  ownAddresses?: boolean;
  log?: (line: string) => void;
}

interface Member {
  node: MeshNode;
  client: NtpClient;
  scheduler: Scheduler;
}

export class Swarm {
  private readonly members: Member[] = [];
  private stopped = false;

  constructor(private readonly o: SwarmOptions) {}

  get size(): number {
    return this.members.length;
  }

  async start(): Promise<void> {
    const topics = new Topics('swarm', this.o.prefix);
    const parseTrigger = sharedTriggerDecoder();
    const starts: Promise<void>[] = [];
    for (let k = 0; k < this.o.count; k++) {
      const index = this.o.first + k;
      const spec = simulatedNodeSpec({ index, total: this.o.total, maxOffsetSeconds: this.o.maxOffsetSeconds ?? 5, maxDriftPpm: this.o.maxDriftPpm ?? 100 });
      const clock = new SimulatedClock({ offsetSeconds: spec.offsetSeconds, driftPpm: spec.driftPpm });
      const timescale = new Timescale(clock);
      const client = new NtpClient({
        servers: [{ host: this.o.ntp.host, port: this.o.ntp.port }],
        timescale,
        minPollSeconds: this.o.minPollSeconds ?? 1,
        maxPollSeconds: this.o.maxPollSeconds ?? 8,
        ...(this.o.ownAddresses === false ? {} : { localAddress: swarmLocalAddress(index) }),
      });
      const scheduler = new Scheduler({ timescale, coarseMargin: NO_SPIN, spinMargin: NO_SPIN, lateToleranceNs: SWARM_LATE_TOLERANCE_NS, timers: SWARM_TIMERS });
      let lastTrueNs: bigint | undefined;
      const node = new MeshNode({
        id: spec.id,
        topics,
        mqtt: this.o.mqtt,
        timescale,
        scheduler,
        sync: () => syncSnapshot(clock, timescale, client),
        actuatorFor: (_action: ActionSpec) => new SimulatedRecorder({ name: `${spec.id} recorder`, clock, onRecord: (r) => (lastTrueNs = r.trueNs) }),
        truthNs: () => lastTrueNs!,
        clockTruthAt: (utcNs) => clock.truthAtRaw(timescale.rawAt(utcNs)),
        warmupFires: 0,
        parseTrigger,
        ...(this.o.statePeriodMs !== undefined ? { statePeriodMs: this.o.statePeriodMs } : {}),
        log: this.o.log ? (line) => this.o.log!(`[${spec.id}] ${line}`) : undefined,
      });
      this.members.push({ node, client, scheduler });
      const delayMs = (START_SPREAD_MS * k) / Math.max(1, this.o.count);
      starts.push(
        new Promise<void>((r) => setTimeout(r, delayMs)).then(async () => {
          if (!this.stopped) await node.start();
        }),
      );
    }
    await Promise.all(starts);
    // NTP only once every node is connected (or given up on): a hundred MQTT handshakes and
    // subscriptions hold this event loop for whole seconds, and an NTP reply read then carries
    // that delay in its T4. On a Pi of its own, a node's start-up costs nobody else's samples.
    await Promise.all(this.members.map((m) => m.node.mqtt.waitConnected(CONNECTED_WAIT_MS).catch(() => undefined)));
    await Promise.all(
      this.members.map((m, k) =>
        new Promise<void>((r) => setTimeout(r, (START_SPREAD_MS * k) / Math.max(1, this.o.count))).then(async () => {
          if (!this.stopped) await m.client.start();
        }),
      ),
    );
  }

  /** Per node: fires and rejections (for the parent's checks). */
  counters(): { fires: number; triggers: number; rejected: number } {
    const sum = { fires: 0, triggers: 0, rejected: 0 };
    for (const m of this.members) {
      sum.fires += m.node.counters.fires;
      sum.triggers += m.node.counters.triggers;
      sum.rejected += m.node.counters.rejected;
    }
    return sum;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await Promise.all(
      this.members.map(async (m) => {
        await m.node.stop().catch(() => undefined);
        await m.client.stop().catch(() => undefined);
        m.scheduler.stop();
      }),
    );
  }
}
