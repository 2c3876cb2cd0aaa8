import { expect } from 'chai';
import { NtpSource, PollSchedule, SETTLED_FREQUENCY_PPM, type ReplyResult } from '../../src/ntp/source.js';
import { decodePacket, encodePacket, asciiRefId, type NtpPacket } from '../../src/ntp/packet.js';
import { unixNsToNtp } from '../../src/ntp/timestamp.js';
import { parseKeyFile, appendMac } from '../../src/ntp/auth.js';

const T1 = 1_763_700_000_000_000_000n; // 2025-11-21, raw
const SERVER_AHEAD = 2_500_000n; // server is 2.5 ms ahead of raw

function newSource(keyId?: number, keys?: Map<number, never>) {
  return new NtpSource({ spec: { host: '127.0.0.1', port: 123, ...(keyId !== undefined ? { keyId } : {}) }, minPollSeconds: 1, maxPollSeconds: 16, ...(keys ? { keys } : {}) });
}

function replyTo(request: Buffer, patch: Partial<NtpPacket> = {}): NtpPacket {
  const req = decodePacket(request);
  return {
    leap: 0, version: 4, mode: 4, stratum: 2, poll: req.poll, precision: -20,
    rootDelaySeconds: 0.001, rootDispersionSeconds: 0.001, referenceId: 0x0a000001,
    referenceTime: unixNsToNtp(T1),
    originTime: req.transmitTime,
    receiveTime: unixNsToNtp(T1 + SERVER_AHEAD + 100_000n),
    transmitTime: unixNsToNtp(T1 + SERVER_AHEAD + 110_000n),
    extensions: [],
    ...patch,
  };
}

const T4 = T1 + 210_000n; // 200 µs of network + 10 µs in the server
const pivot = (raw: bigint) => raw;

describe('ntp/source', () => {
  it('sends a random nonce, not T1, and turns the matching reply into θ and δ', () => {
    const s = newSource();
    const req = s.buildRequest(T1);
    const p = decodePacket(req);
    expect(p.mode).to.equal(3);
    expect(p.version).to.equal(4);
    expect(p.transmitTime).to.not.equal(unixNsToNtp(T1));
    const second = newSource().buildRequest(T1);
    expect(decodePacket(second).transmitTime).to.not.equal(p.transmitTime);
    const r = s.handleReply(encodePacket(replyTo(req)), T4, pivot);
    expect(r.kind).to.equal('sample');
    const sample = (r as Extract<ReplyResult, { kind: 'sample' }>).sample;
    expect(Number(sample.delayNs)).to.be.closeTo(200_000, 2);
    expect(Number(sample.offsetNs - SERVER_AHEAD)).to.be.closeTo(0, 2);
    expect(sample.rawNs).to.equal(T1 + 105_000n);
    expect(s.reach).to.equal(1);
  });

  it('drops a duplicate of an answered reply and a reply with a foreign origin', () => {
    const s = newSource();
    const req = s.buildRequest(T1);
    const reply = encodePacket(replyTo(req));
    expect(s.handleReply(reply, T4, pivot).kind).to.equal('sample');
    const dup = s.handleReply(reply, T4 + 1000n, pivot);
    expect(dup).to.deep.include({ kind: 'rejected' });
    expect((dup as { reason: string }).reason).to.match(/duplicate/);
    s.buildRequest(T1 + 1_000_000_000n);
    const foreign = s.handleReply(encodePacket(replyTo(req, { originTime: 0x1234n })), T4, pivot);
    expect((foreign as { reason: string }).reason).to.match(/origin/);
  });

  const cases: Array<[string, Partial<NtpPacket>, RegExp]> = [
    ['leap 3', { leap: 3 }, /leap/],
    ['stratum 0 without a kiss code', { stratum: 0, referenceId: 0 }, /kiss|stratum/],
    ['stratum 16', { stratum: 16 }, /stratum 16/],
    ['zero transmit', { transmitTime: 0n }, /transmit/],
    ['zero receive', { receiveTime: 0n }, /receive/],
    ['mode 3', { mode: 3 }, /mode/],
    ['version 7', { version: 7 }, /version/],
    ['root distance 2 s', { rootDispersionSeconds: 2 }, /root distance/],
    ['transmit before receive', { transmitTime: unixNsToNtp(T1) }, /T3 < T2/],
  ];
  for (const [name, patch, reason] of cases) {
    it(`rejects a reply with ${name}`, () => {
      const s = newSource();
      const req = s.buildRequest(T1);
      const r = s.handleReply(encodePacket(replyTo(req, patch)), T4, pivot);
      expect(r.kind).to.not.equal('sample');
      if (r.kind === 'rejected') expect(r.reason).to.match(reason);
      expect(s.reach).to.equal(0);
    });
  }

  it('rejects truncated and oversized packets without throwing', () => {
    const s = newSource();
    const req = s.buildRequest(T1);
    const good = encodePacket(replyTo(req));
    expect(s.handleReply(good.subarray(0, 47), T4, pivot).kind).to.equal('rejected');
    expect(s.handleReply(Buffer.concat([good, Buffer.alloc(2000)]), T4, pivot).kind).to.equal('rejected');
    expect(s.handleReply(Buffer.alloc(0), T4, pivot).kind).to.equal('rejected');
  });

  it('KoD RATE backs off the poll interval; DENY and RSTR drop the source', () => {
    const s = newSource();
    const before = s.poll.intervalSeconds;
    let req = s.buildRequest(T1);
    const rate = s.handleReply(encodePacket(replyTo(req, { stratum: 0, referenceId: asciiRefId('RATE') })), T4, pivot);
    expect(rate).to.deep.equal({ kind: 'kiss', code: 'RATE', action: 'backoff' });
    expect(s.poll.intervalSeconds).to.be.at.least(before * 2);
    expect(s.dropped).to.equal(undefined);
    for (const code of ['DENY', 'RSTR']) {
      const t = newSource();
      req = t.buildRequest(T1);
      const r = t.handleReply(encodePacket(replyTo(req, { stratum: 0, referenceId: asciiRefId(code) })), T4, pivot);
      expect(r).to.deep.equal({ kind: 'kiss', code, action: 'drop' });
      expect(t.dropped).to.match(new RegExp(code));
    }
  });

  it('ignores a KoD whose origin is not our nonce (an off-path attacker cannot drop us)', () => {
    const s = newSource();
    s.buildRequest(T1);
    const forged = { ...replyTo(s.buildRequest(T1)), originTime: 42n, stratum: 0, referenceId: asciiRefId('DENY') };
    expect(s.handleReply(encodePacket(forged), T4, pivot).kind).to.equal('rejected');
    expect(s.dropped).to.equal(undefined);
  });

  it('with a key: signs requests, accepts a correct MAC, rejects a wrong or missing one', () => {
    const keys = parseKeyFile('7 SHA1 HEX:0102030405060708090a0b0c0d0e0f1011121314\n8 SHA1 HEX:ffffffffffffffffffffffffffffffffffffffff\n');
    const s = new NtpSource({ spec: { host: '127.0.0.1', port: 123, keyId: 7 }, keys, minPollSeconds: 1, maxPollSeconds: 1 });
    let req = s.buildRequest(T1);
    expect(req.length).to.equal(48 + 24);
    expect(decodePacket(req).mac!.keyId).to.equal(7);
    // Unsigned reply: refused, and the request stays in flight for the genuine one.
    const plain = encodePacket(replyTo(req));
    expect((s.handleReply(plain, T4, pivot) as { reason: string }).reason).to.match(/authentication/);
    const wrongKey = appendMac(encodePacket(replyTo(req)), keys.get(8)!);
    expect((s.handleReply(wrongKey, T4, pivot) as { reason: string }).reason).to.match(/authentication|key/);
    const tampered = appendMac(encodePacket(replyTo(req)), keys.get(7)!);
    tampered[40] ^= 1;
    expect(s.handleReply(tampered, T4, pivot).kind).to.equal('rejected');
    const good = appendMac(encodePacket(replyTo(req)), keys.get(7)!);
    expect(s.handleReply(good, T4, pivot).kind).to.equal('sample');
    req = s.buildRequest(T1 + 1_000_000_000n);
    expect(req.length).to.equal(72);
  });

  it('refuses a key id that is not in the keys', () => {
    expect(() => newSource(3)).to.throw(/key 3/);
  });

  it('poll schedule: a burst, then minPoll doubling toward maxPoll while stable, back on trouble', () => {
    const p = new PollSchedule({ minPollSeconds: 1, maxPollSeconds: 4, burstPolls: 3, burstIntervalSeconds: 0.25 });
    expect([p.next(), p.next(), p.next()]).to.deep.equal([0.25, 0.25, 1]);
    for (let i = 0; i < 4; i++) p.noteSample(0.5, 0.1);
    expect(p.next()).to.equal(2);
    for (let i = 0; i < 12; i++) p.noteSample(0.5, 0.1);
    expect(p.next()).to.equal(4);
    p.noteSample(50, 0.1);
    expect(p.next()).to.equal(1);
  });

  it('poll schedule: no back-off while the frequency is uncertain, however well the samples agree', () => {
    const p = new PollSchedule({ minPollSeconds: 0.0625, maxPollSeconds: 16, burstPolls: 1 });
    p.next();
    // Perfectly agreeing samples, frequency known only to ±(just above the threshold): stay at minPoll.
    for (let i = 0; i < 100; i++) p.noteSample(0.1, SETTLED_FREQUENCY_PPM * 1.01);
    expect(p.next()).to.equal(0.0625);
    for (let i = 0; i < 100; i++) p.noteSample(0.1); // frequency not known at all
    expect(p.next()).to.equal(0.0625);
    // Settled: back-off starts (doubling every few samples)...
    for (let i = 0; i < 8; i++) p.noteSample(0.1, SETTLED_FREQUENCY_PPM / 2);
    expect(p.next()).to.equal(0.25);
    // ...and an estimate that loses its frequency (a new window) polls fast again at once.
    p.noteSample(0.1, SETTLED_FREQUENCY_PPM * 3);
    expect(p.next()).to.equal(0.0625);
  });
});
