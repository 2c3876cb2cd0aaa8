/**
 * The commands as a user runs them: `lockstep hub` serving time to a
 * `lockstep node` (embedded NTP client), and a signed `lockstep trigger`
 * printing its table; a node that requires signatures refuses an unsigned one.
 */
import { expect } from 'chai';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PrivateBroker } from '../../src/mesh/broker.js';
import { CLI_PATH, runCli } from '../support/cli.js';
import { freeUdpPort } from '../support/ports.js';
import { track, untrack, waitFor } from '../support/processes.js';

describe('mesh CLI: lockstep hub, node and trigger together', function () {
  this.timeout(60_000);
  const broker = new PrivateBroker();
  const dir = mkdtempSync(join(tmpdir(), 'lockstep-cli-'));
  const keys = join(dir, 'keys');
  writeFileSync(keys, `k7 HEX:${'5a'.repeat(32)}\n`);
  const children: { child: ChildProcess; out: () => string }[] = [];
  const spawnCli = (args: string[]) => {
    const child = spawn(process.execPath, [CLI_PATH, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    track(child.pid!);
    let out = '';
    child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
    const entry = { child, out: () => out };
    children.push(entry);
    return entry;
  };
  let hub: { child: ChildProcess; out: () => string };

  before(async () => {
    const { pid } = await broker.start();
    track(pid);
    const ntpPort = await freeUdpPort();
    hub = spawnCli(['hub', '--broker', broker.url, '--group', 'cli', '--ntp-port', String(ntpPort), '--ntp-bind', '127.0.0.1', '--system-error', '20us']);
    spawnCli(['node', '--id', 'cli-1', '--broker', broker.url, '--group', 'cli', '--ntp', `127.0.0.1:${ntpPort}`, '--sim-offset=-2.5', '--sim-drift=60', '--driver', 'sim', '--keys', keys, '--state-file', join(dir, 'cli-1.json')]);
  });
  after(async () => {
    for (const { child } of children) {
      if (child.exitCode === null && child.signalCode === null) {
        const exited = new Promise((r) => child.once('exit', r));
        child.kill('SIGTERM');
        await exited;
      }
      untrack(child.pid!);
    }
    if (broker.pid) untrack(broker.pid);
    await broker.dispose();
  });

  it('the hub serves time and shows the node synchronized; a signed trigger fires and prints its table', async () => {
    await waitFor(() => /cli-1: synchronized, offset 2\.50\d s/.test(hub.out()), 20_000, `hub to show cli-1 synchronized (hub said: ${hub.out()})`);
    const r = await runCli(['trigger', 'blink', '--line', '17', '--on', '50ms', '--every', '200ms', '--count', '3', '--broker', broker.url, '--group', 'cli', '--keys', keys, '--key-id', 'k7', '--ready-within', '5ms', '--in', '1500ms'], { timeoutMs: 30_000 });
    expect(r.code, r.stderr + r.stdout).to.equal(0);
    expect(r.stdout).to.match(/^cli-1\s+scheduled\s+\+2\.50\d s/m);
    expect(r.stdout).to.match(/3\/3/);
    expect(r.stdout.match(/chosen \d+ ms ahead/)?.[0], r.stdout).to.match(/chosen 150[01] ms ahead/); // --in counts from the gate (whole ms, rounded up)
    // --at is absolute: an instant that passes while the gate waits is refused before anything is sent (it was published, and refused by every node as in-the-past).
    const passed = await runCli(['trigger', 'blink', '--line', '17', '--broker', broker.url, '--group', 'cli', '--keys', keys, '--key-id', 'k7', '--ready-within', '5ms', '--at', '+1ms', '--json'], { timeoutMs: 30_000 });
    expect(passed.code, passed.stderr + passed.stdout).to.equal(1);
    expect(JSON.parse(passed.stdout)).to.include({ error: 'start-passed' });
    expect((JSON.parse(passed.stdout) as { message: string }).message).to.match(/past when every node was ready.*--in DURATION/);
    expect(r.stdout).to.match(/true error max/); // the simulated LED reported true instants
  });

  it('a node that requires signatures refuses an unsigned trigger, and the trigger exits 1 saying so', async () => {
    const r = await runCli(['trigger', 'blink', '--line', '17', '--broker', broker.url, '--group', 'cli', '--ready-within', '5ms', '--json'], { timeoutMs: 30_000 });
    expect(r.code).to.equal(1);
    const out = JSON.parse(r.stdout) as { rows: { node: string; ack: string; reason: string; detail: string; fires: number }[] };
    const row = out.rows.find((x) => x.node === 'cli-1')!;
    expect(row).to.include({ ack: 'rejected', reason: 'bad-signature', detail: 'unsigned, and this node requires a signature', fires: 0 });
  });
});

describe('mesh CLI: bad input', function () {
  this.timeout(30_000);
  const dir = mkdtempSync(join(tmpdir(), 'lockstep-cli-bad-'));
  const twoKeys = join(dir, 'ntp-keys');
  writeFileSync(twoKeys, `1 SHA1 HEX:${'ab'.repeat(20)}\n2 SHA1 HEX:${'cd'.repeat(20)}\n`);
  const cases: [string[], RegExp][] = [
    [['node', '--broker', 'mqtt://127.0.0.1:1', '--system-clock'], /--id is required/],
    [['node', '--id', 'a/b', '--broker', 'mqtt://127.0.0.1:1', '--system-clock'], /node id 'a\/b' must be/],
    [['node', '--id', 'a', '--broker', 'ftp://x', '--system-clock'], /must look like mqtt:\/\/HOST:PORT/],
    [['node', '--id', 'a', '--broker', 'mqtt://127.0.0.1:1'], /give --ntp HOST\[:PORT\] \(the hub\) or --system-clock/],
    // An NTP keyfile with several keys and no --ntp-key-id must not silently authenticate nothing.
    [['node', '--id', 'a', '--broker', 'mqtt://127.0.0.1:1', '--ntp', '127.0.0.1:9', '--ntp-keys', twoKeys], /holds 2 keys \(1, 2\): choose one with --ntp-key-id N/],
    [['trigger', 'explode', '--broker', 'mqtt://127.0.0.1:1'], /unknown action 'explode'/],
    [['trigger', 'blink', '--line', '17', '--in', 'soon', '--broker', 'mqtt://127.0.0.1:1'], /--in: not a duration/],
    [['hub', '--broker', 'mqtt://127.0.0.1:1', '--ntp-port', '99999'], /--ntp-port takes an integer from 1 to 65535/],
    [['node', '--id', 'a', '--broker', 'mqtt://127.0.0.1:1', '--system-clock', '--max-ahead', 'soon'], /--max-ahead: not a duration/],
    [['node', '--id', 'a', '--broker', 'mqtt://127.0.0.1:1', '--system-clock', '--max-ahead', '0s'], /--max-ahead must be longer than 0/],
    [['node', '--id', 'a', '--broker', 'mqtt://127.0.0.1:1,ftp://x', '--system-clock'], /'ftp:\/\/x' must look like mqtt:\/\/HOST:PORT/],
    [['trigger', 'blink', '--line', '17', '--broker', 'mqtt://127.0.0.1:1,mqtts://127.0.0.1:2'], /give every URL the same scheme/],
    [['demo', '--nodes', '5000'], /--nodes takes an integer from 1 to 2000/],
  ];
  for (const [args, message] of cases) {
    it(`lockstep ${args.join(' ')}: exit 2, ${message.source}`, async () => {
      const r = await runCli(args, { timeoutMs: 15_000 });
      expect(r.code, r.stderr).to.equal(2);
      expect(r.stderr).to.match(message);
    });
  }
});
