import { expect } from 'chai';
import { mkdtempSync, readFileSync, writeFileSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Topics, TopicError } from '../../src/mesh/topics.js';
import { decodeTrigger, decodeAck, decodeState, decodeReport, encodeMessage, parseMessage, toWire, MAX_MESSAGE_BYTES, MAX_TRIGGER_NODES, type TriggerMessage } from '../../src/mesh/messages.js';
import { canonicalJson, KeyRing, KeyFileError, ReplayGuard, signWire, verifyWire } from '../../src/mesh/signing.js';
import { StateFile, StateFileError, emptyState } from '../../src/mesh/state-file.js';

const NOW = 1_795_262_410_000_000_000n;
const trigger = (over: Partial<TriggerMessage> = {}): TriggerMessage => ({
  v: 1, type: 'trigger', id: 't-1', issuedNs: NOW, expiresNs: NOW + 10_000_000_000n, startNs: NOW + 2_000_000_000n,
  action: { kind: 'blink', line: 17, onNs: 100_000_000, periodNs: 1_000_000_000, count: 10 }, ...over,
});

describe('mesh protocol: topics', () => {
  it('lays topics out under lockstep/<group> and parses them back', () => {
    const t = new Topics('lab');
    expect(t.trigger).to.equal('lockstep/lab/trigger');
    expect(t.node('pi-1', 'state')).to.equal('lockstep/lab/node/pi-1/state');
    expect(t.allNodes('ack')).to.equal('lockstep/lab/node/+/ack');
    expect(t.parseNodeTopic('lockstep/lab/node/pi-1/report')).to.deep.equal({ nodeId: 'pi-1', channel: 'report' });
    expect(t.parseNodeTopic('lockstep/other/node/pi-1/report')).to.equal(undefined);
    expect(new Topics('x', 'site/a').cancel).to.equal('site/a/cancel');
  });
  it('refuses ids that would break topic levels', () => {
    for (const bad of ['a/b', '+', '#', '', 'x'.repeat(65)]) expect(() => new Topics('g').node(bad, 'ack')).to.throw(TopicError);
    expect(() => new Topics('a+b')).to.throw(TopicError);
  });
});

describe('mesh protocol: messages', () => {
  it('round-trips a trigger with bigint instants as decimal strings', () => {
    const text = encodeMessage(trigger());
    expect(JSON.parse(text).startNs).to.equal((NOW + 2_000_000_000n).toString());
    const parsed = parseMessage(text, decodeTrigger);
    expect(parsed.ok).to.equal(true);
    if (parsed.ok) expect(parsed.value.startNs).to.equal(NOW + 2_000_000_000n);
  });
  it('refuses malformed triggers with a reason and keeps the id when it can', () => {
    const cases: [unknown, RegExp][] = [
      ['not json', /not JSON/],
      [[1, 2], /not a JSON object/],
      [{ ...toWire(trigger()), v: 2 }, /version/],
      [{ ...toWire(trigger()), startNs: 12.5 }, /startNs/],
      [{ ...toWire(trigger()), startNs: '1e18' }, /startNs/],
      [{ ...toWire(trigger()), startNs: '99999999999999999999' }, /startNs/],
      [{ ...toWire(trigger()), action: 'blink' }, /action/],
      [{ ...toWire(trigger()), nodes: ['a/b'] }, /nodes/],
      [{ ...toWire(trigger()), expiresNs: NOW.toString() }, /expiresNs/],
      [{ ...toWire(trigger()), sig: { keyId: 'k', hmac: 'zz' } }, /hmac/],
    ];
    for (const [input, pattern] of cases) {
      const r = parseMessage(typeof input === 'string' ? input : JSON.stringify(input), decodeTrigger);
      expect(r.ok, String(pattern)).to.equal(false);
      if (!r.ok) {
        expect(r.reason).to.equal('malformed');
        expect(r.detail).to.match(pattern);
      }
    }
    const named = parseMessage(JSON.stringify({ ...toWire(trigger()), startNs: 1 }), decodeTrigger);
    expect(!named.ok && named.id).to.equal('t-1');
    expect(parseMessage('x'.repeat(20_000), decodeTrigger).ok).to.equal(false);
  });
  it('a trigger may name every node of a large group (demo --nodes 2000), not more than MAX_TRIGGER_NODES', () => {
    const ids = (n: number) => Array.from({ length: n }, (_, i) => `swarm-${String(i).padStart(5, '0')}`);
    const big = parseMessage(JSON.stringify(toWire(trigger({ nodes: ids(MAX_TRIGGER_NODES) }))), decodeTrigger);
    expect(big.ok, big.ok ? '' : big.detail).to.equal(true);
    if (big.ok) expect(big.value.nodes).to.have.length(MAX_TRIGGER_NODES);
    const tooMany = parseMessage(JSON.stringify(toWire(trigger({ nodes: ids(MAX_TRIGGER_NODES + 1) }))), decodeTrigger);
    expect(!tooMany.ok && tooMany.detail).to.match(/at most 5000 node ids/);
    expect(parseMessage(JSON.stringify({ ...toWire(trigger()), pad: 'x'.repeat(MAX_MESSAGE_BYTES) }), decodeTrigger).ok).to.equal(false);
  });
  it('decodes acks, reports and the minimal offline state (the last will)', () => {
    const ack = decodeAck({ v: 1, type: 'ack', id: 'a1', node: 'n1', triggerId: null, status: 'rejected', reason: 'malformed', atNs: '5' });
    expect(ack.ok).to.equal(true);
    expect(decodeAck({ v: 1, type: 'ack', id: 'a1', node: 'n1', triggerId: 't', status: 'rejected', reason: 'nope', atNs: '5' }).ok).to.equal(false);
    const report = decodeReport({ v: 1, type: 'report', id: 'r:0:n1:t', node: 'n1', triggerId: 't', index: 0, plannedNs: '10', actualNs: '11', latenessNs: 1, errorBoundNs: 3, offsetNs: '-5', trueNs: '12', level: 1 });
    expect(report.ok && report.value.trueNs).to.equal(12n);
    const simulated = decodeReport({ v: 1, type: 'report', id: 'r:0:n1:t', node: 'n1', triggerId: 't', index: 0, plannedNs: '10', actualNs: '11', latenessNs: 1, errorBoundNs: 3, offsetNs: '-5', trueNs: '12', clockTrueNs: '9' });
    expect(simulated.ok && simulated.value.clockTrueNs).to.equal(9n);
    expect(decodeReport({ v: 1, type: 'report', id: 'r:0:n1:t', node: 'n1', triggerId: 't', index: 0, plannedNs: '10', actualNs: '11', latenessNs: 1, errorBoundNs: 3, offsetNs: '-5', clockTrueNs: 'soon' }).ok).to.equal(false);
    expect(decodeState({ v: 1, type: 'state', node: 'n1', status: 'offline' }).ok).to.equal(true);
    expect(decodeState({ v: 1, type: 'state', node: 'n1', status: 'online', errorBoundNs: null, synchronized: false }).ok).to.equal(true);
    expect(decodeState({ v: 1, type: 'state', node: 'n1', status: 'maybe' }).ok).to.equal(false);
    const withSource = decodeState({ v: 1, type: 'state', node: 'n1', status: 'online', errorBoundNs: 5_300_000, sourceDistanceNs: 5_000_000 });
    expect(withSource.ok && withSource.value.sourceDistanceNs).to.equal(5_000_000);
    expect(decodeState({ v: 1, type: 'state', node: 'n1', status: 'online', sourceDistanceNs: -1 }).ok).to.equal(false);
  });
});

describe('mesh protocol: signing', () => {
  const ring = KeyRing.parse('# test\nk1 HEX:' + '11'.repeat(32) + '\nk2 ASCII:a-long-enough-secret\n');
  it('canonical JSON sorts keys at every level', () => {
    expect(canonicalJson({ b: 1, a: { d: [1, { z: 1, y: 2 }], c: 'x' } })).to.equal('{"a":{"c":"x","d":[1,{"y":2,"z":1}]},"b":1}');
  });
  it('accepts its own signature whatever the key order, refuses a forged or altered one', () => {
    const signed = signWire(toWire(trigger()), 'k1', ring);
    const reordered = Object.fromEntries(Object.entries(signed).reverse());
    expect(verifyWire(reordered, ring, true)).to.deep.equal({ ok: true, keyId: 'k1' });
    const altered = { ...signed, startNs: (NOW + 1n).toString() };
    expect(verifyWire(altered, ring, true)).to.include({ ok: false, reason: 'bad-signature' });
    const otherKey = { ...signed, sig: { keyId: 'k2', hmac: signed.sig.hmac } };
    expect(verifyWire(otherKey, ring, true)).to.include({ ok: false, reason: 'bad-signature' });
    const unknownKey = { ...signed, sig: { keyId: 'k9', hmac: signed.sig.hmac } };
    expect((verifyWire(unknownKey, ring, true) as { detail: string }).detail).to.match(/unknown key id/);
    expect(verifyWire(toWire(trigger()), ring, true)).to.include({ ok: false, reason: 'bad-signature' });
    expect(verifyWire(toWire(trigger()), undefined, false)).to.deep.equal({ ok: true });
  });
  it('refuses short keys and bad key files', () => {
    expect(() => KeyRing.parse('k1 HEX:abcd')).to.throw(KeyFileError, /at least 16/);
    expect(() => KeyRing.parse('k1')).to.throw(KeyFileError);
    expect(() => KeyRing.parse('# nothing')).to.throw(KeyFileError, /no keys/);
  });
  it('refuses a replayed id and a stale or future issue time', () => {
    const guard = new ReplayGuard({ maxAgeNs: 60_000_000_000n, capacity: 3 });
    expect(guard.check('a', NOW, NOW)).to.equal(undefined);
    guard.remember('a', NOW, NOW + 1n, NOW);
    expect(guard.check('a', NOW, NOW)?.reason).to.equal('replayed');
    expect(guard.check('b', NOW - 61_000_000_000n, NOW)?.reason).to.equal('stale');
    expect(guard.check('b', NOW + 61_000_000_000n, NOW)?.reason).to.equal('stale');
    for (const id of ['b', 'c', 'd', 'e']) guard.remember(id, NOW, NOW, NOW);
    expect(guard.entries().length).to.equal(3);
    // Forgotten only once stale: an id cannot come back within its age window.
    guard.remember('f', NOW, NOW, NOW + 120_000_000_000n);
    expect(guard.has('f')).to.equal(true);
  });
  it('takes a long-lived message older than the age window until its own expiry, once; strict again after an eviction', () => {
    const S = 1_000_000_000n;
    const guard = new ReplayGuard({ maxAgeNs: 60n * S, capacity: 2 });
    // A retained train issued 90 s ago that runs for another hour: a late joiner takes it up.
    expect(guard.check('train', NOW - 90n * S, NOW, NOW + 3600n * S)).to.equal(undefined);
    expect(guard.check('train', NOW - 90n * S, NOW, NOW - 1n)?.reason, 'past its expiry: judged by age').to.equal('stale');
    expect(guard.check('ahead', NOW + 90n * S, NOW, NOW + 3600n * S)?.reason, 'issued in the future: always stale').to.equal('stale');
    guard.remember('train', NOW - 90n * S, NOW + 3600n * S, NOW);
    expect(guard.check('train', NOW - 90n * S, NOW + S, NOW + 3600n * S)?.reason).to.equal('replayed');
    // Two more ids push 'train' out before its expiry: its age alone decides again.
    guard.remember('x', NOW, NOW + 10n * S, NOW);
    guard.remember('y', NOW, NOW + 10n * S, NOW);
    expect(guard.has('train')).to.equal(false);
    expect(guard.check('train', NOW - 90n * S, NOW + S, NOW + 3600n * S)?.reason).to.equal('stale');
  });
});

describe('mesh protocol: state file', () => {
  it('writes atomically, coalesces writes, and reads back', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'lockstep-state-'));
    const file = new StateFile(join(dir, 'sub', 'node.json'));
    expect(await file.load('n1')).to.deep.equal(emptyState('n1'));
    const saves = [];
    for (let i = 0; i < 20; i++) {
      const s = emptyState('n1');
      s.seen = [[`id${i}`, '1']];
      saves.push(file.save(s));
    }
    await Promise.all(saves);
    expect(file.writeCount).to.be.lessThan(20);
    const back = await file.load('n1');
    expect(back.seen).to.deep.equal([['id19', '1']]);
    expect(readdirSync(join(dir, 'sub'))).to.deep.equal(['node.json']); // no temp file left
    expect(JSON.parse(readFileSync(join(dir, 'sub', 'node.json'), 'utf8')).v).to.equal(1);
  });
  it('says what to do with a corrupt or foreign file', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'lockstep-state-'));
    writeFileSync(join(dir, 'bad.json'), '{half');
    let error: unknown;
    await new StateFile(join(dir, 'bad.json')).load('n1').catch((e) => (error = e));
    expect(error).to.be.instanceOf(StateFileError);
    writeFileSync(join(dir, 'other.json'), JSON.stringify(emptyState('n2')));
    error = undefined;
    await new StateFile(join(dir, 'other.json')).load('n1').catch((e) => (error = e));
    expect((error as Error).message).to.match(/belongs to node 'n2'/);
  });
});
