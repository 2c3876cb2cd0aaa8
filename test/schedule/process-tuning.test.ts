/**
 * lowerTimerSlack: a process lowers its own timer slack to 1 ns where Linux
 * lets it, and reports (never throws) where it does not.
 */
import { expect } from 'chai';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { lowerTimerSlackDetailed, readTimerSlackNs } from '../../src/schedule/process-tuning.js';

const MODULE = fileURLToPath(new URL('../../src/schedule/process-tuning.js', import.meta.url));
const haveFile = existsSync('/proc/self/timerslack_ns');

/** Runs lowerTimerSlackDetailed in a fresh process (optionally as another user) and returns what it said. */
function inChild(prefix: string[] = []): { lowered: boolean; slackNs?: number; reason?: string } {
  const script = `import(${JSON.stringify(MODULE)}).then((m) => process.stdout.write(JSON.stringify(m.lowerTimerSlackDetailed())))`;
  const [cmd, ...args] = [...prefix, process.execPath, '--input-type=module', '-e', script];
  const r = spawnSync(cmd!, args, { encoding: 'utf8', timeout: 10_000 });
  expect(r.status, r.stderr).to.equal(0);
  return JSON.parse(r.stdout) as { lowered: boolean; slackNs?: number; reason?: string };
}

describe('process tuning: timer slack', () => {
  it('lowers a fresh process from the default 50 µs to 1 ns, and says so', function () {
    if (!haveFile) this.skip();
    const result = inChild();
    expect(result).to.deep.equal({ lowered: true, slackNs: 1 });
  });

  it('works without privileges too (the write is synchronous: the main thread changes its own slack)', function () {
    const setpriv = ['/usr/bin/setpriv', '/bin/setpriv'].find((p) => existsSync(p));
    if (!haveFile || !setpriv || process.getuid?.() !== 0) this.skip();
    const result = inChild([setpriv!, '--reuid=65534', '--regid=65534', '--clear-groups']);
    expect(result.lowered, JSON.stringify(result)).to.equal(true);
  });

  it('never throws, and reads back what is in force', () => {
    const result = lowerTimerSlackDetailed();
    expect(result.lowered).to.equal(haveFile ? readTimerSlackNs() === 1 : false);
    if (!result.lowered) expect(result.reason).to.be.a('string');
  });
});
