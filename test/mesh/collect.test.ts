/**
 * The coordinator's collection of reports when a target's ack comes late:
 * at a thousand swarm nodes on two cores some acks came after the ack wait
 * (their trigger, ack and reports queued behind the others'), and collection
 * stopped as soon as the reports of the nodes that HAD acked were in, so a
 * late node's fires went missing from the result. Two hand-made nodes on a
 * real Mosquitto: one answers at once, one acks after the ack wait ends.
 */
import { expect } from 'chai';
import { PrivateBroker } from '../../src/mesh/broker.js';
import { MqttSession } from '../../src/mesh/mqtt-session.js';
import { Topics } from '../../src/mesh/topics.js';
import { NodeDirectory } from '../../src/mesh/presence.js';
import { Coordinator } from '../../src/mesh/coordinator.js';
import { decodeTrigger, encodeMessage, parseMessage, type AckMessage, type ReportMessage, type StateMessage } from '../../src/mesh/messages.js';
import { Timescale } from '../../src/time/timescale.js';
import { realClock } from '../../src/time/clock.js';
import { track, untrack, waitFor } from '../support/processes.js';

/** The ack wait ends 1 s after max(lead, 1 s) (coordinator.ts): the late node acks after it. */
const LATE_ACK_MS = 2_150;

describe('mesh: the coordinator collects reports of a node whose ack came late', function () {
  this.timeout(20_000);
  const broker = new PrivateBroker();
  const topics = new Topics('collect');
  const sessions: MqttSession[] = [];

  after(async () => {
    for (const s of sessions) await s.close().catch(() => undefined);
    if (broker.pid) untrack(broker.pid);
    await broker.dispose();
  });

  /** A node that publishes a synchronized state, then answers each trigger after `ackAfterMs` with an ack and its reports. */
  async function fakeNode(id: string, ackAfterMs: number, timescale: Timescale): Promise<void> {
    const s = new MqttSession({ url: broker.url, clientId: `collect-${id}` });
    sessions.push(s);
    await s.waitConnected(5_000);
    const state: StateMessage = {
      v: 1, type: 'state', node: id, status: 'online', seq: 0, updatedNs: timescale.nowNs(), synchronized: true, offsetNs: 0n, frequencyPpm: 0,
      errorBoundNs: 10_000, lastSampleNs: null, sources: [], pending: 0, actions: ['blink'], signing: false, statePeriodMs: 60_000, errorBoundGrowthPpm: 5,
    };
    await s.publish(topics.node(id, 'state'), encodeMessage(state), { qos: 1, retain: true });
    s.onMessage((_topic, payload) => {
      const parsed = parseMessage(payload, decodeTrigger);
      if (!parsed.ok) return;
      const t = parsed.value;
      const period = BigInt(t.action.periodNs as number);
      const onNs = BigInt(t.action.onNs as number);
      setTimeout(() => {
        const ack: AckMessage = { v: 1, type: 'ack', id: `a-${id}`, node: id, triggerId: t.id, status: 'scheduled', atNs: timescale.nowNs(), firstNs: t.startNs, fires: 2, firstIndex: 0 };
        void s.publish(topics.node(id, 'ack'), encodeMessage(ack), { qos: 1 });
        for (const index of [0, 1]) {
          for (const level of [1, 0] as const) {
            const plannedNs = t.startNs + BigInt(index) * period + (level === 0 ? onNs : 0n);
            const report: ReportMessage = {
              v: 1, type: 'report', id: `r:${index}:${level}:${id}:${t.id}`, node: id, triggerId: t.id, index, level,
              plannedNs, actualNs: plannedNs, latenessNs: 0, errorBoundNs: 10_000, offsetNs: 0n,
            };
            void s.publish(topics.node(id, 'report'), encodeMessage(report), { qos: 1 });
          }
        }
      }, ackAfterMs);
    });
    await s.subscribe([topics.trigger]);
  }

  it('waits for a target that has not acked yet (until the grace ends), and counts its fires', async () => {
    track((await broker.start()).pid);
    const timescale = new Timescale(realClock(), { trustRawClock: { errorBoundNs: 10_000 } });
    await fakeNode('prompt', 0, timescale);
    await fakeNode('late', LATE_ACK_MS, timescale);
    const session = new MqttSession({ url: broker.url, clientId: 'collect-trigger' });
    sessions.push(session);
    const directory = new NodeDirectory(topics, () => timescale.nowNs());
    const coordinator = new Coordinator({ session, topics, directory, timescale });
    await session.waitConnected(5_000);
    await session.subscribe(coordinator.filters());
    await waitFor(() => directory.online().length === 2, 5_000, 'both fake nodes online');

    const result = await coordinator.run({
      action: { kind: 'blink', line: 17, onNs: 20_000_000, periodNs: 100_000_000, count: 2 },
      inNs: 300_000_000n,
      readyWithinNs: 1_000_000,
      readyTimeoutMs: 5_000,
      collectGraceMs: 4_000,
    });
    // The late ack came after the ack wait: named as missing then, but its fires still count.
    expect(result.missingAcks).to.deep.equal(['late']);
    const late = result.rows.find((r) => r.node === 'late')!;
    expect(late.ack).to.equal('scheduled');
    expect(late.fires, 'the late node fired twice and reported it').to.equal(2);
    expect(result.rows.find((r) => r.node === 'prompt')!.fires).to.equal(2);
  });
});
