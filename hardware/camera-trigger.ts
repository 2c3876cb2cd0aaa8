/**
 * GS hardware trigger (`--mode trigger --trigger-line N`): the Global
 * Shutter camera (IMX296) with trigger_mode=1 exposes while its XTR input is
 * held low, for the low time + 14.26 µs, and reads the frame out right after
 * (CAMERA-NOTES.md §3). Our own GPIO pulse starts and ends the exposure:
 * through the same prepared gpiod/sysfs line as `blink`, driven active
 * (= low, XTR is active low) half an exposure before the instant and back
 * after the exposure time, busy-waited, so the exposure's mid-point is the
 * instant. A kept-running rpicam-vid only receives the frames; the one
 * belonging to each pulse is recognised by its SensorTimestamp (readout
 * starts right after the pulse ends) and named after the trigger.
 *
 * The exposure reported rests on the frame's SensorTimestamp (its end) and
 * the pulse width we measured around our two writes (its length): the
 * metadata's ExposureTime is only the programmed value in this mode.
 */
import { renameSync, unlinkSync, existsSync } from 'node:fs';
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
import { exposureReport, frameExposure, XTR_EXTRA_NS, type MonotonicExposure } from './camera-metadata.js';
import { findExecutable } from './executables.js';
import { FrameSource, type SourceFrame } from './frame-source.js';
import { VIDEO_BINARIES } from './camera-stream.js';

/** 1 ms: short enough to freeze motion, and a busy-wait the node can afford. */
export const DEFAULT_TRIGGER_SHUTTER_US = 1000;
/**
 * The pulse is busy-waited inside fire(): beyond a GS frame period (16.6 ms)
 * an exposure makes no sense for this camera, and the node would spin too long.
 */
export const MAX_TRIGGER_SHUTTER_US = 15_000;
/**
 * A frame belongs to the latest pulse that ended before its SensorTimestamp,
 * if that was at most this long before: the frame-start interrupt follows
 * the exposure within a few lines (~0.2 ms), plus the GPIO write's own
 * latency (µs on a Pi; tens of ms through the Node.js gpioset stand-in on a
 * loaded machine: 10 ms lost a frame at load 11). Frames only come for
 * pulses, and the latest pulse wins, so a wide window costs nothing.
 */
const MATCH_WINDOW_NS = 250_000_000n;
/** The frame must arrive within this long after the pulse (readout 16 ms + ISP + a loaded machine). */
const FRAME_WAIT_MS = 2000;

export interface TriggerCameraOptions {
  outDir: string;
  node?: string;
  binary?: string;
  pathEnv?: string;
  extraArgs?: string[];
  /** The XTR pulse's low time, µs (the exposure is this + 14.26 µs). */
  shutterUs?: number;
  warmupMs?: number;
  /** The GPIO line wired to XTR, already configured active-low (built, not prepared). */
  gpio: Actuator;
  /** Calibrated frame-start delay after the end of exposure, ns. */
  frameStartOffsetNs?: number;
  /** How long a pulse's frame may take to arrive, ms (FRAME_WAIT_MS by default). */
  frameWaitMs?: number;
  utcAtMonotonic?: (monotonicNs: bigint) => bigint;
  env?: NodeJS.ProcessEnv;
}

interface Pulse {
  instantNs: bigint;
  /** Monotonic instants at which our two writes began. */
  fallNs: bigint;
  riseNs: bigint;
  final: string;
  deadline: NodeJS.Timeout;
  resolve: (outcome: LaterOutcome) => void;
}

/**
 * The pulse is spun for its last this-much, and slept before that: a sleep
 * gives the core away, and on a loaded machine getting it back took ms,
 * which stretched the pulse (the exposure) and moved its mid-point by half
 * of that (trigger-slots bench, load 5–7: mid-points 0.6–1.7 ms late with
 * the spin itself on time, under a 0.4 ms tail). A Pi runs one camera node
 * on four cores: a short exposure (≤ 2 ms, the GS's usual) is all spun; a
 * longer one sleeps only its first part, so as not to burn a core for 15 ms.
 */
const PULSE_SPIN_TAIL_NS = 2_000_000n;
const sleepWord = new Int32Array(new SharedArrayBuffer(4));

function spinUntil(monoNs: bigint): bigint {
  let now = monotonicNs();
  while (now < monoNs) now = monotonicNs();
  return now;
}

export class TriggerCamera implements Actuator {
  readonly name: string;
  readonly leadNs: number;
  readonly node: string;
  readonly files: string[] = [];
  private readonly outDir: string;
  private readonly pulseNs: number;
  private source: FrameSource | undefined;
  private pulses: Pulse[] = [];
  private readonly utcAt: (monotonicNs: bigint) => bigint;
  /** Frames that came for no pulse of ours (deleted). */
  strayFrames = 0;

  constructor(private readonly o: TriggerCameraOptions) {
    this.rehearsesInFire = o.gpio.rehearsesInFire === true;
    const shutterUs = o.shutterUs ?? DEFAULT_TRIGGER_SHUTTER_US;
    if (!(shutterUs > 0 && shutterUs <= MAX_TRIGGER_SHUTTER_US)) {
      throw new ActuatorUnavailable('unsupported', `a triggered exposure of ${shutterUs} µs is beyond ${MAX_TRIGGER_SHUTTER_US} µs (the pulse is busy-waited; a GS frame lasts 16.6 ms)`, 'give a shorter --shutter');
    }
    this.pulseNs = Math.round(shutterUs * 1000);
    // The exposure is the low time + 14.26 µs: start half of it before the instant.
    this.leadNs = Math.round((this.pulseNs + XTR_EXTRA_NS) / 2);
    this.outDir = resolvePath(o.outDir);
    this.node = safeNamePart(o.node ?? hostname());
    this.utcAt = o.utcAtMonotonic ?? realUtcAtMonotonic;
    this.name = `GS camera triggered by ${o.gpio.name}`;
  }

  async prepare(): Promise<void> {
    if (this.source?.running) return;
    const candidates = this.o.binary ? [this.o.binary] : VIDEO_BINARIES;
    const binaryPath = candidates.map((c) => findExecutable(c, this.o.pathEnv)).find(Boolean);
    if (!binaryPath) throw new ActuatorUnavailable('missing-binary', `${candidates.join(' or ')} is not installed (it receives the triggered frames)`, CAMERA_INSTALL_HINT);
    if (!(await cameraHelp(binaryPath)).includes('--metadata')) {
      throw new ActuatorUnavailable('unsupported', `${binaryPath} has no --metadata: a triggered frame is matched to its pulse by its SensorTimestamp`, 'update rpicam-apps (sudo apt install rpicam-apps)');
    }
    ensureDir(this.outDir);
    await this.o.gpio.prepare();
    const source = new FrameSource({
      binaryPath,
      outDir: this.outDir,
      prefix: `.lockstep-trigger-${process.pid}-${Date.now().toString(36)}`,
      extension: 'jpg',
      // A fixed --shutter keeps the AGC from fighting the trigger (the value itself is ignored).
      args: ['--shutter', String(this.pulseNs / 1000), '--gain', '1', '--awbgains', '1,1'],
      extraArgs: this.o.extraArgs,
      env: this.o.env,
      warmupMs: this.o.warmupMs ?? DEFAULT_WARMUP_MS,
    });
    source.onFrame((frame) => this.onFrame(frame));
    source.onExit((reason) => {
      for (const p of [...this.pulses]) this.fail(p, `the camera stopped before the pulse's frame came: ${reason}${diskHint(reason)}`);
    });
    this.source = source;
    try {
      await source.start();
    } catch (error) {
      this.source = undefined;
      await this.o.gpio.release();
      throw error;
    }
    // The fire path once, short of the edges: both GPIO writes' code is compiled before the instant.
    for (let i = 0; i < 3; i++) this.rehearse(0n, { level: 1 });
  }

  private onFrame(frame: SourceFrame): void {
    const ts = frame.meta?.sensorTimestampNs;
    let pulse = ts === undefined ? this.pulses[0] : undefined;
    if (ts !== undefined) for (const p of this.pulses) if (ts >= p.riseNs && ts - p.riseNs <= MATCH_WINDOW_NS && (!pulse || p.riseNs > pulse.riseNs)) pulse = p;
    if (!pulse) {
      this.strayFrames++;
      this.unlink(frame.file);
      return;
    }
    if (ts === undefined || !frame.meta) {
      this.unlink(frame.file);
      this.fail(pulse, "a frame came after the pulse, but its metadata has no SensorTimestamp: it cannot be matched to the pulse");
      return;
    }
    const result = frameExposure(frame.meta, { frameStartOffsetNs: this.o.frameStartOffsetNs }, Number(pulse.riseNs - pulse.fallNs) + XTR_EXTRA_NS);
    this.pulses = this.pulses.filter((p) => p !== pulse);
    clearTimeout(pulse.deadline);
    void this.keep(pulse, frame, result.ok ? result.exposure : undefined, result.ok ? undefined : result.reason);
  }

  private async keep(pulse: Pulse, frame: SourceFrame, exposure: MonotonicExposure | undefined, why: string | undefined): Promise<void> {
    const t0 = Date.now();
    while (!existsSync(frame.file) && Date.now() - t0 < FRAME_WAIT_MS) await new Promise((r) => setTimeout(r, 10));
    try {
      renameSync(frame.file, pulse.final);
    } catch (error) {
      dropPlaceholder(pulse.final);
      pulse.resolve({ error: `the pulse's frame (${frame.file}) cannot be kept as ${pulse.final}: ${(error as Error).message}${diskHint(error)}` });
      return;
    }
    this.files.push(pulse.final);
    if (!exposure) pulse.resolve({ file: pulse.final, exposureUnknown: why });
    else pulse.resolve({ file: pulse.final, exposure: exposureReport(exposure, this.utcAt, pulse.instantNs, 'trigger: SensorTimestamp, and the pulse width + 14.26 µs') });
  }

  private fail(p: Pulse, reason: string): void {
    this.pulses = this.pulses.filter((x) => x !== p);
    clearTimeout(p.deadline);
    dropPlaceholder(p.final);
    p.resolve({ error: reason, exposureUnknown: reason });
  }

  private unlink(file: string): void {
    try {
      unlinkSync(file);
    } catch {
      /* never written */
    }
  }

  rehearse(instantNs: bigint, input: FireInput = {}): void {
    if (this.rehearsesInFire) this.fire(instantNs, input, true);
    else this.o.gpio.rehearse?.(instantNs, { ...input, level: 1 });
  }

  /** Rehearsed through fire() itself when the trigger line's driver is (Actuator.rehearsesInFire). */
  readonly rehearsesInFire: boolean;

  /** At the instant minus half the exposure: XTR low, busy-wait the exposure, XTR high (rehearsal: up to the first edge, not written). */
  fire(instantNs: bigint, input?: FireInput, rehearsal?: false): FireOutcome;
  fire(instantNs: bigint, input: FireInput | undefined, rehearsal: boolean): FireOutcome | undefined;
  fire(instantNs: bigint, input: FireInput = {}, rehearsal = false): FireOutcome | undefined {
    if (!this.source) throw new ActuatorNotPrepared(this.name);
    if (!this.source.running) throw new ActuatorFailed(`${this.name}: the camera is not running: ${this.source.exitReason}`);
    const t0 = monotonicNs();
    if (rehearsal && !this.rehearsesInFire) return undefined; // never an edge in a rehearsal
    this.o.gpio.fire(instantNs, { ...input, level: 1 }, rehearsal);
    if (rehearsal) return undefined;
    const riseAt = t0 + BigInt(this.pulseNs);
    const sleepNs = Number(riseAt - PULSE_SPIN_TAIL_NS - monotonicNs());
    if (sleepNs > 0) Atomics.wait(sleepWord, 0, 0, sleepNs / 1e6);
    const t2 = spinUntil(riseAt);
    this.o.gpio.fire(instantNs, { ...input, level: 0 });
    const t3 = monotonicNs();
    // Each edge at the start of its write(2): the line switches within it, and both writes take
    // about as long, so the width between the starts is the pulse's.
    const fallNs = t0;
    const riseNs = t2;
    // After the edges: naming the photo is not part of the timing.
    const final = claimPhotoName(this.outDir, safeNamePart(input.tag ?? 'capture'), this.node, input.index ?? this.files.length + this.pulses.length, 'jpg', this.name);
    let resolve!: (outcome: LaterOutcome) => void;
    const later = new Promise<LaterOutcome>((r) => (resolve = r));
    const waitMs = this.o.frameWaitMs ?? FRAME_WAIT_MS;
    const pulse: Pulse = {
      instantNs,
      fallNs,
      riseNs,
      final,
      resolve,
      deadline: setTimeout(
        () => this.fail(pulse, `no frame came for the trigger pulse within ${waitMs} ms: is XTR wired to this line, trigger_mode=1 set, and the libcamera timeout raised? (hardware/README.md)`),
        waitMs,
      ),
    };
    this.pulses.push(pulse);
    return { costNs: Number(t3 - t0), file: final, later, detail: `XTR pulse ${(Number(riseNs - fallNs) / 1e3).toFixed(1)} µs on ${this.o.gpio.name}` };
  }

  async release(): Promise<void> {
    const source = this.source;
    if (!source) return;
    while (this.pulses.length > 0 && source.running) await new Promise((r) => setTimeout(r, 10));
    this.source = undefined;
    await source.stop();
    for (const p of [...this.pulses]) this.fail(p, 'the camera was released before the pulse frame came');
    await this.o.gpio.release();
  }
}
