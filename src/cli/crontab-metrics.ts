/** `lockstep crontab --metrics`: per-entry counters and the clock, as Prometheus metric families. */
import type { MetricFamily, Sample } from './prometheus.js';
import type { EntryState } from './crontab-jobs.js';
import type { ClockSource } from './clock-source.js';
import type { SkipReason } from '../schedule/reports.js';

/** Every reason a crontab entry can skip, always exposed (0 included) so rate() sees the series from the start. */
const SKIP_REASONS: SkipReason[] = ['overlap', 'late', 'failed'];

export function crontabMetrics(entries: EntryState[], clock: ClockSource): MetricFamily[] {
  const per = (value: (s: EntryState) => number | undefined): Sample[] =>
    entries.flatMap((s) => {
      const v = value(s);
      return v === undefined ? [] : [{ labels: { job: s.name }, value: v }];
    });
  const timescale = clock.timescale;
  const errorBoundNs = timescale.errorBoundNs();
  const offsetNs = Number(timescale.nowNs() - BigInt(Date.now()) * 1_000_000n);
  return [
    { name: 'lockstep_crontab_job_runs_total', help: 'Runs started.', type: 'counter', samples: per((s) => s.stats.runs) },
    { name: 'lockstep_crontab_job_failures_total', help: 'Runs that exited with a status other than 0.', type: 'counter', samples: per((s) => s.stats.failures) },
    {
      name: 'lockstep_crontab_job_skips_total',
      help: 'Instants not run, by reason: overlap (previous run still going), late (the process stalled or the clock stepped over it), failed (no next instant found).',
      type: 'counter',
      samples: entries.flatMap((s) => SKIP_REASONS.map((reason) => ({ labels: { job: s.name, reason }, value: s.stats.skips[reason] ?? 0 }))),
    },
    { name: 'lockstep_crontab_job_running', help: 'Runs of the entry going on now.', type: 'gauge', samples: per((s) => s.runs.size) },
    {
      name: 'lockstep_crontab_job_last_start_timestamp_seconds',
      help: 'The instant the last run was started for (Unix time).',
      type: 'gauge',
      samples: per((s) => (s.stats.lastStartNs === undefined ? undefined : Number(s.stats.lastStartNs) / 1e9)),
    },
    {
      name: 'lockstep_crontab_job_last_start_lateness_seconds',
      help: 'From the instant to the last run\'s program started (action lateness plus spawn).',
      type: 'gauge',
      samples: per((s) => (s.stats.lastStartLatenessNs === undefined ? undefined : s.stats.lastStartLatenessNs / 1e9)),
    },
    {
      name: 'lockstep_crontab_job_last_duration_seconds',
      help: 'How long the last finished run took, spawn to exit.',
      type: 'gauge',
      samples: per((s) => (s.stats.lastDurationNs === undefined ? undefined : s.stats.lastDurationNs / 1e9)),
    },
    { name: 'lockstep_crontab_job_last_exit_code', help: 'Exit status of the last finished run (128 + N: killed by signal N).', type: 'gauge', samples: per((s) => s.stats.lastExitCode) },
    { name: 'lockstep_clock_synchronized', help: `1 when the clock the schedule follows (${clock.description}) is synchronized.`, type: 'gauge', samples: [{ value: timescale.synchronized ? 1 : 0 }] },
    {
      name: 'lockstep_clock_error_bound_seconds',
      help: 'Bound on the error of that clock now (system clock: an assumed 1 ms; --ntp: measured).',
      type: 'gauge',
      samples: [{ value: Number.isFinite(errorBoundNs) ? errorBoundNs / 1e9 : Infinity }],
    },
    { name: 'lockstep_clock_offset_seconds', help: 'That clock minus the system clock now (positive: the system clock is behind).', type: 'gauge', samples: [{ value: offsetNs / 1e9 }] },
    { name: 'lockstep_clock_steps_total', help: 'Steps of that clock since start (each is also logged).', type: 'counter', samples: [{ value: timescale.steps }] },
  ];
}
