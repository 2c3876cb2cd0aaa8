/**
 * How close the fires were: per node (offset found, error bound, lateness)
 * and per edge across nodes (the spread of reported instants, and of true
 * instants when the actuators are simulated and know the truth).
 */
import type { AckMessage, ReportMessage } from './messages.js';
import { formatNs } from './readiness.js';

export interface NodeRow {
  node: string;
  ack: 'scheduled' | 'rejected' | 'cancelled' | 'none';
  reason?: string;
  detail?: string;
  /** UTC − raw the node found (its clock's offset), ns. */
  offsetNs?: number;
  /** Error bound predicted at the first instant (from the ack), ns. */
  errorBoundNs?: number;
  /** Trigger published → ack received, ms (on the sender's clock). */
  ackLatencyMs?: number;
  /** Fires reported (distinct indices: a blink pulse is one fire with two edges). */
  fires: number;
  /** Report messages (edges) received. */
  reports: number;
  expectedFires?: number;
  latenessMaxNs?: number;
  latenessP50Ns?: number;
  /** Simulated: max |true instant − planned| over this node's fires. */
  trueErrorMaxNs?: number;
  /** Camera: exposure mid-point − instant of its photo (the last, for several), ns. */
  exposureErrorNs?: number;
  /** Camera: why a photo's exposure is unknown. */
  exposureUnknown?: string;
}

export interface EdgeRow {
  index: number;
  level?: 0 | 1;
  plannedNs: string;
  nodes: number;
  /** max − min of the reported (disciplined) actual instants. */
  spreadNs: number;
  /** max − min of the true instants (simulated actuators only). */
  trueSpreadNs?: number;
  /**
   * max − min of the true instants at which each node's disciplined clock
   * read the planned instant (simulated clocks only): how well the clocks
   * agreed, without the fire latency. Nodes that each own a CPU see this
   * plus their own (single-node) fire latency; co-located processes see
   * trueSpreadNs.
   */
  clockSpreadNs?: number;
}

export interface Quantiles {
  p50: number;
  p99: number;
  max: number;
  n: number;
}

export function quantiles(values: number[]): Quantiles | undefined {
  if (values.length === 0) return undefined;
  const sorted = [...values].sort((a, b) => a - b);
  const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))]!;
  return { p50: at(0.5), p99: at(0.99), max: sorted[sorted.length - 1]!, n: sorted.length };
}

function range(values: bigint[]): number {
  let min = values[0]!;
  let max = values[0]!;
  for (const v of values) {
    if (v < min) min = v;
    if (v > max) max = v;
  }
  return Number(max - min);
}

export function nodeRows(targets: string[], acks: Map<string, AckMessage>, ackLatencyMs: Map<string, number>, reports: ReportMessage[]): NodeRow[] {
  // Grouped once: filtering all reports per target was O(nodes × reports), minutes at a thousand nodes.
  const byNode = new Map<string, ReportMessage[]>();
  for (const r of reports) {
    let list = byNode.get(r.node);
    if (!list) byNode.set(r.node, (list = []));
    list.push(r);
  }
  return targets.map((node) => {
    const ack = acks.get(node);
    const mine = byNode.get(node) ?? [];
    const row: NodeRow = { node, ack: ack?.status ?? 'none', fires: new Set(mine.map((r) => r.index)).size, reports: mine.length };
    if (ack?.reason) row.reason = ack.reason;
    if (ack?.detail && ack.status !== 'scheduled') row.detail = ack.detail;
    if (ack?.offsetNs !== undefined) row.offsetNs = Number(ack.offsetNs);
    if (ack?.errorBoundNs !== undefined) row.errorBoundNs = ack.errorBoundNs;
    if (ackLatencyMs.has(node)) row.ackLatencyMs = ackLatencyMs.get(node)!;
    if (ack?.fires !== undefined && ack.status === 'scheduled') row.expectedFires = ack.fires;
    const lateness = quantiles(mine.map((r) => Math.abs(r.latenessNs)));
    if (lateness) {
      row.latenessMaxNs = lateness.max;
      row.latenessP50Ns = lateness.p50;
    }
    const truth = mine.filter((r) => r.trueNs !== undefined).map((r) => Math.abs(Number(r.trueNs! - r.plannedNs)));
    if (truth.length) row.trueErrorMaxNs = truth.reduce((a, b) => (b > a ? b : a), 0);
    const photo = [...mine].reverse().find((r) => r.exposureErrorNs !== undefined || r.exposureUnknown !== undefined);
    if (photo?.exposureErrorNs !== undefined) row.exposureErrorNs = photo.exposureErrorNs;
    else if (photo?.exposureUnknown !== undefined) row.exposureUnknown = photo.exposureUnknown;
    if (row.offsetNs === undefined && mine[0]) row.offsetNs = Number(mine[0].offsetNs);
    return row;
  });
}

/** One row per edge (index, level) reported by at least two nodes. */
export function edgeRows(reports: ReportMessage[]): EdgeRow[] {
  const groups = new Map<string, ReportMessage[]>();
  for (const r of reports) {
    const key = `${r.index}:${r.level ?? ''}`;
    let list = groups.get(key);
    if (!list) groups.set(key, (list = []));
    list.push(r);
  }
  const rows: EdgeRow[] = [];
  for (const list of groups.values()) {
    const first = list[0]!;
    const row: EdgeRow = { index: first.index, plannedNs: first.plannedNs.toString(), nodes: list.length, spreadNs: range(list.map((r) => r.actualNs)) };
    if (first.level !== undefined) row.level = first.level;
    const trues = list.filter((r) => r.trueNs !== undefined).map((r) => r.trueNs!);
    if (trues.length === list.length && trues.length > 0) row.trueSpreadNs = range(trues);
    const clocks = list.filter((r) => r.clockTrueNs !== undefined).map((r) => r.clockTrueNs!);
    if (clocks.length === list.length && clocks.length > 0) row.clockSpreadNs = range(clocks);
    rows.push(row);
  }
  return rows.sort((a, b) => a.index - b.index || (b.level ?? 0) - (a.level ?? 0));
}

function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd();
  return [line(header), line(widths.map((w) => '-'.repeat(w))), ...rows.map(line)].join('\n');
}

const opt = (ns: number | undefined) => (ns === undefined ? '-' : formatNs(ns));

/**
 * A table of a thousand nodes is read by nobody: beyond this many rows the
 * table keeps the nodes that did not do what was asked (no ack, rejected,
 * fires missing), then the latest to ack, and says what it left out.
 */
export const MAX_NODE_TABLE_ROWS = 40;

function rowIsWell(r: NodeRow): boolean {
  return r.ack === 'scheduled' && (r.expectedFires === undefined || r.fires >= r.expectedFires);
}

export function formatNodeTable(all: NodeRow[], maxRows = MAX_NODE_TABLE_ROWS): string {
  let rows = all;
  let omitted = '';
  if (all.length > maxRows) {
    const bad = all.filter((r) => !rowIsWell(r));
    const well = all.filter(rowIsWell).sort((a, b) => (b.ackLatencyMs ?? 0) - (a.ackLatencyMs ?? 0));
    const kept = new Set([...bad, ...well].slice(0, maxRows));
    rows = all.filter((r) => kept.has(r));
    const left = all.length - rows.length;
    const leftBad = bad.length - bad.filter((r) => kept.has(r)).length;
    const acks = quantiles(all.filter((r) => r.ackLatencyMs !== undefined).map((r) => r.ackLatencyMs!));
    omitted =
      `\n… ${left} more node(s) not shown (${leftBad ? `${leftBad} of them with problems; --json has every row` : 'all scheduled and fired as asked'}); ` +
      `shown: problems first, then the latest acks` +
      (acks ? `; ack ms over all ${acks.n}: p50 ${acks.p50.toFixed(1)}, p99 ${acks.p99.toFixed(1)}, max ${acks.max.toFixed(1)}` : '');
  }
  const simulated = rows.some((r) => r.trueErrorMaxNs !== undefined);
  const photos = rows.some((r) => r.exposureErrorNs !== undefined || r.exposureUnknown !== undefined);
  const header = ['node', 'ack', 'offset found', 'error bound', 'ack ms', 'fires', 'lateness p50', 'lateness max', ...(simulated ? ['true error max'] : []), ...(photos ? ['exposure error'] : [])];
  return table(
    header,
    rows.map((r) => [
      r.node,
      r.ack === 'rejected' ? `rejected: ${r.reason}` : r.ack,
      r.offsetNs === undefined ? '-' : `${r.offsetNs >= 0 ? '+' : ''}${formatNs(r.offsetNs)}`,
      opt(r.errorBoundNs),
      r.ackLatencyMs === undefined ? '-' : r.ackLatencyMs.toFixed(1),
      r.expectedFires ? `${r.fires}/${r.expectedFires}` : String(r.fires),
      opt(r.latenessP50Ns),
      opt(r.latenessMaxNs),
      ...(simulated ? [opt(r.trueErrorMaxNs)] : []),
      ...(photos ? [r.exposureErrorNs !== undefined ? `${r.exposureErrorNs >= 0 ? '+' : ''}${formatNs(r.exposureErrorNs)}` : r.exposureUnknown !== undefined ? 'unknown' : '-'] : []),
    ]),
  ) + omitted;
}

/** Column titles shared by the trigger, demo and benchmark tables: the two simulated spreads are different things. */
export const TRUE_SPREAD_LABEL = 'true fire spread';
export const CLOCK_SPREAD_LABEL = 'clock agreement spread';

export function formatEdgeTable(rows: EdgeRow[]): string {
  const simulated = rows.some((r) => r.trueSpreadNs !== undefined);
  const clocks = rows.some((r) => r.clockSpreadNs !== undefined);
  return table(
    ['fire', 'edge', 'nodes', 'spread (reported)', ...(simulated ? [TRUE_SPREAD_LABEL] : []), ...(clocks ? [CLOCK_SPREAD_LABEL] : [])],
    rows.map((r) => [
      String(r.index),
      r.level === undefined ? '-' : r.level ? 'on' : 'off',
      String(r.nodes),
      formatNs(r.spreadNs),
      ...(simulated ? [opt(r.trueSpreadNs)] : []),
      ...(clocks ? [opt(r.clockSpreadNs)] : []),
    ]),
  );
}
