/**
 * GPIO through the kernel's character device, with libgpiod v2's `gpioset`
 * kept running in interactive mode: prepare() starts it holding the line at 0
 * and waits for its first "gpioset> " prompt (the line is requested by then);
 * fire() writes one line, "set GPIO17=1\n", to its stdin. gpioset answers every
 * command with a new prompt, which we count as acknowledgements.
 *
 * Its stdin is a FIFO we made and hold open, not a Node stream: fire() is a
 * plain write(2) on a file descriptor (a couple of µs), not a trip through
 * the Writable machinery (tens of µs, more when it decides to queue).
 *
 * libgpiod v1 tools (Debian bookworm's 1.6) have no interactive mode, and a
 * libgpiod 2 built without --enable-gpioset-interactive has none either (its
 * --help then lists no --interactive, and -i is an "invalid option"):
 * detectGpiosetVersion() tells, and the factory falls back to sysfs or says
 * what to install.
 */
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { closeSync, fstatSync, mkdtempSync, openSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ActuatorFailed, ActuatorNotPrepared, ActuatorUnavailable, monotonicNs, type Actuator, type FireInput, type FireOutcome } from '../src/schedule/actuator.js';
import { findExecutable, probe } from './executables.js';
import { GPIO_GROUP_HINT, WARM_UP_FIRES } from './sysfs-gpio.js';

const PROMPT = 'gpioset> ';
/** Requesting a line takes milliseconds; a gpioset that says nothing for this long is stuck. */
const READY_TIMEOUT_MS = 5000;
/** How long release() waits for `exit` before SIGTERM. */
const EXIT_GRACE_MS = 1000;
/**
 * Commands written but not acknowledged beyond this mean gpioset is stuck; we
 * stop before the 64 KiB pipe fills and a write would block at an instant.
 */
const MAX_UNACKED = 1000;

export const GPIOD_V2_HINT =
  'gpioset -i needs libgpiod 2 tools: Debian trixie / Ubuntu 24.04+: sudo apt install gpiod; ' +
  'on bookworm: the gpiod package from bookworm-backports if available, or build libgpiod 2 — or use --driver sysfs';
export const GPIOSET_INTERACTIVE_HINT =
  'build libgpiod 2 with interactive mode (./configure --enable-tools --enable-gpioset-interactive, needs libedit), or use --driver sysfs';

export interface GpiosetVersion {
  path: string;
  major: number;
  version: string;
  /** Whether its --help lists --interactive (libgpiod 2 can be built without it). */
  interactive: boolean;
}

/** Finds gpioset on PATH, reads its version ("gpioset (libgpiod) v2.1.3") and whether it has -i. */
export async function detectGpiosetVersion(pathEnv?: string): Promise<GpiosetVersion> {
  const path = findExecutable('gpioset', pathEnv);
  if (!path) throw new ActuatorUnavailable('missing-binary', 'gpioset is not installed', 'install the libgpiod tools: sudo apt install gpiod (version 2 for --driver gpiod)');
  const result = await probe(path, ['--version']);
  const match = /v?(\d+)\.(\d+)(?:\.(\d+))?/.exec(result.stdout + result.stderr);
  if (!match) throw new ActuatorUnavailable('unsupported', `cannot tell the version of ${path} (it printed: ${(result.stdout + result.stderr).trim().slice(0, 120) || 'nothing'})`, GPIOD_V2_HINT);
  const major = Number(match[1]);
  let interactive = false;
  if (major >= 2) {
    const help = await probe(path, ['--help']);
    const text = help.stdout + help.stderr;
    // A help we could not read proves nothing: let the start itself tell (classifyGpiosetFailure).
    interactive = text.trim() === '' || /--interactive\b/.test(text);
  }
  return { path, major, version: match[0].replace(/^v/, ''), interactive };
}

/** Why this gpioset cannot be kept running for --driver gpiod (and what to do), or undefined when it can. */
export function gpiosetUnusable(version: GpiosetVersion): { reason: string; hint: string } | undefined {
  if (version.major < 2) return { reason: `${version.path} is libgpiod ${version.version}, which has no interactive mode (gpioset -i)`, hint: GPIOD_V2_HINT };
  if (!version.interactive) return { reason: `${version.path} is libgpiod ${version.version} built without interactive mode (gpioset -i)`, hint: GPIOSET_INTERACTIVE_HINT };
  return undefined;
}

export interface GpiodOptions {
  /** BCM number (17) or line name ("GPIO17"). */
  line: number | string;
  /** Chip (gpiochip0, or its label): with it, numbers are offsets on that chip; without, 17 means the line named GPIO17. */
  chip?: string;
  activeLow?: boolean;
  /** Consumer label shown by gpioinfo. */
  consumer?: string;
  /** PATH to look gpioset up in (tests put stand-ins first). */
  pathEnv?: string;
}

/** How gpioset names the line on its command line and in `set`. */
export function gpiosetLineId(line: number | string, chip?: string): string {
  if (typeof line === 'number' && chip === undefined) return `GPIO${line}`; // the Pi's line names; works on a Pi 4 and a Pi 5 alike
  return String(line);
}

/** Turns what gpioset printed before dying into what the user must do. */
export function classifyGpiosetFailure(output: string, lineId: string): ActuatorUnavailable | ActuatorFailed {
  const text = output.trim();
  if (/permission denied|operation not permitted/i.test(text)) return new ActuatorUnavailable('permission', `gpioset may not open the GPIO chip (${text})`, GPIO_GROUP_HINT);
  if (/busy/i.test(text)) return new ActuatorUnavailable('busy', `line ${lineId} is held by another process or driver (${text})`, 'find the holder with gpioinfo and stop it');
  // Before the line check: getopt's "invalid option -- 'i'" is about the build, not the line.
  if (/unrecognized option|invalid option|unknown option/i.test(text)) {
    return new ActuatorUnavailable('unsupported', `this gpioset has no interactive mode (${text})`, `${GPIOSET_INTERACTIVE_HINT}; libgpiod 1.x: ${GPIOD_V2_HINT}`);
  }
  if (/cannot find line|not find|no such|invalid|not found|out of range/i.test(text)) {
    return new ActuatorUnavailable('unknown-device', `gpioset cannot find line ${lineId} (${text})`, 'list the lines with gpioinfo; give a name it shows (GPIO17) or --chip with an offset');
  }
  return new ActuatorFailed(`gpioset exited: ${text || 'without a message'}`);
}

export class GpiodGpio implements Actuator {
  readonly name: string;
  private child: ChildProcess | undefined;
  private readonly lineId: string;
  private output = '';
  private prompts = 0;
  private readonly encoded: { on: Buffer; off: Buffer };
  /** Our write end of the FIFO that is gpioset's stdin. */
  private fd: number | undefined;
  private fifoDir: string | undefined;
  private written = 0;
  /** Called with the ack count each time gpioset prints a prompt (benchmarks wait on it). */
  onAck: ((acks: number) => void) | undefined;
  /** Called with everything gpioset prints on stdout (a benchmark's stand-in reports when it read each line). */
  onOutput: ((chunk: string) => void) | undefined;

  constructor(private readonly options: GpiodOptions) {
    this.lineId = gpiosetLineId(options.line, options.chip);
    this.name = `gpio ${this.lineId} via gpioset -i`;
    // Built once: fire() does no formatting.
    this.encoded = { on: Buffer.from(`set ${this.lineId}=1\n`), off: Buffer.from(`set ${this.lineId}=0\n`) };
  }

  /** Prompts seen: 1 after the line was requested, then one per command processed. */
  get acknowledged(): number {
    return this.prompts;
  }

  async prepare(): Promise<void> {
    if (this.child) return;
    const version = await detectGpiosetVersion(this.options.pathEnv);
    const unusable = gpiosetUnusable(version);
    if (unusable) throw new ActuatorUnavailable('unsupported', unusable.reason, unusable.hint);
    const args = ['-i', '-C', this.options.consumer ?? 'lockstep'];
    if (this.options.activeLow) args.push('-l');
    if (this.options.chip !== undefined) args.push('-c', this.options.chip);
    args.push(`${this.lineId}=0`);
    // The FIFO: gpioset gets a read-write end (so it never sees EOF when we close ours), we keep a write end.
    this.fifoDir = mkdtempSync(join(tmpdir(), 'lockstep-gpioset-'));
    const fifo = join(this.fifoDir, 'stdin');
    execFileSync('mkfifo', ['-m', '600', fifo]);
    const childEnd = openSync(fifo, 'r+');
    this.fd = openSync(fifo, 'w');
    this.written = 0;
    const child = spawn(version.path, args, { stdio: [childEnd, 'pipe', 'pipe'] });
    closeSync(childEnd);
    this.child = child;
    // If this process ends without release() (an uncaught error), do not leave gpioset holding the line.
    const onProcessExit = () => child.kill('SIGTERM');
    process.once('exit', onProcessExit);
    child.once('exit', () => process.off('exit', onProcessExit));
    child.stdout!.setEncoding('utf8');
    child.stderr!.setEncoding('utf8');
    child.stdout!.on('data', (chunk: string) => {
      this.onOutput?.(chunk);
      let at = chunk.indexOf(PROMPT);
      while (at !== -1) {
        this.prompts++;
        this.onAck?.(this.prompts);
        at = chunk.indexOf(PROMPT, at + PROMPT.length);
      }
      if (this.output.length < 4096) this.output += chunk.replaceAll(PROMPT, '');
    });
    child.stderr!.on('data', (chunk: string) => {
      if (this.output.length < 4096) this.output += chunk;
    });
    try {
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new ActuatorFailed(`gpioset did not get ready within ${READY_TIMEOUT_MS} ms (${this.output.trim() || 'no output'})`)), READY_TIMEOUT_MS);
        const onExit = () => {
          clearTimeout(timer);
          reject(classifyGpiosetFailure(this.output, this.lineId));
        };
        child.once('exit', onExit);
        child.once('error', (error) => {
          clearTimeout(timer);
          reject(new ActuatorFailed(`cannot start gpioset: ${error.message}`, error));
        });
        const previous = this.onAck;
        this.onAck = (acks) => {
          previous?.(acks);
          if (acks >= 1) {
            clearTimeout(timer);
            child.off('exit', onExit);
            this.onAck = previous;
            resolve();
          }
        };
      });
    } catch (error) {
      child.kill('SIGKILL');
      this.child = undefined;
      this.closeFifo();
      throw error;
    }
    // The line is at 0 already: these change nothing but run fire()'s code once before the first real edge.
    for (let i = 0; i < WARM_UP_FIRES; i++) this.fire(0n, { level: 0 });
  }

  private closeFifo(): void {
    if (this.fd !== undefined) closeSync(this.fd);
    this.fd = undefined;
    if (this.fifoDir) rmSync(this.fifoDir, { recursive: true, force: true });
    this.fifoDir = undefined;
  }

  /** fire()'s rehearsal: everything but the write (an fstat(2) of the FIFO instead). */
  rehearse(instantNs: bigint = 0n, input: FireInput = {}): void {
    if (this.child && this.fd !== undefined) this.fire(instantNs, input, true);
  }

  /** The scheduler rehearses through fire() itself (Actuator.rehearsesInFire). */
  readonly rehearsesInFire = true;

  /** One write(2) of "set LINE=V\n" on gpioset's stdin FIFO (rehearsal: an fstat(2) of it, nothing written). */
  fire(instantNs: bigint, input?: FireInput, rehearsal?: false): FireOutcome;
  fire(instantNs: bigint, input: FireInput | undefined, rehearsal: boolean): FireOutcome | undefined;
  fire(_instantNs: bigint, input: FireInput = {}, rehearsal = false): FireOutcome | undefined {
    const child = this.child;
    const fd = this.fd;
    if (!child || fd === undefined) throw new ActuatorNotPrepared(this.name);
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new ActuatorFailed(`gpioset exited (${this.output.trim() || `code ${child.exitCode ?? child.signalCode}`})`);
    }
    if (this.written - (this.prompts - 1) > MAX_UNACKED) throw new ActuatorFailed(`gpioset stopped answering (${this.written - this.prompts + 1} commands unacknowledged)`);
    const level = input.level ?? 1;
    const start = monotonicNs();
    if (rehearsal) {
      fstatSync(fd);
      return undefined;
    }
    writeSync(fd, level ? this.encoded.on : this.encoded.off);
    this.written++;
    return { costNs: Number(monotonicNs() - start), detail: `${this.lineId} = ${level} (gpioset pid ${child.pid})` };
  }

  /** Drives the line to 0, asks gpioset to exit (which releases the line), SIGTERM if it lingers. */
  async release(): Promise<void> {
    const child = this.child;
    if (!child) return;
    this.child = undefined;
    if (child.exitCode === null && child.signalCode === null) {
      const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
      try {
        writeSync(this.fd!, this.encoded.off);
        writeSync(this.fd!, 'exit\n');
      } catch {
        /* it is going anyway */
      }
      const timer = setTimeout(() => child.kill('SIGTERM'), EXIT_GRACE_MS);
      await exited;
      clearTimeout(timer);
    }
    this.closeFifo();
  }
}
