/**
 * The hub's NTP server in a worker thread (src/ntp/server-thread.ts): it
 * serves the main thread's Timescale, follows its changes, keeps answering
 * while the main event loop is blocked, and fails to start as NtpServer does.
 */
import { expect } from 'chai';
import { createSocket } from 'node:dgram';
import { NtpServerThread } from '../../src/ntp/server-thread.js';
import { NtpServerError } from '../../src/ntp/server.js';
import { Timescale } from '../../src/time/timescale.js';
import { realClock } from '../../src/time/clock.js';
import { decodePacket, encodePacket } from '../../src/ntp/packet.js';
import { ntpToUnixNs } from '../../src/ntp/timestamp.js';
import { exchange, clientRequest } from '../support/ntp-server.js';

const STEP_NS = 10_000_000_000n;
/** The worker adopts a new model within this (a message between threads; generous for a loaded machine). */
const FOLLOW_WITHIN_MS = 2_000;

describe('ntp/server-thread: the NTP server in a worker', function () {
  this.timeout(20_000);
  const clock = realClock();
  const timescale = new Timescale(clock, { trustRawClock: { errorBoundNs: 10_000 } });
  const server = new NtpServerThread({ timescale, port: 0, bind: '127.0.0.1', rateLimit: false });
  let port = 0;

  before(async () => {
    port = (await server.start()).port;
  });
  after(() => server.stop());

  async function served(): Promise<{ rxNs: bigint; before: bigint; after: bigint }> {
    const before = timescale.nowNs();
    const [reply] = await exchange(port, [encodePacket(clientRequest())], { waitMs: 250 });
    const after = timescale.nowNs();
    expect(reply, 'a reply').to.not.equal(undefined);
    return { rxNs: ntpToUnixNs(decodePacket(reply!).receiveTime, before), before, after };
  }

  it('serves the main thread\'s time, and follows a step of it', async () => {
    const a = await served();
    expect(a.rxNs >= a.before && a.rxNs <= a.after, 'receive time within the exchange').to.equal(true);
    expect(server.reference()).to.include({ leap: 0 });
    // A step of 10 s on the main thread reaches the worker as a message: a request that overtakes it
    // is still answered on the old model (as one stamped just before the step would be), so the
    // replies follow within a moment, not necessarily the very next one.
    timescale.apply({ rawNs: clock.nowNs(), offsetNs: timescale.offsetNs() + STEP_NS, frequencyPpm: 0, errorBoundNs: 10_000 });
    const steppedAt = Date.now();
    let b = await served();
    while (!(b.rxNs >= b.before && b.rxNs <= b.after) && Date.now() - steppedAt < FOLLOW_WITHIN_MS) b = await served();
    expect(b.rxNs >= b.before && b.rxNs <= b.after, `${Date.now() - steppedAt} ms after the step: ${b.rxNs - b.before} ns from the request`).to.equal(true);
  });

  it('answers while the main event loop is blocked: its receive timestamp is not held back by the block', async () => {
    const socket = createSocket('udp4');
    const got = new Promise<Buffer>((resolve) => socket.once('message', (m) => resolve(m)));
    await new Promise<void>((r) => socket.bind(0, '127.0.0.1', () => r()));
    const sentNs = timescale.nowNs();
    // Sent once the callback ran (dgram sends from the event loop, not at the call).
    await new Promise<void>((r) => socket.send(encodePacket(clientRequest()), port, '127.0.0.1', () => r()));
    // This thread blocks for 300 ms: a server in it would read the request, and stamp it, only afterwards.
    const t = Date.now();
    while (Date.now() - t < 300);
    const reply = await got;
    socket.close();
    const rxNs = ntpToUnixNs(decodePacket(reply).receiveTime, sentNs);
    expect(Number(rxNs - sentNs) / 1e6, 'ms from our send to the server\'s receive timestamp').to.be.below(150);
  });

  it('a port in use is an NtpServerError with the errno, as in the main thread', async () => {
    const other = new NtpServerThread({ timescale, port, bind: '127.0.0.1' });
    const error = await other.start().then(() => undefined, (e: unknown) => e);
    expect(error).to.be.instanceOf(NtpServerError);
    expect((error as NtpServerError).code).to.equal('EADDRINUSE');
    expect((error as Error).message).to.match(/in use/);
  });
});
