/**
 * Who is there and how well synchronized: the hub's view of the nodes, built
 * from their retained state messages (and last wills). A hub or a one-shot
 * `lockstep trigger` started at any time learns the whole group at once,
 * because the broker replays retained states on subscription.
 */
import { decodeState, parseMessage, type StateMessage } from './messages.js';
import type { Topics } from './topics.js';

export interface NodeView {
  id: string;
  status: 'online' | 'offline';
  state: StateMessage;
  /** Local monotonic ms when the last state arrived (its freshness). */
  receivedMs: number;
}

/** A node that says nothing about its period published every second (the fixed period before statePeriodMs). */
export const LEGACY_STATE_PERIOD_MS = 1_000;
/**
 * A node is gone after this many of its own state periods without a state:
 * one lost or late heartbeat is not an absence; at the default 5 s period
 * this is 15 s, when the broker sends the last will of a silent client anyway.
 */
export const STALE_AFTER_PERIODS = 3;

/** The longest a node says it stays silent, ms. */
export function statePeriodMs(view: NodeView): number {
  return view.state.statePeriodMs ?? LEGACY_STATE_PERIOD_MS;
}

/**
 * The node's error bound extrapolated to now: what it published plus its
 * growth over the state's age (states go out on change and heartbeat, not
 * every second). null when unbounded.
 */
export function errorBoundNow(view: NodeView, ageMs: number): number | null {
  const s = view.state;
  if (s.errorBoundNs === null || s.errorBoundNs === undefined) return null;
  return s.errorBoundNs + Math.max(0, ageMs) * 1e6 * (s.errorBoundGrowthPpm ?? 0) * 1e-6;
}

/** Built once: localeCompare with options builds a collator per call, milliseconds per sort of a thousand ids. */
const NODE_ORDER = new Intl.Collator(undefined, { numeric: true });

function monotonicMs(): number {
  return Number(process.hrtime.bigint() / 1_000_000n);
}

export class NodeDirectory {
  private readonly nodes = new Map<string, NodeView>();
  private readonly listeners = new Set<(view: NodeView) => void>();
  malformed = 0;

  /**
   * `nowNs`: this side's UTC, to age a state by the `updatedNs` it carries.
   * A retained state arrives the moment we subscribe however old it is: a
   * node that lost power is "online" until the broker's keep-alive gives up
   * on it (15 s). Synchronized clocks agree to far better than the gate's
   * age limit, so the node's own timestamp tells its age. Returns undefined
   * while this side's clock is not synchronized (arrival time alone then).
   */
  constructor(
    private readonly topics: Topics,
    private readonly nowNs?: () => bigint | undefined,
  ) {}

  /** Feeds one MQTT message; returns true if it was a node state. */
  handle(topic: string, payload: Buffer): boolean {
    const where = this.topics.parseNodeTopic(topic);
    if (!where || where.channel !== 'state') return false;
    if (payload.length === 0) {
      this.nodes.delete(where.nodeId); // a cleared retained state: the node was removed
      return true;
    }
    const parsed = parseMessage(payload, decodeState);
    if (!parsed.ok || parsed.value.node !== where.nodeId) {
      this.malformed++;
      return true;
    }
    const view: NodeView = { id: where.nodeId, status: parsed.value.status, state: parsed.value, receivedMs: monotonicMs() };
    this.nodes.set(where.nodeId, view);
    for (const l of [...this.listeners]) l(view);
    return true;
  }

  get(id: string): NodeView | undefined {
    return this.nodes.get(id);
  }

  list(): NodeView[] {
    return [...this.nodes.values()].sort((a, b) => NODE_ORDER.compare(a.id, b.id));
  }

  online(): string[] {
    const ids: string[] = [];
    for (const n of this.nodes.values()) if (n.status === 'online') ids.push(n.id);
    return ids.sort(NODE_ORDER.compare);
  }

  get size(): number {
    return this.nodes.size;
  }

  /** Since the state was received, or since the node wrote it when both clocks are synchronized (the older of the two). */
  ageMs(view: NodeView): number {
    const sinceReceived = monotonicMs() - view.receivedMs;
    const written = view.state.updatedNs;
    const now = this.nowNs?.();
    if (now === undefined || written === undefined || !view.state.synchronized) return sinceReceived;
    return Math.max(sinceReceived, Number(now - written) / 1e6);
  }

  /** No state for STALE_AFTER_PERIODS of the node's own period (it may be gone without its will yet). */
  isStale(view: NodeView): boolean {
    return this.ageMs(view) > STALE_AFTER_PERIODS * statePeriodMs(view);
  }

  onChange(listener: (view: NodeView) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
}
