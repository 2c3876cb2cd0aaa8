/** What a job's instants come from: one instant, a periodic pattern, a cron expression. */

export interface Occurrence {
  instantNs: bigint;
  /** Periodic patterns: the edge number k. */
  edge?: bigint;
}

export interface Recurrence {
  /** The first occurrence strictly after afterNs, or undefined when there are no more. */
  next(afterNs: bigint): Occurrence | undefined;
}

/** A single instant. */
export class OnceRecurrence implements Recurrence {
  constructor(readonly instantNs: bigint) {}

  next(afterNs: bigint): Occurrence | undefined {
    return this.instantNs > afterNs ? { instantNs: this.instantNs } : undefined;
  }
}
