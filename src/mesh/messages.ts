/**
 * The JSON messages of the mesh, version 1, and their validation.
 *
 * Every message is an object with `v` (schema version) and `type`. Absolute
 * instants are bigint nanoseconds since the Unix epoch, written as decimal
 * strings ("1795262410250000000"): JSON numbers lose precision above 2^53 and
 * many JSON tools (jq, JavaScript) would silently round them. Error bounds and
 * other durations that fit a double are plain numbers of nanoseconds.
 *
 * Parsing never throws: it returns the value or a reason a person can act on,
 * so a node answers garbage with a `rejected` ack instead of crashing.
 */
import { randomBytes } from 'node:crypto';

export const SCHEMA_VERSION = 1;
/**
 * The most nodes one trigger may name: the coordinator names every ready
 * target, and `lockstep demo` runs up to 2,000 (a list of 1,000 was the limit,
 * and a 16 KB message held ~1,100 swarm ids: a trigger to 1,200 nodes was
 * refused by every node as malformed).
 */
export const MAX_TRIGGER_NODES = 5_000;
/** Larger payloads are refused before JSON.parse: a trigger is a few hundred bytes, plus an id's length + 3 B per node it names (MAX_TRIGGER_NODES ids of up to 16 characters). */
export const MAX_MESSAGE_BYTES = 96 * 1024;
/** Message ids: printable, no spaces, bounded (they are logged, stored and embedded in report ids). */
const MESSAGE_ID = /^[A-Za-z0-9][A-Za-z0-9._:@-]{0,254}$/;
const NODE_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
const DECIMAL_NS = /^-?\d{1,19}$/;
const INT64_MAX = 9_223_372_036_854_775_807n;
/** Free-text state fields (warnings, source errors) are cut to this: they are shown, never parsed. */
const MAX_TEXT = 200;

/** Why a trigger (or cancel) was not scheduled: the `reason` of a rejected ack. */
export type RejectReason =
  | 'malformed'
  | 'bad-signature'
  | 'replayed'
  | 'stale'
  | 'expired'
  | 'in-the-past'
  | 'unknown-action'
  | 'not-synchronized'
  | 'unavailable'
  | 'unknown-trigger'
  | 'too-far-ahead'
  | 'too-many-pending';

export const REJECT_REASONS: readonly RejectReason[] = [
  'malformed', 'bad-signature', 'replayed', 'stale', 'expired', 'in-the-past', 'unknown-action', 'not-synchronized', 'unavailable', 'unknown-trigger',
  'too-far-ahead', 'too-many-pending',
];

export interface Signature {
  /** Which shared key signed this (keys are looked up by id, never tried in turn). */
  keyId: string;
  /** HMAC-SHA256 of the canonical JSON of the message without `sig`, lowercase hex. */
  hmac: string;
}

/** A JSON action spec (src/schedule/actions.ts checks it on the node; `kind` picks the action). */
export interface WireAction {
  kind: string;
  [key: string]: unknown;
}

export interface TriggerMessage {
  v: 1;
  type: 'trigger';
  id: string;
  /** When the sender made it (sender's UTC): too old or too far ahead is refused as stale. */
  issuedNs: bigint;
  /** After this instant a node refuses it (a message delayed in a queue is not acted on). */
  expiresNs: bigint;
  /** The first instant of the action (the epoch of its pattern; later edges are phase-locked to it). */
  startNs: bigint;
  action: WireAction;
  /** Node ids this is for; absent: every node of the group. */
  nodes?: string[];
  sig?: Signature;
}

export interface CancelMessage {
  v: 1;
  type: 'cancel';
  id: string;
  issuedNs: bigint;
  expiresNs: bigint;
  triggerId: string;
  nodes?: string[];
  sig?: Signature;
}

export type AckStatus = 'scheduled' | 'rejected' | 'cancelled';

export interface AckMessage {
  v: 1;
  type: 'ack';
  id: string;
  node: string;
  /** The trigger (or cancel) this answers; null when the message was too broken to name one. */
  triggerId: string | null;
  status: AckStatus;
  reason?: RejectReason;
  /** One line a person reads: why, in detail. */
  detail?: string;
  /** Node's UTC when it decided. */
  atNs: bigint;
  /** scheduled: the first instant it will fire, and how many fires are planned. */
  firstNs?: bigint;
  fires?: number;
  /** scheduled: first fire index (> 0 when it joined a running pattern late, in phase). */
  firstIndex?: number;
  /** scheduled: the Timescale's error bound predicted at the first instant, ns. */
  errorBoundNs?: number;
  /** UTC − raw at decision time (the offset the node found), ns. */
  offsetNs?: bigint;
}

export interface ReportMessage {
  v: 1;
  type: 'report';
  /** Deterministic (node, trigger, index): a redelivered report is recognised. */
  id: string;
  node: string;
  triggerId: string;
  index: number;
  plannedNs: bigint;
  actualNs: bigint;
  latenessNs: number;
  /** The lateness where the actuator was called (the action's first line), beside latenessNs (the spin's end). */
  actionLatenessNs?: number;
  /** How long before the instant the node woke for it, and began its spin (negative: after it): why a late fire was late. */
  wakeLeadNs?: number;
  spinLeadNs?: number;
  errorBoundNs: number;
  offsetNs: bigint;
  /** Simulated actuators only: the true instant of the edge (the simulation knows truth). */
  trueNs?: bigint;
  /**
   * Simulated clocks only: the true instant at which this node's disciplined
   * clock read plannedNs. Across nodes its spread is how well the clocks
   * agreed, without the fire latency: what nodes that each own a CPU (one
   * node per Pi) would see, plus their own fire latency.
   */
  clockTrueNs?: bigint;
  /** GPIO: the level driven by this edge. */
  level?: 0 | 1;
  detail?: string;
  /** Set when the action failed at its instant. */
  error?: string;
  /** Camera: the photo's exposure (first row) from its frame's SensorTimestamp, disciplined UTC ns. */
  exposureStartNs?: bigint;
  exposureMidNs?: bigint;
  /** Camera: exposure mid-point − the instant, ns: the photo's real timing error. */
  exposureErrorNs?: number;
  /** Camera: why there is no exposure figure (never invented). */
  exposureUnknown?: string;
  /** Camera: the frame's SensorTimestamp as the camera gave it (CLOCK_MONOTONIC ns of that node). */
  sensorTimestampNs?: bigint;
  /** Camera: the photo's file on the node. */
  file?: string;
}

export interface SourceSummary {
  address: string;
  reach: number;
  state: string;
  delayNs: number;
  offsetNs: number;
  jitterNs: number;
  /** Current poll interval, s (optional: older nodes do not send it). */
  pollSeconds?: number;
  /** Why this source is not usable now (no reply, KoD, resolution), one line. */
  lastError?: string;
}

export interface StateMessage {
  v: 1;
  type: 'state';
  node: string;
  status: 'online' | 'offline';
  /** The rest is absent in the last-will "offline" message. */
  seq?: number;
  updatedNs?: bigint;
  synchronized?: boolean;
  offsetNs?: bigint;
  frequencyPpm?: number;
  /** null: unbounded (not synchronized). */
  errorBoundNs?: number | null;
  lastSampleNs?: bigint | null;
  /**
   * NTP-synced nodes: the part of errorBoundNs their selected server declared
   * about itself (root delay / 2 + root dispersion). Nodes of one hub share
   * it, so it does not separate them: the readiness gate leaves it out.
   */
  sourceDistanceNs?: number;
  sources?: SourceSummary[];
  pending?: number;
  actions?: string[];
  signing?: boolean;
  /** The node's lockstep version: the hub's page highlights a group that mixes versions. */
  version?: string;
  /**
   * This node's disciplined UTC minus its selected NTP server's (the hub's),
   * ns, at its last sample: how far apart the two clocks are, as the node
   * measured. Absent on system-clock nodes.
   */
  hubOffsetNs?: number;
  /** Rejected triggers since the node started, by reason. */
  rejections?: Record<string, number>;
  /** Things an operator should look at, one line each (bounded, short). */
  warnings?: string[];
  /** The longest interval between two state publications of this node (#13's contract), ms. */
  statePeriodMs?: number;
  /**
   * How fast errorBoundNs grows after updatedNs while no new NTP sample
   * comes, ppm: a reader judges errorBoundNs + age × this, which stays an
   * honest bound between publications (the node publishes again when a
   * sample makes its bound worse than that line).
   */
  errorBoundGrowthPpm?: number;
}

export type MeshMessage = TriggerMessage | CancelMessage | AckMessage | ReportMessage | StateMessage;

export type ParseResult<T> =
  | { ok: true; value: T }
  | { ok: false; reason: RejectReason; detail: string; id?: string };

// ---------------------------------------------------------------- encoding

/** JSON with bigints as decimal strings; undefined fields are dropped. */
export function encodeMessage(message: MeshMessage): string {
  return JSON.stringify(message, (_key, value) => (typeof value === 'bigint' ? value.toString() : value));
}

/** The wire form as a plain JSON value (bigints as strings): what is signed. */
export function toWire(message: MeshMessage): Record<string, unknown> {
  return JSON.parse(encodeMessage(message)) as Record<string, unknown>;
}

// ---------------------------------------------------------------- decoding

class Invalid extends Error {}

function fail(detail: string): never {
  throw new Invalid(detail);
}

function isObject(x: unknown): x is Record<string, unknown> {
  return typeof x === 'object' && x !== null && !Array.isArray(x);
}

function str(o: Record<string, unknown>, key: string, pattern?: RegExp): string {
  const v = o[key];
  if (typeof v !== 'string') fail(`'${key}' must be a string`);
  if (pattern && !pattern.test(v)) fail(`'${key}' has an invalid format`);
  return v;
}

function optStr(o: Record<string, unknown>, key: string, pattern?: RegExp): string | undefined {
  return o[key] === undefined ? undefined : str(o, key, pattern);
}

function ns(o: Record<string, unknown>, key: string): bigint {
  const v = o[key];
  if (typeof v !== 'string' || !DECIMAL_NS.test(v)) {
    fail(`'${key}' must be nanoseconds as a decimal string (got ${typeof v === 'string' ? `'${v.slice(0, 40)}'` : typeof v})`);
  }
  const n = BigInt(v);
  if (n > INT64_MAX || n < -INT64_MAX) fail(`'${key}' is out of range`);
  return n;
}

function optNs(o: Record<string, unknown>, key: string): bigint | undefined {
  return o[key] === undefined ? undefined : ns(o, key);
}

function num(o: Record<string, unknown>, key: string, { integer = false, min = -Infinity } = {}): number {
  const v = o[key];
  if (typeof v !== 'number' || !Number.isFinite(v) || v < min || (integer && !Number.isInteger(v))) {
    fail(`'${key}' must be a finite ${integer ? 'integer' : 'number'}${min > -Infinity ? ` ≥ ${min}` : ''}`);
  }
  return v;
}

function optNum(o: Record<string, unknown>, key: string, opts?: { integer?: boolean; min?: number }): number | undefined {
  return o[key] === undefined ? undefined : num(o, key, opts);
}

function nodeList(o: Record<string, unknown>): string[] | undefined {
  const v = o.nodes;
  if (v === undefined) return undefined;
  if (!Array.isArray(v) || v.length > MAX_TRIGGER_NODES || !v.every((x) => typeof x === 'string' && NODE_ID.test(x))) {
    fail(`'nodes' must be an array of at most ${MAX_TRIGGER_NODES} node ids`);
  }
  return v as string[];
}

function signature(o: Record<string, unknown>): Signature | undefined {
  const v = o.sig;
  if (v === undefined) return undefined;
  if (!isObject(v)) fail(`'sig' must be an object {keyId, hmac}`);
  const keyId = str(v, 'keyId', /^[A-Za-z0-9._-]{1,64}$/);
  const hmac = str(v, 'hmac', /^[0-9a-f]{64}$/);
  return { keyId, hmac };
}

function header(o: Record<string, unknown>, type: string): void {
  if (o.v !== SCHEMA_VERSION) fail(`unsupported schema version ${JSON.stringify(o.v)} (this node speaks v${SCHEMA_VERSION})`);
  if (o.type !== type) fail(`expected a '${type}' message, got type ${JSON.stringify(o.type)}`);
}

/** Turns bytes into a JSON object, or explains why not. */
export function parseJsonObject(payload: Buffer | string): Record<string, unknown> {
  const size = typeof payload === 'string' ? Buffer.byteLength(payload) : payload.length;
  if (size > MAX_MESSAGE_BYTES) fail(`message of ${size} bytes exceeds ${MAX_MESSAGE_BYTES}`);
  let parsed: unknown;
  try {
    parsed = JSON.parse(typeof payload === 'string' ? payload : payload.toString('utf8'));
  } catch {
    fail('not JSON');
  }
  if (!isObject(parsed)) fail('not a JSON object');
  return parsed;
}

function guard<T>(build: () => T, idOf: () => unknown): ParseResult<T> {
  try {
    return { ok: true, value: build() };
  } catch (error) {
    if (!(error instanceof Invalid)) throw error;
    let id: string | undefined;
    try {
      const candidate = idOf();
      if (typeof candidate === 'string' && MESSAGE_ID.test(candidate)) id = candidate;
    } catch {
      /* nothing to name */
    }
    return id === undefined
      ? { ok: false, reason: 'malformed', detail: error.message }
      : { ok: false, reason: 'malformed', detail: error.message, id };
  }
}

function actionSpec(o: Record<string, unknown>): WireAction {
  const a = o.action;
  if (!isObject(a)) fail(`'action' must be an object with a 'kind'`);
  if (typeof a.kind !== 'string' || !/^[a-z][a-z0-9-]{0,31}$/.test(a.kind)) fail(`'action.kind' must be a short lowercase name`);
  return a as WireAction;
}

/**
 * A copy without the undefined fields. A copy, not `delete`: an object that
 * loses a property turns into a dictionary (~800 B of property table per
 * message, and slower reads), and a hub holds thousands of acks and reports.
 */
function withoutUndefined<T extends object>(o: T): T {
  const out = {} as T;
  for (const k of Object.keys(o) as (keyof T)[]) if (o[k] !== undefined) out[k] = o[k];
  return out;
}

/** The parsed object of a trigger; `raw` is kept by callers that verify a signature over it. */
export function decodeTrigger(o: Record<string, unknown>): ParseResult<TriggerMessage> {
  return guard(
    () => {
      header(o, 'trigger');
      const message: TriggerMessage = {
        v: 1,
        type: 'trigger',
        id: str(o, 'id', MESSAGE_ID),
        issuedNs: ns(o, 'issuedNs'),
        expiresNs: ns(o, 'expiresNs'),
        startNs: ns(o, 'startNs'),
        action: actionSpec(o),
        nodes: nodeList(o),
        sig: signature(o),
      };
      if (message.expiresNs <= message.issuedNs) fail(`'expiresNs' must be after 'issuedNs'`);
      return withoutUndefined(message);
    },
    () => o.id,
  );
}

export function decodeCancel(o: Record<string, unknown>): ParseResult<CancelMessage> {
  return guard(
    () => {
      header(o, 'cancel');
      const message: CancelMessage = {
        v: 1,
        type: 'cancel',
        id: str(o, 'id', MESSAGE_ID),
        issuedNs: ns(o, 'issuedNs'),
        expiresNs: ns(o, 'expiresNs'),
        triggerId: str(o, 'triggerId', MESSAGE_ID),
        nodes: nodeList(o),
        sig: signature(o),
      };
      if (message.expiresNs <= message.issuedNs) fail(`'expiresNs' must be after 'issuedNs'`);
      return withoutUndefined(message);
    },
    () => o.id,
  );
}

const ACK_STATUSES: readonly AckStatus[] = ['scheduled', 'rejected', 'cancelled'];

export function decodeAck(o: Record<string, unknown>): ParseResult<AckMessage> {
  return guard(
    () => {
      header(o, 'ack');
      const status = str(o, 'status') as AckStatus;
      if (!ACK_STATUSES.includes(status)) fail(`'status' must be one of ${ACK_STATUSES.join(', ')}`);
      const reason = optStr(o, 'reason') as RejectReason | undefined;
      if (reason !== undefined && !REJECT_REASONS.includes(reason)) fail(`unknown reason '${reason}'`);
      const triggerId = o.triggerId === null ? null : str(o, 'triggerId', MESSAGE_ID);
      return withoutUndefined<AckMessage>({
        v: 1,
        type: 'ack',
        id: str(o, 'id', MESSAGE_ID),
        node: str(o, 'node', NODE_ID),
        triggerId,
        status,
        reason,
        detail: optStr(o, 'detail'),
        atNs: ns(o, 'atNs'),
        firstNs: optNs(o, 'firstNs'),
        fires: optNum(o, 'fires', { integer: true, min: 0 }),
        firstIndex: optNum(o, 'firstIndex', { integer: true, min: 0 }),
        errorBoundNs: optNum(o, 'errorBoundNs', { min: 0 }),
        offsetNs: optNs(o, 'offsetNs'),
      });
    },
    () => o.id,
  );
}

export function decodeReport(o: Record<string, unknown>): ParseResult<ReportMessage> {
  return guard(
    () => {
      header(o, 'report');
      const level = o.level;
      if (level !== undefined && level !== 0 && level !== 1) fail(`'level' must be 0 or 1`);
      return withoutUndefined<ReportMessage>({
        v: 1,
        type: 'report',
        id: str(o, 'id', MESSAGE_ID),
        node: str(o, 'node', NODE_ID),
        triggerId: str(o, 'triggerId', MESSAGE_ID),
        index: num(o, 'index', { integer: true, min: 0 }),
        plannedNs: ns(o, 'plannedNs'),
        actualNs: ns(o, 'actualNs'),
        latenessNs: num(o, 'latenessNs'),
        actionLatenessNs: optNum(o, 'actionLatenessNs'),
        wakeLeadNs: optNum(o, 'wakeLeadNs'),
        spinLeadNs: optNum(o, 'spinLeadNs'),
        errorBoundNs: num(o, 'errorBoundNs', { min: 0 }),
        offsetNs: ns(o, 'offsetNs'),
        trueNs: optNs(o, 'trueNs'),
        clockTrueNs: optNs(o, 'clockTrueNs'),
        level: level as 0 | 1 | undefined,
        detail: optStr(o, 'detail'),
        error: optStr(o, 'error'),
        exposureStartNs: optNs(o, 'exposureStartNs'),
        exposureMidNs: optNs(o, 'exposureMidNs'),
        // The cross-issue contract allows either form: a JSON number, or ns as a decimal string.
        exposureErrorNs: typeof o.exposureErrorNs === 'string' ? Number(optNs(o, 'exposureErrorNs')) : optNum(o, 'exposureErrorNs'),
        exposureUnknown: optStr(o, 'exposureUnknown'),
        sensorTimestampNs: optNs(o, 'sensorTimestampNs'),
        file: optStr(o, 'file'),
      });
    },
    () => o.id,
  );
}

function sources(o: Record<string, unknown>): SourceSummary[] | undefined {
  const v = o.sources;
  if (v === undefined) return undefined;
  if (!Array.isArray(v) || v.length > 64) fail(`'sources' must be an array`);
  return v.map((s) => {
    if (!isObject(s)) fail(`'sources' entries must be objects`);
    return {
      address: str(s, 'address'),
      reach: num(s, 'reach', { integer: true, min: 0 }),
      state: str(s, 'state'),
      delayNs: num(s, 'delayNs'),
      offsetNs: num(s, 'offsetNs'),
      jitterNs: num(s, 'jitterNs'),
      ...(s.pollSeconds !== undefined ? { pollSeconds: num(s, 'pollSeconds', { min: 0 }) } : {}),
      ...(s.lastError !== undefined ? { lastError: str(s, 'lastError').slice(0, MAX_TEXT) } : {}),
    };
  });
}

export function decodeState(o: Record<string, unknown>): ParseResult<StateMessage> {
  return guard(
    () => {
      header(o, 'state');
      const status = str(o, 'status');
      if (status !== 'online' && status !== 'offline') fail(`'status' must be online or offline`);
      const bound = o.errorBoundNs;
      if (bound !== undefined && bound !== null && !(typeof bound === 'number' && bound >= 0)) fail(`'errorBoundNs' must be a number ≥ 0 or null`);
      const actions = o.actions;
      if (actions !== undefined && !(Array.isArray(actions) && actions.every((a) => typeof a === 'string'))) fail(`'actions' must be strings`);
      for (const key of ['synchronized', 'signing'] as const) {
        if (o[key] !== undefined && typeof o[key] !== 'boolean') fail(`'${key}' must be a boolean`);
      }
      return withoutUndefined<StateMessage>({
        v: 1,
        type: 'state',
        node: str(o, 'node', NODE_ID),
        status,
        seq: optNum(o, 'seq', { integer: true, min: 0 }),
        updatedNs: optNs(o, 'updatedNs'),
        synchronized: o.synchronized as boolean | undefined,
        offsetNs: optNs(o, 'offsetNs'),
        frequencyPpm: optNum(o, 'frequencyPpm'),
        errorBoundNs: bound as number | null | undefined,
        lastSampleNs: o.lastSampleNs === null ? null : optNs(o, 'lastSampleNs'),
        sourceDistanceNs: optNum(o, 'sourceDistanceNs', { min: 0 }),
        sources: sources(o),
        pending: optNum(o, 'pending', { integer: true, min: 0 }),
        actions: actions as string[] | undefined,
        signing: o.signing as boolean | undefined,
        version: o.version === undefined ? undefined : str(o, 'version').slice(0, 64),
        hubOffsetNs: optNum(o, 'hubOffsetNs'),
        rejections: rejectionCounts(o),
        warnings: warningList(o),
        statePeriodMs: optNum(o, 'statePeriodMs', { min: 1 }),
        errorBoundGrowthPpm: optNum(o, 'errorBoundGrowthPpm', { min: 0 }),
      });
    },
    () => o.node,
  );
}

/** Optional state fields of the dashboard era: absent from older nodes, ignored by older hubs. */
function rejectionCounts(o: Record<string, unknown>): Record<string, number> | undefined {
  const v = o.rejections;
  if (v === undefined) return undefined;
  if (!isObject(v) || Object.keys(v).length > 32) fail(`'rejections' must be an object of counts`);
  const out: Record<string, number> = {};
  for (const [k, n] of Object.entries(v)) {
    if (typeof n !== 'number' || !Number.isInteger(n) || n < 0) fail(`'rejections.${k.slice(0, 40)}' must be a count`);
    out[k.slice(0, MAX_TEXT)] = n;
  }
  return out;
}

function warningList(o: Record<string, unknown>): string[] | undefined {
  const v = o.warnings;
  if (v === undefined) return undefined;
  if (!Array.isArray(v) || v.length > 16 || !v.every((x) => typeof x === 'string')) fail(`'warnings' must be up to 16 strings`);
  return (v as string[]).map((w) => w.slice(0, MAX_TEXT));
}

/** Parses bytes into a message of the expected type, or a reason. */
export function parseMessage<T extends MeshMessage>(
  payload: Buffer | string,
  decode: (o: Record<string, unknown>) => ParseResult<T>,
): ParseResult<T> & { raw?: Record<string, unknown> } {
  let o: Record<string, unknown>;
  try {
    o = parseJsonObject(payload);
  } catch (error) {
    if (error instanceof Invalid) return { ok: false, reason: 'malformed', detail: error.message };
    throw error;
  }
  return { ...decode(o), raw: o };
}

/** A fresh message id: time-ordered prefix (readable in logs) + 64 random bits. */
export function newMessageId(prefix = 'm'): string {
  return `${prefix}-${Date.now().toString(36)}-${randomBytes(8).toString('hex')}`;
}
