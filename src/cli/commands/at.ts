/** `lockstep at WHEN -- CMD [ARGS...]`: starts a command at an instant and reports how late it started. */
import type { Command } from '../command.js';
import { parseCommandArgs } from '../args.js';
import { UsageError, EXIT_OK } from '../errors.js';
import { openClockSource, CLOCK_OPTIONS } from '../clock-source.js';
import { fireJson, fireLine, skipJson, skipLine, stepJson, stepLine, type FireExtras } from '../schedule-output.js';
import { prepareCommand, type Spawned } from '../prepared-spawn.js';
import { Scheduler } from '../../schedule/scheduler.js';
import { lowerTimerSlack } from '../../schedule/process-tuning.js';
import { parseWhen, WhenSyntaxError, WHEN_FORMATS } from '../../schedule/when.js';
import type { FireReport, SkipReport } from '../../schedule/reports.js';

const help = `usage: lockstep at WHEN [--tz ZONE] [--if-past reject|skip|fire-late] [--ntp SERVER]... [--json] -- CMD [ARGS...]

Starts CMD at the instant WHEN and reports the lateness (from the instant to
the start of the action) and the spawn latency (from the start of the action to
spawn() returning, when the child has exec'd: the child runs lateness + spawn
after WHEN). The command is looked up and prepared beforehand, so the instant
does one spawn(). CMD gets LOCKSTEP_INSTANT_NS (the instant it was started
for, ns since the epoch). Exits with CMD's status.

WHEN:
${WHEN_FORMATS.map((f) => `  ${f}`).join('\n')}

options:
  --tz ZONE            IANA zone for wall times (default: the local zone)
  --if-past POLICY     WHEN has already passed: reject (default, exit 1), skip (exit 0, CMD not run)
                       or fire-late (run CMD now, reported as fired-late)
  --ntp SERVER         use the embedded NTP client (host[:port], repeat or comma-separate)
  --sync-timeout DUR   how long to wait for NTP synchronization (default 15s)
  --json               the report as one JSON line on stdout (default: a line on stderr),
                       and a {"event":"step",...} line if the clock steps while waiting
  --quiet              no report`;

export const command: Command = {
  help,
  async run(argv) {
    const { values, positionals, rest } = parseCommandArgs(argv, {
      ...CLOCK_OPTIONS,
      tz: { type: 'string' },
      'if-past': { type: 'string' },
      json: { type: 'boolean' },
      quiet: { type: 'boolean', short: 'q' },
    });
    if (positionals.length !== 1) throw new UsageError(`expected one WHEN before '--', got ${positionals.length}`);
    const ifPast = values['if-past'] ?? 'reject';
    if (ifPast !== 'reject' && ifPast !== 'skip' && ifPast !== 'fire-late') {
      throw new UsageError(`--if-past takes reject, skip or fire-late, not '${ifPast}'`);
    }
    prepareCommand(rest); // a missing command is a usage error now, not after the NTP wait
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
      const prepared = prepareCommand(rest, { LOCKSTEP_INSTANT_NS: instantNs.toString() });
      lowerTimerSlack(); // wake-ups ~50 µs sooner, less spin (src/schedule/process-tuning.ts); best effort
      const scheduler = new Scheduler({ timescale: clock.timescale });
      clock.attach(scheduler);
      const outcome = await new Promise<{ report: FireReport; spawned: Spawned; firedHrNs: bigint } | { skip: SkipReport }>((resolve, reject) => {
        scheduler.onSkip((skip) => skip.reason === 'past' && resolve({ skip }));
        try {
          scheduler.at(
            instantNs,
            (report) => {
              const firedHrNs = process.hrtime.bigint();
              const spawned = prepared.start(); // the first thing at the instant
              resolve({ report, spawned, firedHrNs });
            },
            { ifPast, id: 'at' },
          );
        } catch (error) {
          reject(error);
        }
      });
      scheduler.stop();
      if ('skip' in outcome) {
        if (values.json) process.stdout.write(skipJson(outcome.skip) + '\n');
        else say(`${skipLine(outcome.skip)}; '${prepared.display}' not run`);
        return EXIT_OK;
      }
      const { report, spawned, firedHrNs } = outcome;
      const extras: FireExtras = { spawnLatencyNs: Number(spawned.spawnedHrNs - firedHrNs), pid: spawned.child.pid ?? -1, command: prepared.display };
      if (values.json) process.stdout.write(fireJson(report, extras) + '\n');
      else say(`${fireLine(report, extras)}: ${prepared.display}`);
      await clock.close();
      return await spawned.exited;
    } finally {
      await clock.close();
    }
  },
};
