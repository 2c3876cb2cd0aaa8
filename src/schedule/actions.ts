/**
 * Action specs: what to fire, as plain JSON-able data shared by
 * `lockstep fire` and the mesh trigger messages, with a validator that says
 * what is wrong, and scheduleAction(), which turns a spec + a start instant +
 * a prepared Actuator into scheduled instants on the scheduler.
 *
 * Durations are integer nanoseconds as JSON numbers (safe up to 104 days);
 * absolute instants never appear in a spec, only the start instant given
 * alongside it (as a bigint here, as a decimal string on the wire).
 */
import type { Actuator, FireOutcome, Level } from './actuator.js';
import { InstantPassed } from './errors.js';
import type { FireReport, SkipReport, IfPast } from './reports.js';

export type ActionKind = 'blink' | 'capture' | 'command';
export const ACTION_KINDS: readonly ActionKind[] = ['blink', 'capture', 'command'];

/** An LED train: on for onNs at the start of every period, count times (or until cancelled). */
export interface BlinkAction {
  kind: 'blink';
  /** A BCM pin number (17) or a line name ("GPIO17"). */
  line: number | string;
  onNs: number;
  periodNs: number;
  count: number | 'forever';
}

/**
 * How a camera takes the photo (hardware/README.md): signal (a waiting
 * rpicam-still, within about a frame period), stream (the sensor runs, the
 * frame nearest the instant is kept: within half a frame period), trigger
 * (a Global Shutter camera exposed by our own GPIO pulse).
 */
export type CaptureMode = 'signal' | 'stream' | 'trigger';
export const CAPTURE_MODES: readonly CaptureMode[] = ['signal', 'stream', 'trigger'];

/** One photo at the instant. */
export interface CaptureAction {
  kind: 'capture';
  /** signal when absent (what every node could do before modes existed). */
  mode?: CaptureMode;
  /** stream: the sensor's fixed frame rate. */
  fps?: number;
  /** stream: every node's frames on one UTC grid (k/fps since the epoch), so the nearest frames are simultaneous. */
  phaseLock?: boolean;
  /** stream and trigger: the fixed exposure, µs (trigger: the XTR pulse's low time). */
  shutterUs?: number;
  /** trigger: the GPIO line wired to the camera's XTR (the node's own --trigger-line when absent). */
  triggerLine?: number | string;
  /** Where the node writes the file; its own default when absent. */
  outDir?: string;
  /** Fire this much early (overrides the device's calibrated lead), ns. */
  leadNs?: number;
  /** Part of the file name: the trigger's name. */
  name?: string;
}

/** A program started at the instant. */
export interface CommandAction {
  kind: 'command';
  argv: string[];
}

export type ActionSpec = BlinkAction | CaptureAction | CommandAction;

/** Largest BCM/sysfs-relative line offset we accept (chips have at most a few hundred lines). */
const MAX_LINE_OFFSET = 1023;
/** Line names and capture names go into file names and command lines: keep them boring. */
const SAFE_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
/** A camera lead beyond 10 s is a typo, not a latency. */
const MAX_LEAD_NS = 10_000_000_000;
/** Shortest pulse we schedule: below ~50 µs the scheduler's own jitter dominates. */
const MIN_ON_NS = 50_000;
/** Frame rates beyond this are no camera's (the fastest Pi modes run ~200 fps). */
const MAX_FPS = 1000;
/** An exposure beyond 10 s is a typo. */
const MAX_SHUTTER_US = 10_000_000;
/** Command lines longer than this are not something a trigger should carry. */
const MAX_ARGV = 256;

export interface ValidateOptions {
  /** Kinds accepted (a mesh node may refuse `command` from the network). All by default. */
  allowKinds?: readonly ActionKind[];
  /** Accept capture.outDir (a node should refuse a directory chosen by a remote peer). Default true. */
  allowOutDir?: boolean;
}

export type ValidationResult = { ok: true; action: ActionSpec } | { ok: false; reason: string };

export class ActionSpecError extends Error {
  constructor(readonly reason: string) {
    super(`invalid action: ${reason}`);
    this.name = 'ActionSpecError';
  }
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function positiveSafeInteger(value: unknown): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value > 0;
}

function unknownKeys(record: Record<string, unknown>, allowed: string[]): string | undefined {
  return Object.keys(record).find((key) => !allowed.includes(key));
}

/** Normalizes a line: "17" → 17; "GPIO17" stays a name. */
function checkLine(value: unknown): { line: number | string } | { reason: string } {
  if (typeof value === 'string' && /^\d+$/.test(value)) value = Number(value);
  if (typeof value === 'number') {
    if (!Number.isInteger(value) || value < 0 || value > MAX_LINE_OFFSET) {
      return { reason: `blink.line must be a BCM pin number 0–${MAX_LINE_OFFSET} or a line name, not ${value}` };
    }
    return { line: value };
  }
  if (typeof value === 'string' && SAFE_NAME.test(value)) return { line: value };
  return { reason: `blink.line must be a BCM pin number (17) or a line name (GPIO17), not ${JSON.stringify(value)}` };
}

function validateBlink(r: Record<string, unknown>): ValidationResult {
  const extra = unknownKeys(r, ['kind', 'line', 'onNs', 'periodNs', 'count']);
  if (extra) return { ok: false, reason: `blink has no field '${extra}'` };
  const line = checkLine(r.line);
  if ('reason' in line) return { ok: false, reason: line.reason };
  if (!positiveSafeInteger(r.onNs) || r.onNs < MIN_ON_NS) {
    return { ok: false, reason: `blink.onNs must be an integer number of ns ≥ ${MIN_ON_NS} (50 µs), not ${JSON.stringify(r.onNs)}` };
  }
  if (!positiveSafeInteger(r.periodNs)) {
    return { ok: false, reason: `blink.periodNs must be a positive integer number of ns, not ${JSON.stringify(r.periodNs)}` };
  }
  if (r.periodNs <= r.onNs) {
    return { ok: false, reason: `blink.periodNs (${r.periodNs}) must be longer than blink.onNs (${r.onNs}): the LED needs an off time` };
  }
  if (r.count !== 'forever' && !positiveSafeInteger(r.count)) {
    return { ok: false, reason: `blink.count must be a positive integer or "forever", not ${JSON.stringify(r.count)}` };
  }
  return { ok: true, action: { kind: 'blink', line: line.line, onNs: r.onNs, periodNs: r.periodNs, count: r.count as number | 'forever' } };
}

function validateCapture(r: Record<string, unknown>, options: ValidateOptions): ValidationResult {
  const extra = unknownKeys(r, ['kind', 'outDir', 'leadNs', 'name', 'mode', 'fps', 'phaseLock', 'shutterUs', 'triggerLine']);
  if (extra) return { ok: false, reason: `capture has no field '${extra}'` };
  const action: CaptureAction = { kind: 'capture' };
  if (r.mode !== undefined) {
    if (typeof r.mode !== 'string' || !(CAPTURE_MODES as readonly string[]).includes(r.mode)) {
      return { ok: false, reason: `capture.mode must be ${CAPTURE_MODES.join(', ')}, not ${JSON.stringify(r.mode)}` };
    }
    action.mode = r.mode as CaptureMode;
  }
  const mode = action.mode ?? 'signal';
  if (r.fps !== undefined) {
    if (mode !== 'stream') return { ok: false, reason: 'capture.fps is for mode stream (the sensor runs at that rate)' };
    if (typeof r.fps !== 'number' || !(r.fps > 0 && r.fps <= MAX_FPS)) return { ok: false, reason: `capture.fps must be a number of frames per second in (0, ${MAX_FPS}], not ${JSON.stringify(r.fps)}` };
    action.fps = r.fps;
  }
  if (r.phaseLock !== undefined) {
    if (mode !== 'stream') return { ok: false, reason: 'capture.phaseLock is for mode stream (it aligns the running frames)' };
    if (typeof r.phaseLock !== 'boolean') return { ok: false, reason: `capture.phaseLock must be true or false, not ${JSON.stringify(r.phaseLock)}` };
    if (r.phaseLock) action.phaseLock = true;
  }
  if (r.shutterUs !== undefined) {
    if (mode === 'signal') return { ok: false, reason: 'capture.shutterUs is for modes stream and trigger' };
    if (!positiveSafeInteger(r.shutterUs) || r.shutterUs > MAX_SHUTTER_US) return { ok: false, reason: `capture.shutterUs must be an integer number of µs from 1 to ${MAX_SHUTTER_US}, not ${JSON.stringify(r.shutterUs)}` };
    action.shutterUs = r.shutterUs;
  }
  if (r.triggerLine !== undefined) {
    if (mode !== 'trigger') return { ok: false, reason: 'capture.triggerLine is for mode trigger' };
    const line = checkLine(r.triggerLine);
    if ('reason' in line) return { ok: false, reason: line.reason.replace('blink.line', 'capture.triggerLine') };
    action.triggerLine = line.line;
  }
  if (r.outDir !== undefined) {
    if (options.allowOutDir === false) return { ok: false, reason: 'capture.outDir is not accepted here: the node chooses its own directory' };
    if (typeof r.outDir !== 'string' || r.outDir === '' || r.outDir.includes('\0')) {
      return { ok: false, reason: 'capture.outDir must be a non-empty path' };
    }
    action.outDir = r.outDir;
  }
  if (r.leadNs !== undefined) {
    if (typeof r.leadNs !== 'number' || !Number.isSafeInteger(r.leadNs) || r.leadNs < 0 || r.leadNs > MAX_LEAD_NS) {
      return { ok: false, reason: `capture.leadNs must be an integer number of ns from 0 to ${MAX_LEAD_NS} (10 s), not ${JSON.stringify(r.leadNs)}` };
    }
    action.leadNs = r.leadNs;
  }
  if (r.name !== undefined) {
    if (typeof r.name !== 'string' || !SAFE_NAME.test(r.name)) {
      return { ok: false, reason: `capture.name must be 1–64 letters, digits, '.', '_' or '-', not ${JSON.stringify(r.name)}` };
    }
    action.name = r.name;
  }
  return { ok: true, action };
}

function validateCommand(r: Record<string, unknown>): ValidationResult {
  const extra = unknownKeys(r, ['kind', 'argv']);
  if (extra) return { ok: false, reason: `command has no field '${extra}'` };
  const argv = r.argv;
  if (!Array.isArray(argv) || argv.length === 0 || argv.length > MAX_ARGV) {
    return { ok: false, reason: `command.argv must be a list of 1–${MAX_ARGV} strings (the program, then its arguments)` };
  }
  if (!argv.every((a) => typeof a === 'string' && !a.includes('\0')) || argv[0] === '') {
    return { ok: false, reason: 'command.argv must hold strings without NUL, the first naming the program' };
  }
  return { ok: true, action: { kind: 'command', argv: [...(argv as string[])] } };
}

/** Checks untrusted data (a parsed trigger message, CLI options) and returns a clean copy or the reason. */
export function validateAction(value: unknown, options: ValidateOptions = {}): ValidationResult {
  if (!isRecord(value)) return { ok: false, reason: 'an action must be an object with a "kind"' };
  const kind = value.kind;
  if (typeof kind !== 'string' || !(ACTION_KINDS as readonly string[]).includes(kind)) {
    return { ok: false, reason: `unknown action kind ${JSON.stringify(kind)} (expected ${ACTION_KINDS.join(', ')})` };
  }
  const allowed = options.allowKinds ?? ACTION_KINDS;
  if (!allowed.includes(kind as ActionKind)) return { ok: false, reason: `action '${kind}' is not accepted here` };
  switch (kind as ActionKind) {
    case 'blink':
      return validateBlink(value);
    case 'capture':
      return validateCapture(value, options);
    case 'command':
      return validateCommand(value);
  }
}

/** validateAction that throws ActionSpecError with the reason. */
export function parseAction(value: unknown, options: ValidateOptions = {}): ActionSpec {
  const result = validateAction(value, options);
  if (!result.ok) throw new ActionSpecError(result.reason);
  return result.action;
}

/** One line a person reads: "blink GPIO 17: 100 ms on every 1 s, 10 times". */
export function describeAction(action: ActionSpec): string {
  const ms = (ns: number) => `${ns / 1e6} ms`;
  switch (action.kind) {
    case 'blink':
      return `blink line ${action.line}: ${ms(action.onNs)} on every ${ms(action.periodNs)}, ${action.count === 'forever' ? 'until stopped' : `${action.count} times`}`;
    case 'capture':
      return `capture${action.mode && action.mode !== 'signal' ? ` (${action.mode}${action.fps ? ` ${action.fps} fps` : ''}${action.phaseLock ? ', phase-locked' : ''}${action.shutterUs ? `, ${action.shutterUs} µs` : ''}${action.triggerLine !== undefined ? `, XTR on line ${action.triggerLine}` : ''})` : ''}${action.name ? ` '${action.name}'` : ''}${action.outDir ? ` into ${action.outDir}` : ''}${action.leadNs !== undefined ? ` (lead ${ms(action.leadNs)})` : ''}`;
    case 'command':
      return `command ${action.argv.map((a) => JSON.stringify(a)).join(' ')}`;
  }
}

// ---------------------------------------------------------------------------
// Scheduling. The scheduler is described structurally (only what we call), so
// this file depends on its shape, not its module: src/schedule/scheduler.ts
// satisfies it.

/** The scheduler's own report types (reports.ts), under the names this file uses. */
export type SchedulerFireReport = FireReport;
export type SchedulerSkipReport = SkipReport;

export interface SchedulerJob {
  readonly id: string;
  /** How many times the action was called. */
  readonly fired: number;
  cancel(): void;
  nextInstantNs(): bigint | undefined;
}

export type PastPolicy = IfPast;

export interface ActionScheduler {
  /** `rehearse` is given the action itself: called with `rehearsal` true, it runs its path short of the actuator's fire(). */
  at(instantNs: bigint, action: (report: SchedulerFireReport, rehearsal?: boolean) => void, options?: { ifPast?: PastPolicy; rehearse?: (report: SchedulerFireReport, rehearsal?: boolean) => void }): SchedulerJob;
  every(
    pattern: { epochNs: bigint; periodNs: bigint; offsetNs?: bigint; count?: number; startNs?: bigint },
    action: (report: SchedulerFireReport, rehearsal?: boolean) => void,
    options?: { rehearse?: (report: SchedulerFireReport, rehearsal?: boolean) => void },
  ): SchedulerJob;
  /**
   * Its notion of now (the real Scheduler's Timescale): used to reject a
   * train that already started. Its raw clock, read as the actuator is
   * called, gives each report the lateness at the action's first line.
   */
  readonly timescale?: { nowNs(): bigint; readonly clock?: { nowNs(): bigint } };
  /** Listens to every skipped instant; returns the unsubscribe function. */
  onSkip?(listener: (report: SchedulerSkipReport) => void): () => void;
}

/** One fire of an action: the scheduler's report, plus what the actuator did. */
export interface ActionFireReport {
  kind: ActionKind;
  /** Which fire of the action (blink: the pulse number k; both edges of a pulse share it). */
  index: number;
  /** Blink: the level driven. */
  level?: Level;
  /** When the physical event was meant to happen (UTC ns). */
  targetNs: bigint;
  /** When the scheduler was asked to fire: targetNs − leadNs. */
  plannedNs: bigint;
  /** When it fired, on the disciplined scale. */
  actualNs: bigint;
  /** actualNs − plannedNs: read where the scheduler's spin ended. */
  latenessNs: number;
  /**
   * The lateness where the actuator's fire() was called, the action's first
   * line: latenessNs plus the path from the spin to it (tens of ns warm; a
   * regression there, such as code compiled at its first call, shows here).
   */
  actionLatenessNs?: number;
  /** How long before the instant the process woke for it, and its spin began (FireReport.wakeLeadNs): why a late fire was late. */
  wakeLeadNs?: number;
  spinLeadNs?: number;
  /** The Timescale's error bound at the fire. */
  errorBoundNs: number;
  /** How early, on purpose (camera lead). */
  leadNs: number;
  outcome?: FireOutcome;
  /** Set when fire() threw. */
  error?: string;
}

/** An instant of the action the scheduler did not fire. */
export interface ActionSkipReport {
  kind: ActionKind;
  index: number;
  level?: Level;
  plannedNs: bigint;
  reason: string;
}

export interface ActionSummary {
  fires: number;
  errors: number;
  skips: number;
  /** true when cancel() ended it before its last fire. */
  cancelled: boolean;
}

export interface ScheduleActionOptions {
  /** The trigger's id or name: capture files are named after it. */
  tag?: string;
  /** Called synchronously for each fire, after the actuator. Keep it cheap. */
  onFire?(report: ActionFireReport): void;
  /** Called for each instant the scheduler skipped (late, past). */
  onSkip?(report: ActionSkipReport): void;
  /**
   * The (first) instant has already passed: 'reject' throws InstantPassed
   * (at()'s default); 'skip' / 'fire-late' run what is left (a blink joins its
   * train at the next edge, in phase; a capture or command fires late or not).
   * A blink with notBeforeNs is never rejected: joining late is what it asks for.
   */
  ifPast?: PastPolicy;
  /** Blink: no edge before this instant (a node joining a running train stays in phase). */
  notBeforeNs?: bigint;
}

export interface ActionRun {
  /** The first instant the scheduler will fire at (after lead). */
  readonly firstPlannedNs: bigint;
  /** The last instant (blink: the last off edge); undefined for "forever". */
  readonly lastPlannedNs: bigint | undefined;
  /** Resolves after the last instant fired or was skipped (never for blink "forever"), or at cancel(). */
  readonly done: Promise<ActionSummary>;
  /** Cancels what is left; a blink that is mid-pulse is driven off at once. */
  cancel(): void;
}

/**
 * Schedules an action's instants: for a blink, every on-edge and every
 * off-edge is its own instant of two phase-locked patterns sharing the start
 * as their epoch (pulse k is on at start + k·period, off at + onNs: never
 * "last + period", so nothing accumulates and late joiners stay in phase);
 * for a capture, one instant moved early by the lead; for a command, one
 * instant. The actuator must already be prepared.
 */
export function scheduleAction(
  scheduler: ActionScheduler,
  action: ActionSpec,
  startNs: bigint,
  actuator: Actuator,
  options: ScheduleActionOptions = {},
): ActionRun {
  const summary: ActionSummary = { fires: 0, errors: 0, skips: 0, cancelled: false };
  let finish!: (s: ActionSummary) => void;
  const done = new Promise<ActionSummary>((resolve) => (finish = resolve));
  let finished = false;
  let unsubscribe: (() => void) | undefined;
  const end = () => {
    if (finished) return;
    finished = true;
    unsubscribe?.();
    finish({ ...summary });
  };

  const rawClock = scheduler.timescale?.clock;
  /**
   * `rehearsal`: the very same path up to the actuator, which only
   * rehearses (the scheduler calls each action below as its own rehearsal,
   * src/schedule/warm-up.ts): what runs at the instant has run before, on
   * the same objects.
   */
  const fireAndReport = (report: SchedulerFireReport, targetNs: bigint, leadNs: number, index: number, level: Level | undefined, rehearsal: boolean): void => {
    let outcome: FireOutcome | void = undefined;
    let error: string | undefined;
    let enteredRaw: bigint | undefined;
    try {
      const input = level === undefined ? { index, tag: options.tag } : { level, index, tag: options.tag };
      enteredRaw = rawClock?.nowNs();
      if (actuator.rehearsesInFire === true) {
        // One call site, one function, rehearsed or real (Actuator.rehearsesInFire).
        outcome = actuator.fire(targetNs, input, rehearsal);
        if (rehearsal) return;
      } else if (rehearsal) {
        actuator.rehearse?.(targetNs, input);
        return;
      } else {
        outcome = actuator.fire(targetNs, input); // the one call a rehearsal cannot make: the actuator's first line is in it
      }
      summary.fires++;
    } catch (thrown) {
      if (rehearsal) return; // the real fire meets it and reports it
      error = (thrown as Error).message;
      summary.errors++;
    }
    if (!options.onFire) return;
    const full: ActionFireReport = {
      kind: action.kind,
      index,
      targetNs,
      plannedNs: report.plannedNs,
      actualNs: report.actualNs,
      latenessNs: report.latenessNs,
      errorBoundNs: report.errorBoundNs,
      leadNs,
    };
    if (enteredRaw !== undefined && report.firedRawNs !== undefined) full.actionLatenessNs = report.latenessNs + Number(enteredRaw - report.firedRawNs);
    if (report.wakeLeadNs !== undefined) full.wakeLeadNs = report.wakeLeadNs;
    if (report.spinLeadNs !== undefined) full.spinLeadNs = report.spinLeadNs;
    if (level !== undefined) full.level = level;
    if (outcome) full.outcome = outcome;
    if (error !== undefined) full.error = error;
    options.onFire(full);
  };

  /** Which of our jobs a skip belongs to, and what it means for us. */
  const skipHandlers = new Map<string, (skip: SchedulerSkipReport) => void>();
  if (scheduler.onSkip) {
    unsubscribe = scheduler.onSkip((skip) => skipHandlers.get(skip.jobId)?.(skip));
  }
  const reportSkip = (skip: SchedulerSkipReport, index: number, level?: Level) => {
    if (skip.reason === 'cancelled' || skip.reason === 'stopped') return;
    summary.skips++;
    const report: ActionSkipReport = { kind: action.kind, index, plannedNs: skip.plannedNs, reason: skip.reason };
    if (level !== undefined) report.level = level;
    options.onSkip?.(report);
  };

  if (action.kind === 'blink') {
    const nowNs = scheduler.timescale?.nowNs();
    if (options.ifPast === 'reject' && options.notBeforeNs === undefined && nowNs !== undefined && startNs < nowNs) {
      unsubscribe?.();
      throw new InstantPassed(startNs, nowNs);
    }
    const periodNs = BigInt(action.periodNs);
    const onNs = BigInt(action.onNs);
    const count = action.count === 'forever' ? undefined : action.count;
    const lastEdge = count === undefined ? undefined : BigInt(count - 1);
    let lit = false;
    const pattern = (offsetNs: bigint) => ({
      epochNs: startNs,
      periodNs,
      offsetNs,
      ...(count === undefined ? {} : { count }),
      ...(options.notBeforeNs === undefined ? {} : { startNs: options.notBeforeNs }),
    });
    const pulse = (report: { edge?: bigint; index: number }) => (report.edge === undefined ? report.index : Number(report.edge));
    // Each edge's action is also its rehearsal (rehearsal true: the actuator only rehearses, nothing changes).
    const onEdge = (report: SchedulerFireReport, rehearsal = false) => {
      if (finished) return;
      lit = lit || !rehearsal; // the same store rehearsed or real (warm-up.ts)
      fireAndReport(report, report.plannedNs, 0, pulse(report), 1, rehearsal);
    };
    const onJob = scheduler.every(pattern(0n), onEdge, { rehearse: onEdge });
    // The off job ends the train: its last edge (fired or skipped) resolves done.
    const isLast = (report: { edge?: bigint; index: number }) => lastEdge !== undefined && BigInt(pulse(report)) >= lastEdge;
    const offEdge = (report: SchedulerFireReport, rehearsal = false) => {
      if (finished) return;
      lit = lit && rehearsal;
      fireAndReport(report, report.plannedNs, 0, pulse(report), 0, rehearsal);
      if (!rehearsal && isLast(report)) end();
    };
    const offJob = scheduler.every(pattern(onNs), offEdge, { rehearse: offEdge });
    skipHandlers.set(onJob.id, (skip) => reportSkip(skip, pulse(skip), 1));
    skipHandlers.set(offJob.id, (skip) => {
      reportSkip(skip, pulse(skip), 0);
      if (!finished && lit) {
        // Never leave an LED lit because its off edge came too late to schedule.
        try {
          actuator.fire(skip.plannedNs, { level: 0, index: pulse(skip), tag: options.tag });
        } catch {
          /* release() drives it off too */
        }
        lit = false;
      }
      if (isLast(skip)) end();
    });
    if (lastEdge !== undefined && offJob.nextInstantNs() === undefined) end(); // the whole train is already past
    return {
      firstPlannedNs: startNs,
      lastPlannedNs: lastEdge === undefined ? undefined : startNs + lastEdge * periodNs + onNs,
      done,
      cancel() {
        if (finished) return;
        summary.cancelled = true;
        onJob.cancel();
        offJob.cancel();
        if (lit) {
          try {
            actuator.fire(startNs, { level: 0 }); // never leave an LED lit by a cancelled train
          } catch {
            /* release() drives it off too */
          }
          lit = false;
        }
        end();
      },
    };
  }

  const leadNs = action.kind === 'capture' ? action.leadNs ?? actuator.leadNs ?? 0 : 0;
  const plannedNs = startNs - BigInt(leadNs);
  const onInstant = (report: SchedulerFireReport, rehearsal = false) => {
    if (finished) return;
    fireAndReport(report, startNs, leadNs, 0, undefined, rehearsal);
    if (!rehearsal) end();
  };
  const job = scheduler.at(plannedNs, onInstant, { ...(options.ifPast ? { ifPast: options.ifPast } : {}), rehearse: onInstant });
  skipHandlers.set(job.id, (skip) => {
    reportSkip(skip, 0);
    end();
  });
  if (job.nextInstantNs() === undefined && !finished && job.fired === 0) {
    // Skipped inside at() itself (ifPast 'skip'), before we knew the job's id.
    reportSkip({ jobId: job.id, index: 0, plannedNs, atNs: scheduler.timescale?.nowNs() ?? plannedNs, reason: 'past' }, 0);
    end();
  }
  return {
    firstPlannedNs: plannedNs,
    lastPlannedNs: plannedNs,
    done,
    cancel() {
      if (finished) return;
      summary.cancelled = true;
      job.cancel();
      end();
    },
  };
}

/** A fire report as JSON-able data (bigint instants as decimal strings). */
export function actionReportJson(report: ActionFireReport): Record<string, unknown> {
  const { outcome, ...rest } = report;
  const json: Record<string, unknown> = {
    ...rest,
    targetNs: report.targetNs.toString(),
    plannedNs: report.plannedNs.toString(),
    actualNs: report.actualNs.toString(),
  };
  if (outcome) {
    const { later: _later, ...plain } = outcome;
    json.outcome = plain;
  }
  return json;
}
