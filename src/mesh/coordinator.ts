/**
 * One trigger, end to end, as `lockstep trigger` (and the demo) run it: the
 * readiness gate, the choice of the instant, the signed publish, and the
 * collection of acks and fire reports (de-duplicated by id: reports are sent
 * at least once, and again after a broker restart).
 */
import type { Timescale } from '../time/timescale.js';
import type { ActionSpec } from '../schedule/actions.js';
import { NS_PER_MS } from '../time/units.js';
import { MqttSession } from './mqtt-session.js';
import { Topics } from './topics.js';
import { NodeDirectory } from './presence.js';
import { waitUntilReady } from './readiness.js';
import {
  decodeAck,
  decodeReport,
  parseMessage,
  newMessageId,
  toWire,
  type AckMessage,
  type ReportMessage,
  type TriggerMessage,
  type CancelMessage,
} from './messages.js';
import { KeyRing, signWire } from './signing.js';
import { nodeRows, edgeRows, quantiles, type NodeRow, type EdgeRow, type Quantiles } from './spread.js';

/** The shortest lead we choose by ourselves: delivery over Wi-Fi plus the node's preparation. */
export const MIN_AUTO_LEAD_MS = 500;
/** Lead = this many broker round trips on top of the minimum (slow brokers, queued nodes). */
const LEAD_RTTS = 20;
/**
 * An absolute first instant must still be this far ahead once the gate has
 * passed: the trigger has to reach the nodes (a broker round trip, a node's
 * preparation) before it, or every node refuses it as in-the-past.
 */
export const MIN_PUBLISH_LEAD_MS = 100;
/** A progress line names at most this many nodes (the result lists them all). */
const MAX_NAMED_IN_PROGRESS = 20;
/** After the last instant, how long reports may take (a node reconnecting to a restarted broker). */
export const DEFAULT_COLLECT_GRACE_MS = 5_000;

/** The absolute first instant (--at) passed, or came too close, while the gate waited for the nodes: nothing was published. */
export class StartPassedError extends Error {
  constructor(readonly startNs: bigint, readonly leftMs: number, waitedMs: number) {
    super(
      `the first instant was ${leftMs < 0 ? `${(-leftMs).toFixed(0)} ms past` : `only ${leftMs.toFixed(0)} ms ahead`} when every node was ready ` +
        `(the gate took ${(waitedMs / 1000).toFixed(1)} s); nothing was sent. Give a later --at, or --in DURATION, which counts from when they are ready`,
    );
    this.name = 'StartPassedError';
  }
}

export interface TriggerRequest {
  action: ActionSpec;
  /** Absolute first instant (--at). */
  startNs?: bigint;
  /** Lead from now (--in). Neither: chosen from the broker's round trip. */
  inNs?: bigint;
  nodes?: string[];
  readyWithinNs: number;
  readyTimeoutMs: number;
  maxStateAgeMs?: number;
  /** Without `nodes`: the gate also waits until this many nodes are online. */
  minNodes?: number;
  collectGraceMs?: number;
  /** Retained: nodes that connect later still receive it (and join a running blink train in phase). */
  retain?: boolean;
  /** Wait for reports (default true). */
  collect?: boolean;
  progress?: (line: string) => void;
  /** Called once the trigger is out (the hub's page turns "waiting for the gate" into "pending"). */
  onPublished?: (published: { triggerId: string; startNs: bigint; leadMs: number; targets: string[] }) => void;
}

export interface TriggerResult {
  triggerId: string;
  startNs: bigint;
  leadMs: number;
  targets: string[];
  rows: NodeRow[];
  edges: EdgeRow[];
  /** Spread of the reported instants across nodes, over edges. */
  spread?: Quantiles;
  trueSpread?: Quantiles;
  /** Simulated clocks: spread of the true instants at which the nodes' clocks read each planned instant. */
  clockSpread?: Quantiles;
  /** Published → the last target's ack, ms. */
  allAcksMs?: number;
  /** The gate opened → the trigger was published (choosing the instant, signing, the publish's PUBACK), ms. */
  gateToPublishedMs?: number;
  /** The last instant → the last report received, ms (negative: reports of earlier edges only). */
  reportsAfterLastMs?: number;
  duplicateReports: number;
  missingAcks: string[];
  reports: ReportMessage[];
}

export interface CoordinatorOptions {
  session: MqttSession;
  topics: Topics;
  directory: NodeDirectory;
  /** The sender's UTC (the system clock on a hub that runs chrony, or the hub's own model). */
  timescale: Timescale;
  keys?: KeyRing;
  keyId?: string;
  /**
   * Default true: this coordinator subscribes to the nodes' states and feeds
   * `directory` with them. false when another session in the same process
   * (a hub's) already feeds it: each state would otherwise be received and
   * parsed twice, a thousand of them a few seconds apart.
   */
  feedsDirectory?: boolean;
}

function monotonicMs(): number {
  return Number(process.hrtime.bigint()) / 1e6;
}

/** The last instant of an action that starts at startNs (undefined: it never ends). */
export function lastInstantNs(action: ActionSpec, startNs: bigint): bigint | undefined {
  if (action.kind !== 'blink') return startNs;
  if (action.count === 'forever') return undefined;
  return startNs + BigInt(action.count - 1) * BigInt(action.periodNs) + BigInt(action.onNs);
}

/** Reports a node sends per fire: a blink has an on and an off edge. */
function edgesPerFire(action: ActionSpec): number {
  return action.kind === 'blink' ? 2 : 1;
}

export class Coordinator {
  private readonly acks = new Map<string, Map<string, AckMessage>>();
  private readonly ackTimes = new Map<string, Map<string, number>>();
  private readonly reports = new Map<string, Map<string, ReportMessage>>();
  /** Per trigger: when its latest new report arrived (monotonic ms). */
  private readonly lastReportMs = new Map<string, number>();
  private duplicates = 0;

  constructor(private readonly o: CoordinatorOptions) {
    o.session.onMessage((topic, payload) => this.onMessage(topic, payload));
  }

  /** The subscriptions a coordinator needs (states, acks, reports of every node). */
  filters(): string[] {
    const t = this.o.topics;
    return [...(this.o.feedsDirectory === false ? [] : [t.allNodes('state')]), t.allNodes('ack'), t.allNodes('report')];
  }

  private onMessage(topic: string, payload: Buffer): void {
    if (this.o.feedsDirectory !== false && this.o.directory.handle(topic, payload)) return;
    const where = this.o.topics.parseNodeTopic(topic);
    if (!where) return;
    if (where.channel === 'ack') {
      const parsed = parseMessage(payload, decodeAck);
      if (!parsed.ok || !parsed.value.triggerId) return;
      const ack = parsed.value;
      const byNode = this.acks.get(ack.triggerId!);
      if (!byNode || byNode.has(ack.node)) return; // first answer counts; a redelivery's 'replayed' does not
      byNode.set(ack.node, ack);
      this.ackTimes.get(ack.triggerId!)!.set(ack.node, monotonicMs());
    } else if (where.channel === 'report') {
      const parsed = parseMessage(payload, decodeReport);
      if (!parsed.ok) return;
      const byId = this.reports.get(parsed.value.triggerId);
      if (!byId) return;
      if (byId.has(parsed.value.id)) this.duplicates++;
      else {
        byId.set(parsed.value.id, parsed.value);
        this.lastReportMs.set(parsed.value.triggerId, monotonicMs());
      }
    }
  }

  /** What has come back for a trigger so far (copies): a running trigger's live view. */
  progressOf(triggerId: string): { acks: AckMessage[]; reports: ReportMessage[] } | undefined {
    const acks = this.acks.get(triggerId);
    if (!acks) return undefined;
    return { acks: [...acks.values()], reports: [...(this.reports.get(triggerId)?.values() ?? [])] };
  }

  /** Drops what is kept for a finished trigger: a long-running hub runs many, a one-shot CLI one. */
  forget(triggerId: string): void {
    this.acks.delete(triggerId);
    this.ackTimes.delete(triggerId);
    this.reports.delete(triggerId);
    this.lastReportMs.delete(triggerId);
  }

  /** Round trip to the broker (a QoS 1 publish until its PUBACK), ms. */
  async brokerRttMs(): Promise<number> {
    const start = monotonicMs();
    await this.o.session.publish(`${this.o.topics.prefix}/hub/ping`, '', { qos: 1, timeoutMs: 2000 });
    return monotonicMs() - start;
  }

  async chooseStart(request: TriggerRequest): Promise<{ startNs: bigint; leadMs: number }> {
    const now = this.o.timescale.nowNs();
    if (request.startNs !== undefined) return { startNs: request.startNs, leadMs: Number(request.startNs - now) / 1e6 };
    let leadNs = request.inNs;
    if (leadNs === undefined) {
      const rtt = await this.brokerRttMs().catch(() => 50);
      leadNs = BigInt(Math.round((MIN_AUTO_LEAD_MS + LEAD_RTTS * rtt) * 1e6));
    }
    // Whole milliseconds: readable in logs, and no precision is lost by it.
    const startNs = ((now + leadNs + NS_PER_MS - 1n) / NS_PER_MS) * NS_PER_MS;
    return { startNs, leadMs: Number(startNs - now) / 1e6 };
  }

  buildTrigger(request: TriggerRequest, startNs: bigint, targets: string[] | undefined): Record<string, unknown> {
    const now = this.o.timescale.nowNs();
    const last = lastInstantNs(request.action, startNs);
    // A trigger is worth delivering until its last instant (late joiners join in phase), at least 10 s.
    const minExpiry = now + 10_000n * NS_PER_MS;
    const expiresNs = last === undefined ? now + 24n * 3600_000n * NS_PER_MS : last > minExpiry ? last : minExpiry;
    const message: TriggerMessage = {
      v: 1,
      type: 'trigger',
      id: newMessageId('t'),
      issuedNs: now,
      expiresNs,
      startNs,
      action: request.action as unknown as TriggerMessage['action'],
    };
    if (targets) message.nodes = targets;
    const wire = toWire(message);
    if (this.o.keys && this.o.keyId) return signWire(wire, this.o.keyId, this.o.keys);
    return wire;
  }

  /**
   * Cancels a trigger on its nodes; resolves with each node's answer
   * ('cancelled', or 'rejected' unknown-trigger when it had nothing pending)
   * after every expected node answered or waitMs passed.
   */
  async cancel(triggerId: string, nodes: string[] | undefined, waitMs = 3000): Promise<Map<string, AckMessage>> {
    const now = this.o.timescale.nowNs();
    const message: CancelMessage = { v: 1, type: 'cancel', id: newMessageId('c'), issuedNs: now, expiresNs: now + 10_000n * NS_PER_MS, triggerId };
    if (nodes) message.nodes = nodes;
    let wire = toWire(message);
    if (this.o.keys && this.o.keyId) wire = signWire(wire, this.o.keyId, this.o.keys);
    this.acks.set(triggerId, new Map());
    this.ackTimes.set(triggerId, new Map());
    await this.o.session.publish(this.o.topics.cancel, JSON.stringify(wire), { qos: 1 });
    const answers = this.acks.get(triggerId)!;
    const expected = nodes ?? this.o.directory.online();
    const deadline = monotonicMs() + waitMs;
    while (expected.some((n) => !answers.has(n)) && monotonicMs() < deadline) await new Promise((r) => setTimeout(r, 10));
    return answers;
  }

  async run(request: TriggerRequest): Promise<TriggerResult> {
    const calledMs = monotonicMs();
    const progress = request.progress ?? (() => undefined);
    progress(`waiting until ${request.nodes ? request.nodes.join(', ') : 'every online node'} is synchronized within ${request.readyWithinNs / 1e3} µs`);
    const targets = await waitUntilReady(this.o.directory, {
      nodes: request.nodes,
      thresholdNs: request.readyWithinNs,
      maxStateAgeMs: request.maxStateAgeMs ?? 5_000,
      timeoutMs: request.readyTimeoutMs,
      ...(request.minNodes !== undefined ? { minNodes: request.minNodes } : {}),
      onWaiting: progress,
    });
    const gateOpenMs = monotonicMs();
    const { startNs, leadMs } = await this.chooseStart(request);
    if (request.startNs !== undefined && leadMs < MIN_PUBLISH_LEAD_MS) throw new StartPassedError(startNs, leadMs, gateOpenMs - calledMs);
    // A retained trigger for the whole group names no nodes: nodes that connect later are meant to take it up.
    const wire = this.buildTrigger(request, startNs, request.retain && !request.nodes ? undefined : targets);
    const id = wire.id as string;
    this.acks.set(id, new Map());
    this.ackTimes.set(id, new Map());
    this.reports.set(id, new Map());
    progress(`${targets.length} node(s) ready; trigger ${id} for ${lastInstantNs(request.action, startNs) === startNs ? '' : 'a train starting '}in ${leadMs.toFixed(0)} ms`);
    const publishedMs = monotonicMs();
    const topic = request.nodes?.length === 1 ? this.o.topics.node(request.nodes[0]!, 'trigger') : this.o.topics.trigger;
    const publishedUtcNs = this.o.timescale.nowNs();
    await this.o.session.publish(topic, JSON.stringify(wire), { qos: 1, retain: request.retain ?? false });
    const gateToPublishedMs = monotonicMs() - gateOpenMs;
    request.onPublished?.({ triggerId: id, startNs, leadMs, targets });

    const acks = this.acks.get(id)!;
    const reports = this.reports.get(id)!;
    const grace = request.collectGraceMs ?? DEFAULT_COLLECT_GRACE_MS;
    // Acks: until every target answered, or the instant came (a node that has not acked by then cannot fire).
    const ackDeadline = publishedMs + Math.max(leadMs, 1000) + 1000;
    while (acks.size < targets.length && monotonicMs() < ackDeadline) await new Promise((r) => setTimeout(r, 5));
    const ackTimes = this.ackTimes.get(id)!;
    const allAcksMs = acks.size === targets.length ? Math.max(...[...ackTimes.values()]) - publishedMs : undefined;
    const missingAcks = targets.filter((n) => !acks.has(n));
    if (missingAcks.length) {
      const named = missingAcks.slice(0, MAX_NAMED_IN_PROGRESS).join(', ');
      progress(`no ack from ${named}${missingAcks.length > MAX_NAMED_IN_PROGRESS ? ` and ${missingAcks.length - MAX_NAMED_IN_PROGRESS} more (${missingAcks.length} of ${targets.length})` : ''}`);
    }

    const last = lastInstantNs(request.action, startNs);
    if (request.collect !== false && last !== undefined) {
      const expected = () =>
        [...acks.values()].filter((a) => a.status === 'scheduled').reduce((n, a) => n + (a.fires ?? 0) * edgesPerFire(request.action), 0);
      const untilMs = () => monotonicMs() + Number(last - this.o.timescale.nowNs()) / 1e6 + grace;
      const deadline = untilMs();
      // A target whose ack has not come yet may still fire (its ack and reports queued behind the
      // others', or it joined the train in phase): its reports are not in expected() until its ack is.
      const unacked = () => targets.some((n) => !acks.has(n));
      while ((reports.size < expected() || unacked()) && monotonicMs() < deadline) await new Promise((r) => setTimeout(r, 20));
    }

    const list = [...reports.values()];
    const rows = nodeRows(targets, acks, new Map([...ackTimes].map(([n, t]) => [n, t - publishedMs])), list);
    const edges = edgeRows(list);
    const multi = edges.filter((e) => e.nodes > 1);
    const result: TriggerResult = {
      triggerId: id,
      startNs,
      leadMs,
      targets,
      rows,
      edges,
      duplicateReports: this.duplicates,
      missingAcks,
      reports: list,
    };
    const spread = quantiles(multi.map((e) => e.spreadNs));
    if (spread) result.spread = spread;
    const trueSpread = quantiles(multi.filter((e) => e.trueSpreadNs !== undefined).map((e) => e.trueSpreadNs!));
    if (trueSpread) result.trueSpread = trueSpread;
    const clockSpread = quantiles(multi.filter((e) => e.clockSpreadNs !== undefined).map((e) => e.clockSpreadNs!));
    if (clockSpread) result.clockSpread = clockSpread;
    if (allAcksMs !== undefined) result.allAcksMs = allAcksMs;
    result.gateToPublishedMs = gateToPublishedMs;
    const lastReport = this.lastReportMs.get(id);
    if (last !== undefined && lastReport !== undefined) result.reportsAfterLastMs = lastReport - (publishedMs + Number(last - publishedUtcNs) / 1e6);
    return result;
  }
}

/** A JSON-able copy (bigints as strings) for --json output. */
export function resultJson(result: TriggerResult, withReports = false): Record<string, unknown> {
  const { reports, ...rest } = result;
  const json = JSON.parse(JSON.stringify(rest, (_k, v) => (typeof v === 'bigint' ? v.toString() : v))) as Record<string, unknown>;
  if (withReports) json.reports = JSON.parse(JSON.stringify(reports, (_k, v) => (typeof v === 'bigint' ? v.toString() : v)));
  return json;
}
