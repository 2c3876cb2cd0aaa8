import { expect } from 'chai';
import { PrivateBroker } from '../../src/mesh/broker.js';
import { MqttSession, MqttSessionError, buildClientOptions } from '../../src/mesh/mqtt-session.js';
import { track, untrack } from '../support/processes.js';

async function startBroker(): Promise<PrivateBroker> {
  const broker = new PrivateBroker();
  const { pid } = await broker.start();
  track(pid);
  return broker;
}

describe('mesh: private broker and MQTT session', function () {
  this.timeout(30_000);
  let broker: PrivateBroker;
  const sessions: MqttSession[] = [];
  before(async () => {
    broker = await startBroker();
  });
  after(async () => {
    for (const s of sessions) await s.close(false).catch(() => undefined);
    if (broker.pid) untrack(broker.pid);
    await broker.dispose();
  });
  const session = (id: string, extra = {}) => {
    const s = new MqttSession({ url: broker.url, clientId: id, publishTimeoutMs: 1000, ...extra });
    sessions.push(s);
    return s;
  };

  it('builds a fresh options object per client (mqtt.js mutates it) with a persistent MQTT 5 session', () => {
    const spec = { url: 'mqtt://127.0.0.1:1', clientId: 'a', persistent: true };
    const a = buildClientOptions(spec);
    const b = buildClientOptions(spec);
    expect(a).to.not.equal(b);
    expect(a).to.include({ protocolVersion: 5, clean: false, queueQoSZero: false });
    expect(a.properties?.sessionExpiryInterval).to.be.greaterThan(0);
    expect(() => buildClientOptions({ url: 'http://x', clientId: 'c' })).to.throw(MqttSessionError);
  });

  it('delivers, times out while the broker is down, and hands the queued QoS 1 message to the broker once it is back', async () => {
    const sub = session('sub', { persistent: true });
    const pub = session('pub', { persistent: true });
    await Promise.all([sub.waitConnected(5000), pub.waitConnected(5000)]);
    const got: string[] = [];
    sub.onMessage((_t, p) => got.push(p.toString()));
    await sub.subscribe(['t/x']);
    await pub.publish('t/x', 'one');
    const offline = new Promise<void>((r) => pub.onOffline(() => r()));
    await broker.stop('SIGKILL');
    await offline;
    let error: unknown;
    await pub.publish('t/x', 'two', { timeoutMs: 200 }).catch((e) => (error = e));
    expect((error as MqttSessionError).kind).to.equal('timeout');
    expect(pub.pending).to.equal(1);
    await pub.publish('t/y', 'zero', { qos: 0 }).catch((e) => (error = e));
    expect((error as MqttSessionError).kind).to.equal('offline');
    const { pid } = await broker.start();
    track(pid);
    // The new broker acknowledged the queued message (whether the subscriber had re-subscribed by
    // then is a race the node covers by re-sending recent reports after a reconnection).
    const deadline = Date.now() + 10_000;
    while (pub.pending > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    expect(pub.pending).to.equal(0);
    expect(got[0]).to.equal('one');
  });

  it('bounds what waits for an absent broker', async () => {
    const s = new MqttSession({ url: 'mqtt://127.0.0.1:1', clientId: 'nowhere', maxPending: 2, publishTimeoutMs: 50 });
    sessions.push(s);
    const kinds: string[] = [];
    for (let i = 0; i < 4; i++) await s.publish('t', 'x').catch((e: MqttSessionError) => kinds.push(e.kind));
    expect(kinds).to.deep.equal(['timeout', 'timeout', 'queue-full', 'queue-full']);
  });
});
