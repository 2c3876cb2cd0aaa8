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
import { copyFileSync, renameSync, existsSync, unlinkSync } from 'node:fs';
import { hostname } from 'node:os';
import { resolve as resolvePath } from 'node:path';
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

export const VIDEO_BINARIES = ['rpicam-vid', 'libcamera-vid'];
/** 60 fps: the GS camera's full-resolution rate, and the frame-select target (±8.3 ms). */
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
}

interface Kept {
  frame: SourceFrame;
  exposure: MonotonicExposure | undefined;
  /** Disciplined UTC of the first row's exposure mid-point. */
  midUtcNs: bigint | undefined;
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

  constructor(private readonly o: StreamCameraOptions) {
    this.outDir = resolvePath(o.outDir);
    this.node = safeNamePart(o.node ?? hostname());
    this.periodNs = Math.round(1e9 / (o.fps ?? DEFAULT_STREAM_FPS));
    this.utcAt = o.utcAtMonotonic ?? realUtcAtMonotonic;
    this.name = `camera ${o.binary ?? 'rpicam-vid'} (frame select, ${o.fps ?? DEFAULT_STREAM_FPS} fps)`;
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
    const source = new FrameSource({
      binaryPath,
      outDir: this.outDir,
      prefix: `.lockstep-stream-${process.pid}-${Date.now().toString(36)}`,
      extension: 'jpg',
      // Fixed rate, exposure, gain and white balance: every frame alike, and the exposure window known.
      args: ['--framerate', String(this.o.fps ?? DEFAULT_STREAM_FPS), '--shutter', String(this.o.shutterUs ?? DEFAULT_STREAM_SHUTTER_US), '--gain', '1', '--awbgains', '1,1'],
      extraArgs: this.o.extraArgs,
      env: this.o.env,
      warmupMs: this.o.warmupMs ?? DEFAULT_WARMUP_MS,
    });
    source.onFrame((frame) => this.onFrame(frame));
    source.onExit((reason) => this.onCameraExit(reason));
    this.source = source;
    try {
      await source.start();
      await this.firstFrame(source);
    } catch (error) {
      await source.stop();
      this.source = undefined;
      this.dropRing();
      throw error;
    }
  }

  /** Ready means frames flow: an instant before the first frame could only be met by a frame far from it. */
  private async firstFrame(source: FrameSource): Promise<void> {
    const t0 = Date.now();
    while (this.ring.length === 0) {
      if (!source.running) throw new ActuatorFailed(`${this.name} stopped before its first frame: ${source.exitReason}`);
      if (Date.now() - t0 > FIRST_FRAME_MS) throw new ActuatorFailed(`${this.name} delivered no frame within ${FIRST_FRAME_MS / 1000} s of starting`);
      await new Promise((r) => setTimeout(r, 10));
    }
  }

  private onFrame(frame: SourceFrame): void {
    let kept: Kept;
    if (!frame.meta) kept = { frame, exposure: undefined, midUtcNs: undefined, why: "the frame's metadata could not be read" };
    else {
      const result = frameExposure(frame.meta, this.o.geometry);
      kept = result.ok ? { frame, exposure: result.exposure, midUtcNs: this.utcAt(exposureMidNs(result.exposure)) } : { frame, exposure: undefined, midUtcNs: undefined, why: result.reason };
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
      if (latest.midUtcNs < p.instantNs) continue;
      // A frame past the instant is here, so no later one can be nearer. Every kept frame is compared, not
      // only the last two: a fire noticed late (a loaded machine) finds several frames past the instant.
      let best = latest;
      const distance = (k: Kept) => (k.midUtcNs! > p.instantNs ? k.midUtcNs! - p.instantNs : p.instantNs - k.midUtcNs!);
      for (const k of this.ring) if (k.midUtcNs !== undefined && distance(k) < distance(best)) best = k;
      void this.keep(p, best);
    }
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
    const exposure = exposureReport(kept.exposure!, this.utcAt, p.instantNs, 'frame select: SensorTimestamp − ExposureTime, the nearest frame');
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
    const earliest = this.pending.reduce<bigint | undefined>((m, p) => (m === undefined || p.instantNs < m ? p.instantNs : m), undefined);
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

  rehearse(): void {
    void this.source?.running;
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
  }
}
