/**
 * The readiness gate judges every target by one rule: nodes that all follow
 * the same NTP server are judged without the error that server declared
 * about itself (it moves them together); any mix is judged on whole bounds.
 */
import { expect } from 'chai';
import { Topics } from '../../src/mesh/topics.js';
import { NodeDirectory } from '../../src/mesh/presence.js';
import { readiness } from '../../src/mesh/readiness.js';
import { encodeMessage, type StateMessage } from '../../src/mesh/messages.js';

const topics = new Topics('gate');

function state(node: string, errorBoundNs: number, source?: { address: string; distanceNs: number }): StateMessage {
  return {
    v: 1,
    type: 'state',
    node,
    status: 'online',
    seq: 1,
    synchronized: true,
    offsetNs: 0n,
    errorBoundNs,
    ...(source ? { sourceDistanceNs: source.distanceNs } : {}),
    sources: source ? [{ address: source.address, reach: 255, state: 'selected', delayNs: 100_000, offsetNs: 0, jitterNs: 10_000 }] : [],
  };
}

function directory(states: StateMessage[]): NodeDirectory {
  const dir = new NodeDirectory(topics);
  for (const s of states) dir.handle(topics.node(s.node, 'state'), Buffer.from(encodeMessage(s)));
  return dir;
}

const gate = { thresholdNs: 1_000_000, maxStateAgeMs: 5_000 };
const hub = { address: 'hub.local:123', distanceNs: 5_000_000 };

describe('mesh readiness gate: consistent bounds', () => {
  it('nodes of one hub whose own bound is 5 ms pass a 1 ms gate on what they add (0.3 ms)', () => {
    const dir = directory([state('a', 5_300_000, hub), state('b', 5_250_000, hub)]);
    const r = readiness(dir, gate);
    expect(r.relativeTo).to.equal('hub.local:123');
    expect(r.laggards).to.deep.equal([]);
  });

  it('still names a node that adds more than the threshold to the shared server', () => {
    const dir = directory([state('a', 5_300_000, hub), state('b', 6_500_000, hub)]);
    const r = readiness(dir, gate);
    expect(r.laggards.map((l) => l.node)).to.deep.equal(['b']);
    expect(r.laggards[0]!.why).to.match(/1\.50 ms beyond the shared server hub\.local:123 > 1\.00 ms/);
  });

  it('judges whole bounds for every target when one of them follows another server or its system clock', () => {
    const other = directory([state('a', 5_300_000, hub), state('b', 5_250_000, { address: '10.0.0.9:123', distanceNs: 5_000_000 })]);
    expect(readiness(other, gate).relativeTo).to.equal(undefined);
    expect(readiness(other, gate).laggards.map((l) => l.node)).to.deep.equal(['a', 'b']);
    const system = directory([state('a', 300_000, hub), state('b', 500_000)]);
    expect(readiness(system, gate).relativeTo).to.equal(undefined);
    expect(readiness(system, gate).laggards).to.deep.equal([]);
  });
});

describe('mesh readiness gate: fresh states', () => {
  const NOW = 1_800_000_000_000_000_000n;
  it('ages a retained state by the updatedNs it carries, not by when it arrived', () => {
    let now: bigint | undefined = NOW;
    const dir = new NodeDirectory(topics, () => now);
    const old = { ...state('gone', 100_000), updatedNs: NOW - 20_000_000_000n }; // written 20 s ago, delivered just now
    const fresh = { ...state('here', 100_000), updatedNs: NOW - 300_000_000n };
    for (const s of [old, fresh]) dir.handle(topics.node(s.node, 'state'), Buffer.from(encodeMessage(s)));
    const r = readiness(dir, gate);
    expect(r.laggards.map((l) => [l.node, l.why])).to.deep.equal([['gone', 'no state for 20.0 s']]);
    now = undefined; // our clock not synchronized: arrival time alone
    expect(readiness(dir, gate).laggards).to.deep.equal([]);
  });
});
