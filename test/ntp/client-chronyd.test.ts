import { expect } from 'chai';
import { NtpClient, type ClientStatus } from '../../src/ntp/client.js';
import { Timescale } from '../../src/time/timescale.js';
import { SimulatedClock, realClock } from '../../src/time/clock.js';
import { startChronydServer, haveChronyd, type ChronydServer } from '../support/chronyd.js';
import { freeUdpPort } from '../support/ports.js';
import { startFakeServer } from './fake-server.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('ntp/client against a real chronyd', function () {
  this.timeout(30_000);
  let chronyd: ChronydServer;
  let chronyd2: ChronydServer;
  before(async function () {
    if (!haveChronyd()) this.skip();
    [chronyd, chronyd2] = await Promise.all([startChronydServer(), startChronydServer()]);
  });
  after(async () => {
    await Promise.all([chronyd?.stop(), chronyd2?.stop()]);
  });

  it('agrees with truth (offset 0 on one machine) with the real raw clock', async () => {
    const timescale = new Timescale(realClock());
    // 8 polls a second: an honest frequency bound from 2 s of loaded-loopback samples needs a dozen of them.
    const client = new NtpClient({ servers: [{ host: chronyd.host, port: chronyd.port }], timescale, minPollSeconds: 0.125, maxPollSeconds: 1 });
    await client.start();
    try {
      const s = await client.waitUntilSynchronized(5000);
      expect(s.sources[0]!.state).to.equal('selected');
      await sleep(2500);
      const st = client.status();
      // Truth is 0: chronyd serves this machine's clock and the raw clock is anchored to it.
      // 1 ms, not 0.3: another test file runs beside this one on 2 cores (559 µs seen in a clean clone);
      // the precise loopback figures are `npm run bench -- ntp`'s.
      expect(Math.abs(st.offsetSeconds)).to.be.below(1e-3);
      // Truth is 0 ppm. The claim from 2.5 s of loopback samples is honest, hence wide on a loaded machine
      // (40-70 ppm at load 3, 799 ppm once at load 9 with another bench running): this checks it is not vacuous.
      expect(st.frequencyErrorPpm).to.be.a('number').and.below(500);
      // The claim itself, not a multiple: from a dozen samples it is Student-t's, widened for serially
      // correlated residuals and for the window's least delay being queued too (test/ntp/honesty.test.ts).
      expect(Math.abs(st.frequencyPpm)).to.be.at.most(st.frequencyErrorPpm!);
      expect(st.errorBoundSeconds).to.be.above(Math.abs(st.offsetSeconds));
      expect(st.stratum).to.equal(8);
      expect(st.sources[0]!.reach).to.be.above(0);
      expect(st.sources[0]!.delaySeconds).to.be.within(1e-6, 0.05);
    } finally {
      await client.stop();
    }
  });

  it('brings a simulated raw clock 3.2 s fast and 50 ppm off into line: offset and frequency', async () => {
    const sim = new SimulatedClock({ offsetSeconds: 3.2, driftPpm: 50 });
    const timescale = new Timescale(sim);
    const client = new NtpClient({ servers: [{ host: chronyd.host, port: chronyd.port }], timescale, minPollSeconds: 0.125, maxPollSeconds: 1 });
    const updates: ClientStatus[] = [];
    client.onUpdate((s) => updates.push(s));
    await client.start();
    try {
      await client.waitUntilSynchronized(5000);
      await sleep(5000);
      const truth = sim.truthNs();
      const errorNs = Number(timescale.utcAt(sim.rawAtTruth(truth)) - truth);
      expect(Math.abs(errorNs)).to.be.below(1_000_000); // 567 µs seen with another test file beside it
      const st = client.status();
      // A 4σ-equivalent, Student-t and serial-correlation widened claim (sourcestats.ts): 15-35 ppm here under load.
      expect(st.frequencyErrorPpm).to.be.a('number').and.below(60);
      expect(Math.abs(timescale.frequencyPpm - -50)).to.be.at.most(st.frequencyErrorPpm!); // the claim: see the test above
      expect(timescale.steps).to.equal(1); // one step at the start, slews after
      expect(updates.length).to.be.above(5);
    } finally {
      await client.stop();
    }
  });

  it('a Pi that boots in 1970: the raw clock 56 years behind is brought to the right era', async () => {
    const sim = new SimulatedClock({ offsetSeconds: -1_766_000_000, driftPpm: 0 });
    const timescale = new Timescale(sim);
    const client = new NtpClient({ servers: [{ host: chronyd.host, port: chronyd.port }], timescale, minPollSeconds: 0.5, maxPollSeconds: 1 });
    await client.start();
    try {
      await client.waitUntilSynchronized(5000);
      await sleep(1500);
      const truth = sim.truthNs();
      expect(sim.rawAtTruth(truth) < 100_000_000_000_000_000n).to.equal(true); // the raw clock reads 1970-ish
      const errorNs = Number(timescale.utcAt(sim.rawAtTruth(truth)) - truth);
      expect(Math.abs(errorNs)).to.be.below(1_000_000);
    } finally {
      await client.stop();
    }
  });

  it('votes out one lying server of three (a falseticker 1 s ahead)', async () => {
    const liar = await startFakeServer({ offsetSeconds: 1 });
    const timescale = new Timescale(realClock());
    const client = new NtpClient({
      servers: [
        { host: chronyd.host, port: chronyd.port },
        { host: liar.host, port: liar.port },
        { host: chronyd2.host, port: chronyd2.port },
      ],
      timescale,
      minPollSeconds: 0.5,
      maxPollSeconds: 1,
    });
    await client.start();
    try {
      await client.waitUntilSynchronized(5000);
      await sleep(2500);
      const s = client.status();
      expect(s.sources[1]!.state).to.equal('falseticker');
      expect(s.sources.filter((x) => x.state === 'selected')).to.have.length(1);
      expect(s.sources[1]!.offsetSeconds).to.be.closeTo(1, 0.01);
      expect(Math.abs(s.offsetSeconds)).to.be.below(1e-3);
    } finally {
      await client.stop();
      await liar.stop();
    }
  });

  it('reports an unreachable server without failing, and holds over when its source goes away', async () => {
    const deadPort = await freeUdpPort();
    const own = await startChronydServer();
    const timescale = new Timescale(realClock());
    const client = new NtpClient({
      servers: [{ host: own.host, port: own.port }, { host: '127.0.0.1', port: deadPort }],
      timescale,
      minPollSeconds: 0.25,
      maxPollSeconds: 0.25,
    });
    await client.start();
    try {
      await client.waitUntilSynchronized(5000);
      await sleep(1000);
      const before = client.status();
      expect(before.sources[1]!.state).to.equal('unreachable');
      expect(before.sources[1]!.lastError).to.match(/refused|answer/);
      await own.stop();
      await sleep(2500); // more than 8 polls: reach decays to 0
      const after = client.status();
      expect(after.sources[0]!.reach).to.equal(0);
      expect(after.sources[0]!.state).to.equal('unreachable');
      expect(after.synchronized).to.equal(true); // holdover: the model keeps running
      expect(after.errorBoundSeconds).to.be.above(before.errorBoundSeconds);
      expect(Math.abs(after.offsetSeconds)).to.be.below(1e-3);
    } finally {
      await client.stop();
    }
  });

  it('stop() releases everything: no timers, no sockets keep the loop alive', async () => {
    const timescale = new Timescale(realClock());
    const client = new NtpClient({ servers: [{ host: chronyd.host, port: chronyd.port }], timescale, minPollSeconds: 0.25 });
    await client.start();
    await client.waitUntilSynchronized(5000);
    await client.stop();
    const handles = (process as unknown as { _getActiveHandles(): unknown[] })._getActiveHandles().length;
    await sleep(300); // a 0.25 s poll would have fired by now
    const updates = timescale.updates;
    await sleep(300);
    expect(timescale.updates).to.equal(updates);
    expect((process as unknown as { _getActiveHandles(): unknown[] })._getActiveHandles().length).to.be.at.most(handles);
  });
});
