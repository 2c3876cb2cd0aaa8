/**
 * Each node's last trigger, whoever sent it (the page, `lockstep trigger` on
 * a laptop, a script): the hub hears every ack and fire report on the broker,
 * so the page can say "did the last trigger land" for triggers it did not
 * send. A few recent triggers per node, bounded; "last" is the newest.
 */
import type { Topics } from './topics.js';
import { decodeAck, decodeReport, parseMessage } from './messages.js';

/** Entries kept (a node id per entry): a stranger publishing acks for made-up ids cannot grow memory. */
const MAX_NODES = 4096;
/** Report ids remembered per node for de-duplication: a train 'forever' must not grow them without end. */
const MAX_REPORT_IDS = 2048;

export interface LastTrigger {
  triggerId: string;
  ack?: 'scheduled' | 'rejected' | 'cancelled';
  reason?: string;
  detail?: string;
  /** Fires planned (from the scheduled ack) and reported (distinct indices). */
  expectedFires?: number;
  fires: number;
  edges: number;
  latenessMaxNs?: number;
  /** Largest error bound a report declared, ns. */
  errorBoundMaxNs?: number;
  /** Simulated actuators: largest |true − planned|, ns. */
  trueErrorMaxNs?: number;
  /** Cameras (#11 reports): largest |exposure error|, ns. */
  exposureErrorNs?: number;
  error?: string;
}

interface Entry extends LastTrigger {
  indices: Set<number>;
  reportIds: Set<string>;
}

function nsNumber(v: unknown): number | undefined {
  if (typeof v === 'number' && Number.isFinite(v)) return v;
  if (typeof v === 'string' && /^-?\d{1,19}$/.test(v)) return Number(v);
  return undefined;
}

/** Triggers remembered per node: a train still reporting must not take "last" back from a newer trigger. */
const PER_NODE = 4;

export class NodeTriggerLog {
  /** Per node, its recent triggers in the order they were first heard of (the newest last). */
  private readonly byNode = new Map<string, Map<string, Entry>>();

  constructor(private readonly topics: Topics) {}

  private entry(node: string, triggerId: string): Entry {
    let recent = this.byNode.get(node);
    if (!recent) {
      recent = new Map();
      this.byNode.set(node, recent);
      if (this.byNode.size > MAX_NODES) this.byNode.delete(this.byNode.keys().next().value!);
    }
    let e = recent.get(triggerId);
    if (!e) {
      e = { triggerId, fires: 0, edges: 0, indices: new Set(), reportIds: new Set() };
      recent.set(triggerId, e);
      if (recent.size > PER_NODE) recent.delete(recent.keys().next().value!);
    }
    return e;
  }

  /** Feeds one MQTT message; ignores what is not an ack or a report. */
  handle(topic: string, payload: Buffer): void {
    const where = this.topics.parseNodeTopic(topic);
    if (!where) return;
    if (where.channel === 'ack') {
      const parsed = parseMessage(payload, decodeAck);
      if (!parsed.ok || !parsed.value.triggerId || parsed.value.node !== where.nodeId) return;
      const a = parsed.value;
      // A 'replayed' answer to a redelivery says nothing new about a trigger this node already took.
      if (a.reason === 'replayed' && this.byNode.get(a.node)?.has(a.triggerId!)) return;
      const e = this.entry(a.node, a.triggerId!);
      e.ack = a.status;
      if (a.reason) e.reason = a.reason;
      if (a.detail) e.detail = a.detail;
      if (a.status === 'scheduled' && a.fires !== undefined) e.expectedFires = a.fires;
    } else if (where.channel === 'report') {
      const parsed = parseMessage(payload, decodeReport);
      if (!parsed.ok || parsed.value.node !== where.nodeId) return;
      const r = parsed.value;
      const e = this.entry(r.node, r.triggerId);
      if (e.reportIds.has(r.id)) return; // at least once: redeliveries count once
      if (e.reportIds.size >= MAX_REPORT_IDS) e.reportIds.clear();
      e.reportIds.add(r.id);
      e.indices.add(r.index);
      e.fires = e.indices.size;
      e.edges++;
      e.latenessMaxNs = Math.max(e.latenessMaxNs ?? 0, Math.abs(r.latenessNs));
      e.errorBoundMaxNs = Math.max(e.errorBoundMaxNs ?? 0, r.errorBoundNs);
      if (r.trueNs !== undefined) e.trueErrorMaxNs = Math.max(e.trueErrorMaxNs ?? 0, Math.abs(Number(r.trueNs - r.plannedNs)));
      const exposure = nsNumber(parsed.raw?.exposureErrorNs);
      if (exposure !== undefined) e.exposureErrorNs = Math.max(e.exposureErrorNs ?? 0, Math.abs(exposure));
      if (r.error) e.error = r.error;
    }
  }

  lastFor(node: string): LastTrigger | undefined {
    const recent = this.byNode.get(node);
    const e = recent ? [...recent.values()].pop() : undefined;
    if (!e) return undefined;
    const { indices: _i, reportIds: _r, ...rest } = e;
    return rest;
  }
}
