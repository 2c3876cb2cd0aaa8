import { expect } from 'chai';
import { createSocket, type RemoteInfo } from 'node:dgram';
import { NtpClient, LAN_HUB_MIN_POLL_SECONDS } from '../../src/ntp/client.js';
import { NtpServer } from '../../src/ntp/server.js';
import { UdpRelay } from '../../src/ntp/relay.js';
import { SETTLED_FREQUENCY_PPM } from '../../src/ntp/source.js';
import { Timescale } from '../../src/time/timescale.js';
import { SimulatedClock, realClock } from '../../src/time/clock.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Our own server on the true clock: truth is what it serves. */
async function trueServer(): Promise<{ port: number; stop(): Promise<void> }> {
  const server = new NtpServer({
    timescale: new Timescale(realClock(), { trustRawClock: { errorBoundNs: 0 } }),
    port: 0,
    bind: '127.0.0.1',
    rateLimit: false,
    compensateReceiveLatency: false,
  });
  const { port } = await server.start();
  return { port, stop: () => server.stop() };
}

describe('ntp/client start-up over a Wi-Fi-like link', function () {
  this.timeout(40_000);

  it('1 ms + exp(3 ms) each way, 2 % loss: within 2 ms after 15 s, the bound honest all along, no back-off while the frequency is uncertain', async () => {
    const server = await trueServer();
    const relay = new UdpRelay({ targetHost: '127.0.0.1', targetPort: server.port, delayMs: 1, jitterMeanMs: 3, lossRate: 0.02, seed: 14 });
    const address = await relay.start();
    const sim = new SimulatedClock({ offsetSeconds: -4.2, driftPpm: 85 });
    const timescale = new Timescale(sim);
    const client = new NtpClient({ servers: [{ host: address.host, port: address.port }], timescale, minPollSeconds: LAN_HUB_MIN_POLL_SECONDS });
    const dishonest: string[] = [];
    const backedOffEarly: string[] = [];
    let checks = 0;
    const check = () => {
      if (!timescale.synchronized) return;
      const truth = sim.truthNs();
      const raw = sim.rawAtTruth(truth);
      const errorNs = Number(timescale.utcAt(raw) - truth);
      const boundNs = timescale.errorBoundNs(raw);
      checks++;
      if (Math.abs(errorNs) > boundNs) dishonest.push(`error ${(errorNs / 1e3).toFixed(0)} µs > bound ${(boundNs / 1e3).toFixed(0)} µs`);
    };
    client.onUpdate((s) => {
      check();
      const poll = s.sources[0]!.pollSeconds;
      if (s.frequencyErrorPpm !== undefined && s.frequencyErrorPpm > SETTLED_FREQUENCY_PPM && poll > LAN_HUB_MIN_POLL_SECONDS) {
        backedOffEarly.push(`poll ${poll} s with the frequency known to ±${s.frequencyErrorPpm.toFixed(1)} ppm`);
      }
    });
    const sampler = setInterval(check, 50);
    try {
      await client.start();
      await sleep(15_000);
      const truth = sim.truthNs();
      const errorNs = Number(timescale.utcAt(sim.rawAtTruth(truth)) - truth);
      const status = client.status();
      expect(relay.stats.dropped, 'the relay lost some datagrams').to.be.above(0);
      expect(checks).to.be.above(100);
      expect(dishonest, dishonest.slice(0, 3).join('; ')).to.deep.equal([]);
      expect(backedOffEarly, backedOffEarly.slice(0, 3).join('; ')).to.deep.equal([]);
      expect(Math.abs(errorNs), `error ${errorNs} ns`).to.be.below(2_000_000);
      expect(timescale.steps).to.equal(1);
      // The raw clock gains 85 ppm: the rate correction is about −85 ppm.
      expect(status.frequencyPpm).to.be.within(-85 - 25, -85 + 25);
    } finally {
      clearInterval(sampler);
      await client.stop();
      await relay.stop();
      await server.stop();
    }
  });

  it('a first reply queued for 200 ms is not stepped to: one step, to the right time', async () => {
    const server = await trueServer();
    // A proxy that holds the first reply back 200 ms (the inbound leg only: θ reads 100 ms early).
    const proxy = createSocket('udp4');
    const upstream = createSocket('udp4');
    let client: RemoteInfo | undefined;
    let replies = 0;
    proxy.on('message', (msg, rinfo) => {
      client = rinfo;
      upstream.send(msg, server.port, '127.0.0.1');
    });
    upstream.on('message', (msg) => {
      const to = client!;
      const send = () => proxy.send(msg, to.port, to.address);
      if (replies++ === 0) setTimeout(send, 200);
      else send();
    });
    await new Promise<void>((r) => proxy.bind(0, '127.0.0.1', () => r()));
    const sim = new SimulatedClock({ offsetSeconds: 3, driftPpm: -40 });
    const timescale = new Timescale(sim);
    const steps: bigint[] = [];
    timescale.onChange((c) => {
      if (c.kind === 'step') steps.push(c.correctionNs);
    });
    const ntp = new NtpClient({ servers: [{ host: '127.0.0.1', port: proxy.address().port }], timescale });
    try {
      await ntp.start();
      await ntp.waitUntilSynchronized(5000);
      await sleep(2500);
      const truth = sim.truthNs();
      const errorNs = Number(timescale.utcAt(sim.rawAtTruth(truth)) - truth);
      expect(replies).to.be.above(3);
      expect(steps.length, `steps: ${steps.join(', ')}`).to.equal(1);
      expect(Math.abs(errorNs)).to.be.below(2_000_000);
      expect(timescale.errorBoundNs()).to.be.above(Math.abs(errorNs));
    } finally {
      await ntp.stop();
      proxy.close();
      upstream.close();
      await server.stop();
    }
  });
});
