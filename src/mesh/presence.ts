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

function monotonicMs(): number {
  return Number(process.hrtime.bigint() / 1_000_000n);
}

export class NodeDirectory {
  private readonly nodes = new Map<string, NodeView>();
  private readonly listeners = new Set<(view: NodeView) => void>();
  malformed = 0;

  constructor(private readonly topics: Topics) {}

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
    return [...this.nodes.values()].sort((a, b) => a.id.localeCompare(b.id, undefined, { numeric: true }));
  }

  online(): string[] {
    return this.list().filter((n) => n.status === 'online').map((n) => n.id);
  }

  ageMs(view: NodeView): number {
    return monotonicMs() - view.receivedMs;
  }

  onChange(listener: (view: NodeView) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
}
