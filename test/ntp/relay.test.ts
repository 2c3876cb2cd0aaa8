import { expect } from 'chai';
import { createSocket, type Socket } from 'node:dgram';
import { UdpRelay } from '../../src/ntp/relay.js';

/** An echo server that stamps the monotonic time it saw each datagram. */
async function echoServer(): Promise<{ socket: Socket; port: number }> {
  const socket = createSocket('udp4');
  socket.on('message', (msg, rinfo) => socket.send(msg, rinfo.port, rinfo.address));
  await new Promise<void>((r) => socket.bind(0, '127.0.0.1', () => r()));
  return { socket, port: socket.address().port };
}

async function roundTrips(relayPort: number, count: number): Promise<{ rttMs: number[]; lost: number }> {
  const client = createSocket('udp4');
  await new Promise<void>((r) => client.bind(0, '127.0.0.1', () => r()));
  const sentAt = new Map<number, bigint>();
  const rttMs: number[] = [];
  client.on('message', (msg) => {
    const id = msg.readUInt32BE(0);
    const t = sentAt.get(id);
    if (t !== undefined) rttMs.push(Number(process.hrtime.bigint() - t) / 1e6);
  });
  for (let i = 0; i < count; i++) {
    const msg = Buffer.alloc(48);
    msg.writeUInt32BE(i, 0);
    sentAt.set(i, process.hrtime.bigint());
    client.send(msg, relayPort, '127.0.0.1');
    await new Promise((r) => setTimeout(r, 2));
  }
  await new Promise((r) => setTimeout(r, 300));
  client.close();
  return { rttMs, lost: count - rttMs.length };
}

describe('ntp/relay', () => {
  it('adds the configured delay each way, with an exponential tail', async () => {
    const echo = await echoServer();
    const relay = new UdpRelay({ targetHost: '127.0.0.1', targetPort: echo.port, delayMs: 5, jitterMeanMs: 3, seed: 1 });
    const { port } = await relay.start();
    try {
      const { rttMs } = await roundTrips(port, 60);
      expect(rttMs.length).to.equal(60);
      const sorted = [...rttMs].sort((a, b) => a - b);
      // Two fixed 5 ms legs: nothing comes back sooner than 10 ms.
      expect(sorted[0]).to.be.at.least(10);
      // Two exponential(3 ms) legs have mean 6 ms: the median RTT sits well above 10 ms.
      expect(sorted[30]!).to.be.within(11, 40);
    } finally {
      await relay.stop();
      echo.socket.close();
    }
  });

  it('drops datagrams at the configured loss rate', async () => {
    const echo = await echoServer();
    const relay = new UdpRelay({ targetHost: '127.0.0.1', targetPort: echo.port, lossRate: 0.5, seed: 7 });
    const { port } = await relay.start();
    try {
      const { lost } = await roundTrips(port, 100);
      // Each way independently at 0.5: 75 % of round trips are lost on average.
      expect(lost).to.be.within(55, 92);
      expect(relay.stats.dropped).to.be.greaterThan(0);
    } finally {
      await relay.stop();
      echo.socket.close();
    }
  });

  it('delivers sub-millisecond delays without rounding them up to the timer tick', async () => {
    const echo = await echoServer();
    const relay = new UdpRelay({ targetHost: '127.0.0.1', targetPort: echo.port, delayMs: 0.3 });
    const { port } = await relay.start();
    try {
      const { rttMs } = await roundTrips(port, 40);
      const sorted = [...rttMs].sort((a, b) => a - b);
      expect(sorted[0]).to.be.at.least(0.6);
      // A whole-ms timer would make every leg ≥ 1 ms (RTT ≥ 2 ms).
      expect(sorted[20]!).to.be.below(1.8);
    } finally {
      await relay.stop();
      echo.socket.close();
    }
  });

  it('refuses nonsense settings', () => {
    expect(() => new UdpRelay({ targetHost: '127.0.0.1', targetPort: 1, delayMs: -1 })).to.throw(RangeError);
    expect(() => new UdpRelay({ targetHost: '127.0.0.1', targetPort: 1, lossRate: 1 })).to.throw(RangeError);
  });
});
