/**
 * A crontab file read into entries, without scheduling anything: what
 * `lockstep crontab --test` prints and what a reload compares.
 *
 * The format is Debian cron's (crontab(5)), plus a seconds field:
 * - `m h dom mon dow CMD` (fires at second 0) or `s m h dom mon dow CMD`;
 *   a line is read as 6 fields when its 6th word looks like a day-of-week
 *   field (`*`, `1-5`, `sun`, `*\/2`...), else as 5 fields and a command.
 * - `@hourly @daily @midnight @weekly @monthly @yearly @annually @reboot CMD`.
 * - `# comment` lines and blank lines; a comment after an entry on the same
 *   line is part of its command, as in cron.
 * - `NAME = value` lines set NAME for the entries below them; spaces around
 *   `=` are optional, the value is trimmed unless put in matching single or
 *   double quotes, and is taken literally (no `$VAR` expansion), as Debian's
 *   cron does. `SHELL=` picks the shell (default /bin/sh, run as `SHELL -c CMD`).
 * - `CRON_TZ=Zone` sets the zone of the entries below it (not exported to them).
 * - `%` as cron treats it: the first unescaped `%` ends the command; the text
 *   after it goes to the command's stdin with each further unescaped `%` made a
 *   newline; `\%` is a literal `%` in both parts (its backslash removed).
 * - lockstep's own comments on the line(s) just above an entry:
 *   `# name: NAME` (default: `line-N`, its line number) and
 *   `# overlap: skip|allow` (default: the command line's --overlap).
 *
 * Every problem is collected with its line number; the file is refused as a
 * whole (CrontabSyntaxError) if there is any.
 */
import { CronRecurrence } from './cron.js';
import { CronPatternError } from './errors.js';
import type { Overlap } from './reports.js';

export const DEFAULT_SHELL = '/bin/sh';

/** The @ forms, as 6-field expressions (cron's own meaning: at the start of the period). */
const NICKNAMES: Record<string, string> = {
  '@yearly': '0 0 0 1 1 *',
  '@annually': '0 0 0 1 1 *',
  '@monthly': '0 0 0 1 * *',
  '@weekly': '0 0 0 * * 0',
  '@daily': '0 0 0 * * *',
  '@midnight': '0 0 0 * * *',
  '@hourly': '0 0 * * * *',
};

/** A day-of-week field: numbers 0-7, 3-letter names, `*`, `?`, ranges, lists, steps, `L`, `#`. */
const DOW_ITEM = String.raw`(?:\*|\?|[0-7](?:L|#[1-5])?|[a-z]{3}(?:L|#[1-5])?)(?:-(?:[0-7]|[a-z]{3}))?(?:\/\d+)?`;
const DOW_FIELD = new RegExp(`^${DOW_ITEM}(?:,${DOW_ITEM})*$`, 'i');
const DAY_NAMES = new Set(['sun', 'mon', 'tue', 'wed', 'thu', 'fri', 'sat']);
/** A 7th schedule word (a year field, as some crons take) looks like this: refused rather than run as a command. */
const YEAR_FIELD = /^(?:\*|\d{4}(?:[-,/]\d{1,4})*)$/;
/** An environment line: a name without blanks or `=`, optional blanks, `=`, the value. */
const ENV_LINE = /^([^\s=]+)[ \t]*=[ \t]*(.*)$/;
const NAME_COMMENT = /^#\s*name:\s*(.*)$/i;
const OVERLAP_COMMENT = /^#\s*overlap:\s*(.*)$/i;
const VALID_NAME = /^[A-Za-z0-9_.:-]+$/;

export interface CrontabEntry {
  /** 1-based line of the entry in the file. */
  line: number;
  /** From `# name:`, else `line-N`. */
  name: string;
  explicitName: boolean;
  /** The schedule as written (`*\/5 * * * *`, `@daily`). */
  schedule: string;
  /** 6-field expression for CronRecurrence; undefined for @reboot. */
  expression: string | undefined;
  reboot: boolean;
  tz: string;
  /** What the shell runs (after `%` handling). */
  command: string;
  /** Text for the command's stdin (from `%`), if any. */
  input: string | undefined;
  shell: string;
  /** The KEY=value lines in force for this entry. */
  env: Record<string, string>;
  overlap: Overlap;
  /**
   * Equal keys mean the same job for a reload: schedule, zone, command, input,
   * shell, environment, overlap and an explicit name (an automatic name follows
   * the line, so an entry that only moved keeps running).
   */
  key: string;
}

export interface Crontab {
  source: string;
  entries: CrontabEntry[];
}

export interface CrontabProblem {
  line: number;
  reason: string;
}

/** A crontab with one or more bad lines; message: one `SOURCE:LINE: reason` per line. */
export class CrontabSyntaxError extends Error {
  constructor(readonly source: string, readonly problems: CrontabProblem[]) {
    super(problems.map((p) => `${source}:${p.line}: ${p.reason}`).join('\n'));
    this.name = 'CrontabSyntaxError';
  }
}

export interface ParseCrontabOptions {
  /** The file's name in messages (`-` for stdin). */
  source: string;
  /** Zone of entries before any CRON_TZ line (default: the local zone). */
  defaultTz?: string;
  defaultOverlap?: Overlap;
  /** Reference instant for the "ever matches" check, UTC ns (default: now). */
  nowNs?: bigint;
}

/** Debian's value rule: trimmed, or inside matching quotes kept as is. */
function envValue(raw: string): string | { error: string } {
  const value = raw.trim();
  const quote = value[0];
  if (quote === '"' || quote === "'") {
    if (value.length >= 2 && value.endsWith(quote)) return value.slice(1, -1);
    return { error: `the value opens a ${quote === '"' ? 'double' : 'single'} quote that does not close at the end of the line` };
  }
  return value;
}

/** cron's `%` rule: the command up to the first unescaped %, then stdin with % → newline; `\%` → `%`. */
export function splitPercent(text: string): { command: string; input: string | undefined } {
  let command = '';
  let input: string | undefined;
  for (let i = 0; i < text.length; i++) {
    const ch = text[i]!;
    if (ch === '\\' && text[i + 1] === '%') {
      if (input === undefined) command += '%';
      else input += '%';
      i++;
    } else if (ch === '%') {
      if (input === undefined) input = '';
      else input += '\n';
    } else if (input === undefined) command += ch;
    else input += ch;
  }
  return { command, input };
}

/** The words of a line with where each ends, so the command keeps its own spacing. */
function words(line: string, count: number): { fields: string[]; rest: string } {
  const fields: string[] = [];
  let i = 0;
  while (fields.length < count) {
    while (i < line.length && (line[i] === ' ' || line[i] === '\t')) i++;
    if (i >= line.length) break;
    const startAt = i;
    while (i < line.length && line[i] !== ' ' && line[i] !== '\t') i++;
    fields.push(line.slice(startAt, i));
  }
  return { fields, rest: line.slice(i).replace(/^[ \t]+/, '') };
}

function looksLikeDow(word: string): boolean {
  if (!DOW_FIELD.test(word)) return false;
  const names = word.toLowerCase().match(/[a-z]{3}/g) ?? [];
  return names.every((n) => DAY_NAMES.has(n));
}

interface Schedule {
  schedule: string;
  expression: string | undefined;
  reboot: boolean;
  rest: string;
}

/** The schedule part of an entry line, or the reason it is not one. */
function readSchedule(line: string): Schedule | { error: string } {
  if (line.startsWith('@')) {
    const { fields, rest } = words(line, 1);
    const nick = fields[0]!.toLowerCase();
    if (nick === '@reboot') return { schedule: '@reboot', expression: undefined, reboot: true, rest };
    const expression = NICKNAMES[nick];
    if (expression === undefined) {
      return { error: `unknown schedule '${fields[0]}' (use @hourly, @daily, @midnight, @weekly, @monthly, @yearly, @annually or @reboot)` };
    }
    return { schedule: fields[0]!, expression, reboot: false, rest };
  }
  const { fields } = words(line, 7);
  if (fields.length < 5) return { error: `expected 5 or 6 schedule fields and a command, got ${fields.length} word${fields.length === 1 ? '' : 's'}` };
  const six = fields.length >= 6 && looksLikeDow(fields[5]!);
  if (six && fields.length >= 7 && YEAR_FIELD.test(fields[6]!)) {
    return { error: `'${fields[6]}' looks like a 7th (year) field: lockstep takes 5 fields, or 6 with seconds first` };
  }
  const n = six ? 6 : 5;
  const { fields: schedule, rest } = words(line, n);
  const expression = six ? schedule.join(' ') : `0 ${schedule.join(' ')}`;
  return { schedule: schedule.join(' '), expression, reboot: false, rest };
}

export function parseCrontab(text: string, options: ParseCrontabOptions): Crontab {
  const problems: CrontabProblem[] = [];
  const entries: CrontabEntry[] = [];
  const env: Record<string, string> = {};
  let tz = options.defaultTz;
  let shell = DEFAULT_SHELL;
  let pendingName: { name: string; line: number } | undefined;
  let pendingOverlap: Overlap | undefined;
  const nowNs = options.nowNs ?? BigInt(Date.now()) * 1_000_000n;
  const lines = text.split('\n');
  if (lines.length > 0 && lines[lines.length - 1] === '') lines.pop();
  lines.forEach((rawLine, index) => {
    const lineNo = index + 1;
    const problem = (reason: string) => problems.push({ line: lineNo, reason });
    const line = rawLine.replace(/\r$/, '').replace(/^[ \t]+/, '');
    if (line === '') return;
    if (line.startsWith('#')) {
      const named = NAME_COMMENT.exec(line);
      if (named) {
        const name = named[1]!.trim();
        if (!VALID_NAME.test(name)) problem(`'# name:' needs a name of letters, digits, '_', '-', '.', ':' (got '${name}')`);
        else pendingName = { name, line: lineNo };
      }
      const overlap = OVERLAP_COMMENT.exec(line);
      if (overlap) {
        const value = overlap[1]!.trim();
        if (value !== 'skip' && value !== 'allow') problem(`'# overlap:' takes skip or allow, not '${value}'`);
        else pendingOverlap = value;
      }
      return;
    }
    const envMatch = ENV_LINE.exec(line);
    if (envMatch && !line.startsWith('@')) {
      const [, key, raw] = envMatch as unknown as [string, string, string];
      const value = envValue(raw);
      if (typeof value !== 'string') return problem(`${key}=: ${value.error}`);
      if (key === 'CRON_TZ') {
        try {
          new CronRecurrence('0 0 0 * * *', { tz: value });
          tz = value;
        } catch (error) {
          problem(`CRON_TZ=${value}: ${error instanceof CronPatternError ? error.reason : (error as Error).message}`);
        }
        return;
      }
      if (key === 'SHELL') {
        if (!value.startsWith('/')) return problem(`SHELL=${value}: give the shell as an absolute path (such as /bin/bash)`);
        shell = value;
      }
      env[key] = value;
      return;
    }
    const schedule = readSchedule(line);
    if ('error' in schedule) return problem(schedule.error);
    const { command, input } = splitPercent(schedule.rest);
    if (command.trim() === '') return problem(`'${schedule.schedule}' has no command after it`);
    const entryTz = tz ?? new CronRecurrence('0 0 0 * * *').tz;
    if (schedule.expression !== undefined) {
      try {
        const recurrence = new CronRecurrence(schedule.expression, { tz: entryTz });
        if (recurrence.next(nowNs) === undefined) return problem(`'${schedule.schedule}' never matches`);
      } catch (error) {
        return problem(`'${schedule.schedule}': ${error instanceof CronPatternError ? error.reason : (error as Error).message}`);
      }
    }
    const overlap = pendingOverlap ?? options.defaultOverlap ?? 'skip';
    const explicit = pendingName;
    pendingName = undefined;
    pendingOverlap = undefined;
    const entryEnv = { ...env };
    entries.push({
      line: lineNo,
      name: explicit?.name ?? `line-${lineNo}`,
      explicitName: explicit !== undefined,
      schedule: schedule.schedule,
      expression: schedule.expression,
      reboot: schedule.reboot,
      tz: entryTz,
      command,
      input,
      shell,
      env: entryEnv,
      overlap,
      key: JSON.stringify([schedule.expression ?? '@reboot', entryTz, command, input ?? null, shell, entryEnv, overlap, explicit?.name ?? null]),
    });
  });
  const seen = new Map<string, number>();
  for (const entry of entries) {
    const first = seen.get(entry.name);
    if (first !== undefined) problems.push({ line: entry.line, reason: `the name '${entry.name}' is already used by line ${first}` });
    else seen.set(entry.name, entry.line);
  }
  if (pendingName !== undefined) problems.push({ line: pendingName.line, reason: `'# name: ${pendingName.name}' names no entry (no entry line follows it)` });
  if (problems.length > 0) throw new CrontabSyntaxError(options.source, problems.sort((a, b) => a.line - b.line));
  return { source: options.source, entries };
}
