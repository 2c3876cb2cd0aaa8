/**
 * `--broker A,B`: two real Mosquitto brokers; a `lockstep node` and a
 * coordinator given both. The first is killed (SIGKILL, a crash): both move
 * to the second, the node's state is there again, and a trigger through the
 * second broker is acked and fired.
 */
import { expect } from 'chai';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PrivateBroker } from '../../src/mesh/broker.js';
import { MqttSession } from '../../src/mesh/mqtt-session.js';
import { Topics } from '../../src/mesh/topics.js';
import { NodeDirectory } from '../../src/mesh/presence.js';
import { Coordinator } from '../../src/mesh/coordinator.js';
import { Timescale } from '../../src/time/timescale.js';
import { realClock } from '../../src/time/clock.js';
import { CLI_PATH } from '../support/cli.js';
import { track, untrack, waitFor } from '../support/processes.js';

describe('mesh: --broker with several URLs fails over', function () {
  this.timeout(40_000);
  const dir = mkdtempSync(join(tmpdir(), 'lockstep-failover-'));
  const a = new PrivateBroker();
  const b = new PrivateBroker();
  const topics = new Topics('failover');
  let node: ChildProcess | undefined;
  let session: MqttSession | undefined;

  after(async () => {
    await session?.close().catch(() => undefined);
    if (node && node.exitCode === null) {
      const exited = new Promise((r) => node!.once('exit', r));
      node.kill('SIGTERM');
      await exited;
    }
    if (node?.pid) untrack(node.pid);
    for (const broker of [a, b]) {
      if (broker.pid) untrack(broker.pid);
      await broker.dispose();
    }
    rmSync(dir, { recursive: true, force: true });
  });

  it('moves node and trigger to the second broker when the first dies, and the trigger fires', async () => {
    track((await a.start()).pid);
    track((await b.start()).pid);
    let log = '';
    node = spawn(process.execPath, [
      CLI_PATH, 'node', '--id', 'f1', '--broker', `${a.url},${b.url}`, '--prefix', topics.prefix,
      '--system-clock', '--driver', 'sim', '--state-file', join(dir, 'f1.json'), '--exit-with-stdin',
    ], { stdio: ['pipe', 'ignore', 'pipe'] });
    track(node.pid!);
    node.stderr!.on('data', (d: Buffer) => (log += d.toString()));
    const timescale = new Timescale(realClock(), { trustRawClock: { errorBoundNs: 100_000 } });
    session = new MqttSession({ url: a.url, servers: [a.url, b.url], clientId: 'failover-trigger' });
    const directory = new NodeDirectory(topics, () => timescale.nowNs());
    const coordinator = new Coordinator({ session, topics, directory, timescale });
    await session.waitConnected(10_000);
    await session.subscribe(coordinator.filters());
    await waitFor(() => directory.get('f1')?.status === 'online', 15_000, `node f1 online on the first broker (node log: ${log})`);
    expect(log).to.match(/or mqtt:\/\/127\.0\.0\.1/); // it says it has two brokers

    const before = directory.get('f1')!.receivedMs;
    await a.stop('SIGKILL');
    // Both reconnect to the second broker; the node publishes its state there.
    await waitFor(() => session!.connected && (directory.get('f1')?.receivedMs ?? 0) > before, 15_000, `f1's state through the second broker (node log: ${log})`);

    const result = await coordinator.run({
      action: { kind: 'blink', line: 17, onNs: 20_000_000, periodNs: 100_000_000, count: 2 },
      inNs: 800_000_000n,
      nodes: ['f1'],
      readyWithinNs: 1_000_000,
      readyTimeoutMs: 10_000,
      collectGraceMs: 3_000,
    });
    expect(result.rows[0]!.ack, log).to.equal('scheduled');
    expect(result.rows[0]!.fires).to.equal(2);
  });
});
