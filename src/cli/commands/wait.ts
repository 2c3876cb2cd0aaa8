/** `lockstep wait WHEN`: returns at the instant, a drop-in for `while [ ... $(date +%S) ]; do sleep 0.05; done`. */
import type { Command } from '../command.js';
import { parseCommandArgs } from '../args.js';
import { UsageError, EXIT_OK } from '../errors.js';
import { openClockSource, CLOCK_OPTIONS } from '../clock-source.js';
import { fireJson, fireLine, stepJson, stepLine } from '../schedule-output.js';
import { Scheduler } from '../../schedule/scheduler.js';
import { lowerTimerSlack } from '../../schedule/process-tuning.js';
import { parseWhen, WhenSyntaxError, WHEN_FORMATS } from '../../schedule/when.js';
import type { FireReport } from '../../schedule/reports.js';

const help = `usage: lockstep wait WHEN [--tz ZONE] [--if-past reject|fire-late] [--ntp SERVER]... [--json] [--verbose]

Returns (exit 0) at the instant WHEN, to the microsecond:
  lockstep wait 12:00:10 && python3 blink.py

WHEN:
${WHEN_FORMATS.map((f) => `  ${f}`).join('\n')}

options:
  --tz ZONE            IANA zone for wall times (default: the local zone)
  --if-past POLICY     WHEN has already passed: reject (default: exit 1) or fire-late (return now)
  --ntp SERVER         use the embedded NTP client (host[:port], repeat or comma-separate)
                       instead of the system clock; waits for synchronization first
  --sync-timeout DUR   how long to wait for NTP synchronization (default 15s)
  --json               print the fire report as one JSON line on stdout
  --verbose            print the fire report as a line on stderr

A step of the clock while waiting is printed on stderr ({"event":"step",...} on stdout with --json).

exit: 0 at the instant, 1 when WHEN passed (or NTP did not synchronize), 2 on bad input.
Precision is that of the return: the process still has to exit and the shell to
start the next command (milliseconds). For the command itself on time, use 'lockstep at'.`;

export const command: Command = {
  help,
  async run(argv) {
    const { values, positionals } = parseCommandArgs(argv, {
      ...CLOCK_OPTIONS,
      tz: { type: 'string' },
      'if-past': { type: 'string' },
      json: { type: 'boolean' },
      verbose: { type: 'boolean', short: 'v' },
    });
    if (positionals.length !== 1) throw new UsageError(`expected one WHEN, got ${positionals.length}`);
    const ifPast = values['if-past'] ?? 'reject';
    if (ifPast !== 'reject' && ifPast !== 'fire-late') throw new UsageError(`--if-past takes reject or fire-late, not '${ifPast}'`);
    const log = (line: string) => values.verbose && process.stderr.write(`lockstep wait: ${line}\n`);
    const clock = await openClockSource(values, log);
    // Not only with --verbose: a step moves the instant we return at, the script should hear of it.
    clock.onStep((step) => {
      if (values.json) process.stdout.write(stepJson(step, clock.description) + '\n');
      else process.stderr.write(`lockstep wait: ${stepLine(step, clock.description)}\n`);
    });
    try {
      let instantNs: bigint;
      try {
        instantNs = parseWhen(positionals[0]!, { nowNs: clock.timescale.nowNs(), ...(values.tz ? { zone: values.tz } : {}) }).instantNs;
      } catch (error) {
        if (error instanceof WhenSyntaxError) throw new UsageError(error.message);
        throw error;
      }
      lowerTimerSlack(); // wake-ups ~50 µs sooner, less spin (src/schedule/process-tuning.ts); best effort
      const scheduler = new Scheduler({ timescale: clock.timescale });
      clock.attach(scheduler);
      const report = await new Promise<FireReport>((resolve, reject) => {
        try {
          // Its own rehearsal (src/schedule/warm-up.ts): the same line, which then does nothing.
          const onInstant = (r: FireReport, rehearsal = false) => void (rehearsal || resolve(r));
          scheduler.at(instantNs, onInstant, { ifPast, id: 'wait', rehearse: onInstant });
        } catch (error) {
          reject(error);
        }
      });
      scheduler.stop();
      if (values.json) process.stdout.write(fireJson(report) + '\n');
      log(fireLine(report));
      return EXIT_OK;
    } finally {
      await clock.close();
    }
  },
};
