/**
 * The factory `lockstep fire` and the mesh node call: an action spec + a
 * driver choice + options → a PREPARED Actuator (the slow work done), or an
 * ActuatorUnavailable saying what to install or which group to join.
 *
 * Drivers for a blink: gpiod (libgpiod 2's gpioset kept running), sysfs, sim;
 * auto (the default) takes gpiod when libgpiod 2 is installed, else sysfs.
 * A capture uses the camera and a command its program, unless the driver is
 * sim, which records instead of acting, for tests and the demo.
 */
import { existsSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { ActuatorUnavailable, type ActionSpec, type Actuator } from '../src/schedule/actuator.js';
type CaptureAction = Extract<ActionSpec, { kind: 'capture' }>;
import { CameraActuator } from './camera.js';
import { StreamCamera } from './camera-stream.js';
import { TriggerCamera } from './camera-trigger.js';
import type { SensorGeometry } from './camera-metadata.js';
import { installSensorStandIns, SIM_TUNING_FILE, XtrLogLine } from './sensor-sim.js';
import { CommandActuator } from './command.js';
import { detectGpiosetVersion, GpiodGpio, gpiosetUnusable, GPIOD_V2_HINT } from './gpiod.js';
import { SimulatedRecorder, type SimOptions } from './sim.js';
import { DEFAULT_SYSFS_ROOT, SysfsGpio } from './sysfs-gpio.js';

export { CameraActuator } from './camera.js';
export { StreamCamera } from './camera-stream.js';
export { TriggerCamera } from './camera-trigger.js';
export { CommandActuator } from './command.js';
export { GpiodGpio, detectGpiosetVersion } from './gpiod.js';
export { SimulatedRecorder, type SimRecord, type SimOptions } from './sim.js';
export { SysfsGpio, listSysfsChips, pickSysfsChip } from './sysfs-gpio.js';

export type DriverName = 'auto' | 'gpiod' | 'sysfs' | 'sim';
export const DRIVERS: readonly DriverName[] = ['auto', 'gpiod', 'sysfs', 'sim'];

export interface HardwareOptions {
  driver?: DriverName;
  /** sysfs root (tests use a temporary tree). */
  sysfsRoot?: string;
  /** GPIO chip name or label. */
  chip?: string;
  activeLow?: boolean;
  /** Consumer label for gpioinfo. */
  consumer?: string;
  /** Capture directory when the action names none. */
  outDir?: string;
  /** Node name in capture file names (host name by default). */
  node?: string;
  /** Camera lead, ms (its calibrated signal-to-exposure latency). */
  leadMs?: number;
  cameraBinary?: string;
  cameraArgs?: string[];
  cameraWarmupMs?: number;
  /** PATH to find gpioset / rpicam-still / the command in (tests put stand-ins first). */
  pathEnv?: string;
  /** Options for the sim driver. */
  sim?: SimOptions;
  /** Told when a driver falls back to another (gpiod v1 → sysfs). */
  notice?: (message: string) => void;
  /** Capture mode when the action names none (signal by default). */
  cameraMode?: CaptureAction['mode'];
  /** The GPIO line wired to a GS camera's XTR (trigger mode), when the action names none. */
  triggerLine?: number | string;
  /** Line time and rows (rolling shutter's last row), calibrated frame-start offset. */
  cameraGeometry?: SensorGeometry;
  /** CLOCK_MONOTONIC → disciplined UTC: frames' SensorTimestamps are judged on the node's own clock. */
  utcAtMonotonic?: (monotonicNs: bigint) => bigint;
  /**
   * Cameras are the simulated sensor (hardware/sensor-sim.ts) behind the
   * real drivers: the demo and benchmarks take 'photos' without a camera.
   * Its XTR input is a log the simulator follows, not a GPIO line.
   */
  cameraSim?: boolean;
}

/** One stand-in bin directory per process (the simulated sensor's wrappers). */
let simBin: string | undefined;
/** The simulated sensor's sync client stays on loopback (tests and the demo talk to nothing else). */
const SIM_SYNC_INTERFACE = '127.0.0.1';
function simulatedCameraPath(options: HardwareOptions): string {
  if (!simBin) {
    simBin = mkdtempSync(join(tmpdir(), 'lockstep-sensor-sim-'));
    installSensorStandIns(simBin);
  }
  process.env.STANDIN_LOG_DIR ??= simBin; // where the simulated XTR line's log goes
  return `${simBin}${delimiter}${options.pathEnv ?? process.env.PATH ?? ''}`;
}

/** The camera actuator for a capture's mode. */
async function cameraActuator(action: CaptureAction, options: HardwareOptions): Promise<Actuator> {
  const outDir = action.outDir ?? options.outDir ?? process.cwd();
  const pathEnv = options.cameraSim ? simulatedCameraPath(options) : options.pathEnv;
  const mode = action.mode ?? options.cameraMode ?? 'signal';
  const common = { outDir, node: options.node, pathEnv, extraArgs: options.cameraArgs, warmupMs: options.cameraWarmupMs, utcAtMonotonic: options.utcAtMonotonic };
  switch (mode) {
    case 'signal':
      return new CameraActuator({ ...common, binary: options.cameraBinary, leadMs: options.leadMs, geometry: options.cameraGeometry });
    case 'stream': {
      const sim = options.cameraSim ? { env: { ...process.env, LIBCAMERA_RPI_TUNING_FILE: join(simBin!, SIM_TUNING_FILE), STANDIN_SENSOR_SYNC_JOIN: SIM_SYNC_INTERFACE }, syncInterface: SIM_SYNC_INTERFACE } : {};
      return new StreamCamera({ ...common, fps: action.fps, shutterUs: action.shutterUs, geometry: options.cameraGeometry, phaseLock: action.phaseLock, ...sim });
    }
    case 'trigger': {
      const line = action.triggerLine ?? options.triggerLine;
      if (line === undefined) throw new ActuatorUnavailable('unsupported', 'trigger mode needs the GPIO line wired to the camera\'s XTR, and this node has none', 'give --trigger-line N (hardware/README.md: GS camera trigger)');
      const gpio = options.cameraSim ? new XtrLogLine(line) : await gpioActuator(line, { ...options, activeLow: true });
      // The simulated sensor is told it is in trigger mode with XTR on that line (trigger_mode=1 and the wiring).
      const env = options.cameraSim ? { ...process.env, STANDIN_SENSOR_TRIGGER_LINE: String(line) } : undefined;
      return new TriggerCamera({ ...common, shutterUs: action.shutterUs, gpio, frameStartOffsetNs: options.cameraGeometry?.frameStartOffsetNs, env });
    }
  }
}

/** Chooses and constructs the GPIO actuator (not yet prepared). */
async function gpioActuator(line: number | string, options: HardwareOptions): Promise<Actuator> {
  const driver = options.driver ?? 'auto';
  const sysfsRoot = options.sysfsRoot ?? DEFAULT_SYSFS_ROOT;
  const sysfs = () => new SysfsGpio({ line, root: sysfsRoot, chip: options.chip, activeLow: options.activeLow });
  const gpiod = () => new GpiodGpio({ line, chip: options.chip, activeLow: options.activeLow, consumer: options.consumer, pathEnv: options.pathEnv });
  if (driver === 'sysfs') return sysfs();
  let why: string;
  let hint = GPIOD_V2_HINT;
  try {
    const version = await detectGpiosetVersion(options.pathEnv);
    const unusable = gpiosetUnusable(version);
    if (!unusable) return gpiod();
    ({ reason: why, hint } = unusable);
  } catch (error) {
    if (!(error instanceof ActuatorUnavailable)) throw error;
    why = error.message;
  }
  if (existsSync(sysfsRoot)) {
    options.notice?.(`${why}: using sysfs (${sysfsRoot}) instead`);
    return sysfs();
  }
  throw new ActuatorUnavailable('unsupported', `no usable GPIO driver: ${why}, and there is no sysfs GPIO at ${sysfsRoot}`, hint.replace(/,? (— )?or use --driver sysfs$/, ''));
}

/** Constructs the actuator for an action without preparing it. */
export async function buildActuator(action: ActionSpec, options: HardwareOptions = {}): Promise<Actuator> {
  if (action.kind === 'capture' && (options.cameraSim || (action.mode ?? options.cameraMode ?? 'signal') !== 'signal')) {
    // Modes beyond signal have no simulated recorder: the simulated sensor stands in (cameraSim).
    if (options.driver === 'sim' && !options.cameraSim) throw new ActuatorUnavailable('unsupported', `--driver sim has no ${action.mode} camera`, 'run the node with --camera-sim (the simulated sensor)');
    return cameraActuator(action, options);
  }
  if (options.driver === 'sim') {
    const leadNs = action.kind === 'capture' ? Math.round((options.leadMs ?? 0) * 1e6) : 0;
    // A simulated camera whose latency is exactly the calibrated lead: its exposure lands on the target.
    return new SimulatedRecorder({ name: `simulated ${action.kind}`, leadNs, latencyNs: leadNs, ...options.sim });
  }
  switch (action.kind) {
    case 'blink':
      return gpioActuator(action.line, options);
    case 'capture':
      return cameraActuator(action, options);
    case 'command':
      return new CommandActuator({ argv: action.argv, pathEnv: options.pathEnv });
  }
}

/** Builds and prepares the actuator: ready to fire. Throws ActuatorUnavailable with what to do. */
export async function createActuator(action: ActionSpec, options: HardwareOptions = {}): Promise<Actuator> {
  const actuator = await buildActuator(action, options);
  await actuator.prepare();
  return actuator;
}
