/**
 * `lockstep query HOST[:PORT]... [--samples N] [--json]`: a one-shot
 * measurement like ntpdig. Offset is server time − this machine's clock.
 */
import type { Command } from '../command.js';
import { parseCommandArgs, numberOption } from '../args.js';
import { EXIT_FAILURE, EXIT_OK } from '../errors.js';
import { ntpServersFromArgs } from '../ntp-servers.js';
import { queryServer, DEFAULT_QUERY_SAMPLES, type QueryResult } from '../../ntp/query.js';
import { realClock } from '../../time/clock.js';

const HELP = `usage: lockstep query HOST[:PORT]... [--samples N] [--json] [--keys FILE --key-id N]

Measure the offset of this machine's clock to NTP servers once, like ntpdig.
Each server gets N exchanges; the least delayed one is reported.

  --samples N     exchanges per server (1-64, default ${DEFAULT_QUERY_SAMPLES})
  --timeout MS    wait this long for each reply (default 1000)
  --json          print one JSON object: {"servers": [...]}
  --keys FILE     chrony-format keyfile ("ID TYPE HEX:KEY" per line): authenticate
                  with its only key, or with --key-id
  --key-id N      ... with key N from FILE (needed when FILE has several)

offset = server time − local clock (positive: the local clock is behind).
Exit status: 0 if every server answered, 1 if one did not, 2 on bad input.`;

function formatSigned(seconds: number): string {
  return (seconds >= 0 ? '+' : '') + seconds.toFixed(6);
}

export const command: Command = {
  help: HELP,
  async run(argv) {
    const { values, positionals } = parseCommandArgs(argv, {
      samples: { type: 'string' },
      timeout: { type: 'string' },
      json: { type: 'boolean', default: false },
      keys: { type: 'string' },
      'key-id': { type: 'string' },
    });
    const samples = values.samples !== undefined ? numberOption('samples', values.samples, { min: 1, max: 64, integer: true }) : DEFAULT_QUERY_SAMPLES;
    const timeoutMs = values.timeout !== undefined ? numberOption('timeout', values.timeout, { min: 1, max: 60_000 }) : 1000;
    const keyId = values['key-id'] !== undefined ? numberOption('key-id', values['key-id'], { min: 1, max: 0xffffffff, integer: true }) : undefined;
    const { servers, keys } = await ntpServersFromArgs(positionals, {
      ...(values.keys !== undefined ? { keysPath: values.keys } : {}),
      ...(keyId !== undefined ? { keyId } : {}),
      keysMeanAuth: { keyIdFlag: '--key-id' },
    });
    const clock = realClock();
    const results: QueryResult[] = await Promise.all(
      servers.map((spec) => queryServer(spec, { clock, samples, timeoutMs, ...(keys ? { keys } : {}) })),
    );
    if (values.json) {
      process.stdout.write(JSON.stringify({ servers: results }) + '\n');
    } else {
      for (const r of results) {
        if (r.offsetSeconds === undefined) {
          process.stdout.write(`${r.address}  no answer: ${r.error ?? 'unknown'}\n`);
          continue;
        }
        process.stdout.write(
          `${r.address}  offset ${formatSigned(r.offsetSeconds)} s  delay ${r.delaySeconds!.toFixed(6)} s  ` +
            `stratum ${r.stratum}  refid ${r.refId}  leap ${r.leap}  (${r.accepted}/${r.sent} answered)\n`,
        );
      }
    }
    return results.every((r) => r.offsetSeconds !== undefined) ? EXIT_OK : EXIT_FAILURE;
  },
};
