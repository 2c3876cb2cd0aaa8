/** What the scheduler tells about every instant: fired, or why not. */

export type FirePolicy = 'on-time' | 'fired-late';

export interface FireReport {
  jobId: string;
  /** The k-th fire of this job, from 0. */
  index: number;
  /** For periodic jobs: the edge number k (instant = epoch + k·period + offset). */
  edge?: bigint;
  /** The instant asked for, disciplined UTC ns. */
  plannedNs: bigint;
  /** Disciplined UTC when the action was called. */
  actualNs: bigint;
  /** actual − planned, ns (negative would be early: never by design). */
  latenessNs: number;
  /** timescale.errorBoundNs() at that moment (Infinity when unsynchronized). */
  errorBoundNs: number;
  /**
   * The raw clock's reading that ended the spin (the lateness was read from
   * it): what comes after the spin measures its own delay against it.
   */
  firedRawNs?: bigint;
  /** 'fired-late': the instant had passed beyond the late tolerance and the policy said fire anyway. */
  policy?: FirePolicy;
  /**
   * Why an instant was late, in every report (set before the spin, raw-clock
   * ns before the instant; negative: after it): when the process woke for
   * it (the coarse timer's callback) ...
   */
  wakeLeadNs?: number;
  /** ...and when its spin began (after the precise sleep). Late with a spin that began in time: the CPU was taken during the spin. */
  spinLeadNs?: number;
}

/**
 * What the scheduler calls at the instant. `rehearsal` is true only when the
 * function is also given as the job's `rehearse` option and the scheduler is
 * rehearsing (warm-up.ts): it must then run its path short of acting.
 */
export type FireAction = (report: FireReport, rehearsal?: boolean) => void | Promise<void>;

/**
 * Why an instant did not fire:
 * - 'rejected': at() with ifPast 'reject' on a passed instant (it also threw InstantPassed);
 * - 'past': at() with ifPast 'skip' on a passed instant;
 * - 'late': the instant passed beyond the late tolerance while pending
 *   (suspend, a stalled event loop, a forward step of the Timescale), and
 *   the job's policy is to skip (periodic and cron: they pick the next instant in phase);
 * - 'overlap': the previous fire's action was still running (overlap 'skip');
 * - 'cancelled': job.cancel(); 'stopped': scheduler.stop();
 * - 'failed': the job's recurrence could not give its next instant (it threw:
 *   cron-parser gave up searching, or kept answering the past): the job ends,
 *   `error` says why, plannedNs is the instant after which it searched.
 */
export type SkipReason = 'rejected' | 'past' | 'late' | 'overlap' | 'cancelled' | 'stopped' | 'failed';

export interface SkipReport {
  jobId: string;
  /** The index the fire would have had. */
  index: number;
  edge?: bigint;
  plannedNs: bigint;
  /** Disciplined UTC when the decision was taken. */
  atNs: bigint;
  reason: SkipReason;
  /** 'failed': the recurrence's error message. */
  error?: string;
}

export type IfPast = 'reject' | 'skip' | 'fire-late';
export type Overlap = 'skip' | 'allow';
