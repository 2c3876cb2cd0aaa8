/**
 * Two real Mosquitto brokers bridged by hardware/mosquitto-bridge.conf (a
 * `connection` bridge on B carrying lockstep/# both ways to A), the link
 * between them through a relay that the test cuts. Swarm nodes split across
 * the brokers; the trigger is published on A.
 *  - Every node acks and fires; every report reaches the trigger.
 *  - The bridge cut mid-train: every node still fires on time (the train is
 *    theirs once acked), and B's reports arrive after the link is back, none
 *    twice.
 */
import { expect } from 'chai';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { PrivateBroker } from '../../src/mesh/broker.js';
import { Cluster } from '../../src/cli/mesh/cluster.js';
import { MqttSession } from '../../src/mesh/mqtt-session.js';
import { TcpRelay } from '../support/tcp-relay.js';
import { track, untrack } from '../support/processes.js';
import { repoRoot } from '../support/repo.js';

const NODES = 20;
const PER_BROKER = NODES / 2;

/** The shipped bridge config, pointed at the relay in front of broker A. */
function bridgeConfig(port: number): string[] {
  const text = readFileSync(join(repoRoot(), 'hardware', 'mosquitto-bridge.conf'), 'utf8');
  return text
    .split('\n')
    .filter((l) => l.trim() && !l.trim().startsWith('#'))
    .map((l) => (l.startsWith('address ') ? `address 127.0.0.1:${port}` : l))
    // Tests retry the cut link at once (the shipped backoff starts at 1 s too, this only caps it lower).
    .map((l) => (l.startsWith('restart_timeout') ? 'restart_timeout 1 2' : l));
}

describe('mesh over two bridged Mosquitto brokers', function () {
  this.timeout(90_000);
  const a = new PrivateBroker();
  let b: PrivateBroker;
  let relay: TcpRelay;
  let cluster: Cluster;

  before(async () => {
    track((await a.start()).pid);
    relay = new TcpRelay({ host: '127.0.0.1', port: a.port });
    const relayPort = await relay.start();
    b = new PrivateBroker({ extraConfig: bridgeConfig(relayPort) });
    track((await b.start()).pid);
    // Node i's swarm process uses brokers[i % 2]: half on A, half on B; the coordinator on A.
    cluster = new Cluster({ nodes: NODES, layout: 'swarm', nodesPerProcess: PER_BROKER, brokers: [a.url, b.url], prefix: `lockstep/bridge-${process.pid}` });
    await cluster.start();
  });
  after(async () => {
    await cluster?.stop();
    await relay?.cut();
    for (const broker of [a, b]) {
      if (broker?.pid) untrack(broker.pid);
      await broker?.dispose();
    }
  });

  it('a trigger published on one broker is acked and fired by the nodes of both, every report reaches it', async () => {
    const result = await cluster.coordinator!.run({
      action: { kind: 'blink', line: 17, onNs: 20_000_000, periodNs: 200_000_000, count: 2 },
      inNs: 1_000_000_000n,
      readyWithinNs: 50_000_000,
      readyTimeoutMs: 45_000,
      minNodes: NODES,
      collectGraceMs: 5_000,
    });
    expect(result.targets).to.have.length(NODES);
    expect(result.rows.filter((r) => r.ack !== 'scheduled').map((r) => r.node), 'not scheduled').to.deep.equal([]);
    expect(result.rows.filter((r) => r.fires !== 2).map((r) => r.node), 'missing reports').to.deep.equal([]);
    expect(result.duplicateReports).to.equal(0);
  });

  it('the bridge cut mid-train: every node fires on time, the far side reports once the link is back, none twice', async () => {
    // Watch, on A, when the reports of B's nodes (the second swarm process: node11..node20) arrive.
    const watcher = new MqttSession({ url: a.url, clientId: 'bridge-watcher' });
    const arrivals: number[] = [];
    watcher.onMessage((topic) => {
      const id = cluster.topics.parseNodeTopic(topic)?.nodeId;
      if (id && Number(id.replace(/\D/g, '')) > PER_BROKER) arrivals.push(Date.now());
    });
    await watcher.waitConnected(5_000);
    await watcher.subscribe([cluster.topics.allNodes('report')]);
    // Fires at 1.2, 1.5, 1.8, 2.1 s after the publish; the link is down from 1.4 s to 2.6 s.
    const count = 4;
    const periodMs = 300;
    let cutAt = 0;
    let restoredAt = 0;
    const run = cluster.coordinator!.run({
      action: { kind: 'blink', line: 17, onNs: 20_000_000, periodNs: periodMs * 1_000_000, count },
      inNs: 1_200_000_000n,
      readyWithinNs: 50_000_000,
      readyTimeoutMs: 20_000,
      minNodes: NODES,
      collectGraceMs: 15_000,
      progress: (line) => {
        if (!/trigger t-/.test(line)) return;
        // Published: cut the link after the acks and the first fire, restore it after the last.
        setTimeout(() => void relay.cut().then(() => (cutAt = Date.now())), 1_400);
        setTimeout(() => void relay.start().then(() => (restoredAt = Date.now())), 1_200 + count * periodMs + 200);
      },
    });
    const result = await run.finally(() => watcher.close());
    expect(cutAt, 'the link was cut').to.be.above(0);
    expect(restoredAt, 'and restored').to.be.above(cutAt);
    expect(result.rows.filter((r) => r.ack !== 'scheduled').map((r) => r.node), 'not scheduled').to.deep.equal([]);
    const short = result.rows.filter((r) => r.fires !== count).map((r) => `${r.node}: ${r.fires}/${count}`);
    expect(short, 'nodes whose reports did not all arrive').to.deep.equal([]);
    expect(result.duplicateReports, 'reports received twice').to.equal(0);
    // On time: the fires did not wait for the link (generous: a swarm fires without a spin, ms late).
    const late = result.reports.filter((r) => Math.abs(r.latenessNs) > 100_000_000);
    expect(late.map((r) => `${r.node}#${r.index}: ${(r.latenessNs / 1e6).toFixed(1)} ms`), 'fires late by > 100 ms').to.deep.equal([]);
    // The far side's reports: none while the link was down, the queued ones after it was back.
    expect(arrivals.filter((t) => t > cutAt + 300 && t < restoredAt), 'B reports during the cut').to.have.length(0);
    expect(arrivals.filter((t) => t >= restoredAt).length, 'B reports after the link was back').to.be.at.least(PER_BROKER * 2);
  });
});
