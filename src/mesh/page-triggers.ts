/**
 * Triggers started from the hub's page: each runs through the hub's
 * Coordinator (the gate, the instant, the signed publish, acks, reports:
 * exactly what `lockstep trigger` does) and stays on the page as a record
 * that goes waiting → pending → fired (or not-ready, incomplete, cancelled,
 * failed). A record is state, not a toast: it stays until newer ones push it
 * out of a bounded list.
 */
import type { ActionSpec } from '../schedule/actions.js';
import { Coordinator, resultJson, type TriggerResult } from './coordinator.js';
import { NotReadyError, type Laggard } from './readiness.js';
import { nodeRows, edgeRows, type NodeRow, type EdgeRow } from './spread.js';
import { newMessageId, type AckMessage, type ReportMessage } from './messages.js';

/** Records kept (the newest): enough for a show's worth of cues on one page. */
export const MAX_RECORDS = 50;
/** Triggers in flight at once: a stuck gate must not pile up coordinators waiting for it. */
export const MAX_RUNNING = 4;

export type TriggerStatus = 'waiting' | 'pending' | 'fired' | 'incomplete' | 'not-ready' | 'failed' | 'cancelled';

export interface PageTriggerRequest {
  kind: 'trigger' | 'identify';
  action: ActionSpec;
  nodes?: string[];
  readyWithinNs: number;
  readyTimeoutMs: number;
  inNs?: bigint;
}

interface Record_ {
  id: string;
  kind: 'trigger' | 'identify';
  status: TriggerStatus;
  action: ActionSpec;
  nodes?: string[];
  readyWithinNs: number;
  createdNs: string;
  triggerId?: string;
  startNs?: string;
  leadMs?: number;
  targets?: string[];
  laggards?: Laggard[];
  error?: string;
  result?: TriggerResult;
  cancelAnswers?: { node: string; status: string; reason?: string }[];
  /** The scheduled acks, kept: a cancel replaces the coordinator's view of the answers. */
  acks?: AckMessage[];
}

export interface TriggerSummary {
  id: string;
  kind: 'trigger' | 'identify';
  status: TriggerStatus;
  action: ActionSpec;
  nodes?: string[];
  readyWithinNs: number;
  createdNs: string;
  triggerId?: string;
  startNs?: string;
  leadMs?: number;
  targets?: string[];
  acked: number;
  fired: number;
  expected?: number;
  spreadMaxNs?: number;
  error?: string;
}

export interface TriggerDetail extends TriggerSummary {
  laggards?: Laggard[];
  rows: NodeRow[];
  edges: EdgeRow[];
  cancelAnswers?: { node: string; status: string; reason?: string }[];
  /** For the page's plots: per edge the spread, per node its lateness at each edge (ns; null: no report). */
  plot: { edges: string[]; spreadNs: number[]; trueSpreadNs: (number | null)[]; lateness: Record<string, (number | null)[]> };
  result?: Record<string, unknown>;
}

export class TriggerNotFound extends Error {}
export class TooManyRunning extends Error {}
export class NotCancellable extends Error {}

export class PageTriggers {
  private readonly records = new Map<string, Record_>();

  constructor(
    private readonly coordinator: Coordinator,
    private readonly onChange: (id: string) => void = () => undefined,
  ) {}

  running(): number {
    return [...this.records.values()].filter((r) => r.status === 'waiting' || r.status === 'pending').length;
  }

  start(request: PageTriggerRequest, nowNs: bigint): TriggerSummary {
    if (this.running() >= MAX_RUNNING) throw new TooManyRunning(`${MAX_RUNNING} triggers are already waiting or pending; wait for one to finish or cancel it`);
    const rec: Record_ = { id: newMessageId('p'), kind: request.kind, status: 'waiting', action: request.action, readyWithinNs: request.readyWithinNs, createdNs: nowNs.toString() };
    if (request.nodes) rec.nodes = request.nodes;
    this.records.set(rec.id, rec);
    while (this.records.size > MAX_RECORDS) {
      const oldest = [...this.records.values()].find((r) => r.status !== 'waiting' && r.status !== 'pending');
      if (!oldest) break;
      this.records.delete(oldest.id);
    }
    void this.run(rec, request);
    return this.summary(rec);
  }

  private async run(rec: Record_, request: PageTriggerRequest): Promise<void> {
    try {
      const result = await this.coordinator.run({
        action: request.action,
        nodes: request.nodes,
        readyWithinNs: request.readyWithinNs,
        readyTimeoutMs: request.readyTimeoutMs,
        ...(request.inNs !== undefined ? { inNs: request.inNs } : {}),
        onPublished: (p) => {
          rec.triggerId = p.triggerId;
          rec.startNs = p.startNs.toString();
          rec.leadMs = p.leadMs;
          rec.targets = p.targets;
          if (rec.status === 'waiting') rec.status = 'pending';
          this.onChange(rec.id);
        },
      });
      rec.result = result;
      const complete = result.rows.every((r) => r.ack === 'scheduled' && (r.expectedFires === undefined || r.fires >= r.expectedFires));
      if (rec.status !== 'cancelled') rec.status = complete ? 'fired' : 'incomplete';
      if (rec.triggerId) this.coordinator.forget(rec.triggerId);
    } catch (error) {
      if (error instanceof NotReadyError) {
        rec.status = 'not-ready';
        rec.laggards = error.laggards;
        rec.error = error.message;
      } else {
        rec.status = 'failed';
        rec.error = (error as Error).message;
      }
    }
    this.onChange(rec.id);
  }

  /** Cancels what is left of a pending trigger on its nodes. */
  async cancel(id: string): Promise<TriggerDetail> {
    const rec = this.find(id);
    if (!rec.triggerId || rec.status !== 'pending') throw new NotCancellable(`trigger ${id} is ${rec.status}${rec.triggerId ? '' : ' (not published yet)'}: only a pending one can be cancelled`);
    rec.acks = this.coordinator.progressOf(rec.triggerId)?.acks;
    const answers = await this.coordinator.cancel(rec.triggerId, rec.targets);
    rec.cancelAnswers = [...answers.values()].map((a) => ({ node: a.node, status: a.status, ...(a.reason ? { reason: a.reason } : {}) }));
    if (rec.cancelAnswers.some((a) => a.status === 'cancelled')) rec.status = 'cancelled';
    this.onChange(rec.id);
    return this.detail(rec.id);
  }

  private find(id: string): Record_ {
    const rec = this.records.get(id) ?? [...this.records.values()].find((r) => r.triggerId === id);
    if (!rec) throw new TriggerNotFound(`no trigger '${id}' on this hub (the page keeps the last ${MAX_RECORDS})`);
    return rec;
  }

  private live(rec: Record_): { acks: Map<string, AckMessage>; reports: ReportMessage[] } {
    if (rec.result) return { acks: new Map(), reports: rec.result.reports };
    const p = rec.triggerId ? this.coordinator.progressOf(rec.triggerId) : undefined;
    const acks = new Map<string, AckMessage>();
    for (const a of rec.acks ?? p?.acks ?? []) acks.set(a.node, a);
    return { acks, reports: p?.reports ?? [] };
  }

  private rowsOf(rec: Record_): { rows: NodeRow[]; edges: EdgeRow[]; reports: ReportMessage[] } {
    if (rec.result) return { rows: rec.result.rows, edges: rec.result.edges, reports: rec.result.reports };
    const { acks, reports } = this.live(rec);
    return { rows: nodeRows(rec.targets ?? [], acks, new Map(), reports), edges: edgeRows(reports), reports };
  }

  summary(rec: Record_): TriggerSummary {
    const { rows, edges } = this.rowsOf(rec);
    const s: TriggerSummary = {
      id: rec.id,
      kind: rec.kind,
      status: rec.status,
      action: rec.action,
      readyWithinNs: rec.readyWithinNs,
      createdNs: rec.createdNs,
      acked: rows.filter((r) => r.ack === 'scheduled').length,
      fired: rows.filter((r) => r.expectedFires !== undefined && r.fires >= r.expectedFires).length,
    };
    for (const k of ['nodes', 'triggerId', 'startNs', 'leadMs', 'targets', 'error'] as const) {
      if (rec[k] !== undefined) (s as unknown as Record<string, unknown>)[k] = rec[k];
    }
    if (rec.targets) s.expected = rec.targets.length;
    const multi = edges.filter((e) => e.nodes > 1);
    if (multi.length) s.spreadMaxNs = Math.max(...multi.map((e) => e.spreadNs));
    return s;
  }

  list(): TriggerSummary[] {
    return [...this.records.values()].reverse().map((r) => this.summary(r));
  }

  detail(id: string): TriggerDetail {
    const rec = this.find(id);
    const { rows, edges, reports } = this.rowsOf(rec);
    const labels = edges.map((e) => `${e.index + 1}${e.level === undefined ? '' : e.level ? ' on' : ' off'}`);
    const key = (index: number, level: number | undefined) => `${index}:${level ?? ''}`;
    const column = new Map(edges.map((e, i) => [key(e.index, e.level), i]));
    const lateness: Record<string, (number | null)[]> = {};
    for (const node of rec.targets ?? []) lateness[node] = new Array<number | null>(edges.length).fill(null);
    for (const r of reports) {
      const i = column.get(key(r.index, r.level));
      if (i !== undefined && lateness[r.node]) lateness[r.node]![i] = r.latenessNs;
    }
    const d: TriggerDetail = {
      ...this.summary(rec),
      rows,
      edges,
      plot: { edges: labels, spreadNs: edges.map((e) => e.spreadNs), trueSpreadNs: edges.map((e) => e.trueSpreadNs ?? null), lateness },
    };
    if (rec.laggards) d.laggards = rec.laggards;
    if (rec.cancelAnswers) d.cancelAnswers = rec.cancelAnswers;
    if (rec.result) d.result = resultJson(rec.result);
    return d;
  }
}
