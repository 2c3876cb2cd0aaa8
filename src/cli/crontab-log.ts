/**
 * What `lockstep crontab` says, every line naming its entry: JSON lines on
 * stdout (--json), or human lines (reports on stderr; a command's output on
 * the stream it used, each line prefixed with `[name] `).
 */
import { fireJson, fireLine, skipJson, skipLine, stepJson, stepLine } from './schedule-output.js';
import type { EntryState, ReloadChanges } from './crontab-jobs.js';
import type { FireReport, SkipReport } from '../schedule/reports.js';
import type { TimescaleChange } from '../time/timescale.js';

export interface CrontabLogOptions {
  json: boolean;
  /** Only failures, refusals and reloads (a command's own output is still passed on). */
  quiet: boolean;
  stdout?: NodeJS.WritableStream;
  stderr?: NodeJS.WritableStream;
}

function seconds(ns: number): string {
  return ns >= 1e9 ? `${(ns / 1e9).toFixed(3)} s` : `${(ns / 1e6).toFixed(1)} ms`;
}

export class CrontabLog {
  private readonly out: NodeJS.WritableStream;
  private readonly err: NodeJS.WritableStream;

  constructor(private readonly options: CrontabLogOptions) {
    this.out = options.stdout ?? process.stdout;
    this.err = options.stderr ?? process.stderr;
  }

  private json(record: Record<string, unknown>): void {
    this.out.write(JSON.stringify(record) + '\n');
  }

  say(line: string): void {
    this.err.write(`lockstep crontab: ${line}\n`);
  }

  fire(state: EntryState, report: FireReport, spawnLatencyNs: number, pid: number): void {
    if (this.options.json) {
      const line = fireJson({ ...report, jobId: state.name }, { spawnLatencyNs, pid, command: state.entry.command });
      this.out.write(line.slice(0, -1) + `,"line":${state.entry.line}}\n`);
    } else if (!this.options.quiet) this.say(`[${state.name}] ${fireLine(report, { spawnLatencyNs })}, pid ${pid}`);
  }

  output(state: EntryState, index: number, stream: 'stdout' | 'stderr', line: string): void {
    if (this.options.json) this.json({ event: 'output', job: state.name, index, stream, line });
    else (stream === 'stdout' ? this.out : this.err).write(`[${state.name}] ${line}\n`);
  }

  exit(state: EntryState, index: number, pid: number, code: number, durationNs: number): void {
    if (this.options.json) this.json({ event: 'exit', job: state.name, index, pid, code, durationNs });
    else if (code !== 0 || !this.options.quiet) this.say(`[${state.name}] run #${index} (pid ${pid}) exited with ${code} after ${seconds(durationNs)}`);
  }

  skip(state: EntryState, skip: SkipReport): void {
    if (this.options.json) this.json({ ...JSON.parse(skipJson(skip)), job: state.name });
    else if (!this.options.quiet || skip.reason === 'failed') this.say(`[${state.name}] ${skipLine(skip)}`);
  }

  step(step: TimescaleChange, source: string): void {
    if (this.options.json) this.out.write(stepJson(step, source) + '\n');
    else if (!this.options.quiet) this.say(stepLine(step, source));
  }

  loaded(source: string, names: string[]): void {
    if (this.options.json) this.json({ event: 'load', source, entries: names });
    else this.say(`${source}: ${names.length} entr${names.length === 1 ? 'y' : 'ies'} (${names.join(', ')})`);
  }

  reload(source: string, why: string, changes: ReloadChanges): void {
    if (this.options.json) {
      this.json({ event: 'reload', source, why, ...changes });
      return;
    }
    const parts: string[] = [];
    const list = (what: string, names: string[]) => names.length > 0 && parts.push(`${what} ${names.join(', ')}`);
    list('added', changes.added);
    list('removed', changes.removed);
    if (changes.renamed.length > 0) parts.push(`moved ${changes.renamed.map((r) => `${r.from} → ${r.to}`).join(', ')}`);
    parts.push(`${changes.unchanged.length} unchanged`);
    if (changes.leftRunning.length > 0) parts.push(`left to finish: ${changes.leftRunning.join(', ')}`);
    if (changes.rebootNotRun.length > 0) parts.push(`@reboot not run on a reload: ${changes.rebootNotRun.join(', ')}`);
    this.say(`reloaded ${source} (${why}): ${parts.join('; ')}`);
  }

  refused(source: string, why: string, reason: string): void {
    if (this.options.json) this.json({ event: 'reload-refused', source, why, reason });
    else this.say(`reload of ${source} (${why}) refused, the previous crontab keeps running:\n${reason}`);
  }
}
