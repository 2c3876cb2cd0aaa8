import { expect } from 'chai';
import { mkdtempSync, writeFileSync, existsSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseChronyTracking, SystemClockFollower } from '../../src/ntp/systemclock.js';
import { Timescale } from '../../src/time/timescale.js';
import { realClock, SimulatedClock } from '../../src/time/clock.js';
import { decodePacket, encodePacket } from '../../src/ntp/packet.js';
import { haveChronyd, chronydPath } from '../support/chronyd.js';
import { freeUdpPort } from '../support/ports.js';
import { start, stopByPidFile, track, waitFor } from '../support/processes.js';
import { have } from '../support/ntp-clients.js';
import { startServer, exchange, clientRequest } from '../support/ntp-server.js';

/** |disciplined UTC − the system clock|, allowing for Date.now()'s 1 ms truncation. */
function distanceFromSystemClockNs(timescale: Timescale): number {
  const system = BigInt(Date.now()) * 1_000_000n + 500_000n;
  return Math.abs(Number(timescale.nowNs() - system));
}

describe('ntp/systemclock: serving the system clock honestly', function () {
  this.timeout(30000);

  it('parses chronyc -c tracking', () => {
    const t = parseChronyTracking('A29FC87B,162.159.200.123,3,1795269094.424025756,-0.000012000,0.000001,0.000002,-12.345,0.001,0.050,0.012000000,0.000500000,64.5,Normal\n');
    expect(t).to.deep.include({ refId: 0xa29fc87b, stratum: 3, systemOffsetSeconds: -0.000012, skewPpm: 0.05, rootDelaySeconds: 0.012, rootDispersionSeconds: 0.0005, leap: 'Normal' });
    expect(parseChronyTracking('506 Cannot talk to daemon')).to.equal(undefined);
    expect(parseChronyTracking('')).to.equal(undefined);
  });

  it('without chronyd: anchors the Timescale to the system clock with the declared bound, even from a raw clock 5 s off', async () => {
    const timescale = new Timescale(new SimulatedClock({ offsetSeconds: 5, driftPpm: 0 }));
    const follower = new SystemClockFollower(timescale, { errorBoundNs: 2_000_000, useChrony: false });
    await follower.start();
    try {
      expect(timescale.synchronized).to.equal(true);
      expect(distanceFromSystemClockNs(timescale)).to.be.below(1_000_000);
      expect(follower.errorBoundNs()).to.equal(2_000_000);
      expect(follower.upstream()).to.equal(undefined);
    } finally {
      follower.stop();
    }
  });

  it('follows a step of the system clock (seen as the Timescale and the system clock disagreeing) within seconds', async () => {
    const timescale = new Timescale(realClock());
    const follower = new SystemClockFollower(timescale, { errorBoundNs: 1_000_000, useChrony: false });
    await follower.start();
    try {
      // Make them disagree by 2 s, as a `date -s` on the hub would.
      timescale.apply({ rawNs: timescale.clock.nowNs(), offsetNs: timescale.offsetNs() + 2_000_000_000n, frequencyPpm: 0, errorBoundNs: 1_000_000 });
      expect(distanceFromSystemClockNs(timescale)).to.be.above(1_900_000_000);
      await waitFor(() => follower.stepsFollowed > 0, 3000, 'the follower to notice');
      expect(distanceFromSystemClockNs(timescale)).to.be.below(1_000_000);
    } finally {
      follower.stop();
    }
  });

  describe('with a local chronyd answering chronyc', () => {
    let dir: string | undefined;
    let cmdPort = 0;

    before(async function () {
      if (!haveChronyd() || !have('chronyc', ['-v'])) this.skip();
      dir = mkdtempSync(join(tmpdir(), 'lockstep-chronyc-'));
      cmdPort = await freeUdpPort();
      const conf = join(dir, 'chrony.conf');
      writeFileSync(
        conf,
        ['port 0', `cmdport ${cmdPort}`, 'bindcmdaddress 127.0.0.1', 'cmdallow 127.0.0.1', 'local stratum 6', `pidfile ${join(dir, 'pid')}`, `driftfile ${join(dir, 'drift')}`].join('\n') + '\n',
      );
      const launcher = start(chronydPath()!, ['-f', conf, '-x', '-u', 'root', '-L', '0', '-l', join(dir, 'log')]);
      await waitFor(() => existsSync(join(dir!, 'pid')), 5000, 'chronyd pidfile');
      await launcher.stop().catch(() => undefined);
      track(Number(readFileSync(join(dir, 'pid'), 'utf8').trim()));
    });

    after(async () => {
      if (!dir) return;
      await stopByPidFile(join(dir, 'pid'));
      rmSync(dir, { recursive: true, force: true });
    });

    it("takes stratum, refid, root delay/dispersion and the error bound from chronyd, and the server serves stratum + 1", async () => {
      const timescale = new Timescale(realClock());
      const follower = new SystemClockFollower(timescale, { errorBoundNs: 10_000_000, chronycArgs: ['-h', '127.0.0.1', '-p', String(cmdPort)] });
      await follower.start();
      const { server, port } = await startServer({ timescale, upstream: () => follower.upstream() });
      try {
        expect(follower.chrony).to.deep.include({ stratum: 6, leap: 'Normal', refId: 0x7f7f0101 });
        expect(follower.errorBoundNs()).to.be.below(1_000_000); // chronyd's local reference: root distance ~0
        const packet = decodePacket((await exchange(port, [encodePacket(clientRequest())]))[0]!);
        expect(packet).to.deep.include({ stratum: 7, leap: 0, referenceId: 0x7f7f0101 });
      } finally {
        follower.stop();
        await server.stop();
      }
    });
  });
});
