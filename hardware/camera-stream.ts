/**
 * Frame select (`--mode stream`): the sensor runs all the time at a fixed
 * frame rate and exposure (rpicam-vid, one file per frame, metadata per
 * frame; frame-source.ts); we keep the last few frames and, after an
 * instant, keep the one whose exposure mid-point (first row) is nearest to
 * it and let the others go. The error is then at most half a frame period,
 * and known exactly for every photo, from the frame's own SensorTimestamp.
 *
 * fire() does nothing at the instant but note it: the frames were being
 * taken anyway. So the scheduler's lateness does not matter here, only the
 * clock (instants and SensorTimestamps meet in disciplined UTC).
 */
import { copyFileSync, renameSync, existsSync, unlinkSync, mkdtempSync, rmSync } from 'node:fs';
import { execFile } from 'node:child_process';
import { hostname, tmpdir } from 'node:os';
import { join, resolve as resolvePath } from 'node:path';
import {
  ActuatorFailed,
  ActuatorNotPrepared,
  ActuatorUnavailable,
  monotonicNs,
  realUtcAtMonotonic,
  type Actuator,
  type FireInput,
  type FireOutcome,
  type LaterOutcome,
} from '../src/schedule/actuator.js';
import { CAMERA_INSTALL_HINT, DEFAULT_WARMUP_MS, cameraHelp } from './camera.js';
import { claimPhotoName, diskHint, dropPlaceholder, ensureDir, safeNamePart } from './camera-files.js';
import { exposureMidNs, exposureReport, frameExposure, type MonotonicExposure, type SensorGeometry } from './camera-metadata.js';
import { findExecutable } from './executables.js';
import { FrameSource, type SourceFrame } from './frame-source.js';
import { PhaseLockServer, stockTuningFile, writeSyncTuningFile } from './camera-phase-lock.js';

export const VIDEO_BINARIES = ['rpicam-vid', 'libcamera-vid'];
/** 60 fps: the GS camera's full-resolution rate, and the issue's frame-select target (±8.3 ms). */
export const DEFAULT_STREAM_FPS = 60;
/** 5 ms: short enough to freeze motion at 60 fps, long enough for indoor light at a raised gain. */
export const DEFAULT_STREAM_SHUTTER_US = 5000;
/**
 * Frames kept besides those a pending capture may still choose: at 60 fps
 * this is 133 ms of history, enough for a fire that is noticed late.
 */
const KEEP_FRAMES = 8;
/** How long a started camera may take to deliver its first frame. */
const FIRST_FRAME_MS = 10_000;
/** A frame past the instant must arrive within this many periods, plus the pipeline allowance. */
const FRAME_WAIT_PERIODS = 5;
const FRAME_WAIT_MIN_MS = 1000;
/** rpicam-vid may write the file a moment after printing its metadata (or before): wait this long for it. */
const FILE_APPEAR_MS = 2000;
/** A scheduled instant protects its frames from deletion until this long after it (then fire() never came). */
const EXPECTED_FOR_NS = 2_000_000_000n;
/** At most this many scheduled instants are remembered (a node keeps few captures pending). */
const MAX_EXPECTED = 64;
/** Phase lock: how long prepare() waits for the frames to sit on the grid (a correction per 10 frames, then 5 frames in tolerance). */
const LOCK_WAIT_MS = 15_000;

export interface StreamCameraOptions {
  outDir: string;
  node?: string;
  binary?: string;
  pathEnv?: string;
  extraArgs?: string[];
  /** Frames per second (rpicam-vid --framerate), fixed. */
  fps?: number;
  /** Fixed exposure, µs (rpicam-vid --shutter): the frame-select error is measured on its mid-point. */
  shutterUs?: number;
  warmupMs?: number;
  geometry?: SensorGeometry;
  /** CLOCK_MONOTONIC → disciplined UTC (the node's Timescale); the system clock by default. */
  utcAtMonotonic?: (monotonicNs: bigint) => bigint;
  env?: NodeJS.ProcessEnv;
  /**
   * Frame-phase lock: rpicam-vid --sync client follows our own sync server,
   * which puts every frame's first-row exposure mid-point on the UTC grid
   * k/fps since the epoch (camera-phase-lock.ts), so all nodes' frames are
   * simultaneous.
   */
  phaseLock?: boolean;
  /** The camera's stock tuning file (the copy we write adds the rpi.sync block); found by sensor name otherwise. */
  tuningFile?: string;
  /** Phase lock: the interface address the camera's sync client joins on (the stand-in: 127.0.0.1). */
  syncInterface?: string;
}

interface Kept {
  frame: SourceFrame;
  exposure: MonotonicExposure | undefined;
  /** Disciplined UTC of the first row's exposure mid-point. */
  midUtcNs: bigint | undefined;
  /** Phase lock: this frame's first-row mid-point − its grid instant, ns. */
  phaseErrorNs?: number;
  why?: string;
  /** Set once a capture kept it: a second capture at the same instant gets a copy. */
  keptAs?: Promise<string | undefined>;
}

interface Pending {
  instantNs: bigint;
  final: string;
  deadline: NodeJS.Timeout;
  resolve: (outcome: LaterOutcome) => void;
}

export class StreamCamera implements Actuator {
  readonly name: string;
  readonly leadNs = 0;
  readonly node: string;
  readonly files: string[] = [];
  private readonly outDir: string;
  private readonly periodNs: number;
  private source: FrameSource | undefined;
  private ring: Kept[] = [];
  private pending: Pending[] = [];
  private readonly utcAt: (monotonicNs: bigint) => bigint;
  private lock: PhaseLockServer | undefined;
  /**
   * Instants scheduled but not fired yet (told by rehearse() when the job is
   * placed): their frames are kept even if fire() comes late. At load 24, a
   * fire 100+ ms late found the frames at its instant already deleted (8
   * frames kept) and took one 114 ms off.
   */
  private expected: bigint[] = [];
  private lockDir: string | undefined;

  constructor(private readonly o: StreamCameraOptions) {
    this.outDir = resolvePath(o.outDir);
    this.node = safeNamePart(o.node ?? hostname());
    this.periodNs = Math.round(1e9 / (o.fps ?? DEFAULT_STREAM_FPS));
    this.utcAt = o.utcAtMonotonic ?? realUtcAtMonotonic;
    this.name = `camera ${o.binary ?? 'rpicam-vid'} (frame select, ${o.fps ?? DEFAULT_STREAM_FPS} fps${o.phaseLock ? ', phase-locked' : ''})`;
  }

  get framePeriodNs(): number {
    return this.periodNs;
  }

  async prepare(): Promise<void> {
    if (this.source?.running) return;
    const candidates = this.o.binary ? [this.o.binary] : VIDEO_BINARIES;
    const binaryPath = candidates.map((c) => findExecutable(c, this.o.pathEnv)).find(Boolean);
    if (!binaryPath) throw new ActuatorUnavailable('missing-binary', `${candidates.join(' or ')} is not installed (frame select runs the sensor continuously)`, CAMERA_INSTALL_HINT);
    const text = await cameraHelp(binaryPath);
    for (const needed of ['--metadata', '--segment']) {
      if (!text.includes(needed)) {
        throw new ActuatorUnavailable('unsupported', `${binaryPath} has no ${needed}: frame select needs one file and one metadata entry (SensorTimestamp) per frame`, 'update rpicam-apps (sudo apt install rpicam-apps), or use --mode signal');
      }
    }
    ensureDir(this.outDir);
    let extraArgs = this.o.extraArgs;
    const syncArgs: string[] = [];
    if (this.o.phaseLock) {
      if (!text.includes('--sync') || !text.includes('--tuning-file')) {
        throw new ActuatorUnavailable('unsupported', `${binaryPath} has no --sync: the frame-phase lock needs rpicam-apps ≥ 1.6 (libcamera's rpi.sync)`, 'update rpicam-apps (sudo apt install rpicam-apps), or leave out --phase-lock');
      }
      const split = takeOption(this.o.extraArgs ?? [], '--tuning-file');
      extraArgs = split.rest;
      syncArgs.push(...(await this.startPhaseLock(binaryPath, split.value ?? this.o.tuningFile)));
    }
    const source = new FrameSource({
      binaryPath,
      outDir: this.outDir,
      prefix: `.lockstep-stream-${process.pid}-${Date.now().toString(36)}`,
      extension: 'jpg',
      // Fixed rate, exposure, gain and white balance: every frame alike, and the exposure window known.
      args: ['--framerate', String(this.o.fps ?? DEFAULT_STREAM_FPS), '--shutter', String(this.o.shutterUs ?? DEFAULT_STREAM_SHUTTER_US), '--gain', '1', '--awbgains', '1,1', ...syncArgs],
      extraArgs,
      env: this.o.env,
      warmupMs: this.o.warmupMs ?? DEFAULT_WARMUP_MS,
    });
    source.onFrame((frame) => this.onFrame(frame));
    source.onExit((reason) => this.onCameraExit(reason));
    this.source = source;
    try {
      await source.start();
      await this.firstFrame(source);
      if (this.lock) await this.locked(source);
    } catch (error) {
      await source.stop();
      this.source = undefined;
      this.dropRing();
      await this.stopPhaseLock();
      throw error;
    }
  }

  /** Starts this node's sync server and writes the tuning file that points the camera's client at it; returns rpicam-vid's sync options. */
  private async startPhaseLock(binaryPath: string, baseTuning: string | undefined): Promise<string[]> {
    const base = baseTuning ?? stockTuningFile(await sensorName(binaryPath, this.o.env), this.o.env ?? process.env);
    if (!base) {
      throw new ActuatorUnavailable('unsupported', "the frame-phase lock writes a copy of the camera's tuning file (to point its sync client at this node), and none was found", 'give the stock one: --camera-args "--tuning-file /usr/share/libcamera/ipa/rpi/vc4/imx708.json" (pisp/ on a Pi 5)');
    }
    const lock = new PhaseLockServer({
      fps: this.o.fps ?? DEFAULT_STREAM_FPS,
      exposureNs: (this.o.shutterUs ?? DEFAULT_STREAM_SHUTTER_US) * 1000,
      frameStartOffsetNs: this.o.geometry?.frameStartOffsetNs,
      utcAtMonotonic: this.utcAt,
      interfaceAddress: this.o.syncInterface,
    });
    await lock.start();
    this.lock = lock;
    this.lockDir = mkdtempSync(join(tmpdir(), 'lockstep-sync-'));
    const tuningFile = join(this.lockDir, 'tuning.json');
    try {
      writeSyncTuningFile(base, tuningFile, lock.tuning);
    } catch (error) {
      await this.stopPhaseLock();
      throw new ActuatorUnavailable('unsupported', (error as Error).message, 'give a readable stock tuning file with --camera-args "--tuning-file FILE"');
    }
    return ['--sync', 'client', '--tuning-file', tuningFile];
  }

  private async stopPhaseLock(): Promise<void> {
    await this.lock?.stop();
    this.lock = undefined;
    if (this.lockDir) rmSync(this.lockDir, { recursive: true, force: true });
    this.lockDir = undefined;
  }

  /** Phase lock: ready once the frames sit on the grid. */
  private async locked(source: FrameSource): Promise<void> {
    const t0 = Date.now();
    while (!this.lock!.status.locked) {
      if (!source.running) throw new ActuatorFailed(`${this.name} stopped before its frames were on the grid: ${source.exitReason}`);
      if (Date.now() - t0 > LOCK_WAIT_MS) {
        const s = this.lock!.status;
        throw new ActuatorFailed(`${this.name}: the frames did not settle on the UTC grid within ${LOCK_WAIT_MS / 1000} s (last frame ${s.lastPhaseErrorNs === undefined ? '?' : `${(s.lastPhaseErrorNs / 1000).toFixed(0)} µs`} off, ${s.messagesSent} sync messages sent): is the frame rate below the sensor mode's maximum (a frame can only be shortened down to it)?`);
      }
      await new Promise((r) => setTimeout(r, 10));
    }
  }

  /** The phase lock's state (undefined without one). */
  get phaseLockStatus() {
    return this.lock?.status;
  }

  /** Ready means frames flow: an instant before the first frame could only be met by a frame far from it. */
  private async firstFrame(source: FrameSource): Promise<void> {
    const t0 = Date.now();
    while (this.ring.length === 0) {
      if (!source.running) throw new ActuatorFailed(`${this.name} stopped before its first frame: ${source.exitReason}`);
      if (Date.now() - t0 > FIRST_FRAME_MS) {
        const lock = this.lock ? ` (phase lock: rpicam-vid writes no frame before its sync client is ready; ${this.lock.status.messagesSent} sync messages sent, ${this.lock.status.messagesHeld} held because this host never joined ${'the group'}: does the camera's client reach multicast here?)` : '';
        throw new ActuatorFailed(`${this.name} delivered no frame within ${FIRST_FRAME_MS / 1000} s of starting${lock}`);
      }
      await new Promise((r) => setTimeout(r, 10));
    }
  }

  private onFrame(frame: SourceFrame): void {
    let kept: Kept;
    if (!frame.meta) kept = { frame, exposure: undefined, midUtcNs: undefined, why: "the frame's metadata could not be read" };
    else {
      const result = frameExposure(frame.meta, this.o.geometry);
      kept = result.ok ? { frame, exposure: result.exposure, midUtcNs: this.utcAt(exposureMidNs(result.exposure)) } : { frame, exposure: undefined, midUtcNs: undefined, why: result.reason };
      if (this.lock && frame.meta.sensorTimestampNs !== undefined) kept.phaseErrorNs = this.lock.onFrame(frame.meta.sensorTimestampNs, frame.meta.frameWallClock);
    }
    this.ring.push(kept);
    this.settle();
    this.trim();
  }

  /** Decides every pending capture whose instant a frame has now passed. */
  private settle(): void {
    const latest = this.ring.at(-1);
    if (!latest) return;
    for (const p of [...this.pending]) {
      if (latest.midUtcNs === undefined) {
        // One unreadable frame before the instant is not fatal; past the instant there is nothing to compare.
        if (this.utcAt(monotonicNs()) >= p.instantNs) this.fail(p, `cannot select a frame: ${latest.why}`);
        continue;
      }
      const aim = this.aimFor(p.instantNs);
      if (latest.midUtcNs < aim) continue;
      // A frame past the aim is here, so no later one can be nearer. Every kept frame is compared, not
      // only the last two: a fire noticed late (a loaded machine) finds several frames past the instant.
      let best = latest;
      const distance = (k: Kept) => (k.midUtcNs! > aim ? k.midUtcNs! - aim : aim - k.midUtcNs!);
      for (const k of this.ring) if (k.midUtcNs !== undefined && distance(k) < distance(best)) best = k;
      void this.keep(p, best);
    }
  }

  /**
   * The mid-point to select by. Free-running: the instant itself. Phase-locked: the grid instant nearest to it,
   * the same on every node (exact bigint maths on the same instant). Near the middle between two grid instants
   * the nearest frame is decided by each sensor's residual phase (± tens of µs), which differs between nodes and
   * sent them to neighbouring frames, a frame period apart (1 trigger in 20 of the camera bench).
   */
  private aimFor(instantNs: bigint): bigint {
    return this.lock ? instantNs - BigInt(this.lock.grid.offsetNs(instantNs)) : instantNs;
  }

  private async keep(p: Pending, kept: Kept): Promise<void> {
    this.pending = this.pending.filter((x) => x !== p);
    clearTimeout(p.deadline);
    const first = kept.keptAs;
    let done!: (file: string | undefined) => void;
    if (!first) kept.keptAs = new Promise((r) => (done = r));
    try {
      if (first) {
        // Two captures, one frame (two triggers for the same instant): each gets the photo.
        const source = await first;
        if (!source) throw new Error('the first capture of this frame could not keep it');
        copyFileSync(source, p.final);
      } else {
        const t0 = Date.now();
        while (!existsSync(kept.frame.file) && Date.now() - t0 < FILE_APPEAR_MS) await new Promise((r) => setTimeout(r, 10));
        renameSync(kept.frame.file, p.final);
        done(p.final);
      }
    } catch (error) {
      done?.(undefined);
      dropPlaceholder(p.final);
      p.resolve({ error: `the frame chosen (${kept.frame.file}) cannot be kept as ${p.final}: ${(error as Error).message}${diskHint(error)}` });
      return;
    }
    this.files.push(p.final);
    const basis = kept.phaseErrorNs === undefined ? 'frame select: SensorTimestamp − ExposureTime, the nearest frame' : `frame select, phase-locked: the nearest frame, ${(kept.phaseErrorNs / 1000).toFixed(1)} µs off the UTC grid`;
    const exposure = exposureReport(kept.exposure!, this.utcAt, p.instantNs, basis);
    p.resolve({ file: p.final, exposure });
  }

  private fail(p: Pending, reason: string): void {
    this.pending = this.pending.filter((x) => x !== p);
    clearTimeout(p.deadline);
    dropPlaceholder(p.final);
    p.resolve({ error: reason, exposureUnknown: reason });
  }

  /** Deletes frames no capture can still choose, beyond the last few. */
  private trim(): void {
    const nowUtc = this.utcAt(monotonicNs());
    this.expected = this.expected.filter((t) => t + EXPECTED_FOR_NS > nowUtc);
    const instants = [...this.pending.map((p) => p.instantNs), ...this.expected];
    const earliest = instants.reduce<bigint | undefined>((m, t) => (m === undefined || t < m ? t : m), undefined);
    const guard = earliest === undefined ? undefined : earliest - 2n * BigInt(this.periodNs);
    while (this.ring.length > KEEP_FRAMES) {
      const oldest = this.ring[0]!;
      if (guard !== undefined && oldest.midUtcNs !== undefined && oldest.midUtcNs >= guard) break;
      this.ring.shift();
      this.unlinkFrame(oldest);
    }
  }

  private unlinkFrame(kept: Kept): void {
    if (kept.keptAs) return; // renamed into a photo
    try {
      unlinkSync(kept.frame.file);
    } catch {
      /* not written (a full disk), or already gone */
    }
  }

  private dropRing(): void {
    for (const kept of this.ring) this.unlinkFrame(kept);
    this.ring = [];
  }

  private onCameraExit(reason: string): void {
    for (const p of [...this.pending]) this.fail(p, `the camera stopped before a frame past the instant came: ${reason}${diskHint(reason)}`);
  }

  rehearse(instantNs?: bigint): void {
    void this.source?.running;
    if (instantNs !== undefined && instantNs > 0n && !this.expected.includes(instantNs) && this.expected.length < MAX_EXPECTED) this.expected.push(instantNs);
  }

  fire(instantNs: bigint, input: FireInput = {}): FireOutcome {
    const start = monotonicNs();
    if (!this.source) throw new ActuatorNotPrepared(this.name);
    if (!this.source.running) throw new ActuatorFailed(`${this.name} is not running: ${this.source.exitReason}${diskHint(this.source.exitReason)}`);
    const final = claimPhotoName(this.outDir, safeNamePart(input.tag ?? 'capture'), this.node, input.index ?? this.files.length + this.pending.length, 'jpg', this.name);
    let resolve!: (outcome: LaterOutcome) => void;
    const later = new Promise<LaterOutcome>((r) => (resolve = r));
    const waitMs = Math.max(FRAME_WAIT_MIN_MS, (FRAME_WAIT_PERIODS * this.periodNs) / 1e6);
    const p: Pending = {
      instantNs,
      final,
      resolve,
      deadline: setTimeout(() => this.fail(p, `no frame past the instant came within ${waitMs} ms (is the camera delivering frames?)`), waitMs),
    };
    this.pending.push(p);
    this.expected = this.expected.filter((t) => t !== instantNs);
    this.settle(); // a fire noticed late: the frames past the instant may be here already
    return { costNs: Number(monotonicNs() - start), file: final, later, detail: `frame select from ${this.source.pattern}` };
  }

  async release(): Promise<void> {
    const source = this.source;
    if (!source) return;
    // Let captures waiting for their frame finish (bounded by their own deadline).
    while (this.pending.length > 0 && source.running) await new Promise((r) => setTimeout(r, 10));
    this.source = undefined;
    await source.stop();
    for (const p of [...this.pending]) this.fail(p, 'the camera was released before a frame past the instant came');
    this.dropRing();
    await this.stopPhaseLock();
  }
}

/** `--opt value` (or `--opt=value`) taken out of a list of arguments. */
function takeOption(args: string[], name: string): { value: string | undefined; rest: string[] } {
  const rest: string[] = [];
  let value: string | undefined;
  for (let i = 0; i < args.length; i++) {
    if (args[i] === name) value = args[++i];
    else if (args[i]!.startsWith(`${name}=`)) value = args[i]!.slice(name.length + 1);
    else rest.push(args[i]!);
  }
  return { value, rest };
}

/** The first camera's sensor ("imx708"), from `rpicam-vid --list-cameras`; undefined when it cannot say. */
function sensorName(binaryPath: string, env?: NodeJS.ProcessEnv): Promise<string | undefined> {
  return new Promise((resolve) => {
    execFile(binaryPath, ['--list-cameras'], { env: env ?? process.env, timeout: 10_000 }, (_error, stdout) => {
      resolve(/^\s*\d+\s*:\s*([a-z0-9_]+)/im.exec(String(stdout ?? ''))?.[1]);
    });
  });
}
