/**
 * Frame-phase lock (`--mode stream --phase-lock`): every node's sensor puts
 * its frames on one UTC grid, so that frame select picks simultaneous
 * exposures on every node.
 *
 * rpicam-vid cannot be told a frame duration while it runs; what it can do
 * (rpicam-apps ≥ 1.6, libcamera's `rpi.sync` algorithm) is follow a sync
 * server: `--sync client` reads UDP timing messages and shortens or
 * lengthens ONE frame by the difference between its own frame's wall clock
 * (FrameWallClock, CLOCK_REALTIME) and the server's, reduced modulo the
 * frame duration (CAMERA-NOTES.md §4; read in
 * src/ipa/rpi/controller/rpi/sync.cpp). So each node runs its own server,
 * here: its messages name the grid instants (first row's exposure mid-point
 * at g_k = k·period since the Unix epoch, in disciplined UTC) converted
 * into THIS node's CLOCK_REALTIME through the Timescale, without touching
 * the system clock. The client then aligns its frames to our UTC, not to
 * the system clock's idea of it.
 *
 * The wire (sync.h, libcamera v0.4.0+rpt20250127 and later): a native C
 * struct, 40 bytes little-endian on arm64 and armhf — uint32 frameDuration
 * (µs), 4 bytes padding, then uint64 systemFrameTimestamp,
 * wallClockFrameTimestamp, systemReadyTime, wallClockReadyTime (µs). The
 * client uses frameDuration and the two wall-clock fields; we fill the
 * system (CLOCK_MONOTONIC) fields too, correctly. Format-fragile: pin the
 * libcamera version across the fleet.
 *
 * Multicast reaches every Pi on the subnet, so: a group of our own and a
 * port chosen per node (in a tuning file written for this camera), TTL 0,
 * and nothing sent unless this host has joined the group — then the kernel
 * loops the datagram back and drops it before the wire (a TTL-0 datagram to
 * a group the host is not in would be transmitted).
 */
import { createSocket, type Socket } from 'node:dgram';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { endianness } from 'node:os';
import { realtimeMinusMonotonicNs } from '../src/schedule/actuator.js';

/** Administratively scoped (239/8), not SSDP's 239.255.255.250 that rpi.sync uses by default. */
export const PHASE_LOCK_GROUP = '239.255.76.83';
/** Bytes of the rpi.sync payload (uint32 + padding + 4 × uint64). */
export const SYNC_PAYLOAD_BYTES = 40;
/**
 * Corrections below this are not applied (the tuning file's min_adjustment,
 * 50 µs by default): about two line times, below which a frame cannot be
 * shortened anyway (frame lengths are whole lines).
 */
export const PHASE_LOCK_MIN_ADJUSTMENT_US = 20;
/**
 * A message every 10 frames: a correction takes effect a few frames after
 * the client processed it (the sensor's frame-length control delay) and is
 * only seen in frames after that; a message sooner would correct twice.
 */
export const SEND_EVERY_FRAMES = 10;
/** The client starts writing frames (SyncReady) this many messages after the first: time to correct. */
const READY_AFTER_MESSAGES = 4;
/** Locked: this many consecutive frames within the tolerance. */
const LOCKED_FRAMES = 5;
/**
 * Between two corrections the phase drifts (frame lengths are whole lines:
 * 1/fps is rarely one; the sensor's crystal is off by ppm). Each message
 * leads by the drift expected until mid-way to the next correction, so the
 * sawtooth is centred on the grid: a correction lands ~3 frames after the
 * frame that computed it (the frame-length control's delay), and lasts
 * SEND_EVERY_FRAMES.
 */
const LEAD_FRAMES = 3 + SEND_EVERY_FRAMES / 2;
/** Frame-to-frame phase steps kept to estimate the drift (their median: corrections are rare outliers). */
const DRIFT_WINDOW = 41;

/** The grid: first-row exposure mid-points at k·1e12/fpsMilli ns since the Unix epoch (exact rational). */
export class FrameGrid {
  private readonly fpsMilli: bigint;

  constructor(fps: number) {
    this.fpsMilli = BigInt(Math.round(fps * 1000));
    if (this.fpsMilli <= 0n) throw new RangeError(`a frame grid needs a positive frame rate, not ${fps}`);
  }

  get periodNs(): number {
    return 1e12 / Number(this.fpsMilli);
  }

  /** Index of the last grid instant at or before utcNs. */
  indexAtOrBefore(utcNs: bigint): bigint {
    const scaled = utcNs * this.fpsMilli;
    const q = scaled / 1_000_000_000_000n;
    return scaled < 0n && q * 1_000_000_000_000n !== scaled ? q - 1n : q;
  }

  at(k: bigint): bigint {
    return (k * 1_000_000_000_000n) / this.fpsMilli;
  }

  /** Signed distance from utcNs to its nearest grid instant, ns. */
  offsetNs(utcNs: bigint): number {
    const k = this.indexAtOrBefore(utcNs);
    const below = Number(utcNs - this.at(k));
    const above = Number(utcNs - this.at(k + 1n));
    return Math.abs(above) < Math.abs(below) ? above : below;
  }
}

export interface SyncPayload {
  frameDurationUs: number;
  systemFrameTimestampUs: bigint;
  wallClockFrameTimestampUs: bigint;
  systemReadyTimeUs: bigint;
  wallClockReadyTimeUs: bigint;
}

export function encodeSyncPayload(p: SyncPayload): Buffer {
  const b = Buffer.alloc(SYNC_PAYLOAD_BYTES);
  b.writeUInt32LE(p.frameDurationUs, 0);
  b.writeBigUInt64LE(p.systemFrameTimestampUs, 8);
  b.writeBigUInt64LE(p.wallClockFrameTimestampUs, 16);
  b.writeBigUInt64LE(p.systemReadyTimeUs, 24);
  b.writeBigUInt64LE(p.wallClockReadyTimeUs, 32);
  return b;
}

export function decodeSyncPayload(b: Buffer): SyncPayload | undefined {
  if (b.length < SYNC_PAYLOAD_BYTES) return undefined;
  return {
    frameDurationUs: b.readUInt32LE(0),
    systemFrameTimestampUs: b.readBigUInt64LE(8),
    wallClockFrameTimestampUs: b.readBigUInt64LE(16),
    systemReadyTimeUs: b.readBigUInt64LE(24),
    wallClockReadyTimeUs: b.readBigUInt64LE(32),
  };
}

/** The rpi.sync settings a client reads from its tuning file. */
export interface SyncTuning {
  group: string;
  port: number;
  minAdjustmentUs: number;
}

/** libcamera's defaults when the tuning file's rpi.sync block says nothing. */
export const RPI_SYNC_DEFAULTS: SyncTuning = { group: '239.255.255.250', port: 10000, minAdjustmentUs: 50 };

/** rpi.sync's block in a tuning file (version 2: an "algorithms" list; version 1: top-level keys). */
export function readSyncTuning(json: unknown): SyncTuning {
  const root = (json ?? {}) as Record<string, unknown>;
  const algorithms = Array.isArray(root.algorithms) ? (root.algorithms as Record<string, unknown>[]) : [root];
  const block = algorithms.find((a) => a && typeof a === 'object' && 'rpi.sync' in a)?.['rpi.sync'] as Record<string, unknown> | undefined;
  return {
    group: typeof block?.group === 'string' ? block.group : RPI_SYNC_DEFAULTS.group,
    port: typeof block?.port === 'number' ? block.port : RPI_SYNC_DEFAULTS.port,
    minAdjustmentUs: typeof block?.min_adjustment === 'number' ? block.min_adjustment : RPI_SYNC_DEFAULTS.minAdjustmentUs,
  };
}

/** Writes a copy of a camera's tuning file whose rpi.sync block points at our group and port. */
export function writeSyncTuningFile(baseFile: string, outFile: string, tuning: SyncTuning): void {
  let json: Record<string, unknown>;
  try {
    json = JSON.parse(readFileSync(baseFile, 'utf8')) as Record<string, unknown>;
  } catch (error) {
    throw new Error(`cannot read the camera's tuning file ${baseFile}: ${(error as Error).message}`);
  }
  const block = { group: tuning.group, port: tuning.port, min_adjustment: tuning.minAdjustmentUs };
  if (Array.isArray(json.algorithms)) {
    const algorithms = (json.algorithms as Record<string, unknown>[]).filter((a) => !(a && typeof a === 'object' && 'rpi.sync' in a));
    algorithms.push({ 'rpi.sync': block });
    json.algorithms = algorithms;
  } else json['rpi.sync'] = block;
  writeFileSync(outFile, JSON.stringify(json, null, 2));
}

/**
 * Where a Raspberry Pi's stock tuning file for `sensor` lives: libcamera
 * reads LIBCAMERA_RPI_TUNING_FILE first, else its platform's directory
 * (pisp on a Pi 5, vc4 before).
 */
export function stockTuningFile(sensor: string | undefined, env: NodeJS.ProcessEnv = process.env): string | undefined {
  if (env.LIBCAMERA_RPI_TUNING_FILE && existsSync(env.LIBCAMERA_RPI_TUNING_FILE)) return env.LIBCAMERA_RPI_TUNING_FILE;
  if (!sensor) return undefined;
  let model = '';
  try {
    model = readFileSync('/proc/device-tree/model', 'utf8');
  } catch {
    /* not a Pi */
  }
  const platforms = /Raspberry Pi 5|Compute Module 5/.test(model) ? ['pisp', 'vc4'] : ['vc4', 'pisp'];
  for (const prefix of ['/usr/share/libcamera/ipa/rpi', '/usr/local/share/libcamera/ipa/rpi']) {
    for (const platform of platforms) {
      const file = `${prefix}/${platform}/${sensor}.json`;
      if (existsSync(file)) return file;
    }
  }
  return undefined;
}

/** Whether this host has joined `group` on some interface (/proc/net/igmp): then a TTL-0 datagram stays on the host. */
export function hostJoinedGroup(group: string, igmpText?: string): boolean | undefined {
  let text = igmpText;
  if (text === undefined) {
    try {
      text = readFileSync('/proc/net/igmp', 'utf8');
    } catch {
      return undefined;
    }
  }
  const bytes = group.split('.').map(Number);
  // The kernel prints the group's 32-bit value in host byte order.
  const ordered = endianness() === 'LE' ? [...bytes].reverse() : bytes;
  const hex = ordered.map((b) => b.toString(16).padStart(2, '0')).join('').toUpperCase();
  return text.split('\n').some((line) => line.trim().split(/\s+/)[0] === hex);
}

export interface PhaseLockOptions {
  fps: number;
  /** The fixed exposure, ns: the grid is on the first row's exposure MID-point. */
  exposureNs: number;
  /** Calibrated delay from the end of the first row's exposure to SensorTimestamp, ns. */
  frameStartOffsetNs?: number;
  /** CLOCK_MONOTONIC → disciplined UTC (the node's Timescale). */
  utcAtMonotonic: (monotonicNs: bigint) => bigint;
  group?: string;
  /** Address of the interface the client joined on (the stand-in: 127.0.0.1); the kernel's choice by default, as the client's. */
  interfaceAddress?: string;
  /** A frame this far off the grid or closer counts as locked, ns. */
  toleranceNs?: number;
}

/** What the lock has seen of the camera's frames. */
export interface PhaseLockStatus {
  messagesSent: number;
  /** Messages held back because this host had not joined the group yet (the client had not started). */
  messagesHeld: number;
  framesSeen: number;
  locked: boolean;
  /** The last frame's first-row exposure mid-point − its nearest grid instant, ns. */
  lastPhaseErrorNs?: number;
}

/** One node's sync server: the grid in this node's CLOCK_REALTIME, to its own camera only. */
export class PhaseLockServer {
  readonly grid: FrameGrid;
  private socket: Socket | undefined;
  private timer: NodeJS.Timeout | undefined;
  private realtimeMinusMonoNs: bigint = 0n;
  private latestSensorTimestampNs: bigint | undefined;
  private readyMonoNs: bigint | undefined;
  private inTolerance = 0;
  private lastErrorNs: number | undefined;
  private steps: number[] = [];
  readonly status: PhaseLockStatus = { messagesSent: 0, messagesHeld: 0, framesSeen: 0, locked: false };
  private readonly group: string;
  private readonly targetOffsetNs: bigint;
  private readonly toleranceNs: number;

  constructor(private readonly o: PhaseLockOptions) {
    this.grid = new FrameGrid(o.fps);
    this.group = o.group ?? PHASE_LOCK_GROUP;
    // SensorTimestamp = first row's exposure end + δ; the grid is on its mid-point.
    this.targetOffsetNs = BigInt(Math.round(o.exposureNs / 2 + (o.frameStartOffsetNs ?? 0)));
    this.toleranceNs = o.toleranceNs ?? 100_000;
  }

  /** The port the camera's client must listen on: ours, held for as long as we run. */
  port = 0;

  /** After start(): what the camera's tuning file must say. */
  get tuning(): SyncTuning {
    return { group: this.group, port: this.port, minAdjustmentUs: PHASE_LOCK_MIN_ADJUSTMENT_US };
  }

  async start(): Promise<void> {
    this.realtimeMinusMonoNs = realtimeMinusMonotonicNs();
    // Bound with SO_REUSEADDR to a port the kernel picks, and kept: the client (which sets SO_REUSEADDR too)
    // can share it, and no other node on this host is given it while we run. Our own datagrams come back to
    // it and are dropped (no listener).
    const socket = createSocket({ type: 'udp4', reuseAddr: true });
    await new Promise<void>((resolve, reject) => {
      socket.once('error', reject);
      socket.bind(0, () => resolve());
    });
    this.port = socket.address().port;
    socket.setMulticastTTL(0);
    socket.setMulticastLoopback(true);
    if (this.o.interfaceAddress) socket.setMulticastInterface(this.o.interfaceAddress);
    socket.on('error', () => undefined); // a send that fails is retried by the next one
    this.socket = socket;
    this.timer = setInterval(() => this.send(), Math.max(20, (SEND_EVERY_FRAMES * this.grid.periodNs) / 1e6));
    this.send();
  }

  /** UTC → CLOCK_MONOTONIC: the Timescale's map is affine within ppm, so two Newton steps are exact to the ns. */
  private monotonicAtUtc(utcNs: bigint): bigint {
    let m = utcNs - (this.o.utcAtMonotonic(process.hrtime.bigint()) - process.hrtime.bigint());
    for (let i = 0; i < 2; i++) m += utcNs - this.o.utcAtMonotonic(m);
    return m;
  }

  private send(): void {
    if (!this.socket) return;
    const joined = hostJoinedGroup(this.group);
    if (joined === false) {
      this.status.messagesHeld++;
      return;
    }
    const nowMono = process.hrtime.bigint();
    // A grid instant before any frame the client can still process: the difference it computes is then
    // ≥ 0 (its C integer division truncates), and spans few periods (frameDuration is whole µs).
    const refMono = this.latestSensorTimestampNs ?? nowMono - BigInt(Math.round(Math.max(100e6, 3 * this.grid.periodNs)));
    const k = this.grid.indexAtOrBefore(this.o.utcAtMonotonic(refMono) - this.targetOffsetNs);
    const targetMono = this.monotonicAtUtc(this.grid.at(k) + this.targetOffsetNs) - BigInt(Math.round(LEAD_FRAMES * this.driftPerFrameNs()));
    this.readyMonoNs ??= nowMono + BigInt(Math.round(READY_AFTER_MESSAGES * SEND_EVERY_FRAMES * this.grid.periodNs));
    const us = (ns: bigint) => (ns + 500n) / 1000n;
    const payload = encodeSyncPayload({
      frameDurationUs: Math.round(this.grid.periodNs / 1000),
      systemFrameTimestampUs: us(targetMono),
      wallClockFrameTimestampUs: us(targetMono + this.realtimeMinusMonoNs),
      systemReadyTimeUs: us(this.readyMonoNs),
      wallClockReadyTimeUs: us(this.readyMonoNs + this.realtimeMinusMonoNs),
    });
    this.socket.send(payload, this.port, this.group);
    this.status.messagesSent++;
  }

  /** The phase's drift per frame between corrections, ns (positive: frames come later and later). */
  driftPerFrameNs(): number {
    if (this.steps.length < 5) return 0;
    const sorted = [...this.steps].sort((a, b) => a - b);
    return sorted[sorted.length >> 1]!;
  }

  /**
   * Every frame the camera delivered: its own CLOCK_REALTIME mapping
   * (FrameWallClock − SensorTimestamp, what its client compares against)
   * replaces ours, and its distance from the grid is measured.
   */
  onFrame(sensorTimestampNs: bigint, frameWallClock?: number | bigint): number {
    this.status.framesSeen++;
    this.latestSensorTimestampNs = sensorTimestampNs;
    if (frameWallClock !== undefined) {
      const wall = BigInt(frameWallClock);
      // Its unit changed from µs to ns in 2025 (CAMERA-NOTES.md §2): ~1.7e15 is µs, ~1.7e18 ns.
      const wallNs = wall < 10n ** 17n ? wall * 1000n : wall;
      this.realtimeMinusMonoNs = wallNs - sensorTimestampNs;
    }
    const errorNs = this.grid.offsetNs(this.o.utcAtMonotonic(sensorTimestampNs) - this.targetOffsetNs);
    this.status.lastPhaseErrorNs = errorNs;
    if (this.lastErrorNs !== undefined) {
      this.steps.push(errorNs - this.lastErrorNs);
      if (this.steps.length > DRIFT_WINDOW) this.steps.shift();
    }
    this.lastErrorNs = errorNs;
    this.inTolerance = Math.abs(errorNs) <= this.toleranceNs ? this.inTolerance + 1 : 0;
    if (this.inTolerance >= LOCKED_FRAMES) this.status.locked = true;
    return errorNs;
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    this.timer = undefined;
    const socket = this.socket;
    this.socket = undefined;
    if (socket) await new Promise<void>((resolve) => socket.close(() => resolve()));
  }
}
