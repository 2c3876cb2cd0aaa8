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
import { existsSync } from 'node:fs';
import { ActuatorUnavailable, type ActionSpec, type Actuator } from '../src/schedule/actuator.js';
import { CameraActuator } from './camera.js';
import { CommandActuator } from './command.js';
import { detectGpiosetVersion, GpiodGpio, gpiosetUnusable, GPIOD_V2_HINT } from './gpiod.js';
import { SimulatedRecorder, type SimOptions } from './sim.js';
import { DEFAULT_SYSFS_ROOT, SysfsGpio } from './sysfs-gpio.js';

export { CameraActuator } from './camera.js';
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
  if (options.driver === 'sim') {
    const leadNs = action.kind === 'capture' ? Math.round((options.leadMs ?? 0) * 1e6) : 0;
    // A simulated camera whose latency is exactly the calibrated lead: its exposure lands on the target.
    return new SimulatedRecorder({ name: `simulated ${action.kind}`, leadNs, latencyNs: leadNs, ...options.sim });
  }
  switch (action.kind) {
    case 'blink':
      return gpioActuator(action.line, options);
    case 'capture':
      return new CameraActuator({
        outDir: action.outDir ?? options.outDir ?? process.cwd(),
        node: options.node,
        leadMs: options.leadMs,
        binary: options.cameraBinary,
        extraArgs: options.cameraArgs,
        warmupMs: options.cameraWarmupMs,
        pathEnv: options.pathEnv,
      });
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
