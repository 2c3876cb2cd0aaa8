/**
 * The scheduler: UTC deadlines (disciplined, from the Timescale) fired at the
 * exact nanosecond of the raw clock.
 *
 * Jobs wait in one binary heap ordered by planned UTC. Only the head is armed:
 *   arm()      coarse timer to a margin before the head's raw deadline
 *   onWake()   learn how late the timer was, then run the tail
 *   runTail()  sleep (Atomics.wait) to a spin margin before, spin to the
 *              deadline, fire every job due at that instant in arming order
 *   prepareGroup()  before the sleep: pop the jobs due at that instant,
 *              decide overlap and lateness, make their reports
 *   fireGroup()     at the instant: call each action first, nothing else
 *   finishGroup()   afterwards: put recurring jobs back, tell the listeners
 * The heap is keyed by UTC, not raw time: a slew or step of the Timescale keeps
 * the order of UTC instants, so re-arming on a change is just arm() again.
 */
import type { Timescale } from '../time/timescale.js';
import { DeadlineHeap, type HeapItem } from './heap.js';
import { realTimerHost, type TimerHandle, type TimerHost } from './timers.js';
import { AdaptiveMargin, type MarginOptions } from './margins.js';
import { InstantPassed } from './errors.js';
import type { Occurrence, Recurrence } from './recurrence.js';
import { PeriodicRecurrence, type PeriodicPattern } from './periodic.js';
import { CronRecurrence } from './cron.js';
import type { FireAction, FireReport, IfPast, Overlap, SkipReason, SkipReport } from './reports.js';
import { collectIfFar, inSpinRehearsalLeadNs, REHEARSALS, warmUpSpin } from './warm-up.js';

/**
 * Each coarse wait is capped at one minute: far below setTimeout's 2^31−1 ms
 * limit (beyond it Node fires after 1 ms), and short enough that after a
 * suspend (the monotonic clock stops while asleep) or a Timescale change we
 * look at the deadline again within a minute.
 */
export const MAX_COARSE_WAIT_MS = 60_000;
/**
 * setTimeout wakes up to 1 ms early (libuv's clock is in whole ms): a wake
 * within this much more than the coarse margin is still handled by the tail
 * instead of another timer round trip.
 */
export const EARLY_WAKE_ALLOWANCE_NS = 2_000_000;
/**
 * A coarse wait longer than this wakes PRE_WAKE_NS earlier first and arms
 * again from there: on the build machine (a VM) the first wake after a long
 * idle came 2–4 ms late, beyond the coarse margin (the first edge of a fresh
 * process found its instant already passed), while a ~45 ms wait from a
 * process just awake came 0.3–0.6 ms late. One more wake per instant.
 */
export const PRE_WAKE_ABOVE_MS = 50;
export const PRE_WAKE_NS = 20_000_000n;
/**
 * Coarse timer margin: setTimeout on this 2-core shared machine is ~0.5–1.5 ms
 * late, p99 ~2 ms; 1 ms is not enough, 4 ms is safe to start with. The stage
 * after it blocks without CPU, so a generous margin costs only event-loop time —
 * but that is time no I/O is served (an MQTT ack waits), hence the 20 ms cap.
 */
export const DEFAULT_COARSE_MARGIN: MarginOptions = { initialNs: 4_000_000, minNs: 1_500_000, maxNs: 20_000_000 };
/**
 * Spin margin: Atomics.wait oversleeps ~90 µs here (the kernel's 50 µs timer
 * slack plus wake-up), p99 ~150–270 µs on a quiet machine, milliseconds on a
 * busy one. The margin covers p99 × 1.5 of what was observed (a p95 left ~5 %
 * of fires late by construction), capped at 2 ms of CPU per fire; beyond that
 * the CPU is simply busy, and spinning longer would take it from the other
 * processes firing at the same instant.
 */
export const DEFAULT_SPIN_MARGIN: MarginOptions = { initialNs: 400_000, minNs: 50_000, maxNs: 2_000_000, quantile: 0.99, headroom: 1.5 };
/**
 * Beyond this lateness an instant is "late" and the job's ifLate policy
 * decides (fire anyway, or skip to the next instant in phase): 50 ms is far
 * beyond any normal wake-up here, and means the process was stalled or
 * suspended, or the Timescale stepped forward over the instant.
 */
export const DEFAULT_LATE_TOLERANCE_NS = 50_000_000;
/** Up to this lateness the UTC of a fire is planned + raw lateness (< 11 ns of error); beyond, the model's utcAt(). */
const ON_TIME_WITHIN_NS = 1_000n;
export interface SchedulerOptions {
  timescale: Timescale;
  /** Injectable for deterministic tests (ManualTimerHost with a ManualClock). */
  timers?: TimerHost;
  lateToleranceNs?: number;
  coarseMargin?: Partial<MarginOptions>;
  spinMargin?: Partial<MarginOptions>;
}

export interface JobOptions {
  id?: string;
  /** An instant beyond the late tolerance when its turn comes: fire anyway (at()'s default) or skip (recurring jobs' default, they resume in phase). */
  ifLate?: 'fire-late' | 'skip';
  lateToleranceNs?: number;
  /**
   * Called in the rehearsals of each instant (see warm-up.ts: when the job is
   * placed, before the precise sleep, and tens of µs before the instant),
   * with a scratch report made like the real one and `true` as its second
   * argument: runs the action's own path short of acting, so that it is
   * compiled, its inline caches know the real objects, and it is in the CPU
   * caches at the instant. Best of all it is the action itself, which acts
   * only when its second argument is not true (scheduleAction does that).
   * Must not act; what it throws is ignored.
   */
  rehearse?: FireAction;
}

export interface AtOptions extends JobOptions {
  /** The instant has already passed when at() is called: throw InstantPassed (default), skip (reported), or fire now as 'fired-late'. */
  ifPast?: IfPast;
}

export interface RecurringOptions extends JobOptions {
  /** The previous fire's action (its promise) is still running at the next instant: skip it (default, reported) or fire anyway. */
  overlap?: Overlap;
}

export interface CronJobOptions extends RecurringOptions {
  tz?: string;
}

export interface Job {
  readonly id: string;
  cancel(): void;
  /** The pending instant (disciplined UTC ns); undefined when done or cancelled. */
  nextInstantNs(): bigint | undefined;
  /** How many times the action was called. */
  readonly fired: number;
}

export interface SchedulerStats {
  pending: number;
  fires: number;
  skips: number;
  /** Coarse timer wakes aimed at the coarse margin before an instant (pre-wakes not counted). */
  coarseWakes: number;
  /** Wakes PRE_WAKE_NS before a coarse wake, after a wait longer than PRE_WAKE_ABOVE_MS. */
  preWakes: number;
  /** Coarse timer wakes that came after the deadline (the coarse margin was too short, or the process stalled). */
  lateWakes: number;
  /** Precise sleeps that overslept the deadline (the spin margin was too short, or the CPU was busy). */
  lateSleeps: number;
  /** Wall time spent busy-waiting (CPU burnt), summed over all tails. */
  spinNs: number;
  /** Wall time spent blocked in the precise sleep (no CPU). */
  sleepNs: number;
  coarseMarginNs: number;
  spinMarginNs: number;
}

type ErrorListener = (error: unknown, report: FireReport) => void;

class JobRecord implements Job, HeapItem {
  keyNs = 0n;
  seq = 0;
  heapIndex = -1;
  edge: bigint | undefined;
  firedCount = 0;
  /** Actions (promises) still running. */
  running = 0;
  done = false;
  /** Armed after its instant (at() with ifPast 'fire-late'): reported as fired late whatever the lateness. */
  armedPast = false;
  /** Popped for the instant being fired (out of the heap until finishGroup): a cancel before its turn is reported through it. */
  prepared: Prepared | undefined;

  constructor(
    private readonly state: SchedulerState,
    /** The caller's id, or the number of an automatic one (made into 'job-N' when asked: 100,000 strings less). */
    private readonly idOrNumber: string | number,
    readonly recurrence: Recurrence,
    readonly action: FireAction,
    readonly recurring: boolean,
    readonly ifLate: 'fire-late' | 'skip',
    readonly overlap: Overlap,
    readonly lateToleranceNs: number,
    readonly rehearse: FireAction | undefined,
  ) {}

  get id(): string {
    return typeof this.idOrNumber === 'string' ? this.idOrNumber : `job-${this.idOrNumber}`;
  }

  get fired(): number {
    return this.firedCount;
  }

  nextInstantNs(): bigint | undefined {
    return this.done || this.heapIndex < 0 ? undefined : this.keyNs;
  }

  cancel(): void {
    cancelJob(this.state, this, 'cancelled');
  }
}

/** One-shot jobs never ask their recurrence for a next instant (the instant is the heap key): one shared object. */
const ONE_SHOT: Recurrence = { next: () => undefined };

/** Everything the timer loop works on; the functions below are the loop. */
interface SchedulerState {
  readonly timescale: Timescale;
  readonly timers: TimerHost;
  readonly heap: DeadlineHeap<JobRecord>;
  readonly coarse: AdaptiveMargin;
  readonly spin: AdaptiveMargin;
  readonly lateToleranceNs: number;
  timer: TimerHandle | undefined;
  /** Raw instant the armed timer is meant to wake at. */
  timerWakeRawNs: bigint;
  /** The armed timer is a pre-wake (PRE_WAKE_NS early): its lateness says nothing of the coarse margin. */
  preWake: boolean;
  inTail: boolean;
  /** The jobs popped for the instant being fired, from prepareGroup to finishGroup. */
  group: Prepared[] | undefined;
  stopped: boolean;
  nextSeq: number;
  nextId: number;
  readonly fireListeners: Set<(r: FireReport) => void>;
  readonly skipListeners: Set<(r: SkipReport) => void>;
  readonly errorListeners: Set<ErrorListener>;
  readonly stats: { fires: number; skips: number; coarseWakes: number; preWakes: number; lateWakes: number; lateSleeps: number; spinNs: number; sleepNs: number };
}

// ---------------------------------------------------------------- the loop

/** Arms the coarse timer for the head of the heap (or clears it when empty). */
function arm(state: SchedulerState): void {
  state.timer?.cancel();
  state.timer = undefined;
  const head = state.heap.peek();
  if (head === undefined || state.stopped) return;
  const clock = state.timescale.clock;
  const nowRaw = clock.nowNs();
  let wakeRaw = state.timescale.rawAt(head.keyNs) - BigInt(Math.round(state.coarse.ns));
  state.preWake = wakeRaw - nowRaw > BigInt(PRE_WAKE_ABOVE_MS) * 1_000_000n;
  if (state.preWake) wakeRaw -= PRE_WAKE_NS;
  const delayNs = wakeRaw - nowRaw;
  const delayMs = delayNs <= 0n ? 0 : Math.min(Number(delayNs / 1_000_000n), MAX_COARSE_WAIT_MS);
  state.timerWakeRawNs = nowRaw + BigInt(delayMs) * 1_000_000n;
  if (state.timers === realTimerHost) collectIfFar(delayMs); // no scavenge due at the instant (warm-up.ts)
  state.timer = state.timers.setTimeout(() => onWake(state), delayMs);
}

/** Re-arms only if the new head must wake before the armed timer (cheap arming of many jobs). */
function armIfEarlier(state: SchedulerState, job: JobRecord): void {
  if (state.inTail || state.heap.peek() !== job) return;
  if (state.timer === undefined) return arm(state);
  const wakeRaw = state.timescale.rawAt(job.keyNs) - BigInt(Math.round(state.coarse.ns));
  if (wakeRaw < state.timerWakeRawNs) arm(state);
}

function onWake(state: SchedulerState): void {
  state.timer = undefined;
  if (state.preWake) state.stats.preWakes++;
  else state.stats.coarseWakes++;
  const head = state.heap.peek();
  if (head === undefined) return;
  const nowRaw = state.timescale.clock.nowNs();
  const missed = nowRaw > state.timescale.rawAt(head.keyNs);
  if (missed) state.stats.lateWakes++;
  if (!state.preWake || missed) state.coarse.record(Number(nowRaw - state.timerWakeRawNs), missed);
  runTail(state);
}

/**
 * Sleeps and spins to the head's deadline and fires it; keeps going while the
 * next head is within the spin margin (same-instant and near-instant jobs in
 * one tail), then arms the timer again. Everything that can be decided before
 * the deadline (which jobs, overlap, the report objects) is prepared before
 * the sleep: code that runs once a second is never optimised by V8, and
 * interpreted bigint work after the spin cost ~15 µs of lateness.
 */
function runTail(state: SchedulerState): void {
  const { timescale, timers, heap } = state;
  const clock = timescale.clock;
  state.inTail = true;
  try {
    let first = true;
    for (;;) {
      const head = heap.peek();
      if (head === undefined || state.stopped) break;
      const deadlineRaw = timescale.rawAt(head.keyNs);
      const nowRaw = clock.nowNs();
      const remainingNs = Number(deadlineRaw - nowRaw);
      const window = first ? state.coarse.ns + EARLY_WAKE_ALLOWANCE_NS : state.spin.ns;
      if (remainingNs > window) break; // woke early, capped wait, or next head not close: back to the timer
      first = false;
      const group = prepareGroup(state, head.keyNs, deadlineRaw, nowRaw);
      state.group = group;
      // Before the precise sleep, so that whatever a first run costs is slept off, never spun through.
      const rehearsalNs = deadlineRaw - clock.nowNs() > BigInt(Math.round(state.spin.ns)) ? rehearseGroup(state, group, deadlineRaw) : Infinity;
      // Also before the sleep: on a fresh process's first edge this first call cost 160–225 µs, which the spin then ran late by.
      const leadNs = inSpinRehearsalLeadNs(rehearsalNs);
      const sleepFromRaw = clock.nowNs();
      let oversleepNs: number | undefined;
      if (deadlineRaw - sleepFromRaw > BigInt(Math.round(state.spin.ns))) {
        const targetRaw = deadlineRaw - BigInt(Math.round(state.spin.ns));
        timers.sleepNs(Number(targetRaw - sleepFromRaw));
        const afterRaw = clock.nowNs();
        state.stats.sleepNs += Number(afterRaw - sleepFromRaw);
        oversleepNs = Number(afterRaw - targetRaw);
      }
      noteLeads(group, deadlineRaw, nowRaw, clock.nowNs());
      state.stats.spinNs += spinAndFire(state, group, deadlineRaw, leadNs);
      // Learning sorts the recent samples: after the instant, not in the spin margin.
      if (oversleepNs !== undefined) {
        const pastDeadline = oversleepNs > state.spin.ns;
        if (pastDeadline) state.stats.lateSleeps++;
        state.spin.record(oversleepNs, pastDeadline);
      }
      finishGroup(state, group);
    }
  } finally {
    state.inTail = false;
  }
  arm(state);
}

/** Where the tail began and the spin begins, against the deadline, into the reports (FireReport.wakeLeadNs): before the spin, so the actions see them. */
function noteLeads(group: Prepared[], deadlineRaw: bigint, wokeRaw: bigint, spinFromRaw: bigint): void {
  const wakeLeadNs = Number(deadlineRaw - wokeRaw);
  const spinLeadNs = Number(deadlineRaw - spinFromRaw);
  for (const { report } of group) {
    if (report === undefined) continue;
    report.wakeLeadNs = wakeLeadNs;
    report.spinLeadNs = spinLeadNs;
  }
}

/**
 * Runs the group's fire path as a rehearsal REHEARSALS times (no action
 * acts); returns how long the first run took, ns: it follows a sleep, like
 * the in-spin rehearsal, whose lead it sets (a warm run is several times
 * faster and would set a lead too short: the instant late).
 */
function rehearseGroup(state: SchedulerState, group: Prepared[], deadlineRaw: bigint): number {
  const clock = state.timescale.clock;
  let firstNs = Infinity;
  for (let i = 0; i < REHEARSALS; i++) {
    const startRaw = clock.nowNs();
    fireGroup(state, group, deadlineRaw, deadlineRaw, true);
    if (i === 0) firstNs = Number(clock.nowNs() - startRaw);
  }
  return firstNs;
}

/**
 * Every fire report, real or rehearsed, is made here with all its fields in
 * one order: the code after the spin then meets the object shape it was
 * rehearsed with (a new shape there is an inline-cache miss into V8's
 * runtime, microseconds each on a cold CPU). firedRawNs is overwritten
 * before the action sees the report.
 */
function newReport(job: JobRecord, keyNs: bigint, errorBoundNs: number): FireReport {
  const report: FireReport = { jobId: job.id, index: job.firedCount, plannedNs: keyNs, actualNs: keyNs, latenessNs: 0, errorBoundNs, firedRawNs: 0n, policy: 'on-time', wakeLeadNs: 0, spinLeadNs: 0 };
  if (job.edge !== undefined) report.edge = job.edge;
  return report;
}

/**
 * Before a job's first placement: the spin warmed (once per clock,
 * warm-up.ts), before the coarse timer is armed, so that its ~40 ms are
 * never counted into that timer's wait.
 */
function warmSpinFor(state: SchedulerState, instantNs: bigint): void {
  if (state.timers !== realTimerHost) return;
  const clock = state.timescale.clock;
  warmUpSpin(clock, realTimerHost.spinUntil, state.timescale.rawAt(instantNs) - clock.nowNs());
}

/** A job just placed: its fire path rehearsed now, milliseconds or more before its instant (its first run compiles). */
function rehearseJob(state: SchedulerState, job: JobRecord): void {
  if (job.rehearse === undefined) return;
  const raw = state.timescale.rawAt(job.keyNs);
  const report = newReport(job, job.keyNs, state.timescale.errorBoundNs(raw));
  const prepared: Prepared = { job, report, skip: undefined, fired: false, scratch: newReport(job, job.keyNs, report.errorBoundNs) };
  for (let i = 0; i < REHEARSALS; i++) fireGroup(state, [prepared], raw, raw, true);
}

/**
 * The critical path: spin to the deadline, call the actions. Returns the time
 * spent spinning, ns. Nothing runs here that has not run before: everything
 * that can be decided (the in-spin rehearsal's lead) is decided before the
 * precise sleep.
 */
function spinAndFire(state: SchedulerState, group: Prepared[], deadlineRaw: bigint, leadNs: bigint | undefined): number {
  const clock = state.timescale.clock;
  const spinStartRaw = clock.nowNs();
  // The last rehearsal brings the path back into the CPU caches, early enough that even a slow run ends before the instant.
  // Pass 0 is that rehearsal, pass 1 the instant: one loop, so that the instant's calls are the call sites just rehearsed.
  let endRaw = spinStartRaw;
  for (let pass = leadNs !== undefined && spinStartRaw < deadlineRaw - leadNs ? 0 : 1; pass < 2; pass++) {
    const rehearsal = pass === 0;
    endRaw = state.timers.spinUntil(clock, rehearsal ? deadlineRaw - leadNs! : deadlineRaw);
    fireGroup(state, group, deadlineRaw, rehearsal ? deadlineRaw : endRaw, rehearsal);
  }
  return Number(endRaw - spinStartRaw);
}

/** A job due at the deadline, with its report made in advance (or the reason it will not fire). */
interface Prepared {
  job: JobRecord;
  report: FireReport | undefined;
  skip: SkipReport | undefined;
  fired: boolean;
  /** Its recurrence failed to give the next instant: the job ended (reported after its own report). */
  failed?: SkipReport;
  /** The rehearsals' report: made by newReport like the real one, so the path rehearsed sees the same object shapes. */
  scratch: FireReport | undefined;
}

/** Pops every job planned at keyNs (arming order) and decides overlap and lateness before the deadline. */
function prepareGroup(state: SchedulerState, keyNs: bigint, deadlineRaw: bigint, nowRaw: bigint): Prepared[] {
  const { timescale, heap } = state;
  const group: Prepared[] = [];
  const nowUtc = timescale.utcAt(nowRaw);
  const expectedLatenessNs = nowRaw > deadlineRaw ? Number(nowUtc - keyNs) : 0;
  const errorBoundNs = timescale.errorBoundNs(deadlineRaw);
  for (let head = heap.peek(); head !== undefined && head.keyNs === keyNs; head = heap.peek()) {
    const job = heap.pop()!;
    let prepared: Prepared;
    if (job.running > 0 && job.overlap === 'skip') {
      prepared = { job, report: undefined, skip: skipReport(state, job, 'overlap', nowUtc), fired: false, scratch: undefined };
    } else if (expectedLatenessNs > job.lateToleranceNs && job.ifLate === 'skip') {
      prepared = { job, report: undefined, skip: skipReport(state, job, 'late', nowUtc), fired: false, scratch: undefined };
    } else {
      const report = newReport(job, keyNs, errorBoundNs);
      prepared = { job, report, skip: undefined, fired: false, scratch: job.rehearse === undefined ? undefined : newReport(job, keyNs, errorBoundNs) };
    }
    job.prepared = prepared;
    group.push(prepared);
  }
  return group;
}

/**
 * The instant: calls each action as the first thing, in order, with its report
 * complete. UTC of the call is planned + raw lateness while that is under
 * ON_TIME_WITHIN_NS (the model's slope is 1 ± 1.1 %: < 11 ns of error), else
 * the model's utcAt(). (Calling the action before this bigint arithmetic and
 * completing the report afterwards saved ~1 µs here, but the hardware and mesh
 * code copy the report inside the action: exact values there matter more.)
 */
function fireGroup(state: SchedulerState, group: Prepared[], deadlineRaw: bigint, endRaw: bigint, rehearsal: boolean): void {
  const clock = state.timescale.clock;
  for (let i = 0; i < group.length; i++) {
    const prepared = group[i]!;
    const { job } = prepared;
    // Rehearsed or real, the same statements run, loads included (a load or call first met at the instant costs µs on a cold CPU): only the values differ.
    const { report: real, scratch } = prepared;
    const { action, rehearse } = job;
    // A rehearsal plays on the scratch report (undefined: nothing to rehearse); the real one stays untouched until the instant.
    const report = rehearsal ? scratch : real;
    if (report === undefined || real === undefined || job.done) continue;
    report.policy = 'on-time';
    exactTiming(state, job, report, i === 0 ? endRaw : clock.nowNs(), deadlineRaw);
    if (job.armedPast) report.policy = 'fired-late';
    const act = rehearsal ? rehearse! : action;
    job.firedCount += rehearsal ? 0 : 1;
    prepared.fired = prepared.fired || !rehearsal;
    try {
      const result = act(report, rehearsal);
      if (rehearsal) continue; // a rehearsal only warms the caches: the real fire reports any error
      if (result && typeof (result as Promise<void>).then === 'function') {
        job.running++;
        (result as Promise<void>).then(
          () => job.running--,
          (error: unknown) => {
            job.running--;
            reportError(state, error, report);
          },
        );
      }
    } catch (error) {
      if (!rehearsal) reportError(state, error, report);
    }
  }
}

function exactTiming(state: SchedulerState, job: JobRecord, report: FireReport, raw: bigint, deadlineRaw: bigint): void {
  const lateRaw = raw - deadlineRaw;
  report.firedRawNs = raw;
  if (lateRaw < ON_TIME_WITHIN_NS) {
    report.actualNs = report.plannedNs + lateRaw;
    report.latenessNs = Number(lateRaw);
  } else {
    report.actualNs = state.timescale.utcAt(raw);
    report.latenessNs = Number(report.actualNs - report.plannedNs);
  }
  if (report.latenessNs > job.lateToleranceNs) report.policy = 'fired-late';
}

/** After the instant: stats, recurring jobs back in the heap, then the listeners. */
function finishGroup(state: SchedulerState, group: Prepared[]): void {
  state.group = undefined;
  for (const prepared of group) prepared.job.prepared = undefined;
  const nowUtc = state.timescale.nowNs();
  for (const prepared of group) {
    if (prepared.fired) state.stats.fires++;
    const failed = reschedule(state, prepared.job, nowUtc);
    if (failed !== undefined) prepared.failed = failed;
  }
  for (const { report, skip, fired, failed } of group) {
    if (fired) emit(state.fireListeners, report!);
    else if (skip !== undefined) emit(state.skipListeners, skip);
    if (failed !== undefined) emit(state.skipListeners, failed);
  }
}

/**
 * Puts a recurring job back at its next instant after the one just handled
 * (resuming in phase after a late skip). A recurrence that throws ends the
 * job with a 'failed' report, returned for finishGroup to emit: this runs in
 * the timer callback, where an exception would be uncaught.
 */
function reschedule(state: SchedulerState, job: JobRecord, nowUtc: bigint): SkipReport | undefined {
  if (job.done || state.stopped) return undefined;
  if (!job.recurring) {
    job.done = true;
    return undefined;
  }
  let next: Occurrence | undefined;
  try {
    next = nextOccurrence(job, job.keyNs);
    // Long stall or forward step: resume at the first instant not already beyond tolerance, no catch-up storm.
    if (next !== undefined && Number(nowUtc - next.instantNs) > job.lateToleranceNs) {
      next = nextOccurrence(job, nowUtc - 1n);
    }
  } catch (error) {
    job.done = true;
    const failed = skipReport(state, job, 'failed', nowUtc);
    failed.error = error instanceof Error ? error.message : String(error);
    return failed;
  }
  if (next === undefined) {
    job.done = true;
    return undefined;
  }
  place(state, job, next);
  return undefined;
}

function nextOccurrence(job: JobRecord, afterNs: bigint): Occurrence | undefined {
  return job.recurrence.next(afterNs);
}

function place(state: SchedulerState, job: JobRecord, occurrence: Occurrence): void {
  job.keyNs = occurrence.instantNs;
  job.edge = occurrence.edge;
  job.seq = state.nextSeq++;
  state.heap.push(job);
  armIfEarlier(state, job);
}

function cancelJob(state: SchedulerState, job: JobRecord, reason: SkipReason): void {
  if (job.done) return;
  job.done = true;
  const wasPending = state.heap.remove(job);
  if (state.heap.size === 0 && !state.inTail) {
    state.timer?.cancel(); // nothing left: let the process exit
    state.timer = undefined;
  }
  if (wasPending) emit(state.skipListeners, skipReport(state, job, reason, state.timescale.nowNs()));
  else if (job.prepared !== undefined) endBeforeTurn(state, job.prepared, reason);
}

/**
 * A job of the group being fired, cancelled (or stopped) by an earlier job's
 * action at the same instant: it is out of the heap, so this is its only
 * report. It goes out with the group's, in finishGroup, not from inside the
 * fire loop. A job that already fired, or whose skip was already decided
 * (overlap, late), keeps that report.
 */
function endBeforeTurn(state: SchedulerState, prepared: Prepared, reason: SkipReason): void {
  if (prepared.fired || prepared.skip !== undefined) return;
  prepared.report = undefined;
  prepared.skip = skipReport(state, prepared.job, reason, state.timescale.nowNs());
}

function skipReport(state: SchedulerState, job: JobRecord, reason: SkipReason, atNs: bigint): SkipReport {
  state.stats.skips++;
  const report: SkipReport = { jobId: job.id, index: job.firedCount, plannedNs: job.keyNs, atNs, reason };
  if (job.edge !== undefined) report.edge = job.edge;
  return report;
}

/**
 * Every listener hears every report: one that throws does not silence the
 * others, nor leave the timer loop half-way (its jobs re-queued, the next
 * deadline unarmed). Its error still surfaces, like a throwing setTimeout
 * callback's, from a microtask outside the loop.
 */
function emit<R>(listeners: Set<(r: R) => void>, report: R): void {
  for (const listener of listeners) {
    try {
      listener(report);
    } catch (error) {
      queueMicrotask(() => {
        throw error;
      });
    }
  }
}

function reportError(state: SchedulerState, error: unknown, report: FireReport): void {
  if (state.errorListeners.size === 0) {
    // Nobody listens: surface it like a throwing setTimeout callback would, outside the tail.
    queueMicrotask(() => {
      throw error;
    });
    return;
  }
  for (const listener of state.errorListeners) listener(error, report);
}

// ---------------------------------------------------------------- public API

export class Scheduler {
  private readonly state: SchedulerState;
  private readonly unsubscribe: () => void;

  constructor(options: SchedulerOptions) {
    this.state = {
      timescale: options.timescale,
      timers: options.timers ?? realTimerHost,
      heap: new DeadlineHeap<JobRecord>(),
      coarse: new AdaptiveMargin({ ...DEFAULT_COARSE_MARGIN, ...options.coarseMargin }),
      spin: new AdaptiveMargin({ ...DEFAULT_SPIN_MARGIN, ...options.spinMargin }),
      lateToleranceNs: options.lateToleranceNs ?? DEFAULT_LATE_TOLERANCE_NS,
      timer: undefined,
      timerWakeRawNs: 0n,
      preWake: false,
      inTail: false,
      group: undefined,
      stopped: false,
      nextSeq: 0,
      nextId: 0,
      fireListeners: new Set(),
      skipListeners: new Set(),
      errorListeners: new Set(),
      stats: { fires: 0, skips: 0, coarseWakes: 0, preWakes: 0, lateWakes: 0, lateSleeps: 0, spinNs: 0, sleepNs: 0 },
    };
    const state = this.state;
    // A slew or step moves every raw deadline: arm the head again (the tail recomputes its own).
    this.unsubscribe = options.timescale.onChange(() => {
      if (!state.inTail && !state.stopped) arm(state);
    });
  }

  get timescale(): Timescale {
    return this.state.timescale;
  }

  /** Fires once at instantNs (disciplined UTC ns). */
  at(instantNs: bigint, action: FireAction, options: AtOptions = {}): Job {
    const state = this.state;
    const job = this.newJob(ONE_SHOT, action, false, options, 'fire-late', 'allow');
    const nowNs = state.timescale.nowNs();
    if (instantNs < nowNs) {
      const ifPast = options.ifPast ?? 'reject';
      if (ifPast !== 'fire-late') {
        job.keyNs = instantNs;
        job.done = true;
        emit(state.skipListeners, skipReport(state, job, ifPast === 'reject' ? 'rejected' : 'past', nowNs));
        if (ifPast === 'reject') throw new InstantPassed(instantNs, nowNs);
        return job;
      }
      job.armedPast = true;
    }
    warmSpinFor(state, instantNs);
    place(state, job, { instantNs });
    rehearseJob(state, job);
    return job;
  }

  /**
   * Fires on edges epoch + k·period + offset (k = 0, 1, ... < count), from the
   * first edge after now (or startNs): late joiners land on the same edges.
   */
  every(pattern: PeriodicPattern, action: FireAction, options: RecurringOptions = {}): Job {
    const recurrence = new PeriodicRecurrence(pattern);
    const job = this.newJob(recurrence, action, true, options, 'skip', options.overlap ?? 'skip');
    return this.placeFirst(job);
  }

  /**
   * Fires on a 6-field cron expression (with seconds) in options.tz (local zone
   * by default). Throws CronPatternError for a bad expression or zone, or when
   * no first match is found; a later failure to find the next match ends the
   * job with a 'failed' skip report.
   */
  cron(expression: string, options: CronJobOptions, action: FireAction): Job {
    const recurrence = new CronRecurrence(expression, options.tz === undefined ? {} : { tz: options.tz });
    const job = this.newJob(recurrence, action, true, options, 'skip', options.overlap ?? 'skip');
    return this.placeFirst(job);
  }

  onFire(listener: (report: FireReport) => void): () => void {
    this.state.fireListeners.add(listener);
    return () => this.state.fireListeners.delete(listener);
  }

  /** Instants that did not fire, with the reason (rejected, past, late, overlap, cancelled, stopped). */
  onSkip(listener: (report: SkipReport) => void): () => void {
    this.state.skipListeners.add(listener);
    return () => this.state.skipListeners.delete(listener);
  }

  /** Actions that threw or rejected. Without a listener such errors are rethrown (uncaught). */
  onError(listener: ErrorListener): () => void {
    this.state.errorListeners.add(listener);
    return () => this.state.errorListeners.delete(listener);
  }

  /** The earliest pending instant (disciplined UTC ns), if any. */
  nextInstantNs(): bigint | undefined {
    return this.state.heap.peek()?.keyNs;
  }

  get pending(): number {
    return this.state.heap.size;
  }

  stats(): SchedulerStats {
    const s = this.state;
    return { pending: s.heap.size, ...s.stats, coarseMarginNs: s.coarse.ns, spinMarginNs: s.spin.ns };
  }

  /** Cancels every pending job (reported as 'stopped'), clears the timer, lets the process exit. Final. */
  stop(): void {
    const state = this.state;
    if (state.stopped) return;
    state.stopped = true;
    state.timer?.cancel();
    state.timer = undefined;
    this.unsubscribe();
    const pending = state.heap.clear().sort((a, b) => (a.keyNs < b.keyNs ? -1 : a.keyNs > b.keyNs ? 1 : a.seq - b.seq));
    const nowNs = state.timescale.nowNs();
    for (const job of pending) {
      job.done = true;
      if (state.skipListeners.size > 0) emit(state.skipListeners, skipReport(state, job, 'stopped', nowNs));
    }
    // Called from an action: the rest of its group is out of the heap, reported when the group finishes.
    for (const prepared of state.group ?? []) {
      prepared.job.done = true;
      endBeforeTurn(state, prepared, 'stopped');
    }
  }

  private newJob(
    recurrence: Recurrence,
    action: FireAction,
    recurring: boolean,
    options: JobOptions,
    defaultIfLate: 'fire-late' | 'skip',
    overlap: Overlap,
  ): JobRecord {
    if (this.state.stopped) throw new Error('scheduler stopped: make a new one');
    const tolerance = options.lateToleranceNs ?? this.state.lateToleranceNs;
    const id = options.id ?? this.state.nextId++;
    return new JobRecord(this.state, id, recurrence, action, recurring, options.ifLate ?? defaultIfLate, overlap, tolerance, options.rehearse);
  }

  private placeFirst(job: JobRecord): Job {
    const first = job.recurrence.next(this.state.timescale.nowNs());
    if (first === undefined) job.done = true;
    else {
      warmSpinFor(this.state, first.instantNs);
      place(this.state, job, first);
      rehearseJob(this.state, job);
    }
    return job;
  }
}
