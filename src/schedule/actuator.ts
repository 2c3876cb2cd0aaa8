/**
 * The Actuator contract: what the scheduler drives at an instant.
 *
 * Everything slow (opening a GPIO line, starting the camera process, checking
 * permissions) happens in prepare(), long before the instant; fire() is one
 * cheap, synchronous operation (one write(2), one kill(2)) called right after
 * the scheduler's spin tail; release() undoes prepare() and leaves the device
 * in its safe state (an LED off, the camera process stopped).
 *
 * Drivers live in hardware/ and import only this file (DESIGN.md).
 */
import { anchorToSystemClock, realClock, type RawClock } from '../time/clock.js';

/** Re-exported so hardware/ needs nothing from src/ but this contract. */
export type { RawClock };
/** The hardware factory builds an actuator for a spec; type-only, so no import cycle at run time. */
export type { ActionSpec } from './actions.js';

/** A GPIO output level: 1 drives the line active (LED on), 0 inactive. */
export type Level = 0 | 1;

/** What the caller tells fire() about this edge, beyond its instant. */
export interface FireInput {
  /** GPIO actuators: the level to drive. Required by them, ignored by others. */
  level?: Level;
  /** Which fire of the action this is (0-based), for reports and file names. */
  index?: number;
  /** A label for the fire (the trigger id): camera files are named after it. */
  tag?: string;
}

/** What fire() did, for the fire report. All optional: a driver says what it knows. */
export interface FireOutcome {
  /** One line a person reads: "GPIO17 (sysfs 529) = 1", "SIGUSR1 to pid 4242". */
  detail?: string;
  /** Monotonic nanoseconds spent inside fire() itself. */
  costNs?: number;
  /** Camera: how long before the planned instant the shutter was signalled, on purpose. */
  leadNs?: number;
  /** Camera: the file the capture is expected in. */
  file?: string;
  /** Command: the pid of the started program. */
  pid?: number;
  /**
   * What is only known after fire() returned (a command's spawn latency: the
   * time until the child was running). Resolves, never rejects.
   */
  later?: Promise<LaterOutcome>;
}

/**
 * Camera: when the photo's exposure really was, from the frame's own sensor
 * timestamp, in disciplined UTC ns. Row 0 is the first row read out; a
 * rolling shutter exposes the last row later (given when its line time is
 * known). A global shutter exposes every row at once.
 */
export interface ExposureReport {
  /** First row: exposure start and mid-point. */
  startNs: bigint;
  midNs: bigint;
  /** How long each row was exposed, ns. */
  durationNs: number;
  /** Rolling shutter with a known line time: the last row's start and mid-point. */
  lastRowStartNs?: bigint;
  lastRowMidNs?: bigint;
  /** midNs − the instant aimed at, ns: the photo's real timing error. */
  errorNs: number;
  /** The frame's SensorTimestamp (CLOCK_MONOTONIC ns, readout start), as the camera gave it. */
  sensorTimestampNs: bigint;
  /** What the figures rest on: "SensorTimestamp − ExposureTime", "trigger pulse"... */
  basis: string;
}

export interface LaterOutcome {
  /** Camera: the exposure of the photo kept, from its metadata. */
  exposure?: ExposureReport;
  /** Camera: why there is no exposure figure (no metadata from this version...): never invented. */
  exposureUnknown?: string;
  /** Camera: the photo's final file, once it is there. */
  file?: string;
  /** Nanoseconds from fire() to the child process running (command actuator). */
  spawnLatencyNs?: number;
  /** Set when the action failed after fire() returned (the program could not start). */
  error?: string;
  exitCode?: number | null;
}

export interface Actuator {
  /** Human-readable: "gpio GPIO17 via sysfs", "camera rpicam-still". */
  readonly name: string;
  /**
   * Calibrated latency of the device, nanoseconds: the scheduler fires this
   * much BEFORE the planned instant so the physical event lands on it
   * (a camera's signal-to-exposure delay). 0 or absent for GPIO.
   */
  readonly leadNs?: number;
  /** Does the slow work in advance. Throws ActuatorUnavailable with what to do about it. */
  prepare(): Promise<void>;
  /**
   * Synchronous and cheap: one write or one signal. `instantNs` is the planned
   * UTC instant of this fire (before any lead). Throws ActuatorFailed if the
   * device went away.
   */
  fire(instantNs: bigint, input?: FireInput, rehearsal?: boolean): FireOutcome | void;
  /**
   * Optional: what fire() runs, short of acting (no write, no signal), called
   * ~30 µs before each instant with the same arguments. After milliseconds
   * asleep fire()'s code and data are out of the CPU caches; this brings them
   * back. Must not change the device.
   */
  rehearse?(instantNs: bigint, input?: FireInput): void;
  /**
   * Optional, and better than rehearse(): true when fire() called with
   * `rehearsal` true runs its own code up to the act and stops short of it
   * (no write, no signal, nothing recorded), returning nothing. The
   * scheduler's rehearsals and the instant then go through one call site
   * into one function: code first met at the instant costs microseconds on a
   * cold CPU, and a separate rehearse() left the call into fire() and its
   * first lines cold (a fresh `fire blink --driver sim`, first edge, action
   * → recorder: 6–10 µs through rehearse(), 0.4–0.5 µs through fire()). An
   * actuator that does not declare it is never called with `rehearsal`.
   */
  readonly rehearsesInFire?: boolean;
  /** Releases the device in its safe state (LED off). Idempotent. */
  release(): Promise<void>;
}

/** Why an actuator cannot be used here; every reason maps to something a person can do. */
export type UnavailableKind =
  /** A program is not installed: `hint` names the package. */
  | 'missing-binary'
  /** The tools installed are too old or lack a mode we need. */
  | 'unsupported'
  /** No such GPIO line / chip / camera. */
  | 'unknown-device'
  /** Another process holds the line or the camera. */
  | 'busy'
  /** Permission denied: `hint` names the group to join. */
  | 'permission';

/**
 * The actuator cannot work on this machine as configured. The CLI prints
 * message + hint and exits 2: it is the user's setup, not our bug.
 */
export class ActuatorUnavailable extends Error {
  constructor(
    readonly kind: UnavailableKind,
    message: string,
    /** What to do: "install it: sudo apt install gpiod", "sudo usermod -aG gpio $USER, then log in again". */
    readonly hint?: string,
  ) {
    super(hint ? `${message}; ${hint}` : message);
    this.name = 'ActuatorUnavailable';
  }
}

/** The device failed while in use (the gpioset process died, a write failed). */
export class ActuatorFailed extends Error {
  constructor(message: string, override readonly cause?: unknown) {
    super(message);
    this.name = 'ActuatorFailed';
  }
}

/** fire() called before prepare() or after release(): a programming error. */
export class ActuatorNotPrepared extends Error {
  constructor(name: string) {
    super(`${name}: fire() before prepare() or after release()`);
    this.name = 'ActuatorNotPrepared';
  }
}

/** A clock that can tell true time (SimulatedClock) as well as its own reading. */
interface TruthfulClock extends RawClock {
  truthNs(): bigint;
}

function isTruthful(clock: RawClock): clock is TruthfulClock {
  return typeof (clock as Partial<TruthfulClock>).truthNs === 'function';
}

/**
 * A function that reads TRUE time now: a SimulatedClock's truth, otherwise
 * the given clock (the real clock by default, which tracks CLOCK_REALTIME).
 * Used by the simulated recorder, so ten simulated nodes that disagree about
 * the time can still be compared against one truth.
 */
export function truthReader(clock: RawClock = realClock()): () => bigint {
  if (isTruthful(clock)) return () => clock.truthNs();
  return () => clock.nowNs();
}

/**
 * CLOCK_MONOTONIC ns (a kernel timestamp: a camera frame's SensorTimestamp)
 * → UTC ns on the real clock, which trusts the system clock: the default of a
 * driver that was given no Timescale.
 */
export function realUtcAtMonotonic(monotonicNs: bigint): bigint {
  return realClock().atMonotonicNs(monotonicNs);
}

/**
 * CLOCK_REALTIME − CLOCK_MONOTONIC now, ns, measured afresh (a Date.now()
 * edge, sub-µs, up to ~5 ms of spinning): a camera's FrameWallClock is on
 * CLOCK_REALTIME, which chrony or an admin may have slewed or stepped since
 * the process's own anchor was taken.
 */
export function realtimeMinusMonotonicNs(): bigint {
  const anchor = anchorToSystemClock();
  return anchor.epochNs - anchor.hrtimeNs;
}

/** Monotonic nanoseconds, for measuring how long fire() took. */
export function monotonicNs(): bigint {
  return process.hrtime.bigint();
}
