import { expect } from 'chai';
import { NtpClient } from '../../src/ntp/client.js';
import { Timescale } from '../../src/time/timescale.js';
import { realClock } from '../../src/time/clock.js';
import { encodePacket, asciiRefId, type NtpPacket } from '../../src/ntp/packet.js';
import { parseKeyFile, appendMac } from '../../src/ntp/auth.js';
import { startFakeServer, type FakeServer } from './fake-server.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const KEYS = parseKeyFile('5 SHA1 HEX:00112233445566778899aabbccddeeff00112233\n6 SHA1 HEX:ffeeddccbbaa99887766554433221100ffeeddcc\n');

interface Outcome {
  client: NtpClient;
  server: FakeServer;
  timescale: Timescale;
}

/** A client polling every 0.25 s against a server that answers with `respond`, for `ms`. */
async function against(
  respond: (req: NtpPacket, honest: () => NtpPacket) => Buffer[],
  ms = 1500,
  keyId?: number,
): Promise<Outcome> {
  const server = await startFakeServer({ respond });
  const timescale = new Timescale(realClock());
  const client = new NtpClient({
    servers: [{ host: server.host, port: server.port, ...(keyId !== undefined ? { keyId } : {}) }],
    timescale,
    keys: KEYS,
    minPollSeconds: 0.25,
    maxPollSeconds: 0.25,
    burstIntervalSeconds: 0.1,
  });
  await client.start();
  await sleep(ms);
  await client.stop();
  await server.stop();
  return { client, server, timescale };
}

function expectNothingAccepted(o: Outcome, reason: RegExp): void {
  expect(o.server.requests, 'the client kept polling').to.be.at.least(3);
  expect(o.client.counters.samples, 'no sample accepted').to.equal(0);
  expect(o.timescale.synchronized).to.equal(false);
  const s = o.client.status().sources[0]!;
  expect(s.reach).to.equal(0);
  expect(s.state).to.equal('unreachable');
  expect(s.lastError).to.match(reason);
}

const bytes = (p: NtpPacket) => [encodePacket(p)];

describe('ntp/client against hostile servers', function () {
  this.timeout(20_000);

  const refusals: Array<[string, (req: NtpPacket, honest: () => NtpPacket) => Buffer[], RegExp]> = [
    ['a wrong origin timestamp', (_r, h) => bytes({ ...h(), originTime: h().originTime ^ 1n }), /origin/],
    ['leap indicator 3', (_r, h) => bytes({ ...h(), leap: 3 }), /leap/],
    ['stratum 0 (no kiss code)', (_r, h) => bytes({ ...h(), stratum: 0, referenceId: 0 }), /kiss|stratum/],
    ['stratum 16', (_r, h) => bytes({ ...h(), stratum: 16 }), /stratum 16/],
    ['a zero transmit timestamp', (_r, h) => bytes({ ...h(), transmitTime: 0n }), /transmit/],
    ['a zero receive timestamp', (_r, h) => bytes({ ...h(), receiveTime: 0n }), /receive/],
    ['a truncated packet', (_r, h) => [encodePacket(h()).subarray(0, 40)], /truncated/],
    ['an oversized packet', (_r, h) => [Buffer.concat([encodePacket(h()), Buffer.alloc(1100)])], /oversized/],
    ['a huge root dispersion', (_r, h) => bytes({ ...h(), rootDispersionSeconds: 16 }), /root distance/],
    ['client mode', (_r, h) => bytes({ ...h(), mode: 3 }), /mode/],
  ];
  // The refusal scenarios run side by side (each its own server and client): 1.5 s in all, not 15.
  const outcomes = new Map<string, Outcome>();
  before(async () => {
    await Promise.all(refusals.map(async ([name, respond]) => outcomes.set(name, await against(respond))));
  });
  for (const [name, , reason] of refusals) {
    it(`accepts no sample from ${name}`, () => {
      expectNothingAccepted(outcomes.get(name)!, reason);
    });
  }

  it('accepts no sample with a wrong MAC (keyed source), nor an unsigned reply', async () => {
    const [wrong, unsigned, good] = await Promise.all([
      against((_r, h) => [appendMac(encodePacket(h()), KEYS.get(6)!)], 1500, 5),
      against((_r, h) => bytes(h()), 1500, 5),
      against((_r, h) => [appendMac(encodePacket(h()), KEYS.get(5)!)], 1500, 5),
    ]);
    expectNothingAccepted(wrong, /authentication|key/);
    expectNothingAccepted(unsigned, /authentication/);
    expect(good.client.counters.samples).to.be.at.least(3);
  });

  it('a duplicated reply counts once: one sample per request', async () => {
    const o = await against((_r, h) => {
      const b = encodePacket(h());
      return [b, b, Buffer.from(b)];
    });
    expect(o.client.counters.samples).to.be.at.least(3);
    expect(o.client.counters.samples).to.be.at.most(o.server.requests);
    expect(o.client.counters.rejected).to.be.at.least(2 * o.client.counters.samples);
    expect(o.timescale.synchronized).to.equal(true);
  });

  it('KoD RATE: backs off (polls less often) and accepts no sample', async () => {
    const o = await against((_r, h) => bytes({ ...h(), stratum: 0, referenceId: asciiRefId('RATE') }), 2500);
    expect(o.client.counters.samples).to.equal(0);
    expect(o.client.counters.kisses).to.be.at.least(1);
    const s = o.client.status().sources[0]!;
    expect(s.pollSeconds).to.be.at.least(1); // 0.25 s doubled at every kiss
    expect(s.lastError).to.match(/RATE/);
    // Without back-off 0.25 s polls would have sent ~12 requests in 2.5 s.
    expect(o.server.requests).to.be.at.most(7);
  });

  it('KoD DENY and RSTR: drop the source and stop polling it', async () => {
    const codes = ['DENY', 'RSTR'];
    const results = await Promise.all(codes.map((code) => against((_r, h) => bytes({ ...h(), stratum: 0, referenceId: asciiRefId(code) }), 1500)));
    results.forEach((o, i) => {
      const code = codes[i]!;
      expect(o.client.counters.samples).to.equal(0);
      expect(o.server.requests).to.equal(1);
      const s = o.client.status().sources[0]!;
      expect(s.state).to.equal('unreachable');
      expect(s.lastError).to.match(new RegExp(`${code}.*dropped`));
    });
  });

  it('IPv6: polls a server on [::1] over udp6', async () => {
    const server = await startFakeServer({ host: '::1' });
    const timescale = new Timescale(realClock());
    const client = new NtpClient({ servers: [{ host: '::1', port: server.port }], timescale, minPollSeconds: 0.25, maxPollSeconds: 0.25 });
    await client.start();
    try {
      const s = await client.waitUntilSynchronized(3000);
      expect(s.sources[0]!.address).to.equal(`[::1]:${server.port}`);
      expect(Math.abs(s.offsetSeconds)).to.be.below(0.005);
    } finally {
      await client.stop();
      await server.stop();
    }
  });

  it('a liar among honest servers does not move the model; a spoofed reply from elsewhere is never seen', async () => {
    const honest = await startFakeServer();
    const liar = await startFakeServer({ offsetSeconds: -30 });
    const other = await startFakeServer();
    const timescale = new Timescale(realClock());
    const client = new NtpClient({
      servers: [honest, liar, other].map((s) => ({ host: s.host, port: s.port })),
      timescale,
      minPollSeconds: 0.25,
      maxPollSeconds: 0.25,
    });
    await client.start();
    try {
      await sleep(1500);
      const s = client.status();
      expect(s.sources.map((x) => x.state)).to.include('falseticker');
      expect(s.sources[1]!.state).to.equal('falseticker');
      expect(Math.abs(s.offsetSeconds)).to.be.below(0.005);
    } finally {
      await client.stop();
      await Promise.all([honest.stop(), liar.stop(), other.stop()]);
    }
  });
});
