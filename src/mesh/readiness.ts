/**
 * The readiness gate: a trigger goes out only when every target node says,
 * in a fresh state message, that its clock's error bound is under the
 * threshold. Otherwise "fire together" is a hope, not a measurement.
 */
import type { NodeDirectory, NodeView } from './presence.js';

export interface Laggard {
  node: string;
  /** One line: "offline", "not synchronized", "error bound 3.2 ms > 1 ms", "no state for 12 s". */
  why: string;
  errorBoundNs?: number | null;
}

export interface GateOptions {
  /** Node ids; undefined: every node online in the directory. */
  nodes?: string[];
  thresholdNs: number;
  /** A state older than this does not count (the node may be gone without its will yet). */
  maxStateAgeMs: number;
}

export class NotReadyError extends Error {
  constructor(readonly laggards: Laggard[], waitedMs: number) {
    super(`not ready after ${(waitedMs / 1000).toFixed(1)} s: ${laggards.map((l) => `${l.node} (${l.why})`).join(', ')}`);
    this.name = 'NotReadyError';
  }
}

export function formatNs(ns: number): string {
  const abs = Math.abs(ns);
  if (abs < 1e3) return `${ns.toFixed(0)} ns`;
  if (abs < 1e6) return `${(ns / 1e3).toFixed(1)} µs`;
  if (abs < 1e9) return `${(ns / 1e6).toFixed(2)} ms`;
  return `${(ns / 1e9).toFixed(3)} s`;
}

function judge(dir: NodeDirectory, id: string, view: NodeView | undefined, o: GateOptions): Laggard | undefined {
  if (!view) return { node: id, why: 'never seen (no state message)' };
  if (view.status === 'offline') return { node: id, why: 'offline' };
  const age = dir.ageMs(view);
  if (age > o.maxStateAgeMs) return { node: id, why: `no state for ${(age / 1000).toFixed(1)} s` };
  const s = view.state;
  if (!s.synchronized) return { node: id, why: 'not synchronized', errorBoundNs: null };
  const bound = s.errorBoundNs;
  if (bound === null || bound === undefined) return { node: id, why: 'no error bound', errorBoundNs: null };
  if (bound > o.thresholdNs) return { node: id, why: `error bound ${formatNs(bound)} > ${formatNs(o.thresholdNs)}`, errorBoundNs: bound };
  return undefined;
}

/** The targets and who holds them up, right now. */
export function readiness(dir: NodeDirectory, o: GateOptions): { targets: string[]; laggards: Laggard[] } {
  const targets = o.nodes ?? dir.online();
  const laggards: Laggard[] = [];
  for (const id of targets) {
    const l = judge(dir, id, dir.get(id), o);
    if (l) laggards.push(l);
  }
  return { targets, laggards };
}

/** Waits until every target is ready; throws NotReadyError naming the laggards at the timeout. */
export async function waitUntilReady(dir: NodeDirectory, o: GateOptions & { timeoutMs: number; pollMs?: number }): Promise<string[]> {
  const start = Date.now();
  for (;;) {
    const { targets, laggards } = readiness(dir, o);
    if (targets.length > 0 && laggards.length === 0) return targets;
    const waited = Date.now() - start;
    if (waited >= o.timeoutMs) {
      throw new NotReadyError(targets.length === 0 ? [{ node: '(none)', why: 'no node online in this group' }] : laggards, waited);
    }
    await new Promise((r) => setTimeout(r, o.pollMs ?? 100));
  }
}
