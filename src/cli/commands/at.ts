/** `lockstep at WHEN -- CMD [ARGS...]`: starts a command at an instant and reports how late it started. */
import type { Command } from '../command.js';
import { parseCommandArgs, durationNsOption } from '../args.js';
import { UsageError, EXIT_OK } from '../errors.js';
import { openClockSource, CLOCK_OPTIONS } from '../clock-source.js';
import { fireJson, fireLine, skipJson, skipLine, stepJson, stepLine, type FireExtras } from '../schedule-output.js';
import { checkCommand, prepareCommand, type Spawned } from '../prepared-spawn.js';
import { Scheduler } from '../../schedule/scheduler.js';
import { lowerTimerSlack } from '../../schedule/process-tuning.js';
import { parseWhen, WhenSyntaxError, WHEN_FORMATS } from '../../schedule/when.js';
import type { FireReport, SkipReport } from '../../schedule/reports.js';

const help = `usage: lockstep at WHEN [--tz ZONE] [--if-past reject|skip|fire-late] [--early DUR] [--ntp SERVER]... [--json] -- CMD [ARGS...]

Starts CMD at the instant WHEN. Everything slow is done before: CMD is looked
up, its environment made, and a small /bin/sh helper forked that waits on a
pipe; at the instant lockstep writes to that pipe and the helper execs CMD.
CMD gets LOCKSTEP_INSTANT_NS (the instant, ns since the epoch). Exits with
CMD's status.

The report gives: late (at the end of the scheduler's spin), action (at the
first line of the start), released (when the helper was told to go). What
follows is not lockstep's to measure: the exec (~1 ms for a small static
program on a 2-core machine) and CMD's own start-up (a Python script adds
tens of ms). A program that must act AT the instant should start early and
wait for it itself:
  lockstep at 12:00:10 --early 500ms -- ./show.py   # show.py sleeps/spins until LOCKSTEP_INSTANT_NS

WHEN:
${WHEN_FORMATS.map((f) => `  ${f}`).join('\n')}

options:
  --tz ZONE            IANA zone for wall times (default: the local zone)
  --if-past POLICY     WHEN has already passed: reject (default, exit 1), skip (exit 0, CMD not run)
                       or fire-late (run CMD now, reported as fired-late)
  --early DUR          start CMD this long before WHEN (LOCKSTEP_INSTANT_NS is still WHEN):
                       for a program that waits for the instant itself
  --ntp SERVER         use the embedded NTP client (host[:port], repeat or comma-separate)
  --sync-timeout DUR   how long to wait for NTP synchronization (default 15s)
  --json               the report as one JSON line on stdout (default: a line on stderr),
                       and a {"event":"step",...} line if the clock steps while waiting
  --quiet              no report`;

/**
 * What is known of a program's start: the lateness at the action's first line
 * (the raw clock read there, against the spin's end), and the time from there
 * to the program's release. `cron` reports the same.
 */
export function startExtras(report: FireReport, first: FirstLine, spawned: Spawned): FireExtras {
  const extras: FireExtras = { spawnLatencyNs: Number(spawned.spawnedHrNs - first.hrNs), preforked: spawned.preforked, pid: spawned.child.pid ?? -1 };
  if (report.firedRawNs !== undefined) extras.actionLatenessNs = report.latenessNs + Number(first.rawNs - report.firedRawNs);
  return extras;
}


/** The action's first line: the scheduler's raw clock (for the lateness) and process.hrtime (what Spawned is measured on). */
export interface FirstLine {
  rawNs: bigint;
  hrNs: bigint;
}

export const command: Command = {
  help,
  async run(argv) {
    const { values, positionals, rest } = parseCommandArgs(argv, {
      ...CLOCK_OPTIONS,
      tz: { type: 'string' },
      'if-past': { type: 'string' },
      early: { type: 'string' },
      json: { type: 'boolean' },
      quiet: { type: 'boolean', short: 'q' },
    });
    if (positionals.length !== 1) throw new UsageError(`expected one WHEN before '--', got ${positionals.length}`);
    const ifPast = values['if-past'] ?? 'reject';
    if (ifPast !== 'reject' && ifPast !== 'skip' && ifPast !== 'fire-late') {
      throw new UsageError(`--if-past takes reject, skip or fire-late, not '${ifPast}'`);
    }
    checkCommand(rest); // a missing command is a usage error now, not after the NTP wait
    const earlyNs = values.early === undefined ? 0n : durationNsOption('early', values.early);
    const say = (line: string) => !values.quiet && process.stderr.write(`lockstep at: ${line}\n`);
    const clock = await openClockSource(values, say);
    clock.onStep((step) => {
      if (values.json) process.stdout.write(stepJson(step, clock.description) + '\n');
      else say(stepLine(step, clock.description));
    });
    try {
      let instantNs: bigint;
      try {
        instantNs = parseWhen(positionals[0]!, { nowNs: clock.timescale.nowNs(), ...(values.tz ? { zone: values.tz } : {}) }).instantNs;
      } catch (error) {
        if (error instanceof WhenSyntaxError) throw new UsageError(error.message);
        throw error;
      }
      const prepared = prepareCommand(rest, { LOCKSTEP_INSTANT_NS: instantNs.toString() }, { once: true });
      lowerTimerSlack(); // wake-ups ~50 µs sooner, less spin (src/schedule/process-tuning.ts); best effort
      const scheduler = new Scheduler({ timescale: clock.timescale });
      clock.attach(scheduler);
      const raw = clock.timescale.clock;
      const outcome = await new Promise<{ report: FireReport; spawned: Spawned; first: FirstLine } | { skip: SkipReport }>((resolve, reject) => {
        scheduler.onSkip((skip) => skip.reason === 'past' && resolve({ skip }));
        try {
          // Its own rehearsal (src/schedule/warm-up.ts): the same lines, down to the launcher's rehearse().
          const onInstant = (report: FireReport, rehearsal = false) => {
            const first = { rawNs: raw.nowNs(), hrNs: process.hrtime.bigint() };
            if (rehearsal) return prepared.rehearse(instantNs);
            const spawned = prepared.start(instantNs); // the first thing at the instant
            resolve({ report, spawned, first });
          };
          scheduler.at(instantNs - earlyNs, onInstant, { ifPast, id: 'at', rehearse: onInstant });
        } catch (error) {
          reject(error);
        }
      });
      scheduler.stop();
      if ('skip' in outcome) {
        prepared.dispose();
        if (values.json) process.stdout.write(skipJson(outcome.skip) + '\n');
        else say(`${skipLine(outcome.skip)}; '${prepared.display}' not run`);
        return EXIT_OK;
      }
      const { report, spawned, first } = outcome;
      const extras = startExtras(report, first, spawned);
      extras.command = prepared.display;
      if (earlyNs > 0n) extras.earlyNs = Number(earlyNs);
      if (values.json) process.stdout.write(fireJson(report, extras) + '\n');
      else say(`${fireLine(report, extras)}: ${prepared.display}`);
      await clock.close();
      return await spawned.exited;
    } finally {
      await clock.close();
    }
  },
};
