/**
 * WHEN: how a person writes an instant on the command line, parsed exactly to
 * the nanosecond (not through Date, which stops at the millisecond).
 *
 *   2026-11-21T12:00:10.250Z          ISO 8601 with fraction (≤ 9 digits) and offset (Z, +01:00, -0500)
 *   2026-11-21T12:00:10.25            ISO 8601 without offset: wall time in --tz (or the local zone)
 *   12:00:10  12:00:10.250            next occurrence of that wall time, in --tz (or the local zone)
 *   +1.5s  +250ms  +2m                relative to now
 *   @1795262410  @1795262410.25       seconds since the Unix epoch
 *
 * Shared by `lockstep wait/at`, the hardware `fire` and the mesh `trigger` commands.
 */
import { DateTime } from 'luxon';
import { NS_PER_SECOND, parseDurationNs, DurationSyntaxError } from '../time/units.js';

export type WhenKind = 'iso' | 'time-of-day' | 'relative' | 'epoch';

export interface ParsedWhen {
  instantNs: bigint;
  kind: WhenKind;
  input: string;
}

export interface WhenContext {
  /** Disciplined UTC now (relative and time-of-day forms count from it). */
  nowNs: bigint;
  /** IANA zone for wall times; the process's local zone when absent. */
  zone?: string;
}

export const WHEN_FORMATS = [
  '2026-11-21T12:00:10.250Z (ISO 8601, fraction to 9 digits, offset Z or ±HH:MM; no offset: wall time in --tz/local)',
  '12:00:10[.250] (next occurrence of that time of day, in --tz/local)',
  '+1.5s, +250ms, +2m (from now)',
  '@1795262410[.25] (seconds since the Unix epoch)',
];

export class WhenSyntaxError extends Error {
  constructor(readonly input: string, readonly reason: string) {
    super(`cannot read WHEN '${input}': ${reason}. Accepted: ${WHEN_FORMATS.join('; ')}`);
    this.name = 'WhenSyntaxError';
  }
}

const ISO = /^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:[.,](\d{1,9}))?(?:([Zz])|([+-])(\d{2}):?(\d{2})?)?$/;
const TIME_OF_DAY = /^(\d{1,2}):(\d{2}):(\d{2})(?:[.,](\d{1,9}))?$/;
const EPOCH = /^@(\d{1,12})(?:\.(\d{1,9}))?$/;

export function parseWhen(input: string, context: WhenContext): ParsedWhen {
  const text = input.trim();
  if (text.startsWith('+')) return { instantNs: context.nowNs + relative(input, text.slice(1)), kind: 'relative', input };
  if (text.startsWith('@')) return { instantNs: epoch(input, text), kind: 'epoch', input };
  const iso = ISO.exec(text);
  if (iso) return { instantNs: isoInstant(input, iso, context), kind: 'iso', input };
  const tod = TIME_OF_DAY.exec(text);
  if (tod) return { instantNs: timeOfDay(input, tod, context), kind: 'time-of-day', input };
  throw new WhenSyntaxError(input, 'not one of the accepted forms');
}

/** "250" as a 9-digit fraction → 250_000_000 ns. */
function fractionNs(digits: string | undefined): bigint {
  return digits ? BigInt(digits.padEnd(9, '0')) : 0n;
}

function relative(input: string, duration: string): bigint {
  try {
    return parseDurationNs(duration);
  } catch (error) {
    if (error instanceof DurationSyntaxError) throw new WhenSyntaxError(input, 'a relative time needs a unit, like +1.5s or +250ms');
    throw error;
  }
}

function epoch(input: string, text: string): bigint {
  const match = EPOCH.exec(text);
  if (!match) throw new WhenSyntaxError(input, 'expected @SECONDS or @SECONDS.FRACTION');
  return BigInt(match[1]!) * NS_PER_SECOND + fractionNs(match[2]);
}

/** Days from 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's days_from_civil). */
function daysFromCivil(year: number, month: number, day: number): number {
  const y = month <= 2 ? year - 1 : year;
  const era = Math.floor(y / 400);
  const yoe = y - era * 400;
  const doy = Math.floor((153 * (month + (month > 2 ? -3 : 9)) + 2) / 5) + day - 1;
  const doe = yoe * 365 + Math.floor(yoe / 4) - Math.floor(yoe / 100) + doy;
  return era * 146097 + doe - 719468;
}

function daysInMonth(year: number, month: number): number {
  if (month === 2) return year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0) ? 29 : 28;
  return [4, 6, 9, 11].includes(month) ? 30 : 31;
}

function checkZone(input: string, zone: string | undefined): string {
  const name = zone ?? DateTime.local().zoneName ?? 'UTC';
  if (!DateTime.now().setZone(name).isValid) throw new WhenSyntaxError(input, `unknown time zone '${name}' (use an IANA name such as Europe/Berlin)`);
  return name;
}

function isoInstant(input: string, m: RegExpExecArray, context: WhenContext): bigint {
  const [year, month, day, hour, minute, second] = m.slice(1, 7).map(Number) as [number, number, number, number, number, number];
  if (month < 1 || month > 12 || day < 1 || day > daysInMonth(year, month)) throw new WhenSyntaxError(input, 'no such date');
  if (hour > 23 || minute > 59) throw new WhenSyntaxError(input, 'no such time of day');
  if (second > 59) throw new WhenSyntaxError(input, 'second 60 (a leap second) has no Unix time; use :59.999999999 or :00');
  const fraction = fractionNs(m[7]);
  if (m[8] !== undefined || m[9] !== undefined) {
    let offsetSeconds = 0;
    if (m[9] !== undefined) {
      const oh = Number(m[10]);
      const om = Number(m[11] ?? '0');
      if (oh > 23 || om > 59) throw new WhenSyntaxError(input, 'offset out of range');
      offsetSeconds = (m[9] === '-' ? -1 : 1) * (oh * 3600 + om * 60);
    }
    const seconds = daysFromCivil(year, month, day) * 86400 + hour * 3600 + minute * 60 + second - offsetSeconds;
    return BigInt(seconds) * NS_PER_SECOND + fraction;
  }
  // No offset: a wall time in the zone. One that does not exist (a DST gap) is refused, not moved.
  const zone = checkZone(input, context.zone);
  const local = DateTime.fromObject({ year, month, day, hour, minute, second }, { zone });
  if (!local.isValid || local.hour !== hour || local.minute !== minute || local.day !== day) {
    throw new WhenSyntaxError(input, `${text(m)} does not exist in ${zone} (a daylight-saving gap): give an offset`);
  }
  return BigInt(local.toMillis()) * 1_000_000n + fraction;
}

function text(m: RegExpExecArray): string {
  return m[0].slice(0, 19);
}

function timeOfDay(input: string, m: RegExpExecArray, context: WhenContext): bigint {
  const [hour, minute, second] = m.slice(1, 4).map(Number) as [number, number, number];
  if (hour > 23 || minute > 59 || second > 59) throw new WhenSyntaxError(input, 'no such time of day (00:00:00 to 23:59:59)');
  const fraction = fractionNs(m[4]);
  const zone = checkZone(input, context.zone);
  const now = DateTime.fromMillis(Number(context.nowNs / 1_000_000n), { zone });
  // Today, or else tomorrow. In a DST gap luxon moves the wall time forward by the gap (as cron does).
  for (const days of [0, 1, 2]) {
    const candidate = now.plus({ days }).set({ hour, minute, second, millisecond: 0 });
    const instantNs = BigInt(candidate.toMillis()) * 1_000_000n + fraction;
    if (instantNs > context.nowNs) return instantNs;
  }
  throw new WhenSyntaxError(input, 'no next occurrence found');
}
