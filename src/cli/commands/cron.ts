/** `lockstep cron 'EXPR' -- CMD [ARGS...]`: second-precision cron, each run started to the microsecond. */
import type { Command } from '../command.js';
import { parseCommandArgs, numberOption } from '../args.js';
import { UsageError, EXIT_OK } from '../errors.js';
import { openClockSource, CLOCK_OPTIONS } from '../clock-source.js';
import { fireJson, fireLine, skipJson, skipLine, stepJson, stepLine } from '../schedule-output.js';
import { prepareCommand, type Spawned } from '../prepared-spawn.js';
import { startExtras } from './at.js';
import { Scheduler } from '../../schedule/scheduler.js';
import { lowerTimerSlack } from '../../schedule/process-tuning.js';
import { CronPatternError } from '../../schedule/errors.js';
import type { FireReport } from '../../schedule/reports.js';

const help = `usage: lockstep cron 'EXPR' [--tz ZONE] [--overlap skip|allow] [--count N] [--ntp SERVER]... [--json] -- CMD [ARGS...]

Runs CMD on a cron schedule with a seconds field, each start on time to the
microsecond (a crontab starts jobs up to a second late, only on whole minutes).
Each run is released at its tick from a /bin/sh helper forked in advance (the
next one ~20 ms after each start), so a tick costs a write and an exec, not a
fork of Node. CMD gets LOCKSTEP_INSTANT_NS (its tick). What follows the exec is
CMD's own start-up (a Python script: tens of ms): a program that must act at
the tick itself should run continuously, or be started early with
'lockstep at --early'.

EXPR has six fields: second minute hour day-of-month month day-of-week
  '*/5 * * * * *'     every 5 seconds
  '10 0 12 * * 1-5'   12:00:10 on weekdays
  '0 30 2 * * *'      02:30:00 every day (in a DST gap: 03:30; in an overlap: once)

options:
  --tz ZONE            IANA zone of the expression (default: the local zone)
  --overlap POLICY     CMD still running at the next tick: skip (default, reported) or allow
  --count N            stop after N runs (default: run until SIGINT/SIGTERM)
  --ntp SERVER         use the embedded NTP client (host[:port], repeat or comma-separate)
  --sync-timeout DUR   how long to wait for NTP synchronization (default 15s)
  --json               one JSON line per fire, skip and clock step on stdout (default: lines on stderr)
  --quiet              only failures

On SIGINT/SIGTERM: no new runs; running commands get the signal; exits when they have.
When the next tick cannot be found (cron-parser gives up its search): a skip
with reason 'failed' (--json), then exit 1 with the reason once runs have ended.`;

/** A signal is passed on to running commands; they get this long to finish before we exit anyway. */
const STOP_GRACE_MS = 5000;

export const command: Command = {
  help,
  async run(argv) {
    const { values, positionals, rest } = parseCommandArgs(argv, {
      ...CLOCK_OPTIONS,
      tz: { type: 'string' },
      overlap: { type: 'string' },
      count: { type: 'string' },
      json: { type: 'boolean' },
      quiet: { type: 'boolean', short: 'q' },
    });
    if (positionals.length !== 1) throw new UsageError(`expected one quoted cron expression before '--', got ${positionals.length}`);
    const overlap = values.overlap ?? 'skip';
    if (overlap !== 'skip' && overlap !== 'allow') throw new UsageError(`--overlap takes skip or allow, not '${overlap}'`);
    const count = values.count === undefined ? Infinity : numberOption('count', values.count, { min: 1, integer: true });
    const prepared = prepareCommand(rest);
    const say = (line: string) => process.stderr.write(`lockstep cron: ${line}\n`);
    const clock = await openClockSource(values, values.quiet ? () => {} : say);
    clock.onStep((step) => {
      if (values.json) process.stdout.write(stepJson(step, clock.description) + '\n');
      else if (!values.quiet) say(stepLine(step, clock.description));
    });
    lowerTimerSlack(); // wake-ups ~50 µs sooner, less spin (src/schedule/process-tuning.ts); best effort
    const scheduler = new Scheduler({ timescale: clock.timescale });
    clock.attach(scheduler);
    const running = new Set<Spawned>();
    let finish!: () => void;
    const finished = new Promise<void>((resolve) => (finish = resolve));
    /** Set when the schedule could not give its next tick: the job has ended, we exit non-zero with it. */
    let failure: string | undefined;
    try {
      scheduler.onSkip((skip) => {
        if (skip.reason === 'stopped') return;
        if (values.json) process.stdout.write(skipJson(skip) + '\n');
        else if (skip.reason !== 'failed') say(skipLine(skip)); // a failure is the exit message
        if (skip.reason === 'failed') {
          failure = skip.error ?? 'the schedule failed';
          if (running.size === 0) finish();
        }
      });
      try {
        const raw = clock.timescale.clock;
        // Each tick is its own rehearsal (src/schedule/warm-up.ts): the same lines, down to the launcher's rehearse().
        const onTick = (report: FireReport, rehearsal = false): void | Promise<void> => {
          const first = { rawNs: raw.nowNs(), hrNs: process.hrtime.bigint() };
          if (rehearsal) return prepared.rehearse(report.plannedNs);
          const spawned = prepared.start(report.plannedNs); // the first thing at the instant
          running.add(spawned);
          const extras = startExtras(report, first, spawned);
          if (values.json) process.stdout.write(fireJson(report, extras) + '\n');
          else if (!values.quiet) say(fireLine(report, extras));
          if (report.index + 1 >= count) scheduler.stop();
          return spawned.exited.then((code) => {
            running.delete(spawned);
            if (code !== 0) say(`run #${report.index} ('${prepared.display}') exited with ${code}`);
            if (scheduler.pending === 0 && running.size === 0) finish();
          });
        };
        scheduler.cron(positionals[0]!, { ...(values.tz ? { tz: values.tz } : {}), overlap, rehearse: onTick }, onTick);
      } catch (error) {
        if (error instanceof CronPatternError) throw new UsageError(error.message);
        throw error;
      }
      if (scheduler.pending === 0) throw new UsageError(`'${positionals[0]}' never matches`);
      const onSignal = (signal: NodeJS.Signals) => {
        scheduler.stop();
        for (const s of running) s.child.kill(signal);
        if (running.size === 0) finish();
        setTimeout(finish, STOP_GRACE_MS).unref();
      };
      process.once('SIGINT', onSignal);
      process.once('SIGTERM', onSignal);
      await finished;
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
      if (failure !== undefined) throw new Error(`${failure}; no more runs`);
      return EXIT_OK;
    } finally {
      scheduler.stop();
      prepared.dispose();
      await clock.close();
    }
  },
};
