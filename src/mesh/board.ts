/**
 * The hub's view of the group for its page: one row per node (presence,
 * clock, NTP source, version, triggers, warnings), a header (the hub's own
 * time, the broker, counts, the agreement now) and a bounded history of
 * each node's offset to the hub and of the agreement spread. Everything is
 * computed from the directory the readiness gate uses, so the page and the
 * gate can never disagree about who is ready.
 */
import type { Timescale } from '../time/timescale.js';
import type { NodeDirectory, NodeView } from './presence.js';
import { readiness } from './readiness.js';
import type { StateMessage } from './messages.js';
import type { NodeTriggerLog, LastTrigger } from './trigger-log.js';

/**
 * A node is offline after this many state periods without a state: one lost
 * message (Wi-Fi) must not mark a headset offline, three in a row mean it is
 * gone long before the broker's keep-alive sends its last will (15 s).
 */
export const OFFLINE_AFTER_PERIODS = 3;
/** The state period assumed for nodes that do not say theirs (DEFAULT_STATE_PERIOD_MS of node.ts). */
export const DEFAULT_NODE_STATE_PERIOD_MS = 1_000;
/** One history point a second per node: what a person reads on a plot of "the last minutes". */
export const HISTORY_SAMPLE_MS = 1_000;
/** 5 minutes of points per node; nodes beyond HISTORY_MAX_NODES have no history (memory stays bounded). */
export const HISTORY_POINTS = 300;
export const HISTORY_MAX_NODES = 256;
/** A node whose last NTP sample is older than this gets a warning (the default max poll is 8 s). */
const STALE_SAMPLE_MS = 60_000;

export interface HubTime {
  synchronized: boolean;
  errorBoundNs: number | null;
  stratum?: number;
  reference?: string;
  unsynchronizedReason?: string;
  served?: number;
  requestsPerSecond?: number;
  rateLimited?: number;
  denied?: number;
}

export interface SourceRow {
  address: string;
  state: string;
  /** The 8-bit reach register, as chrony prints it (octal). */
  reach: string;
  pollSeconds?: number;
  lastSampleAgeMs?: number;
  delayNs: number;
  jitterNs: number;
  lastError?: string;
}

export interface NodeRow {
  id: string;
  online: boolean;
  /** Why offline: the last will (or a clean stop), or missed state periods. */
  offlineWhy?: string;
  lastSeenAgeMs: number;
  statePeriodMs: number;
  synchronized: boolean;
  hubOffsetNs?: number;
  errorBoundNs: number | null;
  frequencyPpm?: number;
  source?: SourceRow;
  version?: string;
  versionMismatch: boolean;
  actions: string[];
  signing?: boolean;
  pending: number;
  rejections: Record<string, number>;
  /** Within the gate threshold right now, or why not. */
  ready: boolean;
  notReadyWhy?: string;
  warnings: string[];
  lastTrigger?: LastTrigger;
}

export interface BoardHeader {
  nowNs: string;
  version: string;
  hub: HubTime;
  broker: { url: string; connected: boolean };
  counts: { nodes: number; online: number; synchronized: number; ready: number };
  gateThresholdNs: number;
  /** Max − min of the online nodes' offsets to the hub, ns; and the worst error bound the gate judges. */
  agreementNs?: number;
  worstBoundNs?: number;
  offlineAfterPeriods: number;
}

export interface BoardOptions {
  directory: NodeDirectory;
  timescale: Timescale;
  version: string;
  gateThresholdNs: number;
  brokerUrl: string;
  brokerConnected: () => boolean;
  hubTime: () => HubTime;
  triggers?: NodeTriggerLog;
}

/** History as uPlot wants it: one x array (s), one y array per series (µs; null: no value then). */
export interface History {
  t: number[];
  nodes: Record<string, (number | null)[]>;
  agreementUs: (number | null)[];
}

function statePeriodMs(state: StateMessage): number {
  // #13's field: how long this node may stay silent (state on change + a slow heartbeat).
  const p = state.statePeriodMs;
  return p !== undefined && Number.isFinite(p) && p > 0 ? p : DEFAULT_NODE_STATE_PERIOD_MS;
}

export class GroupBoard {
  private readonly t: number[] = [];
  private readonly offsets = new Map<string, (number | null)[]>();
  private readonly agreement: (number | null)[] = [];
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly o: BoardOptions) {}

  start(): void {
    this.timer ??= setInterval(() => this.sample(), HISTORY_SAMPLE_MS);
    this.timer.unref?.();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  /** Online by our rule: not its will, and a state within OFFLINE_AFTER_PERIODS periods. */
  isOnline(view: NodeView): boolean {
    return view.status === 'online' && this.o.directory.ageMs(view) <= OFFLINE_AFTER_PERIODS * statePeriodMs(view.state);
  }

  onlineIds(): string[] {
    return this.o.directory.list().filter((v) => this.isOnline(v)).map((v) => v.id);
  }

  nodes(): NodeRow[] {
    const dir = this.o.directory;
    const views = dir.list();
    const online = views.filter((v) => this.isOnline(v));
    const gate = readiness(dir, { nodes: online.map((v) => v.id), thresholdNs: this.o.gateThresholdNs, maxStateAgeMs: 5_000 });
    const why = new Map(gate.laggards.map((l) => [l.node, l.why]));
    const nowNs = this.o.timescale.synchronized ? this.o.timescale.nowNs() : undefined;
    return views.map((v) => {
      const s = v.state;
      const period = statePeriodMs(s);
      const isOnline = this.isOnline(v);
      const age = dir.ageMs(v);
      const row: NodeRow = {
        id: v.id,
        online: isOnline,
        lastSeenAgeMs: Math.round(age),
        statePeriodMs: period,
        synchronized: isOnline && s.synchronized === true,
        errorBoundNs: s.errorBoundNs ?? null,
        actions: s.actions ?? [],
        pending: s.pending ?? 0,
        rejections: s.rejections ?? {},
        versionMismatch: s.version !== undefined && s.version !== this.o.version,
        ready: isOnline && !why.has(v.id),
        warnings: [...(s.warnings ?? [])],
      };
      if (!isOnline) row.offlineWhy = v.status === 'offline' ? 'last will or stopped' : `no state for ${(age / 1000).toFixed(1)} s (${OFFLINE_AFTER_PERIODS} × ${period} ms)`;
      if (isOnline && why.has(v.id)) row.notReadyWhy = why.get(v.id)!;
      if (s.hubOffsetNs !== undefined) row.hubOffsetNs = s.hubOffsetNs;
      if (s.frequencyPpm !== undefined) row.frequencyPpm = s.frequencyPpm;
      if (s.version !== undefined) row.version = s.version;
      if (s.signing !== undefined) row.signing = s.signing;
      const src = s.sources?.find((x) => x.state === 'selected') ?? s.sources?.[0];
      if (src) {
        row.source = { address: src.address, state: src.state, reach: src.reach.toString(8).padStart(3, '0'), delayNs: src.delayNs, jitterNs: src.jitterNs };
        if (src.pollSeconds !== undefined) row.source.pollSeconds = src.pollSeconds;
        if (src.lastError !== undefined) row.source.lastError = src.lastError;
        if (nowNs !== undefined && s.lastSampleNs) row.source.lastSampleAgeMs = Math.max(0, Math.round(Number(nowNs - s.lastSampleNs) / 1e6));
      }
      if (row.versionMismatch) row.warnings.push(`version ${s.version} differs from the hub's ${this.o.version}`);
      if (isOnline && s.synchronized === false) row.warnings.push('not synchronized');
      if (isOnline && src && src.reach !== 0xff && src.reach !== 0) row.warnings.push(`NTP reach ${row.source!.reach}: replies were lost`);
      if (isOnline && (row.source?.lastSampleAgeMs ?? 0) > STALE_SAMPLE_MS) row.warnings.push(`last NTP sample ${(row.source!.lastSampleAgeMs! / 1000).toFixed(0)} s ago`);
      const last = this.o.triggers?.lastFor(v.id);
      if (last) row.lastTrigger = last;
      return row;
    });
  }

  header(rows: NodeRow[] = this.nodes()): BoardHeader {
    const online = rows.filter((r) => r.online);
    const offsets = online.filter((r) => r.synchronized && r.hubOffsetNs !== undefined).map((r) => r.hubOffsetNs!);
    const header: BoardHeader = {
      nowNs: this.o.timescale.nowNs().toString(),
      version: this.o.version,
      hub: this.o.hubTime(),
      broker: { url: this.o.brokerUrl, connected: this.o.brokerConnected() },
      counts: { nodes: rows.length, online: online.length, synchronized: online.filter((r) => r.synchronized).length, ready: online.filter((r) => r.ready).length },
      gateThresholdNs: this.o.gateThresholdNs,
      offlineAfterPeriods: OFFLINE_AFTER_PERIODS,
    };
    if (offsets.length > 0) header.agreementNs = Math.max(...offsets) - Math.min(...offsets);
    const bounds = online.filter((r) => r.errorBoundNs !== null).map((r) => r.errorBoundNs!);
    if (bounds.length > 0) header.worstBoundNs = Math.max(...bounds);
    return header;
  }

  /** One point of history for every node with a history slot, and of the agreement. */
  sample(): void {
    const rows = this.nodes();
    const header = this.header(rows);
    this.t.push(Math.round(Number(this.o.timescale.nowNs() / 1_000_000n)) / 1000);
    this.agreement.push(header.agreementNs === undefined ? null : header.agreementNs / 1e3);
    for (const r of rows) {
      if (!this.offsets.has(r.id) && this.offsets.size < HISTORY_MAX_NODES && r.hubOffsetNs !== undefined) {
        this.offsets.set(r.id, new Array<number | null>(this.t.length - 1).fill(null));
      }
    }
    const byId = new Map(rows.map((r) => [r.id, r]));
    for (const [id, series] of this.offsets) {
      const r = byId.get(id);
      series.push(r && r.online && r.hubOffsetNs !== undefined ? r.hubOffsetNs / 1e3 : null);
    }
    if (this.t.length > HISTORY_POINTS) {
      this.t.shift();
      this.agreement.shift();
      for (const series of this.offsets.values()) series.shift();
    }
    // A node gone for the whole window gives its slot to another (the page's legend stays readable too).
    for (const [id, series] of this.offsets) if (series.every((v) => v === null)) this.offsets.delete(id);
  }

  history(): History {
    return { t: [...this.t], nodes: Object.fromEntries([...this.offsets].map(([id, s]) => [id, [...s]])), agreementUs: [...this.agreement] };
  }
}
