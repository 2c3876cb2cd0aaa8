import { expect } from 'chai';
import { decodePacket, encodePacket, NtpDecodeError } from '../../src/ntp/packet.js';
import { decodePacketWithMac } from '../../src/ntp/auth.js';
import { NtpSource } from '../../src/ntp/source.js';
import { NtpClient } from '../../src/ntp/client.js';
import { Timescale } from '../../src/time/timescale.js';
import { realClock } from '../../src/time/clock.js';
import { startFakeServer } from './fake-server.js';
import { honestReply } from './fake-server.js';
import { seededRandom as rng } from '../support/random.js';


function randomBytes(random: () => number, n: number): Buffer {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = Math.floor(random() * 256);
  return b;
}

/** A valid-looking packet with a few bytes flipped, truncated or extended. */
function mutate(random: () => number, base: Buffer): Buffer {
  let b = Buffer.from(base);
  const kind = Math.floor(random() * 4);
  if (kind === 0) {
    for (let i = 0, n = 1 + Math.floor(random() * 4); i < n; i++) b[Math.floor(random() * b.length)] = Math.floor(random() * 256);
  } else if (kind === 1) {
    b = b.subarray(0, Math.floor(random() * b.length));
  } else if (kind === 2) {
    b = Buffer.concat([b, randomBytes(random, Math.floor(random() * 120))]);
  } else {
    const bit = Math.floor(random() * b.length * 8);
    b[bit >> 3]! ^= 1 << (bit & 7);
  }
  return b;
}

const FUZZ_PACKETS = 5000;

describe('ntp/client fuzz', function () {
  this.timeout(30_000);

  it(`decoders: ${FUZZ_PACKETS} random and mutated packets, only NtpDecodeError ever thrown`, () => {
    const random = rng(11);
    const base = encodePacket(honestReply({ ...honestReply(decodePacket(Buffer.alloc(48)), 0), version: 4 }));
    for (let i = 0; i < FUZZ_PACKETS; i++) {
      const input = i % 2 ? randomBytes(random, Math.floor(random() * 200)) : mutate(random, base);
      for (const decode of [decodePacket, decodePacketWithMac]) {
        try {
          decode(input);
        } catch (error) {
          expect(error).to.be.instanceOf(NtpDecodeError);
        }
      }
    }
  });

  it(`reply path: ${FUZZ_PACKETS} packets with a foreign origin never give a sample, never throw`, () => {
    const random = rng(12);
    const source = new NtpSource({ spec: { host: '127.0.0.1', port: 123 }, minPollSeconds: 1, maxPollSeconds: 1 });
    const t1 = realClock().nowNs();
    const request = decodePacket(source.buildRequest(t1));
    const valid = encodePacket(honestReply(request));
    let samples = 0;
    for (let i = 0; i < FUZZ_PACKETS; i++) {
      let input = i % 2 ? randomBytes(random, 48 + 4 * Math.floor(random() * 10)) : mutate(random, valid);
      // Keep the origin foreign: an attacker off the path does not know our nonce.
      if (input.length >= 32 && input.readBigUInt64BE(24) === request.transmitTime) input = Buffer.from(input), input[31]! ^= 0x80;
      const r = source.handleReply(input, t1 + 100_000n, (raw) => raw);
      if (r.kind === 'sample') samples++;
    }
    expect(samples).to.equal(0);
    expect(source.dropped).to.equal(undefined);
  });

  it('reply path: mutated replies WITH our nonce never throw, and what is accepted is sane', () => {
    const random = rng(13);
    let accepted = 0;
    for (let i = 0; i < FUZZ_PACKETS; i++) {
      const source = new NtpSource({ spec: { host: '127.0.0.1', port: 123 }, minPollSeconds: 1, maxPollSeconds: 1 });
      const t1 = realClock().nowNs();
      const request = decodePacket(source.buildRequest(t1));
      const input = mutate(random, encodePacket(honestReply(request)));
      const r = source.handleReply(input, t1 + 200_000n, (raw) => raw);
      if (r.kind !== 'sample') continue;
      accepted++;
      const s = r.sample;
      expect(s.stratum).to.be.within(1, 15);
      expect(s.leap).to.not.equal(3);
      expect(s.delayNs).to.be.within(0, 3e9);
      expect(Number.isFinite(s.rootDelayNs) && s.rootDelayNs / 2 + s.rootDispersionNs <= 1.5e9).to.equal(true);
    }
    expect(accepted).to.be.below(FUZZ_PACKETS); // most mutations are refused
  });

  it('over UDP: a server spraying thousands of random and mutated replies gets no sample in, the client survives', async () => {
    const random = rng(14);
    let sent = 0;
    const server = await startFakeServer({
      respond: (_req, honest) => {
        const valid = encodePacket({ ...honest(), originTime: honest().originTime ^ 0xdeadbeefn });
        const out: Buffer[] = [];
        for (let i = 0; i < 150; i++) out.push(i % 2 ? randomBytes(random, Math.floor(random() * 120)) : mutate(random, valid));
        sent += out.length;
        return out;
      },
    });
    const timescale = new Timescale(realClock());
    const client = new NtpClient({ servers: [{ host: server.host, port: server.port }], timescale, minPollSeconds: 0.1, maxPollSeconds: 0.1, burstIntervalSeconds: 0.05 });
    await client.start();
    await new Promise((r) => setTimeout(r, 2000));
    await client.stop();
    await server.stop();
    expect(sent).to.be.at.least(2000);
    expect(client.counters.samples).to.equal(0);
    expect(client.counters.rejected).to.be.at.least(1000);
    expect(timescale.synchronized).to.equal(false);
  });
});
