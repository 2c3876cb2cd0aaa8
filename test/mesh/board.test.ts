/**
 * The page's view of the group without a network: the state fields it needs
 * (optional, bounded), the offline rule (last will, or K missed periods of
 * the node's own statePeriodMs), and each node's last trigger from acks and
 * reports whoever sent them.
 */
import { expect } from 'chai';
import { Topics } from '../../src/mesh/topics.js';
import { NodeDirectory } from '../../src/mesh/presence.js';
import { GroupBoard, OFFLINE_AFTER_PERIODS } from '../../src/mesh/board.js';
import { NodeTriggerLog } from '../../src/mesh/trigger-log.js';
import { decodeState, encodeMessage, parseMessage, type StateMessage } from '../../src/mesh/messages.js';
import { realClock } from '../../src/time/clock.js';
import { Timescale } from '../../src/time/timescale.js';

const topics = new Topics('board');
const timescale = new Timescale(realClock(), { trustRawClock: { errorBoundNs: 1000 } });

function state(node: string, over: Record<string, unknown> = {}): Buffer {
  const s = { v: 1, type: 'state', node, status: 'online', seq: 1, updatedNs: timescale.nowNs(), synchronized: true, errorBoundNs: 100_000, hubOffsetNs: 1500, version: '0.1.0', ...over };
  return Buffer.from(encodeMessage(s as StateMessage));
}

function board(dir: NodeDirectory, log?: NodeTriggerLog): GroupBoard {
  return new GroupBoard({ directory: dir, timescale, version: '0.1.0', gateThresholdNs: 1_000_000, brokerUrl: 'mqtt://x', brokerConnected: () => true, hubTime: () => ({ synchronized: true, errorBoundNs: 1 }), triggers: log });
}

describe('mesh: the hub page’s board (state fields, offline rule, last trigger)', () => {
  it('decodes the optional page fields, and bounds the free text a node sends', () => {
    const parsed = parseMessage(state('a', { warnings: ['x'.repeat(500)], rejections: { stale: 2 }, sources: [{ address: 'h:1', reach: 255, state: 'selected', delayNs: 1, offsetNs: 2, jitterNs: 3, pollSeconds: 2, lastError: 'KoD RATE' }] }), decodeState);
    expect(parsed.ok).to.equal(true);
    const s = (parsed as { value: StateMessage }).value;
    expect(s.hubOffsetNs).to.equal(1500);
    expect(s.version).to.equal('0.1.0');
    expect(s.rejections).to.deep.equal({ stale: 2 });
    expect(s.warnings![0]!.length).to.equal(200);
    expect(s.sources![0]).to.include({ pollSeconds: 2, lastError: 'KoD RATE' });
    expect(parseMessage(state('a', { warnings: 'not a list' }), decodeState).ok).to.equal(false);
    expect(parseMessage(state('a', { rejections: { stale: -1 } }), decodeState).ok).to.equal(false);
    // A node of the previous version (none of these fields) is still a node.
    const old = parseMessage(Buffer.from(JSON.stringify({ v: 1, type: 'state', node: 'b', status: 'online' })), decodeState);
    expect(old.ok).to.equal(true);
  });

  it(`offline after the last will, or after ${OFFLINE_AFTER_PERIODS} of the node's own state periods without a state`, () => {
    const dir = new NodeDirectory(topics, () => timescale.nowNs());
    const now = timescale.nowNs();
    dir.handle(topics.node('fresh', 'state'), state('fresh'));
    dir.handle(topics.node('gone', 'state'), Buffer.from(encodeMessage({ v: 1, type: 'state', node: 'gone', status: 'offline' })));
    dir.handle(topics.node('silent', 'state'), state('silent', { updatedNs: now - 3_500_000_000n }));
    // #13's slow heartbeat: a node that says it publishes every 30 s is not offline after 3.5 s.
    dir.handle(topics.node('slow', 'state'), state('slow', { updatedNs: now - 3_500_000_000n, statePeriodMs: 30_000 }));
    const rows = new Map(board(dir).nodes().map((r) => [r.id, r]));
    expect(rows.get('fresh')!.online).to.equal(true);
    expect(rows.get('gone')).to.include({ online: false, offlineWhy: 'last will or stopped' });
    expect(rows.get('silent')!.online).to.equal(false);
    expect(rows.get('silent')!.offlineWhy).to.match(/no state for 3\.\d s \(3 × 1000 ms\)/);
    expect(rows.get('slow')).to.include({ online: true, statePeriodMs: 30_000 });
    const header = board(dir).header();
    expect(header.counts).to.deep.equal({ nodes: 4, online: 2, synchronized: 2, ready: 2 });
    expect(header.agreementNs).to.equal(0);
  });

  it("a node's last trigger: its ack, its fires (redeliveries once), its worst lateness and exposure error", () => {
    const dir = new NodeDirectory(topics, () => timescale.nowNs());
    const log = new NodeTriggerLog(topics);
    dir.handle(topics.node('a', 'state'), state('a'));
    const now = timescale.nowNs().toString();
    const ack = { v: 1, type: 'ack', id: 'a-1', node: 'a', triggerId: 't-1', status: 'scheduled', atNs: now, fires: 2 };
    log.handle(topics.node('a', 'ack'), Buffer.from(JSON.stringify(ack)));
    const report = (index: number, latenessNs: number) => ({ v: 1, type: 'report', id: `r:${index}:a:t-1`, node: 'a', triggerId: 't-1', index, plannedNs: now, actualNs: now, latenessNs, errorBoundNs: 5000, offsetNs: '0', exposureErrorNs: '-1200' });
    log.handle(topics.node('a', 'report'), Buffer.from(JSON.stringify(report(0, 300))));
    log.handle(topics.node('a', 'report'), Buffer.from(JSON.stringify(report(0, 300))));
    log.handle(topics.node('a', 'report'), Buffer.from(JSON.stringify(report(1, -900))));
    // A report on another node's topic is not that node's.
    log.handle(topics.node('b', 'report'), Buffer.from(JSON.stringify(report(2, 1))));
    const row = board(dir, log).nodes()[0]!;
    expect(row.lastTrigger).to.deep.include({ triggerId: 't-1', ack: 'scheduled', expectedFires: 2, fires: 2, edges: 2, latenessMaxNs: 900, errorBoundMaxNs: 5000, exposureErrorNs: 1200 });
    expect(log.lastFor('b')).to.equal(undefined);
    // A newer trigger stays "last" while the older train still reports.
    log.handle(topics.node('a', 'ack'), Buffer.from(JSON.stringify({ ...ack, id: 'a-2', triggerId: 't-2', fires: 1 })));
    log.handle(topics.node('a', 'report'), Buffer.from(JSON.stringify(report(3, 10))));
    expect(log.lastFor('a')).to.deep.include({ triggerId: 't-2', ack: 'scheduled', fires: 0 });
  });
});
