/** How `wait`, `at` and `cron` print fire and skip reports: one JSON object per line, or one human line. */
import { formatUtcNs } from '../time/units.js';
import type { FireReport, SkipReport } from '../schedule/reports.js';
import type { TimescaleChange } from '../time/timescale.js';

export interface FireExtras {
  /** The lateness at the action's first line (latenessNs is read at the spin's end), ns. */
  actionLatenessNs?: number;
  /** From the action's first line to the program's release (the go written to its pre-forked helper, or spawn() returned), ns. */
  spawnLatencyNs?: number;
  /** The program was released from a helper forked in advance (it then execs), not spawned at the instant. */
  preforked?: boolean;
  /** at --early: the program was started this long before the instant (LOCKSTEP_INSTANT_NS is the instant), ns. */
  earlyNs?: number;
  pid?: number;
  command?: string;
}

/** Instants as ISO strings and decimal ns strings (a JSON number cannot hold them); durations as numbers. */
export function fireJson(report: FireReport, extras: FireExtras = {}): string {
  return JSON.stringify({
    event: 'fire',
    job: report.jobId,
    index: report.index,
    ...(report.edge !== undefined ? { edge: report.edge.toString() } : {}),
    planned: formatUtcNs(report.plannedNs),
    plannedNs: report.plannedNs.toString(),
    actual: formatUtcNs(report.actualNs),
    actualNs: report.actualNs.toString(),
    latenessNs: report.latenessNs,
    errorBoundNs: Number.isFinite(report.errorBoundNs) ? Math.round(report.errorBoundNs) : null,
    policy: report.policy ?? 'on-time',
    ...extras,
  });
}

export function skipJson(report: SkipReport): string {
  return JSON.stringify({
    event: 'skip',
    job: report.jobId,
    index: report.index,
    ...(report.edge !== undefined ? { edge: report.edge.toString() } : {}),
    planned: formatUtcNs(report.plannedNs),
    plannedNs: report.plannedNs.toString(),
    at: formatUtcNs(report.atNs),
    reason: report.reason,
    ...(report.error !== undefined ? { error: report.error } : {}),
  });
}

function micro(ns: number): string {
  return Math.abs(ns) >= 1e6 ? `${(ns / 1e6).toFixed(3)} ms` : `${(ns / 1e3).toFixed(1)} µs`;
}

export function fireLine(report: FireReport, extras: FireExtras = {}): string {
  const parts = [`fired #${report.index} at ${formatUtcNs(report.actualNs)}`, `late ${micro(report.latenessNs)}`];
  if (extras.actionLatenessNs !== undefined) parts.push(`action ${micro(extras.actionLatenessNs)}`);
  if (extras.spawnLatencyNs !== undefined) parts.push(`${extras.preforked ? 'released' : 'spawn'} ${micro(extras.spawnLatencyNs)}${extras.preforked ? ' (pre-forked; exec follows)' : ''}`);
  if (extras.earlyNs) parts.push(`${micro(extras.earlyNs)} before the instant (--early)`);
  parts.push(Number.isFinite(report.errorBoundNs) ? `clock ±${micro(report.errorBoundNs)}` : 'clock unsynchronized');
  if (report.policy === 'fired-late') parts.push('FIRED LATE (instant had passed)');
  return parts.join(', ');
}

export function skipLine(report: SkipReport): string {
  const why: Record<SkipReport['reason'], string> = {
    rejected: 'the instant had passed',
    past: 'the instant had passed',
    late: 'missed (process stalled, suspended, or the clock stepped over it)',
    overlap: 'the previous run is still going (--overlap skip)',
    cancelled: 'cancelled',
    stopped: 'stopped',
    failed: 'the schedule cannot say when next; the job ends',
  };
  if (report.reason === 'failed') return `${why.failed} (after ${formatUtcNs(report.plannedNs)}): ${report.error ?? 'unknown error'}`;
  return `skipped #${report.index} planned ${formatUtcNs(report.plannedNs)}: ${why[report.reason]}`;
}

/** A step of the clock a command follows (source: 'system' or 'ntp host:port,...'). */
export function stepJson(step: TimescaleChange, source: string): string {
  return JSON.stringify({
    event: 'step',
    source,
    from: formatUtcNs(step.previousUtcNs),
    to: formatUtcNs(step.previousUtcNs + step.correctionNs),
    correctionNs: Number(step.correctionNs),
  });
}

export function stepLine(step: TimescaleChange, source: string): string {
  const sign = step.correctionNs < 0n ? '−' : '+';
  const magnitude = Number(step.correctionNs < 0n ? -step.correctionNs : step.correctionNs);
  return `clock (${source}) stepped ${sign}${micro(magnitude)}: ${formatUtcNs(step.previousUtcNs)} is now ${formatUtcNs(step.previousUtcNs + step.correctionNs)}; pending instants follow it`;
}
