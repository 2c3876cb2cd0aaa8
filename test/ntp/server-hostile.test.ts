import { expect } from 'chai';
import { randomBytes } from 'node:crypto';
import { networkInterfaces } from 'node:os';
import { addressBytes, parseCidr, cidrContains, AllowList, CidrError } from '../../src/ntp/cidr.js';
import { RateLimiter } from '../../src/ntp/ratelimit.js';
import { decodePacket, encodePacket, kissCode } from '../../src/ntp/packet.js';
import { startServer, exchange, clientRequest } from '../support/ntp-server.js';

function hasIpv6Loopback(): boolean {
  return Object.values(networkInterfaces()).some((list) => list?.some((i) => i.address === '::1'));
}

describe('ntp/cidr', () => {
  it('matches IPv4 and IPv6 ranges, and IPv4-mapped IPv6 peers against IPv4 ranges', () => {
    const lan = parseCidr('192.168.1.0/24');
    expect(cidrContains(lan, addressBytes('192.168.1.77')!)).to.equal(true);
    expect(cidrContains(lan, addressBytes('192.168.2.1')!)).to.equal(false);
    expect(cidrContains(lan, addressBytes('::ffff:192.168.1.9')!)).to.equal(true);
    const ula = parseCidr('fd00::/8');
    expect(cidrContains(ula, addressBytes('fd12:3456::1')!)).to.equal(true);
    expect(cidrContains(ula, addressBytes('fe80::1%eth0')!)).to.equal(false);
    expect(cidrContains(parseCidr('10.1.2.3'), addressBytes('10.1.2.3')!)).to.equal(true);
    expect(cidrContains(parseCidr('10.1.2.3'), addressBytes('10.1.2.4')!)).to.equal(false);
    expect(cidrContains(parseCidr('0.0.0.0/0'), addressBytes('8.8.8.8')!)).to.equal(true);
    expect(cidrContains(parseCidr('0.0.0.0/0'), addressBytes('2001:db8::1')!)).to.equal(false);
    expect(cidrContains(parseCidr('::/0'), addressBytes('2001:db8::1')!)).to.equal(true);
    expect(cidrContains(parseCidr('10.0.0.0/9'), addressBytes('10.127.0.1')!)).to.equal(true);
    expect(cidrContains(parseCidr('10.0.0.0/9'), addressBytes('10.128.0.1')!)).to.equal(false);
    expect(addressBytes('::')!.equals(Buffer.alloc(16))).to.equal(true);
    expect(addressBytes('1:2:3:4:5:6:7:8')!.toString('hex')).to.equal('00010002000300040005000600070008');
  });

  it('refuses what is not a range, with the reason', () => {
    for (const bad of ['10.0.0.0/33', 'fd00::/129', 'bogus/8', '10.0.0.0/8/8', '', '10.0.0.0/x', '300.1.1.1/8']) {
      expect(() => parseCidr(bad), bad).to.throw(CidrError);
    }
  });

  it('an empty allow list allows everyone', () => {
    expect(new AllowList().allows('203.0.113.5')).to.equal(true);
    const list = new AllowList(['127.0.0.0/8', '::1/128']);
    expect(list.allows('127.0.0.2')).to.equal(true);
    expect(list.allows('::1')).to.equal(true);
    expect(list.allows('10.0.0.1')).to.equal(false);
    expect(list.allows('not an address')).to.equal(false);
  });
});

describe('ntp/ratelimit', () => {
  it('passes a burst, then one KoD per interval and silence; refills at the rate', () => {
    const limiter = new RateLimiter({ ratePerSecond: 2, burst: 4, kodIntervalMs: 1000 });
    const t0 = 1_000_000_000_000n;
    const decisions = Array.from({ length: 8 }, (_, i) => limiter.check('a', t0 + BigInt(i)));
    expect(decisions).to.deep.equal(['pass', 'pass', 'pass', 'pass', 'kod', 'drop', 'drop', 'drop']);
    expect(limiter.check('b', t0)).to.equal('pass'); // another address is not affected
    expect(limiter.check('a', t0 + 500_000_000n)).to.equal('pass'); // 0.5 s at 2/s = one token
    expect(limiter.check('a', t0 + 600_000_000n)).to.equal('drop');
    expect(limiter.check('a', t0 + 1_100_000_000n)).to.equal('pass'); // 0.2 + 1.0 tokens
    expect(limiter.check('a', t0 + 1_100_000_001n)).to.equal('kod'); // a second KoD, a kodInterval after the first
  });

  it('remembers at most maxClients addresses (bounded memory under a spoofed flood)', () => {
    const limiter = new RateLimiter({ maxClients: 100 });
    for (let i = 0; i < 10_000; i++) limiter.check(`10.0.${i >> 8}.${i & 255}`, BigInt(i));
    expect(limiter.size).to.equal(100);
  });
});

describe('ntp/server: bad and hostile requests', function () {
  this.timeout(30000);

  it('ignores truncated, wrong-mode, wrong-version, garbage and oversized datagrams, counts them, and keeps serving', async () => {
    const { server, port } = await startServer({ rateLimit: false });
    try {
      const good = encodePacket(clientRequest());
      const modes = [0, 1, 2, 4, 5, 6, 7].map((mode) => encodePacket(clientRequest({ mode })));
      const versions = [0, 5, 7].map((version) => encodePacket(clientRequest({ version })));
      const badExtension = Buffer.concat([good, Buffer.from([0, 1, 0, 200]), Buffer.alloc(12)]);
      const datagrams = [
        Buffer.alloc(0),
        good.subarray(0, 47),
        Buffer.from('GET / HTTP/1.1\r\n\r\n'),
        ...modes,
        ...versions,
        badExtension,
        Buffer.concat([good, Buffer.alloc(3)]), // not a multiple of 4
        Buffer.concat([good, Buffer.alloc(1100)]), // oversized
      ];
      const replies = await exchange(port, datagrams, { waitMs: 400 });
      expect(replies, 'no reply to any of them').to.have.length(0);
      const stats = server.stats();
      expect(stats.malformed).to.equal(6); // empty, 47 bytes, the HTTP line, bad extension, odd length, oversized
      expect(stats.ignored).to.equal(modes.length + versions.length);
      expect(stats.served).to.equal(0);
      expect(await exchange(port, [good])).to.have.length(1);
    } finally {
      await server.stop();
    }
  });

  it('survives thousands of random and mutated datagrams; every reply is a valid mode-4 packet no longer than its request', async () => {
    const { server, port } = await startServer({ rateLimit: false });
    try {
      const sent = new Map<string, number>();
      const datagrams: Buffer[] = [];
      for (let i = 0; i < 3000; i++) {
        let d: Buffer;
        if (i % 3 === 0) {
          d = randomBytes(Math.floor(Math.random() * 120));
        } else {
          d = encodePacket(clientRequest());
          for (let flips = 0; flips < 1 + (i % 5); flips++) d[Math.floor(Math.random() * d.length)] = Math.floor(Math.random() * 256);
          if (i % 7 === 0) d = Buffer.concat([d, randomBytes(4 * Math.floor(Math.random() * 20))]);
        }
        if (d.length >= 48) sent.set(d.subarray(40, 48).toString('hex'), d.length);
        datagrams.push(d);
      }
      const replies: Buffer[] = [];
      for (let i = 0; i < datagrams.length; i += 300) {
        replies.push(...(await exchange(port, datagrams.slice(i, i + 300), { waitMs: 60 })));
      }
      expect(server.running).to.equal(true);
      for (const reply of replies) {
        const packet = decodePacket(reply);
        expect(packet.mode).to.equal(4);
        const requestLength = sent.get(reply.subarray(24, 32).toString('hex'));
        expect(requestLength, 'reply answers one of our requests').to.not.equal(undefined);
        expect(reply.length).to.be.at.most(requestLength!);
      }
      const stats = server.stats();
      expect(stats.errors).to.equal(0);
      expect(stats.served + stats.malformed + stats.ignored + stats.authFailed).to.be.greaterThan(2000);
      expect(await exchange(port, [encodePacket(clientRequest())])).to.have.length(1);
    } finally {
      await server.stop();
    }
  });

  it('a flood from one address is rate-limited with KoD RATE (once a second), while another address is still served', async () => {
    const { server, port } = await startServer({ rateLimit: { ratePerSecond: 2, burst: 16 } });
    try {
      const flood = Array.from({ length: 300 }, () => encodePacket(clientRequest()));
      const replies = (await exchange(port, flood, { waitMs: 500 })).map((r) => decodePacket(r));
      const kods = replies.filter((p) => kissCode(p) === 'RATE');
      const served = replies.filter((p) => p.stratum !== 0);
      expect(served.length).to.be.within(16, 18);
      expect(kods.length).to.equal(1);
      expect(kods[0]!.leap).to.equal(3);
      expect(server.stats().rateLimited).to.be.at.least(150); // of 300 − 17 (some may be dropped by a full socket buffer on a busy machine)
      // 127.0.0.2 is loopback too, but another client.
      const other = await exchange(port, [encodePacket(clientRequest())], { from: '127.0.0.2' });
      expect(other.map((r) => decodePacket(r).stratum)).to.deep.equal([10]);
    } finally {
      await server.stop();
    }
  });

  it('outside the allow list: a KoD DENY (at most at the rate limit) or silence, as configured; inside: time', async () => {
    const kod = await startServer({ allow: ['10.0.0.0/8', 'fd00::/8'] });
    const silent = await startServer({ allow: ['10.0.0.0/8'], denyAction: 'silent' });
    const allowed = await startServer({ allow: ['127.0.0.1/32'] });
    try {
      const [deny] = await exchange(kod.port, [encodePacket(clientRequest())]);
      const packet = decodePacket(deny!);
      expect(kissCode(packet)).to.equal('DENY');
      expect(packet.receiveTime).to.equal(packet.originTime); // a KoD carries no time of ours
      expect(kod.server.stats()).to.deep.include({ denied: 1, served: 0, kodSent: 1 });
      const flood = await exchange(kod.port, Array.from({ length: 100 }, () => encodePacket(clientRequest())));
      expect(flood.length).to.be.at.most(17); // KoDs are rate-limited too: no reflection
      expect(await exchange(silent.port, [encodePacket(clientRequest())])).to.have.length(0);
      expect(silent.server.stats().denied).to.equal(1);
      expect(await exchange(allowed.port, [encodePacket(clientRequest())])).to.have.length(1);
      const [outsider] = await exchange(allowed.port, [encodePacket(clientRequest())], { from: '127.0.0.2' });
      expect(kissCode(decodePacket(outsider!))).to.equal('DENY');
    } finally {
      await kod.server.stop();
      await silent.server.stop();
      await allowed.server.stop();
    }
  });

  it('IPv6: serves ::1 when allowed, denies it when not, and a dual-stack socket matches IPv4 peers against IPv4 ranges', async function () {
    if (!hasIpv6Loopback()) this.skip();
    const v6 = await startServer({ bind: '::1', allow: ['::1/128'] });
    const v6denied = await startServer({ bind: '::1', allow: ['fd00::/8'], denyAction: 'silent' });
    const dual = await startServer({ bind: '::', allow: ['127.0.0.0/8'] });
    try {
      const [reply] = await exchange(v6.port, [encodePacket(clientRequest())], { host: '::1' });
      expect(decodePacket(reply!).mode).to.equal(4);
      expect(await exchange(v6denied.port, [encodePacket(clientRequest())], { host: '::1' })).to.have.length(0);
      expect(await exchange(dual.port, [encodePacket(clientRequest())], { host: '127.0.0.1' })).to.have.length(1);
      expect(await exchange(dual.port, [encodePacket(clientRequest())], { host: '::1' })).to.have.length(1);
      expect(dual.server.stats()).to.deep.include({ served: 1, denied: 1 });
    } finally {
      await v6.server.stop();
      await v6denied.server.stop();
      await dual.server.stop();
    }
  });
});
