/** `lockstep crontab FILE`: a whole crontab in one process, one scheduler, one clock, each start to the microsecond. */
import { readFileSync, watch, type FSWatcher } from 'node:fs';
import { basename, dirname, resolve } from 'node:path';
import { DateTime } from 'luxon';
import type { Command } from '../command.js';
import { parseCommandArgs, durationNsOption, parseHostPort } from '../args.js';
import { UsageError, EXIT_OK, EXIT_USAGE } from '../errors.js';
import { openClockSource, CLOCK_OPTIONS } from '../clock-source.js';
import { resolveCommand } from '../prepared-spawn.js';
import { CrontabJobs } from '../crontab-jobs.js';
import { CrontabLog } from '../crontab-log.js';
import { crontabMetrics } from '../crontab-metrics.js';
import { serveMetrics, type MetricsServer } from '../prometheus.js';
import { parseCrontab, CrontabSyntaxError, type Crontab } from '../../schedule/crontab.js';
import { CronRecurrence, checkZone } from '../../schedule/cron.js';
import { CronPatternError } from '../../schedule/errors.js';
import { Scheduler } from '../../schedule/scheduler.js';
import { lowerTimerSlack } from '../../schedule/process-tuning.js';

const help = `usage: lockstep crontab FILE|- [--test] [--tz ZONE] [--overlap skip|allow] [--ntp SERVER]... [--json] [--metrics HOST:PORT]

Runs every entry of a crontab in one process: one scheduler, one clock (the
system clock followed through steps, or --ntp), each command started on time
to the microsecond with /bin/sh -c (or SHELL=), LOCKSTEP_INSTANT_NS in its
environment. FILE '-' reads the crontab from stdin (then it cannot be reloaded).

The format is Debian cron's (crontab(5)), plus a seconds field:
  */5 * * * *  CMD        5 fields: minute hour day-of-month month day-of-week, at second 0
  10 0 12 * * 1-5 CMD     6 fields: the same with seconds first (as lockstep cron)
  @hourly @daily @midnight @weekly @monthly @yearly @annually CMD
  @reboot CMD             once, at start (not on a reload)
  # comment               blank lines too; '#' after a command is part of it, as in cron
  NAME=value              environment of the entries below ('value' or "value" keeps blanks)
  CRON_TZ=Europe/Berlin   zone of the entries below (default --tz, else the local zone)
  # name: backup          on the line(s) above an entry: its name (default line-N)
  # overlap: allow        on the line(s) above an entry: its overlap policy
  A '%' ends the command, as in cron: the rest goes to its stdin, each further '%' a
  newline; '\\%' is a literal '%'.

Each entry's output is passed on line by line as '[name] line' (stdout to stdout,
stderr to stderr); each run's start (lateness, spawn latency) and exit (status,
duration) are reported under its name. Overlap skip (default): an instant that
comes while the entry's previous run is still going is skipped and reported.

Reloads on SIGHUP and when FILE changes (its directory is watched, so an editor's
write-and-rename counts): unchanged entries keep their schedule and running
commands; removed ones stop (a running command is left to finish); a file that
does not parse is refused with the reason, the old one keeps running.

options:
  --test               check FILE, print each entry's next three instants in its zone,
                       exit 0 (any bad line: 'FILE:LINE: reason', exit 2; nothing runs)
  --tz ZONE            zone of entries before any CRON_TZ line (default: the local zone)
  --overlap POLICY     default overlap policy: skip (default) or allow
  --ntp SERVER         use the embedded NTP client (host[:port], repeat or comma-separate)
  --sync-timeout DUR   how long to wait for NTP synchronization (default 15s)
  --metrics HOST:PORT  serve Prometheus metrics at http://HOST:PORT/metrics
  --stop-timeout DUR   on SIGINT/SIGTERM/SIGQUIT, how long running commands get to exit
                       before their process trees are killed (default 10s)
  --json               one JSON line per event on stdout (load, fire, output, exit, skip,
                       reload, reload-refused, step)
  --quiet              no start and success lines (failures, reloads and output still shown)

On SIGINT/SIGTERM/SIGQUIT: no new runs; every running command and what it
started get the signal; the exit waits for them (--stop-timeout), exit 0.`;

/** Editors write a file in several steps (truncate, write, rename): one reload once they are done. */
const RELOAD_DEBOUNCE_MS = 250;
const DEFAULT_STOP_TIMEOUT_MS = 10_000;
const TEST_INSTANTS = 3;

async function readAll(stream: NodeJS.ReadableStream): Promise<string> {
  let text = '';
  for await (const chunk of stream) text += chunk.toString();
  return text;
}

function readCrontabFile(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    throw new UsageError(`cannot read ${path}: ${code === 'ENOENT' ? 'no such file' : (error as Error).message}`);
  }
}

/** Parses and checks that each entry's shell is there: every problem as FILE:LINE. */
function load(text: string, source: string, defaults: { tz?: string; overlap: 'skip' | 'allow' }): Crontab {
  const crontab = parseCrontab(text, { source, ...(defaults.tz ? { defaultTz: defaults.tz } : {}), defaultOverlap: defaults.overlap });
  const problems = [];
  for (const entry of crontab.entries) {
    try {
      resolveCommand(entry.shell);
    } catch (error) {
      problems.push({ line: entry.line, reason: `SHELL=${entry.shell}: ${(error as Error).message}` });
    }
  }
  if (problems.length > 0) throw new CrontabSyntaxError(source, problems);
  return crontab;
}

function printTest(crontab: Crontab, json: boolean): void {
  const nowNs = BigInt(Date.now()) * 1_000_000n;
  for (const entry of crontab.entries) {
    const next: string[] = [];
    if (entry.expression !== undefined) {
      const recurrence = new CronRecurrence(entry.expression, { tz: entry.tz });
      let after = nowNs;
      for (let i = 0; i < TEST_INSTANTS; i++) {
        const occurrence = recurrence.next(after);
        if (!occurrence) break;
        next.push(DateTime.fromMillis(Number(occurrence.instantNs / 1_000_000n), { zone: entry.tz }).toISO({ suppressMilliseconds: true })!);
        after = occurrence.instantNs;
      }
    }
    if (json) {
      process.stdout.write(
        JSON.stringify({
          event: 'entry',
          job: entry.name,
          line: entry.line,
          schedule: entry.schedule,
          ...(entry.expression !== undefined ? { expression: entry.expression } : {}),
          tz: entry.tz,
          command: entry.command,
          ...(entry.input !== undefined ? { input: entry.input } : {}),
          overlap: entry.overlap,
          next: entry.reboot ? ['@reboot'] : next,
        }) + '\n',
      );
      continue;
    }
    const stdin = entry.input !== undefined ? `  (stdin: ${JSON.stringify(entry.input)})` : '';
    process.stdout.write(`${crontab.source}:${entry.line} [${entry.name}] ${entry.schedule}  ${entry.command}${stdin}\n`);
    process.stdout.write(`  ${entry.reboot ? 'at start' : `next (${entry.tz}): ${next.join(', ')}`}\n`);
  }
}

export const command: Command = {
  help,
  async run(argv) {
    const { values, positionals } = parseCommandArgs(argv, {
      ...CLOCK_OPTIONS,
      tz: { type: 'string' },
      overlap: { type: 'string' },
      test: { type: 'boolean' },
      metrics: { type: 'string' },
      'stop-timeout': { type: 'string' },
      json: { type: 'boolean' },
      quiet: { type: 'boolean', short: 'q' },
    });
    if (positionals.length !== 1) throw new UsageError(`expected one crontab FILE (or '-' for stdin), got ${positionals.length}`);
    const overlap = values.overlap ?? 'skip';
    if (overlap !== 'skip' && overlap !== 'allow') throw new UsageError(`--overlap takes skip or allow, not '${overlap}'`);
    if (values.tz) {
      try {
        checkZone(values.tz);
      } catch (error) {
        if (error instanceof CronPatternError) throw new UsageError(`--tz: ${error.reason}`);
        throw error;
      }
    }
    const stopTimeoutMs = values['stop-timeout'] ? Number(durationNsOption('stop-timeout', values['stop-timeout']) / 1_000_000n) : DEFAULT_STOP_TIMEOUT_MS;
    if (values.metrics !== undefined && !/:\d+$/.test(values.metrics)) throw new UsageError(`--metrics takes HOST:PORT, not '${values.metrics}'`);
    const metricsAt = values.metrics !== undefined ? parseHostPort(values.metrics, 0) : undefined;
    const file = positionals[0]!;
    const fromStdin = file === '-';
    const source = fromStdin ? '-' : file;
    const defaults = { ...(values.tz ? { tz: values.tz } : {}), overlap: overlap as 'skip' | 'allow' };
    let text = fromStdin ? await readAll(process.stdin) : readCrontabFile(file);
    let crontab: Crontab;
    try {
      crontab = load(text, source, defaults);
    } catch (error) {
      if (!(error instanceof CrontabSyntaxError)) throw error;
      process.stderr.write(`${error.message}\n(nothing was run; see 'lockstep crontab --help' for the format)\n`);
      return EXIT_USAGE;
    }
    if (values.test) {
      printTest(crontab, values.json ?? false);
      return EXIT_OK;
    }

    const log = new CrontabLog({ json: values.json ?? false, quiet: values.quiet ?? false });
    const clock = await openClockSource(values, values.quiet ? () => {} : (line) => log.say(line));
    let metrics: MetricsServer | undefined;
    let watcher: FSWatcher | undefined;
    const scheduler = new Scheduler({ timescale: clock.timescale });
    const jobs = new CrontabJobs(scheduler, log);
    const signals: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGQUIT'];
    let onSignal: ((signal: NodeJS.Signals) => void) | undefined;
    let onHup: (() => void) | undefined;
    try {
      clock.attach(scheduler);
      clock.onStep((step) => log.step(step, clock.description));
      lowerTimerSlack(); // wake-ups ~50 µs sooner, less spin (src/schedule/process-tuning.ts); best effort
      try {
        jobs.apply(crontab, { initial: true });
      } catch (error) {
        if (!(error instanceof UsageError)) throw error;
        process.stderr.write(`${error.message}\n`);
        return EXIT_USAGE;
      }
      log.loaded(source, crontab.entries.map((e) => e.name));
      if (metricsAt) {
        metrics = await serveMetrics(metricsAt.host, metricsAt.port, () => crontabMetrics(jobs.entries(), clock));
        log.say(`metrics at http://${metrics.address}/metrics`);
      }

      let stopping = false;
      const reload = (why: string) => {
        if (stopping) return; // the scheduler is stopped: nothing more to schedule
        if (fromStdin) return log.refused(source, why, 'the crontab came from stdin: there is no file to read again');
        let newText: string;
        let next: Crontab;
        try {
          newText = readCrontabFile(file);
          if (why === 'file changed' && newText === text) return; // an editor's extra events, or a touch
          next = load(newText, source, defaults);
          const changes = jobs.apply(next, { initial: false });
          text = newText;
          log.reload(source, why, changes);
        } catch (error) {
          // Whatever went wrong, it is this reload's failure: the crontab in force keeps running.
          if (error instanceof CrontabSyntaxError) text = newText!; // refused: do not say so again until it changes
          log.refused(source, why, error instanceof CrontabSyntaxError || error instanceof UsageError ? error.message : `unexpected error: ${(error as Error).stack ?? error}`);
        }
      };
      onHup = () => reload('SIGHUP');
      process.on('SIGHUP', onHup);
      if (!fromStdin) {
        // The directory, not the file: an editor that writes a new file and renames it over FILE replaces the inode a file watch would follow.
        const name = basename(file);
        let timer: NodeJS.Timeout | undefined;
        try {
          watcher = watch(dirname(resolve(file)), (_event, changed) => {
            if (changed !== null && changed !== name) return;
            clearTimeout(timer);
            timer = setTimeout(() => reload('file changed'), RELOAD_DEBOUNCE_MS);
          });
          watcher.on('error', (error) => log.say(`no longer watching ${file}: ${error.message} (SIGHUP still reloads)`));
        } catch (error) {
          // Out of inotify watches (ENOSPC), a directory we may not read...: the schedule runs anyway.
          log.say(`cannot watch ${dirname(resolve(file))}: ${(error as Error).message} (SIGHUP still reloads)`);
        }
      }

      await new Promise<void>((resolveStop) => {
        onSignal = (signal) => {
          if (stopping) {
            log.say(`${signal} again: killing what still runs`);
            void jobs.stop('SIGKILL', 0);
            return;
          }
          stopping = true;
          const running = jobs.runningCount;
          log.say(`${signal}: no more runs${running > 0 ? `; passing ${signal} to ${running} running command${running === 1 ? '' : 's'}, waiting up to ${stopTimeoutMs} ms` : ''}`);
          void jobs.stop(signal, stopTimeoutMs).then(({ killed }) => {
            if (killed > 0) log.say(`${killed} command${killed === 1 ? '' : 's'} still running after ${stopTimeoutMs} ms: killed (SIGKILL)`);
            resolveStop();
          });
        };
        for (const s of signals) process.on(s, onSignal);
      });
      return EXIT_OK;
    } finally {
      if (onSignal) for (const s of signals) process.off(s, onSignal);
      if (onHup) process.off('SIGHUP', onHup);
      watcher?.close();
      scheduler.stop();
      jobs.disposeAll();
      await metrics?.close();
      await clock.close();
    }
  },
};
