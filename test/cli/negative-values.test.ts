/**
 * A flag that takes a value takes the next argument even when it starts with
 * '-' (GNU style): `lockstep node --nice -5`, which the README recommends,
 * was refused as "ambiguous". Each command that has a numeric flag that may
 * be negative is run in-process with the value in both forms; an
 * out-of-range value proves the value reached the command's own check, an
 * in-range one that the command went on to the next check.
 */
import { expect } from 'chai';
import { parseCommandArgs } from '../../src/cli/args.js';
import { UsageError } from '../../src/cli/errors.js';
import { command as node } from '../../src/cli/commands/node.js';
import { command as demo } from '../../src/cli/commands/demo.js';
import { command as sync } from '../../src/cli/commands/sync.js';

async function usageError(run: () => Promise<number>): Promise<string> {
  try {
    await run();
  } catch (error) {
    if (error instanceof UsageError) return error.message;
    throw error;
  }
  throw new Error('expected a usage error');
}

/** Both spellings of every pair: ['--nice', '-5'] and ['--nice=-5']. */
function bothForms(pairs: [string, string][]): [string[], string[]] {
  return [pairs.flat(), pairs.map(([flag, value]) => `${flag}=${value}`)];
}

describe('cli: negative numbers as flag values', () => {
  const spec = { nice: { type: 'string' }, json: { type: 'boolean' }, ntp: { type: 'string', multiple: true } } as const;

  it('--flag -5 parses as --flag=-5, for single and repeated flags, and leaves what follows -- alone', () => {
    const spaced = parseCommandArgs(['--nice', '-5', '--ntp', '-x', '--json', 'pos', '--', 'cmd', '--nice', '-1'], spec);
    const joined = parseCommandArgs(['--nice=-5', '--ntp=-x', '--json', 'pos', '--', 'cmd', '--nice', '-1'], spec);
    expect(spaced).to.deep.equal(joined);
    expect(spaced.values.nice).to.equal('-5');
    expect(spaced.rest).to.deep.equal(['cmd', '--nice', '-1']);
  });

  it('a value flag given last still says its argument is missing (exit 2)', () => {
    expect(() => parseCommandArgs(['--nice'], spec)).to.throw(UsageError, /nice/);
  });

  for (const form of [0, 1] as const) {
    const label = form === 0 ? '--flag -N' : '--flag=-N';

    it(`node: --nice, --sim-offset, --sim-drift (${label})`, async () => {
      const base = ['--id', 'n1', '--ntp', '127.0.0.1:9', '--quiet'];
      expect(await usageError(() => node.run([...base, ...bothForms([['--sim-offset', '-2e6']])[form]]))).to.match(/--sim-offset takes a number from -1000000 to 1000000, not '-2e6'/);
      expect(await usageError(() => node.run([...base, ...bothForms([['--sim-offset', '-1.5'], ['--sim-drift', '-3000']])[form]]))).to.match(/--sim-drift takes a number .*not '-3000'/);
      // In range: parsing goes on to the next check (a bad --min-poll).
      expect(await usageError(() => node.run([...base, ...bothForms([['--sim-offset', '-1.5'], ['--sim-drift', '-30'], ['--min-poll', 'x']])[form]]))).to.match(/--min-poll/);
      expect(await usageError(() => node.run(['--id', 'n1', '--system-clock', '--quiet', ...bothForms([['--nice', '-50']])[form]]))).to.match(/--nice takes an integer from -20 to 19, not '-50'/);
    });

    it(`demo: --nice (${label})`, async () => {
      expect(await usageError(() => demo.run(bothForms([['--nice', '-50']])[form]))).to.match(/--nice takes an integer from -20 to 19, not '-50'/);
      expect(await usageError(() => demo.run(bothForms([['--nice', '-5'], ['--spin', 'x']])[form]))).to.match(/--spin/);
    });

    it(`sync: --sim-offset, --sim-drift (${label})`, async () => {
      expect(await usageError(() => sync.run(bothForms([['--sim-offset', '-2e10']])[form]))).to.match(/--sim-offset takes a number .*not '-2e10'/);
      expect(await usageError(() => sync.run(bothForms([['--sim-offset', '-1.5'], ['--sim-drift', '-1e9']])[form]))).to.match(/--sim-drift takes a number .*not '-1e9'/);
      expect(await usageError(() => sync.run(bothForms([['--sim-offset', '-1.5'], ['--sim-drift', '-30'], ['--min-poll', 'x']])[form]))).to.match(/--min-poll/);
    });
  }
});
