/**
 * The mesh against a real Mosquitto started here, with real `lockstep node`
 * processes (system-clock mode: no NTP needed, so the tests are fast) and
 * real mosquitto_pub / mosquitto_sub as foreign clients.
 */
import { expect } from 'chai';
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { PrivateBroker } from '../../src/mesh/broker.js';
import { MqttSession } from '../../src/mesh/mqtt-session.js';
import { Topics } from '../../src/mesh/topics.js';
import { decodeAck, decodeReport, decodeState, parseMessage, toWire, type AckMessage, type ReportMessage, type TriggerMessage } from '../../src/mesh/messages.js';
import { KeyRing, signWire } from '../../src/mesh/signing.js';
import { realClock } from '../../src/time/clock.js';
import { startServer } from '../support/ntp-server.js';
import { freeUdpPort } from '../support/ports.js';
import { CLI_PATH, runCli } from '../support/cli.js';
import { track, untrack, waitFor } from '../support/processes.js';
import { writeFileSync } from 'node:fs';

const run = promisify(execFile);
const clock = realClock();
const nowNs = () => clock.nowNs();
const KEY_HEX = 'ab'.repeat(32);

describe('mesh: nodes, broker and triggers (real mosquitto, node processes)', function () {
  this.timeout(60_000);
  const broker = new PrivateBroker();
  const topics = new Topics('t');
  const dir = mkdtempSync(join(tmpdir(), 'lockstep-mesh-test-'));
  const keyFile = join(dir, 'keys');
  writeFileSync(keyFile, `k1 HEX:${KEY_HEX}\n`);
  const ring = KeyRing.parse(`k1 HEX:${KEY_HEX}`);
  const children: ChildProcess[] = [];
  let watcher: MqttSession;
  const acks: AckMessage[] = [];
  const reports: ReportMessage[] = [];

  function startNode(id: string, extra: string[] = []): ChildProcess {
    const child = spawn(process.execPath, [CLI_PATH, 'node', '--id', id, '--broker', broker.url, '--group', 't', '--driver', 'sim', '--state-file', join(dir, `${id}.json`), ...extra], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    track(child.pid!);
    let log = '';
    child.stderr!.on('data', (d: Buffer) => (log += d.toString()));
    (child as ChildProcess & { log: () => string }).log = () => log;
    children.push(child);
    return child;
  }
  async function stopNode(child: ChildProcess, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((r) => child.once('exit', r));
    child.kill(signal);
    await exited;
    untrack(child.pid!);
  }
  /**
   * A node's process starts (about a second) while the tests before it run:
   * early() starts it, node() returns it (starting it only if nobody did).
   */
  const early = new Map<string, ChildProcess>();
  function startEarly(id: string, extra: string[] = []): void {
    early.set(id, startNode(id, extra));
  }
  function node(id: string, extra: string[] = []): ChildProcess {
    const child = early.get(id);
    early.delete(id);
    return child ?? startNode(id, extra);
  }
  async function online(id: string): Promise<void> {
    await waitFor(async () => {
      const { stdout } = await run('mosquitto_sub', ['-h', '127.0.0.1', '-p', String(broker.port), '-t', topics.node(id, 'state'), '-C', '1', '-W', '2']).catch(() => ({ stdout: '' }));
      const parsed = stdout ? parseMessage(stdout.trim(), decodeState) : undefined;
      return !!parsed?.ok && parsed.value.status === 'online' && parsed.value.synchronized === true;
    }, 15_000, `${id} online`);
  }
  let only: string[] | undefined;
  function trigger(over: Partial<TriggerMessage> = {}): TriggerMessage {
    const now = nowNs();
    return {
      v: 1, type: 'trigger', id: `t-${Math.random().toString(36).slice(2)}`, issuedNs: now, expiresNs: now + 20_000_000_000n, startNs: now + 1_500_000_000n,
      action: { kind: 'blink', line: 17, onNs: 50_000_000, periodNs: 200_000_000, count: 2 }, ...(only ? { nodes: only } : {}), ...over,
    };
  }

  before(async () => {
    const { pid } = await broker.start();
    track(pid);
    watcher = new MqttSession({ url: broker.url, clientId: 'test-watcher', persistent: true });
    watcher.onMessage((topic, payload) => {
      const where = topics.parseNodeTopic(topic);
      if (where?.channel === 'ack') {
        const a = parseMessage(payload, decodeAck);
        if (a.ok) acks.push(a.value);
      } else if (where?.channel === 'report') {
        const r = parseMessage(payload, decodeReport);
        if (r.ok) reports.push(r.value);
      }
    });
    await watcher.waitConnected(5000);
    await watcher.subscribe([topics.allNodes('ack'), topics.allNodes('report')]);
  });
  after(async () => {
    for (const c of children) await stopNode(c, 'SIGKILL');
    await watcher.close(false);
    if (broker.pid) untrack(broker.pid);
    await broker.dispose();
  });

  it('honours a trigger published with mosquitto_pub; its state is readable with mosquitto_sub', async () => {
    node('pub1', ['--system-clock']);
    startEarly('sec1', ['--system-clock', '--keys', keyFile]);
    await online('pub1');
    const t = trigger();
    await run('mosquitto_pub', ['-h', '127.0.0.1', '-p', String(broker.port), '-q', '1', '-t', topics.trigger, '-m', JSON.stringify(toWire(t))]);
    await waitFor(() => reports.filter((r) => r.triggerId === t.id).length === 4, 10_000, 'four edge reports');
    const ack = acks.find((a) => a.triggerId === t.id && a.node === 'pub1')!; // sec1 (started early, signed triggers only) refuses it
    expect(ack.status).to.equal('scheduled');
    expect(ack.fires).to.equal(2);
    const mine = reports.filter((r) => r.triggerId === t.id);
    expect(mine.map((r) => Number(r.plannedNs - t.startNs)).sort((a, b) => a - b)).to.deep.equal([0, 50_000_000, 200_000_000, 250_000_000]);
    // Lateness on a loaded shared machine: generous bound; precision is the benchmark's business.
    for (const r of mine) expect(Math.abs(r.latenessNs)).to.be.lessThan(50_000_000);
    for (const r of mine) expect(r.trueNs, 'simulated driver reports true instants').to.not.equal(undefined);
  });

  it('rejects 1,000 malformed, unsigned, forged, replayed, expired and past triggers, each with its reason; nothing fires; no process exits', async () => {
    only = ['sec1'];
    const sec1 = node('sec1', ['--system-clock', '--keys', keyFile]);
    await online('sec1');
    const sender = new MqttSession({ url: broker.url, clientId: 'test-attacker', maxPending: 5000 });
    await sender.waitConnected(5000);
    const good = signWire(toWire(trigger({ startNs: nowNs() + 30_000_000_000n, expiresNs: nowNs() + 40_000_000_000n })), 'k1', ring);
    await sender.publish(topics.trigger, JSON.stringify(good));
    await waitFor(() => acks.some((a) => a.triggerId === good.id), 5000, 'ack of the genuine trigger');
    const expected = new Map<string, number>();
    const payloads: string[] = [];
    const kinds = ['malformed', 'unsigned', 'forged', 'replayed', 'expired', 'past', 'unknown'] as const;
    for (let i = 0; i < 1000; i++) {
      const kind = kinds[i % kinds.length]!;
      const now = nowNs();
      let payload: string;
      let reason: string;
      switch (kind) {
        case 'malformed':
          payload = [`{"v":1,"type":"trigger","id":"m${i}"`, 'garbage', '[]', JSON.stringify({ ...toWire(trigger()), startNs: 5 })][i % 4]!;
          reason = 'malformed';
          break;
        case 'unsigned':
          payload = JSON.stringify(toWire(trigger()));
          reason = 'bad-signature';
          break;
        case 'forged': {
          const signed = signWire(toWire(trigger()), 'k1', ring);
          payload = JSON.stringify({ ...signed, startNs: (now + 2_000_000_000n).toString() });
          reason = 'bad-signature';
          break;
        }
        case 'replayed':
          payload = JSON.stringify(good);
          reason = 'replayed';
          break;
        case 'expired':
          payload = JSON.stringify(signWire(toWire(trigger({ issuedNs: now - 5_000_000_000n, expiresNs: now - 1_000_000_000n })), 'k1', ring));
          reason = 'expired';
          break;
        case 'past':
          payload = JSON.stringify(signWire(toWire(trigger({ startNs: now - 5_000_000_000n })), 'k1', ring));
          reason = 'in-the-past';
          break;
        case 'unknown':
          payload = JSON.stringify(signWire(toWire(trigger({ action: { kind: 'explode' } })), 'k1', ring));
          reason = 'unknown-action';
          break;
      }
      payloads.push(payload);
      expected.set(reason, (expected.get(reason) ?? 0) + 1);
    }
    const before = acks.length;
    for (const p of payloads) await sender.publish(topics.trigger, p);
    await waitFor(() => acks.slice(before).filter((a) => a.node === 'sec1').length >= 1000, 30_000, '1000 acks');
    const got = acks.slice(before).filter((a) => a.node === 'sec1');
    const counts = new Map<string, number>();
    for (const a of got) {
      expect(a.status, `${a.triggerId}: ${a.reason} ${a.detail}`).to.equal('rejected');
      counts.set(a.reason!, (counts.get(a.reason!) ?? 0) + 1);
    }
    expect(Object.fromEntries(counts)).to.deep.equal(Object.fromEntries(expected));
    expect(reports.filter((r) => r.node === 'sec1')).to.have.length(0);
    expect(sec1.exitCode).to.equal(null);
    await sender.close();
    only = undefined;
  });

  it('keeps firing on time through a broker restart between trigger and instant; reports arrive after reconnection, none twice', async () => {
    const ids = ['br1', 'br2', 'br3'];
    const nodes = ids.map((id) => node(id, ['--system-clock']));
    // The next tests' nodes start alongside (they live through this broker restart too: they reconnect).
    startEarly('rs1', ['--system-clock']);
    startEarly('rk1', ['--system-clock', '--keys', keyFile]);
    startEarly('will1', ['--system-clock']);
    startEarly('gate-ok', ['--system-clock']);
    startEarly('gate-lag', ['--ntp', '127.0.0.1:9']); // nothing answers there: never synchronized
    for (const id of ids) await online(id);
    const t = trigger({ startNs: nowNs() + 2_500_000_000n, nodes: ids });
    await watcher.publish(topics.trigger, JSON.stringify(toWire(t)));
    await waitFor(() => ids.every((id) => acks.some((a) => a.node === id && a.triggerId === t.id && a.status === 'scheduled')), 5000, 'acks');
    await broker.stop('SIGKILL');
    // Down across both blink pulses (instant + 0 … +250 ms).
    while (nowNs() < t.startNs + 600_000_000n) await new Promise((r) => setTimeout(r, 50));
    // The fires are done. The restarted broker keeps no sessions (persistence off), so a report re-sent before
    // this watcher has subscribed again reaches nobody: the nodes wait (stopped) until it has. Without this the
    // order of the reconnections decided the test (a clean clone lost that race once, two test files running).
    for (const n of nodes) process.kill(n.pid!, 'SIGSTOP');
    try {
      const { pid } = await broker.start();
      track(pid);
      await watcher.subscribe([topics.allNodes('ack'), topics.allNodes('report')], { timeoutMs: 10_000 });
    } finally {
      for (const n of nodes) process.kill(n.pid!, 'SIGCONT');
    }
    await waitFor(() => ids.every((id) => new Set(reports.filter((r) => r.node === id && r.triggerId === t.id).map((r) => r.id)).size === 4), 15_000, 'every node\'s four reports after the broker came back');
    for (const id of ids) {
      const mine = reports.filter((r) => r.node === id && r.triggerId === t.id);
      const unique = new Map(mine.map((r) => [r.id, r]));
      expect(unique.size, `${id} fired each edge once`).to.equal(4);
      // Report ids are fixed per edge, so a second fire of an edge would hide behind the first id: its copies must be one fire.
      for (const r of mine) expect(r.actualNs, `${id} edge ${r.index}: a re-sent report, not a second fire`).to.equal(unique.get(r.id)!.actualNs);
      for (const r of unique.values()) expect(Math.abs(r.latenessNs), `${id} on time without the broker`).to.be.lessThan(50_000_000);
    }
  });

  it('fires from its saved state after a restart between ack and instant', async () => {
    const rs1 = node('rs1', ['--system-clock']);
    await online('rs1');
    // 5 s: the restarted process must load, compile eagerly and read its state before the instant, also on a loaded machine.
    const t = trigger({ startNs: nowNs() + 5_000_000_000n, nodes: ['rs1'] });
    await watcher.publish(topics.trigger, JSON.stringify(toWire(t)));
    await waitFor(() => acks.some((a) => a.node === 'rs1' && a.triggerId === t.id), 5000, 'ack');
    await stopNode(rs1, 'SIGKILL'); // a crash: no goodbye
    startNode('rs1', ['--system-clock']);
    await waitFor(() => new Set(reports.filter((r) => r.node === 'rs1' && r.triggerId === t.id).map((r) => r.id)).size === 4, 15_000, 'reports from the restarted node');
    for (const r of reports.filter((x) => x.triggerId === t.id)) expect(Math.abs(r.latenessNs)).to.be.lessThan(50_000_000);
  });

  it('a pending signed trigger is checked again after a restart: with its key revoked it never fires', async () => {
    const otherKeys = join(dir, 'other-keys');
    writeFileSync(otherKeys, `k2 HEX:${'cd'.repeat(32)}\n`);
    const rk1 = node('rk1', ['--system-clock', '--keys', keyFile]);
    await online('rk1');
    const t = trigger({ startNs: nowNs() + 3_000_000_000n, nodes: ['rk1'] });
    await watcher.publish(topics.trigger, JSON.stringify(signWire(toWire(t), 'k1', ring)));
    await waitFor(() => acks.some((a) => a.node === 'rk1' && a.triggerId === t.id && a.status === 'scheduled'), 5000, 'scheduled');
    await stopNode(rk1, 'SIGKILL');
    startNode('rk1', ['--system-clock', '--keys', otherKeys]); // k1 revoked
    await waitFor(() => acks.some((a) => a.node === 'rk1' && a.triggerId === t.id && a.status === 'rejected'), 10_000, 'the restored trigger refused');
    const refused = acks.find((a) => a.node === 'rk1' && a.triggerId === t.id && a.status === 'rejected')!;
    expect(refused.reason).to.equal('bad-signature');
    expect(refused.detail).to.match(/pending in the state file/);
    while (nowNs() < t.startNs + 500_000_000n) await new Promise((r) => setTimeout(r, 50));
    expect(reports.filter((r) => r.triggerId === t.id), 'no fire').to.deep.equal([]);
  });

  it('a node that dies without a goodbye is marked offline by its last will, and the gate names it', async () => {
    const will1 = node('will1', ['--system-clock']);
    await online('will1');
    await stopNode(will1, 'SIGKILL'); // no DISCONNECT: the broker publishes the will
    await waitFor(async () => {
      const { stdout } = await run('mosquitto_sub', ['-h', '127.0.0.1', '-p', String(broker.port), '-t', topics.node('will1', 'state'), '-C', '1', '-W', '2']).catch(() => ({ stdout: '' }));
      const parsed = stdout ? parseMessage(stdout.trim(), decodeState) : undefined;
      return !!parsed?.ok && parsed.value.status === 'offline';
    }, 10_000, 'the retained offline will');
    const result = await runCli(['trigger', 'blink', '--line', '17', '--broker', broker.url, '--group', 't', '--nodes', 'will1', '--ready-timeout', '1s', '--json'], { timeoutMs: 15_000 });
    expect(result.code, result.stderr).to.equal(1);
    expect((JSON.parse(result.stdout) as { laggards: { node: string; why: string }[] }).laggards).to.deep.equal([{ node: 'will1', why: 'offline' }]);
  });

  it('the readiness gate holds a trigger while a node is unsynchronized, and names it', async () => {
    node('gate-ok', ['--system-clock']);
    node('gate-lag', ['--ntp', '127.0.0.1:9']); // nothing answers there: never synchronized
    await online('gate-ok');
    await waitFor(async () => {
      const { stdout } = await run('mosquitto_sub', ['-h', '127.0.0.1', '-p', String(broker.port), '-t', topics.node('gate-lag', 'state'), '-C', '1', '-W', '2']).catch(() => ({ stdout: '' }));
      return stdout.includes('"synchronized":false');
    }, 10_000, 'gate-lag state');
    const result = await runCli(['trigger', 'blink', '--line', '17', '--broker', broker.url, '--group', 't', '--nodes', 'gate-ok,gate-lag', '--ready-within', '5ms', '--ready-timeout', '2s', '--json'], { timeoutMs: 20_000 });
    expect(result.code).to.equal(1);
    const out = JSON.parse(result.stdout) as { error: string; laggards: { node: string; why: string }[] };
    expect(out.error).to.equal('not-ready');
    expect(out.laggards).to.deep.equal([{ node: 'gate-lag', why: 'not synchronized', errorBoundNs: null }]);
  });
  it('a node that connects during a retained train joins it in phase; a cancel stops it', async () => {
    // The nodes of the tests above are done: stopped, so that the retained trains here meet only the nodes meant for them.
    for (const c of children) await stopNode(c, 'SIGKILL');
    const period = 200_000_000n;
    const t = trigger({ startNs: nowNs() + 300_000_000n, nodes: ['late1'], action: { kind: 'blink', line: 17, onNs: 50_000_000, periodNs: Number(period), count: 'forever' } });
    await watcher.publish(topics.trigger, JSON.stringify(toWire(t)), { retain: true });
    await new Promise((r) => setTimeout(r, 1200)); // the train has been running for ~5 pulses
    startNode('late1', ['--system-clock']);
    await waitFor(() => acks.some((a) => a.node === 'late1' && a.triggerId === t.id), 10_000, 'ack of the retained trigger');
    const ack = acks.find((a) => a.node === 'late1' && a.triggerId === t.id)!;
    expect(ack.status).to.equal('scheduled');
    expect(ack.firstIndex).to.be.greaterThan(3);
    await waitFor(() => reports.filter((r) => r.node === 'late1' && r.triggerId === t.id).length >= 4, 10_000, 'reports of the late joiner');
    for (const r of reports.filter((x) => x.node === 'late1' && x.triggerId === t.id)) {
      const offset = (r.plannedNs - t.startNs) % period;
      expect(offset === 0n || offset === 50_000_000n, `edge ${r.index} in phase`).to.equal(true);
      expect(r.index).to.be.at.least(ack.firstIndex!);
    }
    await watcher.publish(topics.trigger, '', { retain: true }); // clear the retained trigger
    const cancelled = await runCli(['trigger', 'cancel', t.id, '--broker', broker.url, '--group', 't', '--nodes', 'late1', '--json'], { timeoutMs: 15_000 });
    expect(cancelled.code, cancelled.stderr).to.equal(0);
    expect(JSON.parse(cancelled.stdout).answers).to.deep.include({ node: 'late1', status: 'cancelled', detail: JSON.parse(cancelled.stdout).answers[0].detail });
    await new Promise((r) => setTimeout(r, 300));
    const count = reports.filter((r) => r.node === 'late1' && r.triggerId === t.id).length;
    await new Promise((r) => setTimeout(r, 600));
    expect(reports.filter((r) => r.node === 'late1' && r.triggerId === t.id).length, 'no fires after the cancel').to.equal(count);
  });

  it('a booting NTP node holds a retained group train issued long ago until it is synchronized, then joins it in phase', async () => {
    // Its time server comes up only once the node holds the trigger: the node is surely unsynchronized when it arrives.
    const port = await freeUdpPort();
    let server: Awaited<ReturnType<typeof startServer>>['server'] | undefined;
    try {
      const period = 200_000_000n;
      // Issued 90 s ago (beyond the 60 s age window) for the whole group, and runs for another minute.
      const startNs = nowNs() - 90_000_000_000n;
      const t = trigger({
        issuedNs: startNs - 1_000_000_000n, startNs, expiresNs: startNs + 150_000_000_000n,
        action: { kind: 'blink', line: 17, onNs: 50_000_000, periodNs: Number(period), count: 750 },
      });
      delete (t as Partial<TriggerMessage>).nodes;
      await watcher.publish(topics.trigger, JSON.stringify(toWire(t)), { retain: true });
      const node = startNode('boot1', ['--ntp', `127.0.0.1:${port}`]);
      const log = (node as ChildProcess & { log: () => string }).log;
      await waitFor(() => /holding t-/.test(log()), 15_000, 'the node holds the retained trigger');
      expect(acks.some((a) => a.node === 'boot1' && a.triggerId === t.id), 'no answer while unsynchronized').to.equal(false);
      ({ server } = await startServer({ port, rateLimit: false }));
      await waitFor(() => acks.some((a) => a.node === 'boot1' && a.triggerId === t.id), 20_000, 'an answer to the retained trigger');
      await watcher.publish(topics.trigger, '', { retain: true }); // clear it before any other node starts
      const mine = acks.filter((a) => a.node === 'boot1' && a.triggerId === t.id);
      expect(mine.map((a) => `${a.status} ${a.reason ?? ''}`), log()).to.deep.equal(['scheduled ']);
      expect(mine[0]!.firstIndex).to.be.greaterThan(400);
      await waitFor(() => reports.filter((r) => r.node === 'boot1' && r.triggerId === t.id).length >= 4, 10_000, 'fires of the late joiner');
      for (const r of reports.filter((x) => x.node === 'boot1' && x.triggerId === t.id)) {
        const offset = (r.plannedNs - t.startNs) % period;
        expect(offset === 0n || offset === 50_000_000n, `edge ${r.index} in phase`).to.equal(true);
      }
      await stopNode(node);
    } finally {
      await server?.stop();
    }
  });

});
