/**
 * A node's state stays bounded whatever the network sends it: a start beyond
 * the horizon is refused with its reason, the pending set has a ceiling (in
 * memory and in the state file), reject details are excerpts, and distinct
 * GPIO lines do not keep an actuator each forever. Real Mosquitto, an
 * in-process MeshNode.
 */
import { expect } from 'chai';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PrivateBroker } from '../../src/mesh/broker.js';
import { MqttSession } from '../../src/mesh/mqtt-session.js';
import { MeshNode, MAX_DETAIL_CHARS } from '../../src/mesh/node.js';
import { Topics } from '../../src/mesh/topics.js';
import { StateFile } from '../../src/mesh/state-file.js';
import { Timescale } from '../../src/time/timescale.js';
import { realClock } from '../../src/time/clock.js';
import { Scheduler } from '../../src/schedule/scheduler.js';
import { newMessageId, type AckMessage } from '../../src/mesh/messages.js';
import type { Actuator } from '../../src/schedule/actuator.js';
import { hostileTrigger } from '../support/hostile-triggers.js';
import { track, untrack } from '../support/processes.js';

describe('mesh node: bounded state', function () {
  this.timeout(30_000);
  const dir = mkdtempSync(join(tmpdir(), 'lockstep-bounded-'));
  const topics = new Topics('bounded');
  const broker = new PrivateBroker();
  const timescale = new Timescale(realClock(), { trustRawClock: { errorBoundNs: 100_000 } });
  const scheduler = new Scheduler({ timescale });
  let node: MeshNode;
  let sender: MqttSession;
  const acks: { ack: AckMessage; bytes: number }[] = [];
  let live = 0;
  let built = 0;
  const stateFile = new StateFile(join(dir, 'n1.json'));

  before(async () => {
    const { pid } = await broker.start();
    track(pid);
    const actuator = (): Actuator => ({
      name: 'counted',
      async prepare() {
        live++;
        built++;
      },
      fire: () => ({}),
      async release() {
        live--;
      },
    });
    node = new MeshNode({
      id: 'n1',
      topics,
      mqtt: { url: broker.url },
      timescale,
      scheduler,
      sync: () => ({ synchronized: true, offsetNs: 0n, frequencyPpm: 0, errorBoundNs: 100_000, sources: [] }),
      actuatorFor: actuator,
      stateFile,
      maxPending: 20,
      maxAheadNs: 3_600_000_000_000n,
      warmupFires: 0,
    });
    await node.start();
    sender = new MqttSession({ url: broker.url, clientId: 'bounded-sender' });
    await sender.waitConnected(5000);
    sender.onMessage((_t, p) => acks.push({ ack: JSON.parse(p.toString()) as AckMessage, bytes: p.length }));
    await sender.subscribe([topics.allNodes('ack')]);
    await node.mqtt.waitConnected(5000);
  });
  after(async () => {
    await node?.stop();
    scheduler.stop();
    await sender?.close();
    if (broker.pid) untrack(broker.pid);
    await broker.dispose();
    rmSync(dir, { recursive: true, force: true });
  });

  const send = (fields: Record<string, unknown>) => {
    const now = timescale.nowNs();
    const id = newMessageId('t');
    const wire = { v: 1, type: 'trigger', id, issuedNs: String(now), expiresNs: String(now + 60_000_000_000n), startNs: String(now + 2_000_000_000n), action: { kind: 'blink', line: 17, onNs: 1e6, periodNs: 2e6, count: 1 }, ...fields };
    return sender.publish(topics.trigger, JSON.stringify(wire)).then(() => id);
  };
  const answer = async (id: string) => {
    const deadline = Date.now() + 5000;
    for (;;) {
      const found = acks.find((a) => a.ack.triggerId === id);
      if (found) return found;
      if (Date.now() > deadline) throw new Error(`no ack for ${id}`);
      await new Promise((r) => setTimeout(r, 10));
    }
  };

  it('refuses a start beyond --max-ahead, saying how far and what the limit is', async () => {
    const id = await send({ startNs: '9200000000000000000', expiresNs: '9200000000001000000' });
    const { ack } = await answer(id);
    expect(ack.status).to.equal('rejected');
    expect(ack.reason).to.equal('too-far-ahead');
    expect(ack.detail).to.match(/days ahead; this node plans at most 60\.0 min ahead/);
    expect(node.pendingIds()).to.not.include(id);
  });

  it('cuts a reject detail to a short excerpt (no 12 KB ack echoing the bad value)', async () => {
    const id = await send({ action: { kind: 'blink', line: 'x'.repeat(12_000), onNs: 1e6, periodNs: 2e6, count: 1 } });
    const { ack, bytes } = await answer(id);
    expect(ack.reason).to.equal('malformed');
    expect(ack.detail!.length).to.be.at.most(MAX_DETAIL_CHARS + 40);
    expect(ack.detail).to.match(/more characters\)$/);
    expect(bytes).to.be.below(1000);
  });

  it('bounds the pending set, in memory and in the state file', async () => {
    const ids: string[] = [];
    for (let i = 0; i < 25; i++) ids.push(await send({ startNs: String(timescale.nowNs() + 600_000_000_000n + BigInt(i)) }));
    const answers = await Promise.all(ids.map(answer));
    const scheduled = answers.filter((a) => a.ack.status === 'scheduled').length;
    const refused = answers.filter((a) => a.ack.reason === 'too-many-pending');
    expect(scheduled).to.equal(20);
    expect(refused).to.have.length(5);
    expect(refused[0]!.ack.detail).to.match(/already has 20 pending triggers/);
    expect(node.pendingIds()).to.have.length(20);
    await new Promise((r) => setTimeout(r, 200)); // the last coalesced write
    const saved = JSON.parse(readFileSync(stateFile.path, 'utf8')) as { pending: unknown[] };
    expect(saved.pending).to.have.length(20);
  });

  it('keeps a bounded number of actuators prepared, however many lines triggers name', async () => {
    // Pending is full from the test before; cancel nothing: lines named by refused triggers cost nothing,
    // and the ones it accepted share line 17. Make room and name 40 distinct lines that are accepted.
    for (const id of node.pendingIds()) {
      const now = timescale.nowNs();
      await sender.publish(topics.cancel, JSON.stringify({ v: 1, type: 'cancel', id: newMessageId('c'), issuedNs: String(now), expiresNs: String(now + 10_000_000_000n), triggerId: id }));
    }
    const deadline = Date.now() + 5000;
    while (node.pendingIds().length > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    expect(node.pendingIds()).to.have.length(0);
    // Each one scheduled (far enough ahead for any load), then cancelled: its line's actuator is idle from then on.
    let scheduled = 0;
    for (let i = 0; i < 40; i++) {
      const id = await send({ startNs: String(timescale.nowNs() + 60_000_000_000n), action: { kind: 'blink', line: `L${i}`, onNs: 1e6, periodNs: 2e6, count: 1 } });
      if ((await answer(id)).ack.status === 'scheduled') scheduled++;
      const now = timescale.nowNs();
      await sender.publish(topics.cancel, JSON.stringify({ v: 1, type: 'cancel', id: newMessageId('c'), issuedNs: String(now), expiresNs: String(now + 10_000_000_000n), triggerId: id }));
      const until = Date.now() + 5000;
      while (node.pendingIds().includes(id) && Date.now() < until) await new Promise((r) => setTimeout(r, 5));
    }
    await new Promise((r) => setTimeout(r, 300));
    expect(scheduled).to.equal(40);
    expect(built).to.be.at.least(40);
    expect(live).to.be.at.most(32);
  });

  it('answers a flood of hostile triggers with small acks and stays within its bounds', async () => {
    const before = acks.length;
    for (let i = 0; i < 600; i++) await sender.publish(topics.trigger, hostileTrigger(i, timescale.nowNs()));
    const deadline = Date.now() + 15_000;
    while (acks.length - before < 600 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    const flood = acks.slice(before);
    expect(flood.length).to.equal(600);
    expect(Math.max(...flood.map((a) => a.bytes))).to.be.below(1000);
    expect(node.pendingIds().length).to.be.at.most(20);
    expect(flood.filter((a) => a.ack.reason === 'too-far-ahead').length).to.be.at.least(150);
  });
});
