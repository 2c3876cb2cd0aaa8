import { expect } from 'chai';
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { realClock } from '../../src/time/clock.js';
import { NS_PER_MS } from '../../src/time/units.js';
import { ActuatorUnavailable, realUtcAtMonotonic, type LaterOutcome } from '../../src/schedule/actuator.js';
import { StreamCamera } from '../../hardware/camera-stream.js';
import { SIM_TUNING_FILE } from '../../hardware/sensor-sim.js';
import { decodeSyncPayload, encodeSyncPayload, FrameGrid, hostJoinedGroup, readSyncTuning, writeSyncTuningFile } from '../../hardware/camera-phase-lock.js';
import { makeSensorStandIns, type SensorStandIns } from './sensor-standins.js';

const WARMUP_MS = 500;
/** Generous for a loaded 2-core machine: the stand-in's own residual is tens of µs (the README's figure). */
const ON_GRID_NS = 300_000;

describe('frame-phase lock: the grid, the rpi.sync wire and tuning file', () => {
  it('puts frames on k/fps since the epoch, exact in bigint, before and after an instant', () => {
    const grid = new FrameGrid(60);
    const second = 1_800_000_000n * 1_000_000_000n; // whole seconds are on a 60 fps grid
    expect(grid.at(grid.indexAtOrBefore(second))).to.equal(second);
    expect(grid.at(grid.indexAtOrBefore(second - 1n))).to.equal(second - 16_666_667n);
    expect(grid.offsetNs(second + 5_000n)).to.equal(5_000);
    expect(grid.offsetNs(second - 5_000n)).to.equal(-5_000);
    expect(grid.indexAtOrBefore(-1n)).to.equal(-1n);
  });

  it("encodes the 40-byte native struct sync.cpp reads (uint32, padding, four uint64, little-endian) and reads a tuning file's rpi.sync block", () => {
    const b = encodeSyncPayload({ frameDurationUs: 16_667, systemFrameTimestampUs: 5n, wallClockFrameTimestampUs: 1_796_000_000_000_000n, systemReadyTimeUs: 7n, wallClockReadyTimeUs: 8n });
    expect(b.length).to.equal(40);
    expect(b.readUInt32LE(0)).to.equal(16_667);
    expect(b.readBigUInt64LE(16)).to.equal(1_796_000_000_000_000n);
    expect(decodeSyncPayload(b)!.wallClockReadyTimeUs).to.equal(8n);
    expect(decodeSyncPayload(b.subarray(0, 39))).to.equal(undefined);
    const dir = mkdtempSync(join(tmpdir(), 'lockstep-tuning-'));
    try {
      const base = join(dir, 'imx708.json');
      writeFileSync(base, JSON.stringify({ version: 2.0, algorithms: [{ 'rpi.agc': { x: 1 } }, { 'rpi.sync': { port: 10000 } }] }));
      writeSyncTuningFile(base, join(dir, 'out.json'), { group: '239.255.76.83', port: 4242, minAdjustmentUs: 20 });
      const written = JSON.parse(readFileSync(join(dir, 'out.json'), 'utf8')) as { algorithms: Record<string, unknown>[] };
      expect(written.algorithms.filter((a) => 'rpi.sync' in a)).to.have.length(1);
      expect(written.algorithms[0]).to.deep.equal({ 'rpi.agc': { x: 1 } });
      expect(readSyncTuning(written)).to.deep.equal({ group: '239.255.76.83', port: 4242, minAdjustmentUs: 20 });
      expect(readSyncTuning({})).to.deep.equal({ group: '239.255.255.250', port: 10000, minAdjustmentUs: 50 });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("tells from /proc/net/igmp whether this host joined the group (only then does a TTL-0 datagram stay on it)", () => {
    const igmp = 'Idx\tDevice    : Count Querier\tGroup    Users Timer\tReporter\n1\tlo        :     2      V3\n\t\t\t\t534CFFEF     1 0:00000000\t\t0\n\t\t\t\t010000E0     1 0:00000000\t\t0\n';
    expect(hostJoinedGroup('239.255.76.83', igmp)).to.equal(true);
    expect(hostJoinedGroup('239.255.255.250', igmp)).to.equal(false);
  });
});

describe('frame-phase lock against the simulated sensor (rpicam-vid --sync client)', function () {
  this.timeout(30_000);
  let standins: SensorStandIns;
  let out: string;
  let undo: () => void;
  before(() => {
    standins = makeSensorStandIns();
    out = mkdtempSync(join(tmpdir(), 'lockstep-phase-'));
  });
  after(() => {
    standins.cleanup();
    rmSync(out, { recursive: true, force: true });
  });
  afterEach(() => undo?.());

  const camera = (node: string, extra: Partial<ConstructorParameters<typeof StreamCamera>[0]> = {}) =>
    new StreamCamera({ outDir: out, node, fps: 60, shutterUs: 4000, warmupMs: WARMUP_MS, pathEnv: standins.path, phaseLock: true, tuningFile: join(standins.bin, SIM_TUNING_FILE), syncInterface: '127.0.0.1', ...extra });

  it('two sensors with random phases and ±20 ppm crystals expose on the same grid instants; the photos are simultaneous and reported to the truth', async () => {
    undo = standins.set({ ppm: 'random:20', syncJoin: '127.0.0.1' });
    const cams = [camera('a'), camera('b')];
    await Promise.all(cams.map((c) => c.prepare()));
    const lockedAt = process.hrtime.bigint(); // frames before the lock was seen (SyncReady comes first) may still be converging
    const grid = new FrameGrid(60);
    // The hardest instants: halfway between two grid instants. The frame nearest to such an instant is decided by
    // each sensor's residual phase (± tens of µs), so nearest-frame selection alone sends two nodes to neighbouring
    // frames about half the time; selection by the grid instant nearest to it never does.
    const k = grid.indexAtOrBefore(realClock().nowNs() + 300n * NS_PER_MS);
    const instants = Array.from({ length: 12 }, (_x, i) => (grid.at(k + 2n * BigInt(i)) + grid.at(k + 2n * BigInt(i) + 1n)) / 2n);
    const outcomes = await Promise.all(cams.map((c) => Promise.all(instants.map((t, index) => c.fire(t, { tag: 'pl', index }).later!))));
    await new Promise((r) => setTimeout(r, 300)); // frames after the photo: on the grid too
    await Promise.all(cams.map((c) => c.release()));
    const truth = standins.truth();
    // Every frame each sensor output once locked sits on the grid (first-row mid-point, on this machine's clock).
    const mids = truth.filter((f) => f.sensorTimestampNs > lockedAt).map((f) => standins.trueMidNs(f));
    const off = mids.map((m) => Math.abs(grid.offsetNs(m)));
    expect(mids.length).to.be.greaterThan(20);
    expect(Math.max(...off), `frames off the grid by up to ${Math.max(...off)} ns`).to.be.at.most(ON_GRID_NS);
    const trueMid = (r: LaterOutcome) => {
      expect(r.error, r.error).to.equal(undefined);
      expect(r.exposure!.basis).to.match(/phase-locked/);
      const frame = truth.find((f) => f.sensorTimestampNs === r.exposure!.sensorTimestampNs)!;
      const mid = standins.trueMidNs(frame);
      expect(Math.abs(Number(r.exposure!.midNs - mid))).to.be.at.most(50_000);
      return mid;
    };
    instants.forEach((_t, i) => {
      const [a, b] = outcomes.map((results) => trueMid(results[i]!));
      expect(Math.abs(Number(a! - b!)), `the two photos of instant ${i}`).to.be.at.most(2 * ON_GRID_NS);
    });
    expect(readdirSync(out).sort()).to.deep.equal(['a', 'b'].flatMap((n) => instants.map((_t, i) => `pl-${n}-${String(i).padStart(3, '0')}.jpg`)));
  });

  it('a version without --sync, or no tuning file to copy, is unavailable with the reason; nothing is left running', async () => {
    undo = standins.set({ sync: 0 });
    const old = camera('c');
    const err = await old.prepare().then(() => undefined, (e: unknown) => e);
    expect(err).to.be.instanceOf(ActuatorUnavailable);
    expect((err as Error).message).to.match(/no --sync: the frame-phase lock needs rpicam-apps ≥ 1\.6/);
    undo();
    const env = { ...process.env };
    delete env.LIBCAMERA_RPI_TUNING_FILE;
    const none = camera('d', { tuningFile: undefined, env });
    const err2 = await none.prepare().then(() => undefined, (e: unknown) => e);
    expect((err2 as Error).message).to.match(/tuning file.*none was found/);
    expect(realUtcAtMonotonic(0n)).to.be.a('bigint');
  });
});
