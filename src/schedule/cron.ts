/**
 * Cron expressions with a seconds field and a time zone: cron-parser v5 (which
 * uses luxon for zones) parses and finds the next wall-clock match; this
 * wrapper turns it into UTC nanoseconds and guards the two failures cron
 * libraries are known for around DST: an instant that does not move forward
 * (a double fire) and a search that never ends (an infinite loop).
 *
 * DST semantics (what cron-parser does, pinned by test/schedule/cron.test.ts):
 * - spring gap: a wall time that does not exist fires the gap length later
 *   (02:30 in Berlin's skipped hour fires at 03:30 CEST), once;
 * - autumn overlap: a fixed wall time fires once, in the first pass (CEST);
 *   expressions that match every hour fire in both passes, since those are
 *   different real instants;
 * - every UTC instant fires at most once, and instants strictly increase.
 */
import { CronExpressionParser, type CronExpression } from 'cron-parser';
import { DateTime } from 'luxon';
import { NS_PER_MS, formatUtcNs } from '../time/units.js';
import { CronPatternError } from './errors.js';
import type { Occurrence, Recurrence } from './recurrence.js';

/** cron-parser answers in ms; a wrong answer (not after the asked instant) is retried from it this many times. */
const MAX_NON_ADVANCING_ANSWERS = 4;

export interface CronOptions {
  /** IANA zone (Europe/Berlin); the process's local zone when absent. */
  tz?: string;
}

/** Throws CronPatternError when the zone is not one luxon knows. */
export function checkZone(zone: string): void {
  const probe = DateTime.now().setZone(zone);
  if (!probe.isValid) throw new CronPatternError('', `unknown time zone '${zone}' (use an IANA name such as Europe/Berlin)`);
}

export class CronRecurrence implements Recurrence {
  readonly expression: string;
  readonly tz: string;
  private readonly iterator: CronExpression;

  constructor(expression: string, options: CronOptions = {}) {
    this.expression = expression;
    this.tz = options.tz ?? (DateTime.local().zoneName ?? 'UTC');
    const probe = DateTime.now().setZone(this.tz);
    if (!probe.isValid) throw new CronPatternError(expression, `unknown time zone '${this.tz}' (use an IANA name such as Europe/Berlin)`);
    const fields = expression.trim().split(/\s+/);
    if (fields.length !== 6 && !expression.trim().startsWith('@')) {
      throw new CronPatternError(expression, `expected 6 fields (second minute hour day-of-month month day-of-week), got ${fields.length}`);
    }
    try {
      this.iterator = CronExpressionParser.parse(expression, { tz: this.tz, currentDate: new Date(0) });
    } catch (error) {
      throw new CronPatternError(expression, (error as Error).message);
    }
  }

  /**
   * The first match strictly after afterNs (UTC ns). Throws CronPatternError
   * when cron-parser cannot find one: its search gives up after a fixed number
   * of steps (its loop limit), which is not proof that no match exists, so it
   * is a failure to report, not the end of the schedule.
   */
  next(afterNs: bigint): Occurrence | undefined {
    // Whole-ms floor: cron instants are whole seconds, so "after the ms" is "after the ns".
    let afterMs = afterNs / NS_PER_MS - (afterNs < 0n && afterNs % NS_PER_MS !== 0n ? 1n : 0n);
    for (let attempt = 0; attempt < MAX_NON_ADVANCING_ANSWERS; attempt++) {
      let nextMs: number;
      try {
        this.iterator.reset(new Date(Number(afterMs)));
        nextMs = this.iterator.next().getTime();
      } catch (error) {
        const message = (error as Error).message;
        const gaveUp = /loop limit/i.test(message) ? ` (cron-parser gave up searching after ${formatUtcNs(afterNs)}: no match found)` : '';
        throw new CronPatternError(this.expression, message + gaveUp);
      }
      const instantNs = BigInt(nextMs) * NS_PER_MS;
      if (instantNs > afterNs) return { instantNs };
      // Not forward: ask again just after the answer (the guard against a double fire).
      afterMs = (BigInt(nextMs) > afterMs ? BigInt(nextMs) : afterMs) + 1n;
    }
    throw new CronPatternError(this.expression, `no forward match after ${afterNs} ns (cron-parser kept answering the past)`);
  }
}
