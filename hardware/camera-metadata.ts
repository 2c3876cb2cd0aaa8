/**
 * A camera frame's own account of its timing: the `--metadata -
 * --metadata-format json` output of rpicam-apps, read as it streams, and the
 * exposure window it implies.
 *
 * rpicam-still prints one bare object per saved still, objects running
 * together with no separator; rpicam-vid prints one JSON array whose entries
 * come one per output frame (CAMERA-NOTES.md §2). Either way we split the
 * stream into top-level objects by brace depth, so neither shape (nor a
 * stray log line on stdout) matters.
 *
 * SensorTimestamp is the kernel's CLOCK_MONOTONIC at the frame-start
 * interrupt: the start of readout of the first row, i.e. about the END of
 * that row's exposure (not its start, whatever libcamera's generic doc says).
 * It is read from the text as a bigint: past 104 days of uptime it exceeds
 * 2^53 ns, where a JSON number would round it.
 */
import type { ExposureReport } from '../src/schedule/actuator.js';

/** Raspberry Pi docs (external_trigger.adoc): a GS exposure lasts the XTR low time + 14.26 µs. */
export const XTR_EXTRA_NS = 14_260;

export interface FrameMetadata {
  /** CLOCK_MONOTONIC ns at readout start of the first row. */
  sensorTimestampNs?: bigint;
  /** µs, as libcamera reports it (the programmed value in trigger mode, not the pulse). */
  exposureTimeUs?: number;
  /** µs. */
  frameDurationUs?: number;
  /** SensorTimestamp's moment on CLOCK_REALTIME (libcamera's ClockRecovery): µs before libcamera v0.5.2, ns after. */
  frameWallClock?: bigint;
  /** Every key the camera gave, for the curious. */
  raw: Record<string, unknown>;
}

/** Splits a character stream into top-level JSON objects (inside an array or not), ignoring anything between them. */
export class JsonObjectSplitter {
  private depth = 0;
  private inString = false;
  private escaped = false;
  private current = '';

  /** Feeds a chunk; returns the complete objects' texts it finished. */
  push(chunk: string): string[] {
    const done: string[] = [];
    for (const ch of chunk) {
      if (this.depth === 0) {
        if (ch === '{') {
          this.depth = 1;
          this.current = '{';
        }
        continue;
      }
      this.current += ch;
      if (this.inString) {
        if (this.escaped) this.escaped = false;
        else if (ch === '\\') this.escaped = true;
        else if (ch === '"') this.inString = false;
        continue;
      }
      if (ch === '"') this.inString = true;
      else if (ch === '{') this.depth++;
      else if (ch === '}' && --this.depth === 0) {
        done.push(this.current);
        this.current = '';
      }
    }
    return done;
  }
}

function finiteNumber(value: unknown): number | undefined {
  return typeof value === 'number' && Number.isFinite(value) ? value : undefined;
}

/** Parses one metadata object's text; a malformed one gives undefined (the frame then has no known timing). */
export function parseFrameMetadata(text: string): FrameMetadata | undefined {
  let raw: Record<string, unknown>;
  try {
    raw = JSON.parse(text) as Record<string, unknown>;
  } catch {
    return undefined;
  }
  if (typeof raw !== 'object' || raw === null) return undefined;
  const meta: FrameMetadata = { raw };
  const ts = /"SensorTimestamp"\s*:\s*(\d+)/.exec(text);
  if (ts) meta.sensorTimestampNs = BigInt(ts[1]!);
  const wall = /"FrameWallClock"\s*:\s*(\d+)/.exec(text); // ns since 1970 exceed 2^53: read as text
  if (wall) meta.frameWallClock = BigInt(wall[1]!);
  const exposure = finiteNumber(raw.ExposureTime);
  if (exposure !== undefined) meta.exposureTimeUs = exposure;
  const duration = finiteNumber(raw.FrameDuration);
  if (duration !== undefined) meta.frameDurationUs = duration;
  return meta;
}

/** What a frame's timestamp does not say, and has to be told (per camera and sensor mode). */
export interface SensorGeometry {
  /**
   * Rolling shutter: the time between two rows' readouts, ns (CAMERA-NOTES.md
   * §5: 13.36 µs for a Camera Module 3 at 2304×1296). With `rows` it gives
   * the last row's exposure too.
   */
  lineTimeNs?: number;
  /** Rows read out in the sensor mode. */
  rows?: number;
  /**
   * Calibrated delay from the end of the first row's exposure to the
   * frame-start interrupt, ns (embedded and black lines are sent first, plus
   * the interrupt latency): subtracted from SensorTimestamp. 0 by default.
   */
  frameStartOffsetNs?: number;
}

/** A frame's exposure window on CLOCK_MONOTONIC. */
export interface MonotonicExposure {
  startNs: bigint;
  endNs: bigint;
  durationNs: number;
  lastRowStartNs?: bigint;
  lastRowEndNs?: bigint;
  sensorTimestampNs: bigint;
}

export type ExposureResult = { ok: true; exposure: MonotonicExposure } | { ok: false; reason: string };

/**
 * The first row's exposure ends at SensorTimestamp − frameStartOffset and
 * lasted ExposureTime; row r ends r line times later (CAMERA-NOTES.md §2).
 * `durationNs` replaces ExposureTime where it is known better (a trigger
 * pulse: the metadata then reports the programmed value, not the pulse).
 */
export function frameExposure(meta: FrameMetadata, geometry: SensorGeometry = {}, durationNs?: number): ExposureResult {
  if (meta.sensorTimestampNs === undefined) return { ok: false, reason: "the frame's metadata has no SensorTimestamp" };
  const duration = durationNs ?? (meta.exposureTimeUs === undefined ? undefined : Math.round(meta.exposureTimeUs * 1000));
  if (duration === undefined) return { ok: false, reason: "the frame's metadata has no ExposureTime" };
  const endNs = meta.sensorTimestampNs - BigInt(Math.round(geometry.frameStartOffsetNs ?? 0));
  const exposure: MonotonicExposure = { startNs: endNs - BigInt(duration), endNs, durationNs: duration, sensorTimestampNs: meta.sensorTimestampNs };
  if (geometry.lineTimeNs !== undefined && geometry.rows !== undefined && geometry.rows > 1) {
    exposure.lastRowEndNs = endNs + BigInt(Math.round((geometry.rows - 1) * geometry.lineTimeNs));
    exposure.lastRowStartNs = exposure.lastRowEndNs - BigInt(duration);
  }
  return { ok: true, exposure };
}

/** The mid-point of the first row's exposure (what frame select aims at the instant). */
export function exposureMidNs(exposure: MonotonicExposure): bigint {
  return exposure.startNs + BigInt(Math.round(exposure.durationNs / 2));
}

/** The exposure in disciplined UTC, against the instant it was meant for. */
export function exposureReport(exposure: MonotonicExposure, utcAtMonotonic: (monotonicNs: bigint) => bigint, instantNs: bigint, basis: string): ExposureReport {
  const startNs = utcAtMonotonic(exposure.startNs);
  const midNs = startNs + BigInt(Math.round(exposure.durationNs / 2));
  const report: ExposureReport = { startNs, midNs, durationNs: exposure.durationNs, errorNs: Number(midNs - instantNs), sensorTimestampNs: exposure.sensorTimestampNs, basis };
  if (exposure.lastRowStartNs !== undefined) {
    report.lastRowStartNs = utcAtMonotonic(exposure.lastRowStartNs);
    report.lastRowMidNs = report.lastRowStartNs + BigInt(Math.round(exposure.durationNs / 2));
  }
  return report;
}

/** An exposure report as JSON-able data (instants as decimal strings), for --json lines and mesh reports. */
export function exposureJson(report: ExposureReport): Record<string, string | number> {
  const json: Record<string, string | number> = {
    exposureStartNs: report.startNs.toString(),
    exposureMidNs: report.midNs.toString(),
    exposureDurationNs: report.durationNs,
    exposureErrorNs: report.errorNs,
    sensorTimestampNs: report.sensorTimestampNs.toString(),
    exposureBasis: report.basis,
  };
  if (report.lastRowMidNs !== undefined) {
    json.lastRowStartNs = report.lastRowStartNs!.toString();
    json.lastRowMidNs = report.lastRowMidNs.toString();
  }
  return json;
}
