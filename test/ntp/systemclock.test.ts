import { expect } from 'chai';
import { mkdtempSync, writeFileSync, existsSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseChronyTracking, parseKernelSynchronized, SystemClockFollower, PLAUSIBLE_SINCE_NS, type SystemClockReader } from '../../src/ntp/systemclock.js';
import { Timescale } from '../../src/time/timescale.js';
import { realClock, SimulatedClock, anchorToSystemClock } from '../../src/time/clock.js';
import { decodePacket, encodePacket } from '../../src/ntp/packet.js';
import { haveChronyd, chronydPath } from '../support/chronyd.js';
import { freeUdpPort } from '../support/ports.js';
import { start, stopByPidFile, track, waitFor } from '../support/processes.js';
import { have } from '../support/ntp-clients.js';
import { startServer, exchange, clientRequest } from '../support/ntp-server.js';

/** The real system clock shifted by `shift.ns`: a hub whose clock reads 1970 until the test "sets" it. */
function shiftedSystemClock(shift: { ns: bigint }): SystemClockReader {
  return {
    anchor: () => {
      const a = anchorToSystemClock();
      return { epochNs: a.epochNs + shift.ns, hrtimeNs: a.hrtimeNs };
    },
    nowMs: () => Date.now() + Number(shift.ns / 1_000_000n),
  };
}

async function servedHeader(port: number) {
  const [reply] = await exchange(port, [encodePacket(clientRequest())]);
  return decodePacket(reply!);
}

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

  it('a system clock that reads 1970 (a hub that booted without RTC) is served as unsynchronized, with the reason, until it is set', async () => {
    // 5 s after the epoch, as a Pi without RTC or fake-hwclock reads right after boot.
    const shift = { ns: 5_000_000_000n - BigInt(Date.now()) * 1_000_000n };
    const timescale = new Timescale(realClock());
    const follower = new SystemClockFollower(timescale, { errorBoundNs: 1_000_000, useChrony: false, systemClock: shiftedSystemClock(shift) });
    await follower.start();
    const { server, port } = await startServer({ timescale, upstream: () => follower.upstream() });
    try {
      expect(timescale.nowNs() < PLAUSIBLE_SINCE_NS, 'the Timescale follows the 1970 clock').to.equal(true);
      expect(await servedHeader(port)).to.deep.include({ leap: 3, stratum: 16 });
      expect(server.reference().unsynchronizedReason).to.match(/reads 1970-01-01T00:00:0\d\.\d+Z, before 2026-01-01/);
      shift.ns = 0n; // chrony or timesyncd sets the clock
      await waitFor(() => follower.stepsFollowed > 0, 3000, 'the follower to follow the step');
      expect(await servedHeader(port)).to.deep.include({ leap: 0, stratum: 10 });
      expect(server.reference().unsynchronizedReason).to.equal(undefined);
    } finally {
      follower.stop();
      await server.stop();
    }
  });

  it("the kernel's flag (timedatectl NTPSynchronized) decides leap 3 when chronyd is silent", async () => {
    expect(parseKernelSynchronized('yes\n')).to.equal(true);
    expect(parseKernelSynchronized('no\n')).to.equal(false);
    expect(parseKernelSynchronized('System has not been booted with systemd as init system (PID 1).')).to.equal(undefined);
    // A stand-in for timedatectl: systemd-timedated does not run on this machine (no systemd as init).
    for (const [answer, leap] of [['no', 3], ['yes', 0], ['garbage', 0]] as const) {
      const timescale = new Timescale(realClock());
      const follower = new SystemClockFollower(timescale, {
        errorBoundNs: 1_000_000,
        chronycArgs: ['-h', '127.0.0.1', '-p', String(await freeUdpPort())], // nobody there
        kernelStatusCommand: ['sh', '-c', `echo ${answer}`],
      });
      await follower.start();
      const { server, port } = await startServer({ timescale, upstream: () => follower.upstream() });
      try {
        expect(await servedHeader(port), answer).to.deep.include({ leap });
        if (leap === 3) expect(server.reference().unsynchronizedReason).to.match(/kernel says the system clock is not synchronized/);
      } finally {
        follower.stop();
        await server.stop();
      }
    }
  });

  /** A chronyd that only answers chronyc on a free loopback port; with a local stratum it is synchronised to itself, without one it is not. */
  function withCommandOnlyChronyd(localStratum: number | undefined): { cmdPort(): number } {
    let dir: string | undefined;
    let cmdPort = 0;
    before(async function () {
      if (!haveChronyd() || !have('chronyc', ['-v'])) this.skip();
      dir = mkdtempSync(join(tmpdir(), 'lockstep-chronyc-'));
      cmdPort = await freeUdpPort();
      const conf = join(dir, 'chrony.conf');
      const lines = ['port 0', `cmdport ${cmdPort}`, 'bindcmdaddress 127.0.0.1', 'cmdallow 127.0.0.1', `pidfile ${join(dir, 'pid')}`, `driftfile ${join(dir, 'drift')}`];
      if (localStratum !== undefined) lines.push(`local stratum ${localStratum}`);
      writeFileSync(conf, lines.join('\n') + '\n');
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
    return { cmdPort: () => cmdPort };
  }

  describe('with a local chronyd answering chronyc', () => {
    const chronyd = withCommandOnlyChronyd(6);

    it("takes stratum, refid, root delay/dispersion and the error bound from chronyd, and the server serves stratum + 1", async () => {
      const timescale = new Timescale(realClock());
      const follower = new SystemClockFollower(timescale, { errorBoundNs: 10_000_000, chronycArgs: ['-h', '127.0.0.1', '-p', String(chronyd.cmdPort())] });
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

  describe('with a local chronyd that has no source', () => {
    const chronyd = withCommandOnlyChronyd(undefined);

    it('chronyd\'s "Not synchronised" becomes leap 3, and says so; its word wins over the kernel\'s', async () => {
      const timescale = new Timescale(realClock());
      const follower = new SystemClockFollower(timescale, {
        errorBoundNs: 1_000_000,
        chronycArgs: ['-h', '127.0.0.1', '-p', String(chronyd.cmdPort())],
        kernelStatusCommand: ['sh', '-c', 'echo yes'], // chronyd's word wins over the kernel's
      });
      await follower.start();
      const { server, port } = await startServer({ timescale, upstream: () => follower.upstream() });
      try {
        expect(follower.chrony).to.deep.include({ leap: 'Not synchronised' });
        expect(await servedHeader(port)).to.deep.include({ leap: 3, stratum: 16 });
        expect(server.reference().unsynchronizedReason).to.equal('the local chronyd is not synchronised');
      } finally {
        follower.stop();
        await server.stop();
      }
    });
  });
});
