/**
 * A mesh node: takes triggers over MQTT, checks them, schedules them on the
 * local scheduler, acks, fires through an actuator, reports.
 *
 * The broker is only a messenger. Once a trigger is acked it lives in this
 * process (and in the state file): the scheduler fires without the broker,
 * reports wait in the MQTT session until the broker is back, and a restarted
 * node reloads what it accepted and fires from it.
 */
import type { Timescale } from '../time/timescale.js';
import type { Actuator } from '../schedule/actuator.js';
import {
  validateAction,
  scheduleAction,
  describeAction,
  type ActionKind,
  type ActionScheduler,
  type ActionSpec,
  type ActionRun,
  type ActionFireReport,
} from '../schedule/actions.js';
import { Topics } from './topics.js';
import {
  decodeTrigger,
  decodeCancel,
  encodeMessage,
  parseMessage,
  newMessageId,
  type AckMessage,
  type ReportMessage,
  type StateMessage,
  type TriggerMessage,
  type RejectReason,
  type SourceSummary,
} from './messages.js';
import { KeyRing, ReplayGuard, verifyWire } from './signing.js';
import { MqttSession, type MqttSessionOptions } from './mqtt-session.js';
import { StateFile, emptyState, type NodeStateData, type PendingTrigger } from './state-file.js';
import { LOCKSTEP_VERSION } from './version.js';

/** What the node says about its clock in its state message. */
export interface SyncSnapshot {
  synchronized: boolean;
  /** UTC − raw now, ns (the offset this node's clock was found to have). */
  offsetNs: bigint;
  frequencyPpm: number;
  /** Infinity when unsynchronized. */
  errorBoundNs: number;
  /** UTC of the last good NTP sample, if any. */
  lastSampleNs?: bigint;
  /** NTP: the selected server's own root distance, part of errorBoundNs shared with its other clients. */
  sourceDistanceNs?: number;
  /** How fast errorBoundNs grows without a new sample, ppm (default: the Timescale's). */
  errorBoundGrowthPpm?: number;
  sources: SourceSummary[];
  /** NTP: this clock minus the selected server's at the last sample, ns (the hub's page plots it). */
  hubOffsetNs?: number;
  /** Conditions an operator should see (an unreachable server, a stepped clock), one line each. */
  warnings?: string[];
}

export interface MeshNodeOptions {
  id: string;
  topics: Topics;
  /** Broker connection; the node adds its client id, last will and a persistent session. */
  mqtt: Omit<MqttSessionOptions, 'clientId' | 'will' | 'persistent'>;
  timescale: Timescale;
  scheduler: ActionScheduler;
  /** The node's clock quality now (from the NTP client, or the trusted system clock). */
  sync(): SyncSnapshot;
  /** Builds (not prepares) the actuator for an action: injected, so src/mesh needs no hardware/. */
  actuatorFor(action: ActionSpec): Actuator;
  /** Simulated nodes: the true time now (reports carry it as trueNs). */
  truthNs?: () => bigint;
  /**
   * Simulated nodes: the true instant at which the disciplined clock reads
   * utcNs (for a SimulatedClock: clock.truthAtRaw(timescale.rawAt(utcNs))).
   * Reports carry it for the planned instant as clockTrueNs.
   */
  clockTruthAt?: (utcNs: bigint) => bigint;
  keys?: KeyRing;
  /** Refuse unsigned triggers (default: true when keys are given). */
  requireSignature?: boolean;
  stateFile?: StateFile;
  /** Action kinds accepted from the network (default blink and capture: `command` runs programs). */
  allowKinds?: readonly ActionKind[];
  /** The longest interval between two retained state publications (a heartbeat; changes go at once), ms. */
  statePeriodMs?: number;
  /** Shortest time between a trigger's receipt and its first instant (actuator preparation). */
  minLeadNs?: bigint;
  log?: (line: string) => void;
  /** Silent scheduler fires at start, so its adaptive margins are learnt before a real trigger (default 20). */
  warmupFires?: number;
  /** A trigger whose first instant is further ahead than this is refused (default DEFAULT_MAX_AHEAD_NS). */
  maxAheadNs?: bigint;
  /** Accepted triggers kept pending at most (default DEFAULT_MAX_PENDING_TRIGGERS); more are refused. */
  maxPending?: number;
  /**
   * Decodes a trigger payload (default: parseMessage with decodeTrigger). The swarm's nodes share
   * one decoder per process (the same bytes reach a hundred of them): a real node has its own CPU.
   * The result is only read, never changed.
   */
  parseTrigger?: (payload: Buffer) => ReturnType<typeof parseMessage<TriggerMessage>>;
}

/**
 * 5 s heartbeat: states go out on change (sync gained or lost, selected
 * server, an error bound worse than readers extrapolate or half of it; a
 * pending count changed for PENDING_SETTLE_MS), so the heartbeat only proves
 * the node is alive. A thousand nodes at
 * 1 s were 1,000 retained messages a second; at 5 s they are 200, and
 * readers call a node gone after STALE_AFTER_PERIODS × 5 s = 15 s, when the
 * broker sends its last will anyway (1.5 × the 10 s keep-alive).
 */
export const DEFAULT_STATE_PERIOD_MS = 5_000;
/**
 * The growth a node publishes is at least this, ppm (5 µs of bound per s):
 * each NTP sample moves the bound by some µs of jitter, and with only the
 * model's own growth (often 0.5–2 ppm) nearly every sample came out "worse
 * than readers extrapolate", a state message each. Claiming a faster growth
 * stays honest (readers see a looser bound, by at most 5 ppm × the period:
 * 25 µs at 5 s) and lets samples within it pass quietly.
 */
const MIN_PUBLISHED_GROWTH_PPM = 5;
/**
 * And the bound a node publishes has headroom over its own: a quarter more,
 * at most 100 µs. While a clock settles, each sample's correction (slewed
 * in, so part of the bound) moves the bound by tens of µs; without headroom
 * most samples were a state message. Looser by at most this is still a bound.
 */
const PUBLISHED_BOUND_HEADROOM = 0.25;
const PUBLISHED_BOUND_HEADROOM_MAX_NS = 100_000;

function publishedBoundNs(boundNs: number): number {
  return Math.ceil(boundNs + Math.min(boundNs * PUBLISHED_BOUND_HEADROOM, PUBLISHED_BOUND_HEADROOM_MAX_NS));
}
/**
 * How often a node looks for a change worth a state message (each NTP sample
 * looks too): no I/O, but a thousand swarm nodes on two cores felt 4 a second.
 */
const STATE_CHECK_MS = 1_000;
/** 20 ms: enough to prepare a GPIO line; a trigger closer than this cannot be honoured on time. */
export const DEFAULT_MIN_LEAD_NS = 20_000_000n;
export const DEFAULT_WARMUP_FIRES = 20;
export const DEFAULT_ALLOWED_KINDS: readonly ActionKind[] = ['blink', 'capture'];
/**
 * 24 h: a show, a photo session, a rehearsal are triggered the same day.
 * Anything further ahead belongs in a crontab (lockstep crontab), not in a
 * node's memory and state file, where a bogus or hostile start in the year
 * 2262 would otherwise sit forever.
 */
export const DEFAULT_MAX_AHEAD_NS = 24n * 3600n * 1_000_000_000n;
/**
 * 256 pending triggers: a real group has a handful at once (a train, a
 * capture, a cancel-and-replace). Each one is in memory and in the state
 * file (rewritten before every ack), so the set must not grow with a flood.
 */
export const DEFAULT_MAX_PENDING_TRIGGERS = 256;
/** Reject details (and log lines) carry at most this much: a bad value is named, not echoed back 12 KB long. */
export const MAX_DETAIL_CHARS = 200;
/**
 * Actuators kept prepared at most (one per GPIO line used, the camera, commands).
 * Beyond this, an idle one is released first: every distinct line a trigger
 * names would otherwise stay open (a process per line with gpiod) for good.
 */
const MAX_ACTUATORS = 32;

/** A short excerpt of a long detail: its start and how much was left out. */
export function excerpt(text: string, max = MAX_DETAIL_CHARS): string {
  if (text.length <= max) return text;
  return `${text.slice(0, max)}… (${text.length - max} more characters)`;
}
/** A state change smaller than this is not worth an extra state message between periodic ones. */
const STATE_THROTTLE_MS = 200;
/**
 * A change of the pending count alone waits this long before it is worth a
 * state message: the count is shown (hub page, board), the gate never reads
 * it, and the acks already told the trigger. Sent at once it was two state
 * messages per node per trigger (accepted, finished), a thousand each in the
 * middle of the acks and the reports; a train shorter than this sends none.
 */
const PENDING_SETTLE_MS = 3_000;
/**
 * After a reconnection, recent reports are sent again once this has passed:
 * a broker that restarted lost its sessions, and the hub must re-subscribe
 * before it can hear them. Reports have fixed ids, so the hub keeps one copy.
 */
const RESEND_AFTER_RECONNECT_MS = 1_500;
/** Reports wait this long (plus up to the jitter) after a fire, so they do not compete with the group's other fires. */
const REPORT_DELAY_MS = 15;
const REPORT_JITTER_MS = 10;
/** Reports kept for re-sending: bounded by count and age. */
const RECENT_REPORTS_MAX = 500;
const RECENT_REPORTS_AGE_MS = 120_000;
/**
 * A trigger that arrives before the node has trustworthy time (a retained
 * train, delivered the moment a booting node subscribes, before its first
 * NTP sample) is held, not refused: nothing would send it again. Held at most
 * this long (a node that cannot synchronize must say so) and this many (a
 * flood while booting must not grow memory).
 */
const HOLD_UNSYNCHRONIZED_MS = 60_000;
const MAX_HELD_TRIGGERS = 32;

interface Running {
  trigger: TriggerMessage;
  pending: PendingTrigger;
  run: ActionRun;
  /** The actuator it fires through (kept prepared while it is pending). */
  actuatorKey: string;
}

export class MeshNode {
  readonly id: string;
  private readonly o: MeshNodeOptions;
  private readonly session: MqttSession;
  private readonly replay = new ReplayGuard();
  private readonly running = new Map<string, Running>();
  private readonly actuators = new Map<string, { actuator: Actuator; ready: Promise<void> }>();
  private readonly allowKinds: readonly ActionKind[];
  private readonly requireSignature: boolean;
  private restoring: PendingTrigger[] = [];
  /** Admitted triggers waiting for the clock to become trustworthy, by id. */
  private readonly held = new Map<string, { trigger: TriggerMessage; wire: Record<string, unknown>; timer: NodeJS.Timeout }>();
  private stateTimer: NodeJS.Timeout | undefined;
  private lastStateMs = 0;
  /** What readers last heard (to publish on change only). */
  private published: { synchronized: boolean; pending: number; source: string | undefined; boundNs: number; growthPpm: number; updatedNs: bigint } | undefined;
  /** Since when the pending count differs from the published one (see PENDING_SETTLE_MS). */
  private pendingSinceMs: number | undefined;
  private seq = 0;
  private stopped = false;
  private connections = 0;
  private readonly recentReports: { atMs: number; topic: string; payload: string }[] = [];
  private outbox: ReportMessage[] = [];
  private flushTimer: NodeJS.Timeout | undefined;
  private unsubscribeTimescale: (() => void) | undefined;
  readonly counters = { triggers: 0, scheduled: 0, rejected: 0, fires: 0, reportsQueued: 0, reportErrors: 0 };
  private readonly rejections = new Map<RejectReason, number>();
  private readonly stateReasons = new Map<string, number>();

  constructor(options: MeshNodeOptions) {
    this.o = options;
    this.id = options.id;
    options.topics.node(options.id, 'state'); // validates the id
    this.allowKinds = options.allowKinds ?? DEFAULT_ALLOWED_KINDS;
    this.requireSignature = options.requireSignature ?? !!options.keys;
    const offline: StateMessage = { v: 1, type: 'state', node: this.id, status: 'offline' };
    this.session = new MqttSession({
      ...options.mqtt,
      clientId: `lockstep-node-${this.id}`,
      persistent: true,
      will: { topic: options.topics.node(this.id, 'state'), payload: encodeMessage(offline), qos: 1, retain: true },
    });
  }

  get mqtt(): MqttSession {
    return this.session;
  }

  /** Pending trigger ids (accepted, not finished). */
  pendingIds(): string[] {
    return [...this.running.keys(), ...this.restoring.map((p) => String(p.wire.id))];
  }

  rejectionCounts(): Record<string, number> {
    return Object.fromEntries(this.rejections);
  }

  async start(): Promise<void> {
    const { topics } = this.o;
    if (this.o.stateFile) {
      const saved = await this.o.stateFile.load(this.id);
      for (const [id, until] of saved.seen) this.replay.remember(id, 0n, BigInt(until), 0n);
      this.restoring = saved.pending;
    }
    this.session.onMessage((topic, payload) => this.onMessage(topic, payload));
    this.session.onConnect(() => {
      void this.publishState();
      if (++this.connections > 1) setTimeout(() => this.resendRecentReports(), RESEND_AFTER_RECONNECT_MS).unref?.();
    });
    this.unsubscribeTimescale = this.o.timescale.onChange(() => {
      this.restorePending();
      this.releaseHeld();
      this.checkState();
    });
    // Subscriptions are re-made by mqtt.js after reconnects; the first must be asked for.
    const subscribe = () =>
      this.session.subscribe([topics.trigger, topics.cancel, topics.node(this.id, 'trigger')]).catch((e: Error) => this.log(`subscribe failed: ${e.message}`));
    if (this.session.connected) void subscribe();
    else {
      const off = this.session.onConnect(() => {
        off();
        void subscribe();
      });
    }
    this.warmUp();
    this.stateTimer = setInterval(() => this.checkState(), Math.min(STATE_CHECK_MS, this.statePeriodMs));
    this.stateTimer.unref?.();
    this.restorePending();
  }

  /**
   * The scheduler learns how late this machine's timers wake; its first fires
   * are the least precise. A few silent fires at start teach it before a
   * trigger counts (a few hundred µs of spinning each, once).
   */
  private warmUp(): void {
    const count = this.o.warmupFires ?? DEFAULT_WARMUP_FIRES;
    if (count <= 0) return;
    const period = 100_000_000n;
    const epochNs = this.o.timescale.nowNs() + 300_000_000n;
    this.o.scheduler.every({ epochNs, periodNs: period, count }, () => undefined);
  }

  /** Stops taking triggers; pending ones are cancelled (they stay in the state file for the next start). */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    if (this.stateTimer) clearInterval(this.stateTimer);
    if (this.flushTimer) {
      clearTimeout(this.flushTimer);
      this.flushReports();
    }
    this.unsubscribeTimescale?.();
    for (const h of this.held.values()) clearTimeout(h.timer);
    this.held.clear();
    for (const r of this.running.values()) r.run.cancel();
    this.running.clear();
    const offline: StateMessage = { v: 1, type: 'state', node: this.id, status: 'offline' };
    if (this.session.connected) {
      await this.session.publish(this.o.topics.node(this.id, 'state'), encodeMessage(offline), { qos: 1, retain: true, timeoutMs: 1000 }).catch(() => undefined);
    }
    await this.session.close(true);
    for (const { actuator } of this.actuators.values()) await actuator.release().catch(() => undefined);
  }

  // ------------------------------------------------------------ state

  get statePeriodMs(): number {
    return this.o.statePeriodMs ?? DEFAULT_STATE_PERIOD_MS;
  }

  stateMessage(s: SyncSnapshot = this.o.sync()): StateMessage {
    const growthPpm = Math.max(MIN_PUBLISHED_GROWTH_PPM, s.errorBoundGrowthPpm ?? this.o.timescale.errorBoundGrowthPpm);
    return {
      v: 1,
      type: 'state',
      node: this.id,
      status: 'online',
      seq: this.seq++,
      updatedNs: this.o.timescale.nowNs(),
      synchronized: s.synchronized,
      offsetNs: s.offsetNs,
      frequencyPpm: Math.round(s.frequencyPpm * 1000) / 1000,
      // Rounded up, as the growth: what readers extrapolate from these must stay a bound.
      errorBoundNs: Number.isFinite(s.errorBoundNs) ? publishedBoundNs(s.errorBoundNs) : null,
      lastSampleNs: s.lastSampleNs ?? null,
      ...(s.sourceDistanceNs !== undefined && Number.isFinite(s.sourceDistanceNs) ? { sourceDistanceNs: Math.round(s.sourceDistanceNs) } : {}),
      sources: s.sources,
      pending: this.running.size + this.restoring.length,
      actions: [...this.allowKinds],
      signing: this.requireSignature,
      version: LOCKSTEP_VERSION,
      ...(s.hubOffsetNs !== undefined && Number.isFinite(s.hubOffsetNs) ? { hubOffsetNs: Math.round(s.hubOffsetNs) } : {}),
      ...(this.rejections.size ? { rejections: this.rejectionCounts() } : {}),
      ...(s.warnings?.length ? { warnings: s.warnings.slice(0, 8) } : {}),
      statePeriodMs: this.statePeriodMs,
      errorBoundGrowthPpm: Math.ceil(growthPpm * 1000) / 1000,
    };
  }

  /** Publishes when the heartbeat is due, or when readers' picture is wrong (see DEFAULT_STATE_PERIOD_MS). */
  private checkState(): void {
    if (this.stopped || !this.session.connected) return;
    const sinceMs = Date.now() - this.lastStateMs;
    if (sinceMs >= this.statePeriodMs) {
      void this.publishState();
      return;
    }
    if (sinceMs < STATE_THROTTLE_MS) return;
    const s = this.o.sync();
    if (this.stateChanged(s)) void this.publishState(s);
  }

  private stateChanged(s: SyncSnapshot): boolean {
    const why = this.stateChange(s);
    if (why) this.stateReasons.set(why, (this.stateReasons.get(why) ?? 0) + 1);
    return why !== undefined;
  }

  private stateChange(s: SyncSnapshot): string | undefined {
    const last = this.published;
    if (!last) return 'first';
    if (s.synchronized !== last.synchronized) return 'synchronized';
    const pending = this.running.size + this.restoring.length;
    if (pending !== last.pending) {
      this.pendingSinceMs ??= Date.now();
      if (Date.now() - this.pendingSinceMs >= PENDING_SETTLE_MS) return 'pending';
    } else this.pendingSinceMs = undefined;
    if (s.sources.find((x) => x.state === 'selected')?.address !== last.source) return 'source';
    if (!s.synchronized || !Number.isFinite(s.errorBoundNs)) return undefined;
    // The bound readers compute now from what they heard: published + age × growth.
    const ageNs = Number(this.o.timescale.nowNs() - last.updatedNs);
    const extrapolated = last.boundNs + Math.max(0, ageNs) * last.growthPpm * 1e-6;
    // Worse than they think: the gate would be dishonest. Much better: the gate may open sooner.
    if (s.errorBoundNs > extrapolated) return 'bound-worse';
    if (publishedBoundNs(s.errorBoundNs) < extrapolated / 2) return 'bound-better';
    return undefined;
  }

  /** Why state messages went out between heartbeats, by reason (for benchmarks and the curious). */
  stateChangeCounts(): Record<string, number> {
    return Object.fromEntries(this.stateReasons);
  }

  async publishState(snapshot?: SyncSnapshot): Promise<void> {
    if (this.stopped || !this.session.connected) return;
    this.lastStateMs = Date.now();
    this.pendingSinceMs = undefined;
    const state = this.stateMessage(snapshot);
    this.published = {
      synchronized: !!state.synchronized,
      pending: state.pending ?? 0,
      source: state.sources?.find((x) => x.state === 'selected')?.address,
      boundNs: state.errorBoundNs ?? Infinity,
      growthPpm: state.errorBoundGrowthPpm ?? 0,
      updatedNs: state.updatedNs!,
    };
    await this.session
      .publish(this.o.topics.node(this.id, 'state'), encodeMessage(state), { qos: 1, retain: true })
      .catch((e: Error) => this.log(`state not published: ${e.message}`));
  }

  // ------------------------------------------------------------ triggers

  private onMessage(topic: string, payload: Buffer): void {
    if (this.stopped) return;
    const { topics } = this.o;
    if (topic === topics.cancel) void this.onCancel(payload);
    else if (topic === topics.trigger || topic === topics.node(this.id, 'trigger')) void this.onTrigger(payload);
  }

  private ack(fields: Omit<AckMessage, 'v' | 'type' | 'id' | 'node' | 'atNs'>): void {
    const ack: AckMessage = { v: 1, type: 'ack', id: newMessageId('a'), node: this.id, atNs: this.o.timescale.nowNs(), ...fields };
    if (ack.status === 'rejected' && ack.reason) this.rejections.set(ack.reason, (this.rejections.get(ack.reason) ?? 0) + 1);
    this.session
      .publish(this.o.topics.node(this.id, 'ack'), encodeMessage(ack), { qos: 1 })
      .catch((e: Error) => this.log(`ack for ${fields.triggerId} not confirmed: ${e.message}`));
  }

  private reject(triggerId: string | null | undefined, reason: RejectReason, detail: string): void {
    this.counters.rejected++;
    detail = excerpt(detail);
    this.log(`rejected ${triggerId ?? '(unnamed)'}: ${reason}: ${detail}`);
    this.ack({ triggerId: triggerId ?? null, status: 'rejected', reason, detail });
  }

  /** Checks that need no clock: shape, target, signature, replay. */
  private admit(payload: Buffer): { trigger: TriggerMessage; wire: Record<string, unknown> } | undefined {
    const parsed = this.o.parseTrigger ? this.o.parseTrigger(payload) : parseMessage(payload, decodeTrigger);
    if (!parsed.ok) {
      this.reject(parsed.id, parsed.reason, parsed.detail);
      return undefined;
    }
    const trigger = parsed.value;
    if (trigger.nodes && !trigger.nodes.includes(this.id)) return undefined; // not for us: stay quiet
    const wire = parsed.raw!;
    const verified = verifyWire(wire, this.o.keys, this.requireSignature);
    if (!verified.ok) {
      this.reject(trigger.id, verified.reason, verified.detail);
      return undefined;
    }
    return { trigger, wire };
  }

  private async onTrigger(payload: Buffer): Promise<void> {
    this.counters.triggers++;
    const admitted = this.admit(payload);
    if (!admitted) return;
    const { trigger, wire } = admitted;
    if (!this.o.timescale.synchronized) {
      this.hold(trigger, wire);
      return;
    }
    await this.decide(trigger, wire);
  }

  /** Keeps a trigger until the clock is trustworthy (its age, expiry and instant mean nothing before). */
  private hold(trigger: TriggerMessage, wire: Record<string, unknown>): void {
    if (this.held.has(trigger.id)) return; // redelivered while held: it is decided once
    if (this.held.size >= MAX_HELD_TRIGGERS) {
      this.reject(trigger.id, 'not-synchronized', `this node has no trustworthy time yet, and already holds ${MAX_HELD_TRIGGERS} triggers until it has`);
      return;
    }
    const timer = setTimeout(() => {
      if (!this.held.delete(trigger.id)) return;
      this.reject(trigger.id, 'not-synchronized', `held ${HOLD_UNSYNCHRONIZED_MS / 1000} s, and this node still has no trustworthy time`);
    }, HOLD_UNSYNCHRONIZED_MS);
    timer.unref?.();
    this.held.set(trigger.id, { trigger, wire, timer });
    this.log(`holding ${trigger.id} until this node is synchronized`);
  }

  private releaseHeld(): void {
    if (this.held.size === 0 || !this.o.timescale.synchronized || this.stopped) return;
    const list = [...this.held.values()];
    this.held.clear();
    for (const { trigger, wire, timer } of list) {
      clearTimeout(timer);
      void this.decide(trigger, wire);
    }
  }

  /** Checks that need a trustworthy clock, then schedules. */
  private async decide(trigger: TriggerMessage, wire: Record<string, unknown>): Promise<void> {
    const now = this.o.timescale.nowNs();
    const replayed = this.replay.check(trigger.id, trigger.issuedNs, now, trigger.expiresNs);
    if (replayed) {
      const detail = this.running.has(trigger.id) ? `${replayed.detail} (and is scheduled: it fires once)` : replayed.detail;
      this.reject(trigger.id, replayed.reason, detail);
      return;
    }
    this.replay.remember(trigger.id, trigger.issuedNs, trigger.expiresNs, now);
    if (now > trigger.expiresNs) {
      this.reject(trigger.id, 'expired', `expired ${(Number(now - trigger.expiresNs) / 1e6).toFixed(1)} ms ago`);
      return;
    }
    const checked = validateAction(trigger.action, { allowKinds: this.allowKinds, allowOutDir: false });
    if (!checked.ok) {
      const unknown = this.allowKinds.every((k) => k !== trigger.action.kind);
      this.reject(trigger.id, unknown ? 'unknown-action' : 'malformed', checked.reason);
      return;
    }
    const bounded = this.checkBounds(trigger, now);
    if (bounded) {
      this.reject(trigger.id, bounded.reason, bounded.detail);
      return;
    }
    const pending: PendingTrigger = { wire, acceptedNs: now.toString() };
    await this.schedule(trigger, checked.action, pending, false);
  }

  /** The node's own limits: how far ahead it plans, and how many triggers it keeps. */
  private checkBounds(trigger: TriggerMessage, nowNs: bigint): { reason: RejectReason; detail: string } | undefined {
    const maxAhead = this.o.maxAheadNs ?? DEFAULT_MAX_AHEAD_NS;
    const aheadNs = trigger.startNs - nowNs;
    if (aheadNs > maxAhead) {
      return {
        reason: 'too-far-ahead',
        detail: `its first instant is ${formatAhead(aheadNs)} ahead; this node plans at most ${formatAhead(maxAhead)} ahead (lockstep node --max-ahead)`,
      };
    }
    const max = this.o.maxPending ?? DEFAULT_MAX_PENDING_TRIGGERS;
    const pending = this.running.size + this.restoring.length;
    if (pending >= max) {
      return { reason: 'too-many-pending', detail: `this node already has ${pending} pending triggers, its limit (lockstep node --max-pending); cancel some first` };
    }
    return undefined;
  }

  /** Which fires are still ahead: all, some (joining a running pattern in phase), or none. */
  private plan(action: ActionSpec, startNs: bigint, nowNs: bigint): { firstIndex: number; fires: number | 'forever'; firstNs: bigint } | undefined {
    const earliest = nowNs + (this.o.minLeadNs ?? DEFAULT_MIN_LEAD_NS);
    if (action.kind !== 'blink') {
      const lead = action.kind === 'capture' ? BigInt(action.leadNs ?? 0) : 0n;
      return startNs - lead >= earliest ? { firstIndex: 0, fires: 1, firstNs: startNs } : undefined;
    }
    const period = BigInt(action.periodNs);
    let k = 0n;
    if (startNs < earliest) k = (earliest - startNs + period - 1n) / period;
    if (action.count !== 'forever' && k >= BigInt(action.count)) return undefined;
    return {
      firstIndex: Number(k),
      fires: action.count === 'forever' ? 'forever' : action.count - Number(k),
      firstNs: startNs + k * period,
    };
  }

  private actuator(action: ActionSpec): { actuator: Actuator; ready: Promise<void> } {
    const key = actuatorKey(action);
    let entry = this.actuators.get(key);
    if (entry) {
      // Map order is least recently used first.
      this.actuators.delete(key);
      this.actuators.set(key, entry);
    } else {
      this.releaseIdleActuators(MAX_ACTUATORS - 1);
      const actuator = this.o.actuatorFor(action);
      entry = { actuator, ready: actuator.prepare() };
      entry.ready.catch(() => this.actuators.delete(key)); // retry preparation next time
      this.actuators.set(key, entry);
    }
    return entry;
  }

  /** Releases least recently used actuators no pending trigger needs, until at most `keep` remain. */
  private releaseIdleActuators(keep: number): void {
    if (this.actuators.size <= keep) return;
    const inUse = new Set([...this.running.values()].map((r) => r.actuatorKey));
    for (const [key, entry] of this.actuators) {
      if (this.actuators.size <= keep) break;
      if (inUse.has(key)) continue;
      this.actuators.delete(key);
      void entry.ready.then(() => entry.actuator.release()).catch(() => undefined);
    }
  }

  private async schedule(trigger: TriggerMessage, action: ActionSpec, pending: PendingTrigger, restored: boolean): Promise<void> {
    const ts = this.o.timescale;
    const plan = this.plan(action, trigger.startNs, ts.nowNs());
    if (!plan) {
      this.reject(trigger.id, 'in-the-past', `its ${action.kind === 'blink' ? 'last instant' : 'instant'} has passed (or is closer than the ${Number(this.o.minLeadNs ?? DEFAULT_MIN_LEAD_NS) / 1e6} ms this node needs)`);
      if (restored) this.saveState();
      return;
    }
    let actuator: Actuator;
    try {
      const entry = this.actuator(action);
      await entry.ready;
      actuator = entry.actuator;
    } catch (error) {
      this.reject(trigger.id, 'unavailable', `cannot prepare ${describeAction(action)}: ${(error as Error).message}`);
      return;
    }
    if (this.stopped) return;
    const run = scheduleAction(this.o.scheduler, action, trigger.startNs, actuator, {
      tag: trigger.id,
      ifPast: 'skip',
      // Whole pulses only: a late joiner starts with an on-edge, never with the off-edge of a pulse it missed.
      notBeforeNs: plan.firstNs,
      onFire: (report) => this.onFire(trigger, report),
    });
    this.running.set(trigger.id, { trigger, pending, run, actuatorKey: actuatorKey(action) });
    void run.done.then(() => {
      if (this.running.get(trigger.id)?.run === run) {
        this.running.delete(trigger.id);
        this.saveState();
      }
    });
    this.counters.scheduled++;
    // On disk before the ack: a node that said "scheduled" fires even after a restart.
    await this.saveState();
    this.ack({
      triggerId: trigger.id,
      status: 'scheduled',
      firstNs: plan.firstNs,
      fires: plan.fires === 'forever' ? 0 : plan.fires,
      firstIndex: plan.firstIndex,
      errorBoundNs: Math.round(ts.errorBoundNs(ts.rawAt(plan.firstNs))),
      offsetNs: ts.offsetNs(),
      detail: `${describeAction(action)}${plan.firstIndex > 0 ? `; joined in phase at fire ${plan.firstIndex}` : ''}${restored ? '; restored from the state file' : ''}`,
    });
    this.log(`scheduled ${trigger.id}: ${describeAction(action)} from ${plan.firstNs}${restored ? ' (restored)' : ''}`);
  }

  /** Runs synchronously right after the actuator fired: keep it cheap (no I/O waits). */
  private onFire(trigger: TriggerMessage, r: ActionFireReport): void {
    const trueNs = this.o.truthNs?.();
    // After the fire (the fire came first), with the same Timescale the scheduler used for it.
    const clockTrueNs = this.o.clockTruthAt?.(r.plannedNs);
    this.counters.fires++;
    const report: ReportMessage = {
      v: 1,
      type: 'report',
      id: `r:${r.index}${r.level === undefined ? '' : `:${r.level}`}:${this.id}:${trigger.id}`,
      node: this.id,
      triggerId: trigger.id,
      index: r.index,
      plannedNs: r.plannedNs,
      actualNs: r.actualNs,
      latenessNs: r.latenessNs,
      errorBoundNs: Number.isFinite(r.errorBoundNs) ? Math.round(r.errorBoundNs) : 0,
      offsetNs: this.o.timescale.offsetNs(),
    };
    // The truth was read after fire() returned: subtract the time the actuator took.
    if (trueNs !== undefined) report.trueNs = trueNs - BigInt(Math.round(r.outcome?.costNs ?? 0));
    if (clockTrueNs !== undefined) report.clockTrueNs = clockTrueNs;
    if (r.actionLatenessNs !== undefined) report.actionLatenessNs = r.actionLatenessNs;
    if (r.wakeLeadNs !== undefined) report.wakeLeadNs = r.wakeLeadNs;
    if (r.spinLeadNs !== undefined) report.spinLeadNs = r.spinLeadNs;
    if (r.level !== undefined) report.level = r.level;
    if (r.outcome?.detail) report.detail = r.outcome.detail;
    if (r.error) report.error = r.error;
    const later = r.outcome?.later;
    if (later && r.kind === 'capture') {
      // A photo's exposure is known once its frame arrived (tens of ms): the report waits for it.
      void later.then((l) => {
        if (l.exposure) {
          report.exposureStartNs = l.exposure.startNs;
          report.exposureMidNs = l.exposure.midNs;
          report.exposureErrorNs = l.exposure.errorNs;
          report.sensorTimestampNs = l.exposure.sensorTimestampNs;
        } else if (l.exposureUnknown) report.exposureUnknown = l.exposureUnknown;
        if (l.file) report.file = l.file;
        if (l.error && !report.error) report.error = l.error;
        if (!this.stopped) this.queueReport(report);
      });
      return;
    }
    this.queueReport(report);
  }

  private queueReport(report: ReportMessage): void {
    this.counters.reportsQueued++;
    this.outbox.push(report);
    if (!this.flushTimer) {
      // Not now: the other nodes of the group fire at this same instant, maybe on the same cores (and
      // the broker must relay all of it). Encoding and sending can wait a few ms; a fire cannot.
      const delayMs = REPORT_DELAY_MS + Math.random() * REPORT_JITTER_MS;
      this.flushTimer = setTimeout(() => this.flushReports(), delayMs);
    }
  }

  private flushReports(): void {
    this.flushTimer = undefined;
    const batch = this.outbox;
    this.outbox = [];
    const topic = this.o.topics.node(this.id, 'report');
    for (const report of batch) {
      const payload = encodeMessage(report);
      this.recentReports.push({ atMs: Date.now(), topic, payload });
      if (this.recentReports.length > RECENT_REPORTS_MAX) this.recentReports.shift();
      this.session.publish(topic, payload, { qos: 1 }).catch((e: Error) => {
        // A timeout while offline is not a loss: the session keeps it for the reconnection.
        if (!/timeout|not acknowledged/.test(e.message)) this.counters.reportErrors++;
      });
    }
  }

  /** At-least-once delivery across a broker restart: the hub de-duplicates by report id. */
  private resendRecentReports(): void {
    if (this.stopped || !this.session.connected) return;
    const cutoff = Date.now() - RECENT_REPORTS_AGE_MS;
    while (this.recentReports.length > 0 && this.recentReports[0]!.atMs < cutoff) this.recentReports.shift();
    for (const r of this.recentReports) this.session.publish(r.topic, r.payload, { qos: 1 }).catch(() => undefined);
    if (this.recentReports.length > 0) this.log(`re-sent ${this.recentReports.length} recent reports after reconnecting`);
  }

  private async onCancel(payload: Buffer): Promise<void> {
    const parsed = parseMessage(payload, decodeCancel);
    if (!parsed.ok) {
      this.reject(parsed.id, parsed.reason, parsed.detail);
      return;
    }
    const cancel = parsed.value;
    if (cancel.nodes && !cancel.nodes.includes(this.id)) return;
    const verified = verifyWire(parsed.raw!, this.o.keys, this.requireSignature);
    if (!verified.ok) {
      this.reject(cancel.id, verified.reason, verified.detail);
      return;
    }
    const now = this.o.timescale.nowNs();
    const replayed = this.replay.check(cancel.id, cancel.issuedNs, now);
    if (replayed) {
      this.reject(cancel.id, replayed.reason, replayed.detail);
      return;
    }
    this.replay.remember(cancel.id, cancel.issuedNs, cancel.expiresNs, now);
    const entry = this.running.get(cancel.triggerId);
    const restoredIndex = this.restoring.findIndex((p) => p.wire.id === cancel.triggerId);
    if (!entry && restoredIndex < 0) {
      this.reject(cancel.triggerId, 'unknown-trigger', `no pending trigger '${cancel.triggerId}' on this node`);
      return;
    }
    if (entry) {
      this.running.delete(cancel.triggerId);
      entry.run.cancel();
    } else this.restoring.splice(restoredIndex, 1);
    await this.saveState();
    this.ack({ triggerId: cancel.triggerId, status: 'cancelled', detail: `cancelled by ${cancel.id}` });
  }

  // ------------------------------------------------------------ persistence

  private stateData(): NodeStateData {
    const data = emptyState(this.id);
    data.pending = [...[...this.running.values()].map((r) => r.pending), ...this.restoring];
    data.seen = this.replay.entries().map(([id, until]) => [id, until.toString()]);
    return data;
  }

  private saveState(): Promise<void> {
    if (!this.o.stateFile) return Promise.resolve();
    return this.o.stateFile.save(this.stateData()).catch((e: Error) => this.log(`state file not written: ${e.message}`));
  }

  /** Re-schedules what the state file held, once the clock is trustworthy (an unsynchronized clock may be seconds off). */
  private restorePending(): void {
    if (this.restoring.length === 0 || !this.o.timescale.synchronized || this.stopped) return;
    const list = this.restoring;
    this.restoring = [];
    for (const pending of list) {
      const decoded = decodeTrigger(pending.wire);
      const checked = decoded.ok ? validateAction(decoded.value.action, { allowKinds: this.allowKinds, allowOutDir: false }) : undefined;
      if (!decoded.ok || !checked?.ok) {
        this.log(`dropped an unreadable pending trigger from the state file`);
        continue;
      }
      // The file is ours, but keys may have changed since (a revoked key must not fire after a restart).
      const verified = verifyWire(pending.wire, this.o.keys, this.requireSignature);
      if (!verified.ok) {
        this.reject(decoded.value.id, verified.reason, `pending in the state file, no longer accepted: ${verified.detail}`);
        continue;
      }
      void this.schedule(decoded.value, checked.action, pending, true);
    }
  }

  private log(line: string): void {
    this.o.log?.(line);
  }
}

/** One actuator per GPIO line, one camera, one command runner. */
/** One prepared actuator per key: a capture's mode and its options make a different camera (a stream at 30 fps is not one at 60). */
function actuatorKey(action: ActionSpec): string {
  if (action.kind === 'blink') return `blink:${action.line}`;
  if (action.kind === 'capture') return `capture:${action.mode ?? ''}:${action.fps ?? ''}:${action.phaseLock ? 'lock' : ''}:${action.shutterUs ?? ''}:${action.triggerLine ?? ''}`;
  return action.kind;
}

function formatAhead(ns: bigint): string {
  const s = Number(ns) / 1e9;
  if (s < 120) return `${s.toFixed(1)} s`;
  if (s < 2 * 3600) return `${(s / 60).toFixed(1)} min`;
  if (s < 2 * 86400) return `${(s / 3600).toFixed(1)} h`;
  return `${(s / 86400).toFixed(s < 3650 * 86400 ? 1 : 0)} days`;
}
