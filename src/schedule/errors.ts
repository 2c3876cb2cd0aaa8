import { formatUtcNs } from '../time/units.js';

/** at() was given an instant that has already passed, and its policy is 'reject'. */
export class InstantPassed extends Error {
  constructor(readonly plannedNs: bigint, readonly nowNs: bigint) {
    super(
      `instant ${formatUtcNs(plannedNs)} passed ${((Number(nowNs - plannedNs)) / 1e6).toFixed(3)} ms ago ` +
        `(now ${formatUtcNs(nowNs)}); pick a later instant, or say what to do with a passed one (ifPast / --if-past)`,
    );
    this.name = 'InstantPassed';
  }
}

/** A cron expression or time zone that cron-parser/luxon cannot use. */
export class CronPatternError extends Error {
  constructor(readonly expression: string, readonly reason: string) {
    super(`cron expression '${expression}': ${reason}`);
    this.name = 'CronPatternError';
  }
}

/** A periodic pattern that describes no edges (period ≤ 0, negative count...). */
export class PatternError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'PatternError';
  }
}
