/**
 * The readiness gate: a trigger goes out only when every target node says,
 * in a fresh state message, that its clock's error bound is under the
 * threshold. Otherwise "fire together" is a hope, not a measurement.
 * All targets are measured by one rule: their whole bound, or, when they all
 * follow the same NTP server, their bound beyond that server's own.
 */
import { errorBoundNow, statePeriodMs, STALE_AFTER_PERIODS, type NodeDirectory, type NodeView } from './presence.js';

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
  /**
   * A state older than this does not count (the node may be gone without its
   * will yet); never less than STALE_AFTER_PERIODS of the node's own state period.
   */
  maxStateAgeMs: number;
  /** Without a node list: wait until at least this many nodes are online (a group still connecting is not all of it). */
  minNodes?: number;
}

/** While the gate waits, how often it says how far it got (a thousand nodes take a while). */
const WAITING_REPORT_MS = 10_000;
/** A message naming a thousand laggards is read by nobody (the error's `laggards` keeps them all). */
const MAX_LAGGARDS_NAMED = 20;

export class NotReadyError extends Error {
  constructor(readonly laggards: Laggard[], waitedMs: number) {
    const named = laggards.slice(0, MAX_LAGGARDS_NAMED).map((l) => `${l.node} (${l.why})`).join(', ');
    const more = laggards.length > MAX_LAGGARDS_NAMED ? ` and ${laggards.length - MAX_LAGGARDS_NAMED} more` : '';
    super(`not ready after ${(waitedMs / 1000).toFixed(1)} s: ${named}${more}`);
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

/**
 * The source a node's state says it follows (its selected NTP server, as it
 * addresses it), with the part of its bound that server declared about
 * itself; undefined for a node on its system clock or without that figure.
 */
function sharedSource(view: NodeView | undefined): { address: string; distanceNs: number } | undefined {
  const s = view?.state;
  if (!s || view!.status !== 'online' || s.sourceDistanceNs === undefined) return undefined;
  const selected = s.sources?.find((x) => x.state === 'selected');
  return selected ? { address: selected.address, distanceNs: s.sourceDistanceNs } : undefined;
}

/**
 * Nodes that all follow the same server inherit its error alike: it moves
 * them together and cannot make them disagree. The gate is about agreement,
 * so when every target names the same selected server, each bound is judged
 * without that shared part (a hub whose own clock is only known to 5 ms does
 * not hold back nodes that agree with it to 200 µs). Otherwise (mixed
 * sources, system-clock nodes) every bound is judged whole: one rule for all
 * targets, never a mix.
 */
export function sharedSourceAddress(dir: NodeDirectory, targets: string[]): string | undefined {
  let address: string | undefined;
  for (const id of targets) {
    const src = sharedSource(dir.get(id));
    if (!src || (address !== undefined && src.address !== address)) return undefined;
    address = src.address;
  }
  return address;
}

function judge(dir: NodeDirectory, id: string, view: NodeView | undefined, o: GateOptions, relativeTo: string | undefined): Laggard | undefined {
  if (!view) return { node: id, why: 'never seen (no state message)' };
  if (view.status === 'offline') return { node: id, why: 'offline' };
  const age = dir.ageMs(view);
  if (age > Math.max(o.maxStateAgeMs, STALE_AFTER_PERIODS * statePeriodMs(view))) return { node: id, why: `no state for ${(age / 1000).toFixed(1)} s` };
  const s = view.state;
  if (!s.synchronized) return { node: id, why: 'not synchronized', errorBoundNs: null };
  // The bound as it is now, not as it was when the node last spoke.
  const whole = errorBoundNow(view, age);
  if (whole === null || whole === undefined) return { node: id, why: 'no error bound', errorBoundNs: null };
  const bound = relativeTo !== undefined ? Math.max(0, whole - (s.sourceDistanceNs ?? 0)) : whole;
  if (bound > o.thresholdNs) {
    const what = relativeTo !== undefined ? `error bound ${formatNs(bound)} beyond the shared server ${relativeTo}` : `error bound ${formatNs(bound)}`;
    return { node: id, why: `${what} > ${formatNs(o.thresholdNs)}`, errorBoundNs: bound };
  }
  return undefined;
}

/** The targets and who holds them up, right now (and the shared server the bounds were judged against, if any). */
export function readiness(dir: NodeDirectory, o: GateOptions): { targets: string[]; laggards: Laggard[]; relativeTo?: string } {
  const targets = o.nodes ?? dir.online();
  const relativeTo = sharedSourceAddress(dir, targets);
  const laggards: Laggard[] = [];
  for (const id of targets) {
    const l = judge(dir, id, dir.get(id), o, relativeTo);
    if (l) laggards.push(l);
  }
  return relativeTo !== undefined ? { targets, laggards, relativeTo } : { targets, laggards };
}

/** Waits until every target is ready; throws NotReadyError naming the laggards at the timeout. */
export async function waitUntilReady(
  dir: NodeDirectory,
  o: GateOptions & { timeoutMs: number; pollMs?: number; onWaiting?: (line: string) => void },
): Promise<string[]> {
  const start = Date.now();
  let told = start;
  for (;;) {
    const { targets, laggards } = readiness(dir, o);
    if (targets.length >= Math.max(1, o.minNodes ?? 1) && laggards.length === 0) return targets;
    const waited = Date.now() - start;
    if (o.onWaiting && Date.now() - told >= WAITING_REPORT_MS) {
      told = Date.now();
      const first = laggards[0];
      o.onWaiting(`${targets.length - laggards.length} of ${Math.max(targets.length, o.minNodes ?? 0)} node(s) ready after ${(waited / 1000).toFixed(0)} s${first ? `; waiting for ${laggards.length}, e.g. ${first.node} (${first.why})` : ''}`);
    }
    if (waited >= o.timeoutMs) {
      const few = targets.length < (o.minNodes ?? 1) ? [{ node: '(group)', why: `${targets.length} node(s) online, waiting for ${o.minNodes}` }] : [];
      throw new NotReadyError(targets.length === 0 ? [{ node: '(none)', why: 'no node online in this group' }] : [...few, ...laggards], waited);
    }
    await new Promise((r) => setTimeout(r, o.pollMs ?? 100));
  }
}
