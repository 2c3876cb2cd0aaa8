import { expect } from 'chai';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { realClock, SimulatedClock } from '../../src/time/clock.js';
import { Timescale } from '../../src/time/timescale.js';
import { NS_PER_MS } from '../../src/time/units.js';
import { Scheduler } from '../../src/schedule/scheduler.js';
import { scheduleAction, type ActionFireReport } from '../../src/schedule/actions.js';
import { ActuatorFailed, ActuatorNotPrepared, ActuatorUnavailable } from '../../src/schedule/actuator.js';
import { CameraActuator } from '../../hardware/camera.js';
import { CommandActuator } from '../../hardware/command.js';
import { SimulatedRecorder } from '../../hardware/sim.js';
import { createActuator } from '../../hardware/index.js';
import { makeStandIns, type StandIns } from './standins.js';
import { waitFor } from '../support/processes.js';

const TIMING_BOUND_NS = 30n * NS_PER_MS;
/**
 * The stand-in is a Node.js script: on this shared, loaded machine it takes up
 * to ~200 ms to start and install its SIGUSR1 handler, and the warm-up must
 * cover that (a signal before the handler kills it, as with the real one).
 */
const WARMUP_MS = 400;

function realScheduler(): Scheduler {
  return new Scheduler({ timescale: new Timescale(realClock(), { trustRawClock: { errorBoundNs: 1000 } }) });
}

function fireError(camera: CameraActuator): Error | undefined {
  try {
    camera.fire(0n, { tag: 'probe' });
  } catch (error) {
    return error as Error;
  }
  return undefined;
}

/** Sets stand-in environment variables for one test; returns the undo. */
function standinEnv(vars: Record<string, string>): () => void {
  Object.assign(process.env, vars);
  return () => {
    for (const name of Object.keys(vars)) delete process.env[name];
  };
}

async function rejection(promise: Promise<unknown>): Promise<Error> {
  try {
    await promise;
  } catch (error) {
    return error as Error;
  }
  throw new Error('expected a rejection');
}

describe('camera: rpicam-still in signal mode (stand-in)', () => {
  let standins: StandIns;
  let out: string;
  beforeEach(() => {
    standins = makeStandIns({ gpioset: false });
    out = mkdtempSync(join(tmpdir(), 'lockstep-photos-'));
  });
  afterEach(() => {
    standins.cleanup();
    rmSync(out, { recursive: true, force: true });
  });

  it('starts it once with --signal -t 0 --zsl, captures with SIGUSR1 at the instant minus the lead, names the file after trigger and node', async () => {
    const camera = new CameraActuator({ outDir: out, node: 'pi-07', leadMs: 40, warmupMs: WARMUP_MS, pathEnv: standins.path });
    await camera.prepare();
    expect(camera.leadNs).to.equal(40_000_000);
    // prepare() waits a fixed warm-up, as for the real camera; a loaded machine may start the stand-in later than that.
    await waitFor(() => standins.cameraLog().some((e) => e.argv), 5000, 'the stand-in camera to start');
    const argv = standins.cameraLog()[0]!.argv!;
    expect(argv.slice(0, 4)).to.deep.equal(['--signal', '-t', '0', '-n']);
    expect(argv).to.include('--zsl');
    expect(argv).to.not.include('--immediate');
    const fires: ActionFireReport[] = [];
    const startNs = realClock().nowNs() + 200n * NS_PER_MS;
    const run = scheduleAction(realScheduler(), { kind: 'capture', name: 'group' }, startNs, camera, { tag: 'group', onFire: (r) => fires.push(r) });
    await run.done;
    expect(fires[0]).to.include({ leadNs: 40_000_000, targetNs: startNs, plannedNs: startNs - 40n * NS_PER_MS });
    expect(fires[0]!.outcome!.file).to.equal(join(out, 'group-pi-07-000.jpg'));
    await camera.release(); // waits for the file to be named
    const signals = standins.cameraLog().filter((e) => e.signal);
    expect(signals.map((e) => e.signal)).to.deep.equal(['SIGUSR1', 'SIGUSR2']);
    const error = standins.toRealNs(signals[0]!.t) - (startNs - 40n * NS_PER_MS);
    expect(error >= -1n * NS_PER_MS && error < TIMING_BOUND_NS, `signal ${error} ns from plan`).to.equal(true);
    expect(readdirSync(out)).to.deep.equal(['group-pi-07-000.jpg']);
    expect(readFileSync(join(out, 'group-pi-07-000.jpg'), 'utf8')).to.match(/^JPEG stand-in/);
  });

  it('leaves out --zsl when this version lacks it; falls back to libcamera-still', async () => {
    const old = makeStandIns({ gpioset: false, cameraName: 'libcamera-still' });
    process.env.STANDIN_CAMERA_ZSL = '0';
    try {
      const camera = new CameraActuator({ outDir: out, warmupMs: WARMUP_MS, pathEnv: old.path.replace(standins.bin, '/nonexistent') });
      await camera.prepare();
      await camera.release();
      const argv = old.cameraLog()[0]!.argv!;
      expect(argv).to.not.include('--zsl');
    } finally {
      delete process.env.STANDIN_CAMERA_ZSL;
      old.cleanup();
    }
  });

  it('restarts a version that exits after each capture, and keeps naming files in order', async () => {
    process.env.STANDIN_CAMERA_EXIT_AFTER_CAPTURE = '1';
    try {
      const camera = new CameraActuator({ outDir: out, node: 'n1', warmupMs: WARMUP_MS, pathEnv: standins.path });
      await camera.prepare();
      camera.fire(0n, { tag: 'a', index: 0 });
      await waitFor(() => camera.restarts === 1 && camera.ready, 5000, 'the camera to restart');
      camera.fire(0n, { tag: 'a', index: 1 });
      await camera.release();
      expect(readdirSync(out).sort()).to.deep.equal(['a-n1-000.jpg', 'a-n1-001.jpg']);
      expect(new Set(standins.cameraLog().map((e) => e.pid)).size).to.equal(2);
    } finally {
      delete process.env.STANDIN_CAMERA_EXIT_AFTER_CAPTURE;
    }
  });

  it('restarts a camera that exits without a capture with growing backoff, then gives up: fire() says it is not running and why', async () => {
    const lifeMs = WARMUP_MS + 150; // exits after the warm-up, before any capture
    const undo = standinEnv({ STANDIN_CAMERA_EXIT_AFTER_MS: String(lifeMs) });
    try {
      const camera = new CameraActuator({ outDir: out, node: 'n1', warmupMs: WARMUP_MS, restartBackoffMs: 200, restartLimit: 2, pathEnv: standins.path });
      await camera.prepare();
      await waitFor(() => camera.gaveUp !== undefined, 10000, 'the camera to be given up');
      const starts = standins.cameraLog().filter((e) => e.argv);
      expect(starts).to.have.length(3); // the first start and 2 restarts
      expect(camera.restarts).to.equal(2);
      // Each process lives lifeMs; the waits before restarting were 200 ms, then 400 ms.
      const gap = (i: number) => Number(starts[i + 1]!.t - starts[i]!.t) / 1e6;
      expect(gap(0), 'first restart').to.be.at.least(lifeMs + 200);
      // Not gap(1) − gap(0): each gap also holds a stand-in's start-up, which varies by 100+ ms with another test file beside it.
      expect(gap(1), 'second restart waited 400 ms').to.be.at.least(lifeMs + 400);
      const error = fireError(camera);
      expect(error).to.be.instanceOf(ActuatorFailed);
      expect(error).to.not.be.instanceOf(ActuatorNotPrepared);
      expect(error!.message).to.match(/is not running: gave up after 2 failed restarts; last it exited \(code 255\): ERROR: \*\*\* camera frontend has timed out/);
      await new Promise((r) => setTimeout(r, 600));
      expect(standins.cameraLog().filter((e) => e.argv)).to.have.length(3); // bounded: no more tries
      await camera.release();
    } finally {
      undo();
    }
  });

  it('retries a restart that fails to start, and captures again once the camera is back', async () => {
    // Start 2 (the restart after the first capture) finds the camera busy; start 3 works.
    const undo = standinEnv({ STANDIN_CAMERA_EXIT_AFTER_CAPTURE: '1', STANDIN_CAMERA_FAIL: 'busy', STANDIN_CAMERA_FAIL_STARTS: '2' });
    try {
      const camera = new CameraActuator({ outDir: out, node: 'n1', warmupMs: WARMUP_MS, restartBackoffMs: 300, pathEnv: standins.path });
      await camera.prepare();
      camera.fire(0n, { tag: 'a', index: 0 });
      let between: Error | undefined;
      // While it waits to retry: a clear reason, not "fire() before prepare()". (Only fired when not ready: no capture.)
      await waitFor(() => !camera.ready && /failed to restart/.test((between = fireError(camera))?.message ?? ''), 5000, 'the failed restart');
      expect(between).to.be.instanceOf(ActuatorFailed);
      expect(between!.message).to.match(/is not running: it failed to restart: the camera is in use.*Device or resource busy.*; restarting \(1 of 5 restarts failed so far\)/);
      await waitFor(() => camera.ready, 5000, 'the camera to be back');
      expect(camera.restarts).to.equal(2);
      camera.fire(0n, { tag: 'a', index: 1 });
      await camera.release();
      expect(readdirSync(out).sort()).to.deep.equal(['a-n1-000.jpg', 'a-n1-001.jpg']);
    } finally {
      undo();
    }
  });

  it('gives up when every restart fails to start, and says so instead of "fire() before prepare()"', async () => {
    const undo = standinEnv({ STANDIN_CAMERA_EXIT_AFTER_CAPTURE: '1', STANDIN_CAMERA_FAIL: 'acquire', STANDIN_CAMERA_FAIL_STARTS: '2,3,4,5' });
    try {
      const camera = new CameraActuator({ outDir: out, node: 'n1', warmupMs: WARMUP_MS, restartBackoffMs: 50, restartLimit: 3, pathEnv: standins.path });
      await camera.prepare();
      camera.fire(0n, { tag: 'a', index: 0 });
      await waitFor(() => camera.gaveUp !== undefined, 10000, 'the camera to be given up');
      expect(camera.restarts).to.equal(3);
      const error = fireError(camera);
      expect(error).to.be.instanceOf(ActuatorFailed);
      expect(error!.message).to.match(/is not running: gave up after 3 failed restarts; last it failed to restart: the camera is in use.*failed to acquire camera/);
      await camera.release();
      expect(readdirSync(out)).to.deep.equal(['a-n1-000.jpg']);
    } finally {
      undo();
    }
  });

  it('never overwrites a photo: the same name again takes the next free index', async () => {
    const first = new CameraActuator({ outDir: out, node: 'n1', warmupMs: WARMUP_MS, pathEnv: standins.path });
    await first.prepare();
    expect(first.fire(0n, { tag: 'team', index: 0 })!.file).to.equal(join(out, 'team-n1-000.jpg'));
    await waitFor(() => first.files.length === 1, 5000, 'the first photo'); // two signals at once would merge into one
    expect(first.fire(0n, { tag: 'team', index: 0 })!.file).to.equal(join(out, 'team-n1-001.jpg')); // same index, same run
    await first.release();
    const kept = readFileSync(join(out, 'team-n1-000.jpg'), 'utf8');
    const second = new CameraActuator({ outDir: out, node: 'n1', warmupMs: WARMUP_MS, pathEnv: standins.path }); // a second run
    await second.prepare();
    expect(second.fire(0n, { tag: 'team', index: 0 })!.file).to.equal(join(out, 'team-n1-002.jpg'));
    await second.release();
    expect(readdirSync(out).sort()).to.deep.equal(['team-n1-000.jpg', 'team-n1-001.jpg', 'team-n1-002.jpg']);
    expect(readFileSync(join(out, 'team-n1-000.jpg'), 'utf8')).to.equal(kept);
    expect(new Set(readdirSync(out).map((f) => readFileSync(join(out, f), 'utf8'))).size).to.equal(3); // three different photos
  });

  it('says what to do: not installed, no camera, permission (video group)', async () => {
    const missing = await rejection(new CameraActuator({ outDir: out, pathEnv: '/nonexistent' }).prepare());
    expect(missing).to.be.instanceOf(ActuatorUnavailable);
    expect(missing.message).to.match(/rpicam-still or libcamera-still is not installed.*apt install rpicam-apps/);
    for (const [mode, kind, pattern] of [['nocamera', 'unknown-device', /finds no camera.*list-cameras/], ['permission', 'permission', /usermod -aG video/]] as const) {
      process.env.STANDIN_CAMERA_FAIL = mode;
      try {
        const error = await rejection(new CameraActuator({ outDir: out, warmupMs: 3000, pathEnv: standins.path }).prepare());
        expect((error as ActuatorUnavailable).kind).to.equal(kind);
        expect(error.message).to.match(pattern);
      } finally {
        delete process.env.STANDIN_CAMERA_FAIL;
      }
    }
  });
});

describe('command actuator', () => {
  it('starts the program at the instant and reports the spawn latency; the child knows its instant', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'lockstep-cmd-'));
    try {
      const file = join(dir, 'ran');
      const command = new CommandActuator({ argv: ['sh', '-c', `echo "$LOCKSTEP_INSTANT_NS $LOCKSTEP_TAG" > ${file}`] });
      await command.prepare();
      const fires: ActionFireReport[] = [];
      const startNs = realClock().nowNs() + 100n * NS_PER_MS;
      const run = scheduleAction(realScheduler(), { kind: 'command', argv: ['sh'] }, startNs, command, { tag: 't1', onFire: (r) => fires.push(r) });
      await run.done;
      const later = await fires[0]!.outcome!.later!;
      expect(later.spawnLatencyNs).to.be.a('number').and.greaterThan(0);
      expect(fires[0]!.outcome!.pid).to.be.a('number');
      await command.release();
      expect(command.exitCodes).to.deep.equal([0]);
      expect(readFileSync(file, 'utf8').trim()).to.equal(`${startNs} t1`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a missing program is reported before the instant', async () => {
    const error = await rejection(new CommandActuator({ argv: ['no-such-program-xyz'] }).prepare());
    expect(error).to.be.instanceOf(ActuatorUnavailable);
    expect(error.message).to.match(/cannot find the program 'no-such-program-xyz' on PATH/);
    expect(() => new CommandActuator({ argv: ['x'] }).fire(0n)).to.throw(/before prepare/);
  });
});

describe('simulated recorder', () => {
  it("records the TRUE instant for a node whose clock is wrong, plus latency and jitter", async () => {
    const clock = new SimulatedClock({ offsetSeconds: 3, driftPpm: 50 });
    let r = 0;
    const randoms = [0, 1, 0.5];
    const sim = new SimulatedRecorder({ clock, latencyNs: 1000, jitterNs: 500, random: () => randoms[r++ % 3]! });
    await sim.prepare();
    const before = realClock().nowNs();
    sim.fire(before, { level: 1, index: 0 });
    sim.fire(before, { level: 0, index: 0 });
    sim.fire(before);
    const after = realClock().nowNs();
    // Truth, not the node's clock (3 s ahead).
    const [a, b, c] = sim.records;
    expect(a!.trueNs >= before + 500n && a!.trueNs <= after + 500n).to.equal(true); // 1000 − 500
    expect(b!.trueNs >= before + 1500n && b!.trueNs <= after + 1500n).to.equal(true); // 1000 + 500
    expect(c!.trueNs >= before + 1000n && c!.trueNs <= after + 1000n).to.equal(true);
    expect(a).to.include({ level: 1, index: 0, seq: 0 });
    await sim.release();
    expect(sim.finalLevel).to.equal(0);
  });

  it('the factory gives a recorder for every kind with --driver sim, with the camera lead', async () => {
    const sim = await createActuator({ kind: 'capture' }, { driver: 'sim', leadMs: 25 });
    expect(sim).to.be.instanceOf(SimulatedRecorder);
    expect(sim.leadNs).to.equal(25_000_000);
    const cmd = await createActuator({ kind: 'command', argv: ['definitely-not-installed'] }, { driver: 'sim' });
    expect(cmd.name).to.equal('simulated command');
    expect(() => cmd.fire(0n)).to.not.throw(ActuatorFailed);
  });
});
