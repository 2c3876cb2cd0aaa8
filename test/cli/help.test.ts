/**
 * The command as a new user meets it: `lockstep --help` lists every command,
 * each answers --help, an unknown one is a usage error, and `npx lockstep`
 * works from the repository (the package's own bin, no install step).
 */
import { expect } from 'chai';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { runCli } from '../support/cli.js';
import { repoRoot } from '../support/repo.js';

const run = promisify(execFile);
const COMMANDS = ['query', 'sync', 'serve-time', 'wait', 'at', 'cron', 'crontab', 'fire', 'node', 'hub', 'trigger', 'demo', 'swarm'];

describe('cli: lockstep --help', function () {
  this.timeout(60_000);

  it('lists every command, and each command answers --help with its usage (exit 0)', async () => {
    const top = await runCli(['--help']);
    expect(top.code).to.equal(0);
    for (const name of COMMANDS) expect(top.stdout, name).to.match(new RegExp(`^  ${name} `, 'm'));
    const helps = await Promise.all(COMMANDS.map((name) => runCli([name, '--help'])));
    helps.forEach((h, i) => {
      expect(h.code, `${COMMANDS[i]} --help`).to.equal(0);
      expect(h.stdout, `${COMMANDS[i]} --help`).to.match(new RegExp(`usage: lockstep ${COMMANDS[i]}\\b`));
    });
  });

  it('an unknown command is a usage error (exit 2) that names it', async () => {
    const r = await runCli(['bogus']);
    expect(r.code).to.equal(2);
    expect(r.stderr).to.match(/unknown command 'bogus'/);
  });

  it('npx lockstep --help runs the package from the repository', async () => {
    const { stdout } = await run('npx', ['--offline', 'lockstep', '--help'], { cwd: repoRoot(), timeout: 45_000 });
    expect(stdout).to.match(/^usage: lockstep COMMAND/);
  });
});
