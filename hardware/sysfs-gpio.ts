/**
 * GPIO through sysfs (/sys/class/gpio): the line is exported, made an output
 * and its value file opened in prepare(); fire() is one write(2) of "1" or "0"
 * on that open file descriptor.
 *
 * Line numbers: users name a BCM pin (17) or a line name (GPIO17). sysfs
 * numbers are global, base + offset, and the base moves between kernels
 * (0 on older Pi kernels, 512 on a Pi 4 with 6.6+, 571 on a Pi 5), so the base
 * is read from gpiochip*\/base of the chip whose label is the Pi header's
 * pin controller, never assumed.
 */
import { closeSync, existsSync, fstatSync, openSync, readdirSync, readFileSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { ActuatorFailed, ActuatorNotPrepared, ActuatorUnavailable, monotonicNs, type Actuator, type FireInput, type FireOutcome } from '../src/schedule/actuator.js';

export const DEFAULT_SYSFS_ROOT = '/sys/class/gpio';

/**
 * Labels of the chip that drives the 40-pin header, most specific first:
 * a Pi 5's RP1, a Pi 4's BCM2711, the BCM2835 family (Pi 1–3, Zero).
 */
export const PI_HEADER_LABELS = ['pinctrl-rp1', 'pinctrl-bcm2712', 'pinctrl-bcm2711', 'pinctrl-bcm2835', 'raspberrypi-gpio'];

/** After `export`, udev may take a moment to create gpioN and hand it to the gpio group. */
const EXPORT_SETTLE_MS = 2000;
const EXPORT_POLL_MS = 20;

export const GPIO_GROUP_HINT = 'add yourself to the gpio group: sudo usermod -aG gpio $USER, then log in again (or run as root)';

export interface SysfsChip {
  /** "gpiochip512" */
  name: string;
  base: number;
  ngpio: number;
  label: string;
}

export function listSysfsChips(root = DEFAULT_SYSFS_ROOT): SysfsChip[] {
  let entries: string[];
  try {
    entries = readdirSync(root);
  } catch (error) {
    throw sysfsRootError(root, error);
  }
  const chips: SysfsChip[] = [];
  for (const name of entries.filter((e) => /^gpiochip\d+$/.test(e))) {
    try {
      const read = (file: string) => readFileSync(join(root, name, file), 'utf8').trim();
      chips.push({ name, base: Number(read('base')), ngpio: Number(read('ngpio')), label: read('label') });
    } catch {
      /* a chip we cannot read is not one we can use */
    }
  }
  return chips.sort((a, b) => a.base - b.base);
}

function sysfsRootError(root: string, error: unknown): Error {
  const code = (error as NodeJS.ErrnoException).code;
  if (code === 'ENOENT') {
    return new ActuatorUnavailable('unknown-device', `no sysfs GPIO at ${root}: this kernel was built without CONFIG_GPIO_SYSFS`, 'use --driver gpiod (libgpiod 2 tools) instead');
  }
  if (code === 'EACCES' || code === 'EPERM') return new ActuatorUnavailable('permission', `cannot read ${root}`, GPIO_GROUP_HINT);
  return new ActuatorFailed(`cannot read ${root}: ${(error as Error).message}`, error);
}

/**
 * The chip for BCM numbers: the one named (by gpiochipN or label), else the
 * Pi header's pin controller, else the only chip there is.
 */
export function pickSysfsChip(chips: SysfsChip[], wanted?: string): SysfsChip {
  const list = () => chips.map((c) => `${c.name} [${c.label}] base ${c.base}`).join(', ') || 'none';
  if (wanted !== undefined) {
    const chip = chips.find((c) => c.name === wanted || c.label === wanted || `gpiochip${c.base}` === wanted);
    if (!chip) throw new ActuatorUnavailable('unknown-device', `no GPIO chip '${wanted}' (have: ${list()})`, 'name one of those with --chip');
    return chip;
  }
  for (const label of PI_HEADER_LABELS) {
    const chip = chips.find((c) => c.label === label);
    if (chip) return chip;
  }
  if (chips.length === 1) return chips[0]!;
  throw new ActuatorUnavailable('unknown-device', `cannot tell which GPIO chip is the header (have: ${list()})`, 'name it with --chip LABEL');
}

/** "17" / 17 / "GPIO17" → offset 17 on the header chip. Other names need the character device. */
export function lineOffset(line: number | string): number {
  if (typeof line === 'number') return line;
  const match = /^(?:GPIO|BCM)?(\d+)$/i.exec(line);
  if (!match) {
    throw new ActuatorUnavailable('unknown-device', `sysfs cannot look up the line name '${line}' (it only knows numbers)`, 'give the BCM number (17 or GPIO17), or use --driver gpiod, which resolves names');
  }
  return Number(match[1]);
}

export interface SysfsGpioOptions {
  line: number | string;
  root?: string;
  /** Chip name or label; the Pi header's by default. */
  chip?: string;
  /** Invert: 1 drives the pin low (an LED wired to 3.3 V through its resistor). */
  activeLow?: boolean;
}

const ONE = Buffer.from('1');
const ZERO = Buffer.from('0');
/**
 * fire()s at level 0 at the end of prepare(): the line is already 0, so they
 * change nothing, but they run fire()'s code once cold; measured here, the
 * first write(2) through node costs ~150 µs, the third ~10 µs.
 */
export const WARM_UP_FIRES = 3;

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** What a failed export or configure of a line means for the user (the errno the kernel gave). */
export function sysfsError(error: unknown, line: number | string, number: number, what: string): Error {
  const code = (error as NodeJS.ErrnoException).code;
  const which = `GPIO ${line} (sysfs ${number})`;
  switch (code) {
    case 'EACCES':
    case 'EPERM':
      return new ActuatorUnavailable('permission', `permission denied to ${what} ${which}`, GPIO_GROUP_HINT);
    case 'EBUSY':
      return new ActuatorUnavailable('busy', `${which} is in use by another driver or process`, 'find the holder with gpioinfo (a running gpioset, an overlay in /boot/firmware/config.txt) and stop it');
    case 'EINVAL':
    case 'ENOENT':
      return new ActuatorUnavailable('unknown-device', `the kernel refused ${which}: no such line`, 'check the pin number (BCM numbering) and --chip');
    default:
      return new ActuatorFailed(`cannot ${what} ${which}: ${(error as Error).message}`, error);
  }
}

export class SysfsGpio implements Actuator {
  readonly name: string;
  /** The global sysfs number (base + offset), known after prepare(). */
  number: number | undefined;
  private readonly root: string;
  private fd: number | undefined;
  private exportedByUs = false;

  constructor(private readonly options: SysfsGpioOptions) {
    this.root = options.root ?? DEFAULT_SYSFS_ROOT;
    this.name = `gpio ${options.line} via sysfs`;
  }

  async prepare(): Promise<void> {
    if (this.fd !== undefined) return;
    const offset = lineOffset(this.options.line);
    const chip = pickSysfsChip(listSysfsChips(this.root), this.options.chip);
    if (offset >= chip.ngpio) {
      throw new ActuatorUnavailable('unknown-device', `line ${offset} does not exist: ${chip.name} [${chip.label}] has ${chip.ngpio} lines`, 'check the pin number (BCM numbering, not the physical pin)');
    }
    const number = chip.base + offset;
    this.number = number;
    const dir = join(this.root, `gpio${number}`);
    await this.export(number, dir);
    const activeLow = this.options.activeLow ? '1' : '0';
    // The kernel's "low"/"high" set the RAW level with the switch to output
    // (gpiod_direction_output_raw, ignoring active_low), so inactive is "high"
    // when active-low: the line starts off, with no flash before the first fire().
    const direction = this.options.activeLow ? 'high' : 'low';
    await this.retryWhileSettling(() => {
      if (existsSync(join(dir, 'active_low'))) writeFileSync(join(dir, 'active_low'), activeLow);
      writeFileSync(join(dir, 'direction'), direction);
      this.fd = openSync(join(dir, 'value'), 'r+');
    }, number);
    for (let i = 0; i < WARM_UP_FIRES; i++) this.fire(0n, { level: 0 });
  }

  private async export(number: number, dir: string): Promise<void> {
    try {
      writeFileSync(join(this.root, 'export'), String(number));
      this.exportedByUs = true;
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code === 'EBUSY' && existsSync(dir)) return; // already exported (by us earlier, or by a script): reuse it
      throw sysfsError(error, this.options.line, number, 'export');
    }
    const deadline = Date.now() + EXPORT_SETTLE_MS;
    while (!existsSync(dir)) {
      if (Date.now() > deadline) throw new ActuatorFailed(`exported GPIO ${number} but ${dir} did not appear within ${EXPORT_SETTLE_MS} ms`);
      await sleep(EXPORT_POLL_MS);
    }
  }

  /** Right after export the files may still be root's until udev hands them to the gpio group. */
  private async retryWhileSettling(step: () => void, number: number): Promise<void> {
    const deadline = Date.now() + EXPORT_SETTLE_MS;
    for (;;) {
      try {
        step();
        return;
      } catch (error) {
        const code = (error as NodeJS.ErrnoException).code;
        if ((code === 'EACCES' || code === 'EPERM') && this.exportedByUs && Date.now() < deadline) {
          await sleep(EXPORT_POLL_MS);
          continue;
        }
        throw sysfsError(error, this.options.line, number, 'configure');
      }
    }
  }

  /** fire()'s rehearsal: an fstat(2) of the same fd where the write would be. */
  rehearse(instantNs: bigint = 0n, input: FireInput = {}): void {
    if (this.fd !== undefined) this.fire(instantNs, input, true);
  }

  /** The scheduler rehearses through fire() itself (Actuator.rehearsesInFire). */
  readonly rehearsesInFire = true;

  /** One write(2) of "1" or "0" on the open value file (rehearsal: an fstat(2) of it, nothing written). */
  fire(instantNs: bigint, input?: FireInput, rehearsal?: false): FireOutcome;
  fire(instantNs: bigint, input: FireInput | undefined, rehearsal: boolean): FireOutcome | undefined;
  fire(_instantNs: bigint, input: FireInput = {}, rehearsal = false): FireOutcome | undefined {
    const fd = this.fd;
    if (fd === undefined) throw new ActuatorNotPrepared(this.name);
    const level = input.level ?? 1;
    const start = monotonicNs();
    try {
      if (rehearsal) fstatSync(fd);
      else writeSync(fd, level ? ONE : ZERO);
    } catch (error) {
      if (rehearsal) return undefined; // the real fire reports it
      throw new ActuatorFailed(`${this.name}: write failed: ${(error as Error).message}`, error);
    }
    if (rehearsal) return undefined;
    return { costNs: Number(monotonicNs() - start), detail: `GPIO${lineOffset(this.options.line)} (sysfs ${this.number}) = ${level}` };
  }

  /** Drives the line inactive (LED off), closes it, unexports it if we exported it. */
  async release(): Promise<void> {
    const fd = this.fd;
    if (fd === undefined) return;
    this.fd = undefined;
    try {
      writeSync(fd, ZERO);
    } catch {
      /* best effort: the line may be gone */
    }
    closeSync(fd);
    if (this.exportedByUs && this.number !== undefined) {
      try {
        writeFileSync(join(this.root, 'unexport'), String(this.number));
      } catch {
        /* leaving it exported is harmless */
      }
      this.exportedByUs = false;
    }
  }
}
