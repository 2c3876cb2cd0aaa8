/**
 * Camera: a pre-started `rpicam-still` (or the older `libcamera-still`) in
 * signal mode. prepare() starts it with `--signal -t 0` (wait for signals
 * forever), `--zsl` when this version has it (the still stream stays
 * configured, so a capture needs no mode switch), no preview, and an output
 * pattern in the target directory; fire() is one kill(2) with SIGUSR1.
 *
 * Not `--immediate`: it configures the still stream at start and saves the
 * very first frame, an unwanted photo before any signal.
 *
 * The file rpicam-still writes (a staging name with its frame counter) is
 * renamed after the trigger and the node: <name>-<node>-<index>.jpg, never
 * over an existing file (a taken name moves on to the next free index).
 * Some versions exit after a capture: the process is restarted at once. One
 * that exits without a capture, or fails to restart, is retried with backoff
 * up to a limit, then given up on; a capture signalled while it is not
 * running fails loudly with the reason.
 *
 * The lead (--lead-ms) is the calibrated delay from signal to exposure
 * (rpicam-still looks at signals once per viewfinder frame, plus the
 * exposure): the scheduler fires that much early, and reports it.
 *
 * The signal only chooses WHICH frame is saved (the next one in the
 * pipeline, which may have started before the signal: CAMERA-NOTES.md §1),
 * so a capture is judged by the frame's own metadata: with `--metadata -`
 * rpicam-still prints each saved still's SensorTimestamp on stdout, and the
 * report carries the exposure it implies, in disciplined UTC, and its error
 * against the instant. A version without --metadata says so instead.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, renameSync, statSync, unlinkSync } from 'node:fs';
import { hostname } from 'node:os';
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
import { findExecutable, probe } from './executables.js';
import { claimPhotoName, diskHint, ensureDir, safeNamePart } from './camera-files.js';
import { JsonObjectSplitter, exposureReport, frameExposure, parseFrameMetadata, type FrameMetadata, type SensorGeometry } from './camera-metadata.js';

export const CAMERA_BINARIES = ['rpicam-still', 'libcamera-still'];
export const VIDEO_GROUP_HINT = 'add yourself to the video group: sudo usermod -aG video $USER, then log in again';
export const CAMERA_INSTALL_HINT = 'install rpicam-apps: sudo apt install rpicam-apps (Raspberry Pi OS; older releases call it libcamera-apps)';

/** rpicam-still opens the camera and runs the AGC/AWB for a while before a capture looks right. */
export const DEFAULT_WARMUP_MS = 1500;
/** A camera program that prints nothing at start (libcamera's log turned off) is taken as started this long after its warm-up. */
export const SILENT_START_MS = 5000;
/** How long after a capture we wait for the file to appear and settle before giving up on renaming it. */
const FILE_WAIT_MS = 10_000;
const FILE_POLL_MS = 50;
/**
 * After an exit without a capture (or a failed restart) the next start waits
 * this long, doubling each time up to MAX_RESTART_BACKOFF_MS: a camera held
 * for a moment by another program gets time to be freed, a crash loop does
 * not spin.
 */
export const DEFAULT_RESTART_BACKOFF_MS = 1000;
const MAX_RESTART_BACKOFF_MS = 8000;
/**
 * Failed restarts in a row (exited without a capture, or did not start)
 * before we give up, after 1+2+4+8+8 s of trying: enough for a transient,
 * short enough that a broken setup is reported within half a minute instead
 * of retried forever.
 */
export const DEFAULT_RESTART_LIMIT = 5;

export interface CameraOptions {
  outDir: string;
  /** Node name in file names; the host name by default. */
  node?: string;
  /** Calibrated signal-to-exposure latency, ms: fire this much early. */
  leadMs?: number;
  /** rpicam-still, libcamera-still, or a path. Found on PATH by default. */
  binary?: string;
  /** Extra rpicam-still options (--width 2028 --height 1520 ...). */
  extraArgs?: string[];
  /** How long to let the camera settle after start, ms. */
  warmupMs?: number;
  pathEnv?: string;
  /** File extension, matching --encoding (jpg by default). */
  extension?: string;
  /** Rename each capture after its trigger and node (default true); false leaves rpicam-still's names (benchmarks). */
  nameFiles?: boolean;
  /** First wait before restarting a camera that exited without a capture, ms (doubles each time). */
  restartBackoffMs?: number;
  /** Failed restarts in a row before giving up. */
  restartLimit?: number;
  /** Line time and rows, for the last row's exposure (rolling shutter); calibrated frame-start offset. */
  geometry?: SensorGeometry;
  /** CLOCK_MONOTONIC → disciplined UTC (the node's Timescale); the system clock by default. */
  utcAtMonotonic?: (monotonicNs: bigint) => bigint;
}

interface PendingCapture {
  staging: string;
  final: string;
  firedAtMs: number;
  instantNs: bigint;
  /** Which start of the process and which of its captures: the n-th metadata object it prints. */
  generation: number;
  index: number;
}

/** Metadata objects kept for captures not (yet) waiting for them. */
const MAX_UNCLAIMED_METADATA = 64;
/** Why a capture has no exposure figure when this rpicam-still cannot print metadata. */
const NO_METADATA = 'this rpicam-still has no --metadata: when the photo was exposed is unknown (the signal only chose which frame was saved)';

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

const safe = safeNamePart;

/**
 * A camera program's --help text, which says what this version can do
 * (--zsl, --metadata, --segment). A probe that gets no answer in time (a
 * heavily loaded machine) is asked again with more patience rather than
 * taken for an old version, and then refused with the reason.
 */
const PATIENT_PROBE_MS = 30_000;
export async function cameraHelp(path: string): Promise<string> {
  let help = await probe(path, ['--help']);
  if (!(help.stdout + help.stderr).trim()) help = await probe(path, ['--help'], PATIENT_PROBE_MS);
  const text = help.stdout + help.stderr;
  if (!text.trim()) throw new ActuatorUnavailable('unsupported', `${path} --help printed nothing (exit ${help.code ?? 'timed out'}): cannot tell what this version can do`, 'check that the program runs: ' + path + ' --help');
  return text;
}

export function classifyCameraFailure(output: string, binary: string): ActuatorUnavailable | ActuatorFailed {
  const text = output.trim().split('\n').slice(-3).join(' | ');
  if (/permission denied|operation not permitted/i.test(output)) return new ActuatorUnavailable('permission', `${binary} may not open the camera (${text})`, VIDEO_GROUP_HINT);
  if (/no cameras available|no camera|camera .* not found|failed to acquire|could not open/i.test(output)) {
    if (/busy|acquire/i.test(output)) return new ActuatorUnavailable('busy', `the camera is in use (${text})`, 'stop the other camera program (another rpicam-still, a motion service)');
    return new ActuatorUnavailable('unknown-device', `${binary} finds no camera (${text})`, 'check the ribbon cable and that `rpicam-hello --list-cameras` lists it');
  }
  if (/busy/i.test(output)) return new ActuatorUnavailable('busy', `the camera is in use (${text})`, 'stop the other camera program');
  if (/unrecognised option|unrecognized option|unknown option/i.test(output)) return new ActuatorUnavailable('unsupported', `${binary} refused an option (${text})`, 'update rpicam-apps, or drop the option from --camera-args');
  return new ActuatorFailed(`${binary} exited: ${text || 'without a message'}`);
}

export class CameraActuator implements Actuator {
  readonly name: string;
  readonly leadNs: number;
  readonly node: string;
  private readonly outDir: string;
  private binaryPath: string | undefined;
  private supportsZsl = false;
  private supportsMetadata = false;
  private splitter = new JsonObjectSplitter();
  /** Metadata printed by the current process, by capture index; waiters for what is not printed yet. */
  private metadata = new Map<string, FrameMetadata | undefined>();
  private metadataWaiters = new Map<string, (meta: FrameMetadata | undefined) => void>();
  private metadataSeen = 0;
  private readonly utcAt: (monotonicNs: bigint) => bigint;
  private child: ChildProcess | undefined;
  private generation = 0;
  private capturesThisGeneration = 0;
  private output = '';
  private released = true;
  /** Between start and the end of warm-up: a SIGUSR1 now could arrive before rpicam-still handles it, and kill it. */
  private warming = false;
  private stopping = false;
  private readonly pending = new Set<Promise<void>>();
  /** Final file names of finished captures, in order. */
  readonly files: string[] = [];
  /** How many times the process was restarted after exiting. */
  restarts = 0;
  /** Restarts in a row that ended (or failed) without a capture. */
  private failedRestarts = 0;
  /** Whether the current process is a restart (not prepare()'s first start). */
  private isRestart = false;
  private restartTimer: NodeJS.Timeout | undefined;
  /** How the last process ended, or why the last restart failed. */
  private lastExit = '';
  /** Set when restarting was given up: why the camera is not running. */
  private deadReason: string | undefined;
  /** Called with everything the camera program prints (stdout and stderr). */
  onOutput: ((chunk: string) => void) | undefined;

  constructor(private readonly options: CameraOptions) {
    this.outDir = resolvePath(options.outDir);
    this.node = safe(options.node ?? hostname());
    this.leadNs = Math.round((options.leadMs ?? 0) * 1e6);
    this.name = `camera ${options.binary ?? 'rpicam-still'}`;
    this.utcAt = options.utcAtMonotonic ?? realUtcAtMonotonic;
  }

  private stagingPattern(): string {
    return join(this.outDir, `.lockstep-${process.pid}-${this.generation}-%06d.${this.options.extension ?? 'jpg'}`);
  }

  private stagingName(index: number): string {
    return join(this.outDir, `.lockstep-${process.pid}-${this.generation}-${String(index).padStart(6, '0')}.${this.options.extension ?? 'jpg'}`);
  }

  async prepare(): Promise<void> {
    if (!this.released) return;
    const candidates = this.options.binary ? [this.options.binary] : CAMERA_BINARIES;
    for (const candidate of candidates) {
      this.binaryPath = findExecutable(candidate, this.options.pathEnv);
      if (this.binaryPath) break;
    }
    if (!this.binaryPath) throw new ActuatorUnavailable('missing-binary', `${candidates.join(' or ')} is not installed`, CAMERA_INSTALL_HINT);
    const help = await cameraHelp(this.binaryPath);
    this.supportsZsl = /--zsl\b/.test(help);
    this.supportsMetadata = /--metadata\b/.test(help);
    ensureDir(this.outDir);
    this.released = false;
    this.deadReason = undefined;
    this.failedRestarts = 0;
    this.isRestart = false;
    try {
      await this.start();
    } catch (error) {
      this.released = true;
      throw error;
    }
    // Signal 0 checks the process exists and delivers nothing: it runs process.kill()'s code once before the instant.
    for (let i = 0; i < 3; i++) if (this.child?.pid !== undefined) process.kill(this.child.pid, 0);
  }

  private async start(): Promise<void> {
    this.generation++;
    this.capturesThisGeneration = 0;
    this.output = '';
    const args = ['--signal', '-t', '0', '-n', '-o', this.stagingPattern()];
    if (this.supportsZsl) args.push('--zsl');
    // On stdout, one object per saved still (a FILE would be overwritten at every capture).
    if (this.supportsMetadata) args.push('--metadata', '-', '--metadata-format', 'json');
    this.splitter = new JsonObjectSplitter();
    this.metadataSeen = 0;
    const generation = this.generation;
    args.push(...(this.options.extraArgs ?? []));
    const child = spawn(this.binaryPath!, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    this.child = child;
    // If this process ends without release() (an uncaught error), do not leave the camera held.
    const onProcessExit = () => child.kill('SIGTERM');
    process.once('exit', onProcessExit);
    child.once('exit', () => process.off('exit', onProcessExit));
    const collect = (chunk: Buffer) => {
      this.onOutput?.(chunk.toString());
      this.output = (this.output + chunk.toString()).slice(-4096);
    };
    if (this.supportsMetadata) child.stdout!.on('data', (chunk: Buffer) => this.onMetadata(generation, chunk.toString()));
    else child.stdout!.on('data', collect);
    child.stderr!.on('data', collect);
    // 'close', not 'exit': by then its last words (the reason) have been read from the pipes.
    child.once('close', () => this.onExit(child));
    const warmupMs = this.options.warmupMs ?? DEFAULT_WARMUP_MS;
    this.warming = true;
    await new Promise<void>((resolve, reject) => {
      // Ready: the warm-up over AND the program heard from. Its first words (libcamera's log, the preview
      // line) mean its own code runs; a SIGUSR1 sent before it has installed its handler would kill it.
      // A slow start (a loaded Pi) is waited for, a silent build (log levels off) at most SILENT_START_MS more.
      let warmedUp = false;
      let spoke = false;
      const finish = () => {
        if (child.exitCode !== null || child.signalCode !== null) return; // exited, not yet closed: onEarlyExit rejects
        clearTimeout(timer);
        clearTimeout(silentTimer);
        child.off('close', onEarlyExit);
        resolve();
      };
      const timer = setTimeout(() => {
        warmedUp = true;
        if (spoke) finish();
      }, warmupMs);
      const silentTimer = setTimeout(finish, warmupMs + SILENT_START_MS);
      const onFirstWords = () => {
        spoke = true;
        if (warmedUp) finish();
      };
      child.stderr!.once('data', onFirstWords);
      child.stdout!.once('data', onFirstWords);
      const onEarlyExit = () => {
        clearTimeout(timer);
        clearTimeout(silentTimer);
        reject(classifyCameraFailure(this.output, this.binaryPath!));
      };
      child.once('close', onEarlyExit);
      child.once('error', (error) => {
        clearTimeout(timer);
        clearTimeout(silentTimer);
        reject(new ActuatorFailed(`cannot start ${this.binaryPath}: ${error.message}`, error));
      });
    }).then(
      () => {
        this.warming = false;
      },
      (error) => {
        this.warming = false;
        if (this.child === child) this.child = undefined;
        throw error;
      },
    );
  }

  /** The n-th object a process prints belongs to its n-th capture. */
  private onMetadata(generation: number, chunk: string): void {
    for (const text of this.splitter.push(chunk)) {
      const key = `${generation}:${this.metadataSeen++}`;
      const meta = parseFrameMetadata(text);
      const waiter = this.metadataWaiters.get(key);
      if (waiter) {
        this.metadataWaiters.delete(key);
        waiter(meta);
      } else {
        this.metadata.set(key, meta);
        // Captures nobody waits for (nameFiles false) must not grow this forever.
        if (this.metadata.size > MAX_UNCLAIMED_METADATA) this.metadata.delete(this.metadata.keys().next().value!);
      }
    }
  }

  private waitMetadata(capture: PendingCapture, timeoutMs: number): Promise<FrameMetadata | undefined | 'timeout'> {
    const key = `${capture.generation}:${capture.index}`;
    if (this.metadata.has(key)) {
      const meta = this.metadata.get(key);
      this.metadata.delete(key);
      return Promise.resolve(meta);
    }
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.metadataWaiters.delete(key);
        resolve('timeout');
      }, timeoutMs);
      this.metadataWaiters.set(key, (meta) => {
        clearTimeout(timer);
        resolve(meta);
      });
    });
  }

  /** Restarts a process that exits while we still want it (some versions exit after one capture). */
  private onExit(child: ChildProcess): void {
    if (this.child !== child) return;
    if (this.warming) return; // start() rejects, and its caller (prepare or a restart) decides
    this.child = undefined;
    if (this.released || this.stopping) return;
    const last = this.output.trim().split('\n').pop();
    this.lastExit = `exited (${child.exitCode !== null ? `code ${child.exitCode}` : child.signalCode})${last ? `: ${last}` : ''}`;
    this.scheduleRestart(this.capturesThisGeneration > 0);
  }

  /**
   * After a capture: at once, and the count starts over (that version just
   * exits after each one). Otherwise with backoff, and a restart that ended
   * this way counts towards the limit.
   */
  private scheduleRestart(afterCapture: boolean): void {
    const limit = this.options.restartLimit ?? DEFAULT_RESTART_LIMIT;
    if (afterCapture) this.failedRestarts = 0;
    else if (this.isRestart && ++this.failedRestarts >= limit) {
      this.deadReason = `gave up after ${limit} failed restart${limit === 1 ? '' : 's'}; last it ${this.lastExit}`;
      return;
    }
    const backoffMs = this.options.restartBackoffMs ?? DEFAULT_RESTART_BACKOFF_MS;
    const delayMs = afterCapture ? 0 : Math.min(backoffMs * 2 ** this.failedRestarts, MAX_RESTART_BACKOFF_MS);
    this.restartTimer = setTimeout(() => {
      this.restartTimer = undefined;
      void this.restart();
    }, delayMs);
  }

  private async restart(): Promise<void> {
    if (this.released || this.stopping) return;
    this.restarts++;
    this.isRestart = true;
    try {
      await this.start();
    } catch (error) {
      if (this.released || this.stopping) return;
      this.lastExit = `failed to restart: ${(error as Error).message}`;
      this.scheduleRestart(false);
    }
  }

  /** For fire(): why there is no process to signal right now. */
  private notRunningReason(): string {
    if (this.deadReason) return this.deadReason;
    if (this.warming) return 'warming up after a restart';
    const limit = this.options.restartLimit ?? DEFAULT_RESTART_LIMIT;
    const retry = this.restartTimer ? `; restarting (${this.failedRestarts} of ${limit} restarts failed so far)` : '';
    return `it ${this.lastExit || 'exited'}${retry}`;
  }

  /** Why the camera was given up on (restarts kept failing), or undefined. */
  get gaveUp(): string | undefined {
    return this.deadReason;
  }

  /** Whether a capture can be signalled right now. */
  get ready(): boolean {
    return this.child !== undefined && !this.warming && this.child.exitCode === null && this.child.signalCode === null;
  }

  /** fire()'s rehearsal: signal 0, the same kill(2), which only checks that the process is there. */
  rehearse(instantNs: bigint = 0n, input: FireInput = {}): void {
    if (this.child?.pid !== undefined && this.ready && !this.released) this.fire(instantNs, input, true);
  }

  /** The scheduler rehearses through fire() itself (Actuator.rehearsesInFire). */
  readonly rehearsesInFire = true;

  /** One kill(2): SIGUSR1 to the waiting rpicam-still (rehearsal: signal 0, nothing captured). */
  fire(instantNs: bigint, input?: FireInput, rehearsal?: false): FireOutcome;
  fire(instantNs: bigint, input: FireInput | undefined, rehearsal: boolean): FireOutcome | undefined;
  fire(instantNs: bigint, input: FireInput = {}, rehearsal = false): FireOutcome | undefined {
    if (this.released) {
      if (rehearsal) return undefined;
      throw new ActuatorNotPrepared(this.name);
    }
    const child = this.child;
    if (!child || child.pid === undefined || !this.ready) {
      if (rehearsal) return undefined; // warming, or gone: the real fire says which
      throw new ActuatorFailed(`${this.name} is not running: ${this.notRunningReason()}`);
    }
    const start = monotonicNs();
    try {
      process.kill(child.pid, rehearsal ? 0 : 'SIGUSR1');
      if (rehearsal) return undefined;
    } catch (error) {
      if (rehearsal) return undefined;
      throw new ActuatorFailed(`cannot signal ${this.name} (pid ${child.pid}): ${(error as Error).message}`, error);
    }
    const costNs = Number(monotonicNs() - start);
    if (this.options.nameFiles === false) {
      this.capturesThisGeneration++;
      return { costNs, leadNs: this.leadNs, detail: `SIGUSR1 to ${this.binaryPath} pid ${child.pid}` };
    }
    const index = this.capturesThisGeneration;
    const staging = this.stagingName(index);
    this.capturesThisGeneration++;
    const final = this.claimName(safe(input.tag ?? 'capture'), input.index ?? this.files.length + this.pending.size, staging);
    const capture: PendingCapture = { staging, final, firedAtMs: Date.now(), instantNs, generation: this.generation, index };
    const later = this.finish(capture);
    const renaming = later.then(() => undefined).finally(() => this.pending.delete(renaming));
    this.pending.add(renaming);
    return { costNs, leadNs: this.leadNs, file: final, later, detail: `SIGUSR1 to ${this.binaryPath} pid ${child.pid}` };
  }

  /**
   * The first free <tag>-<node>-<index> from `index` on, created empty with
   * O_EXCL so that no other capture (of this run, a second run, another
   * process) can take it: the photo then renames over our own placeholder,
   * never over someone's earlier photo. After the signal, so not in its timing.
   */
  private claimName(tag: string, index: number, staging: string): string {
    try {
      return claimPhotoName(this.outDir, tag, this.node, index, this.options.extension ?? 'jpg', `${this.name} captured`);
    } catch (error) {
      throw new ActuatorFailed(`${(error as Error).message}; the photo stays as ${staging}`, error);
    }
  }

  /** Waits for the staging file to appear and stop growing, gives it its final name, then reads its exposure. */
  private async finish(capture: PendingCapture): Promise<LaterOutcome> {
    let lastSize = -1;
    while (Date.now() - capture.firedAtMs < FILE_WAIT_MS) {
      await sleep(FILE_POLL_MS);
      if (!existsSync(capture.staging)) continue;
      const size = statSync(capture.staging).size;
      if (size > 0 && size === lastSize) {
        try {
          renameSync(capture.staging, capture.final);
        } catch (error) {
          return { error: `the photo ${capture.staging} cannot be named ${capture.final}: ${(error as Error).message}` };
        }
        this.files.push(capture.final);
        return { file: capture.final, ...(await this.exposureOf(capture)) };
      }
      lastSize = size;
    }
    // No photo came: do not leave the empty placeholder behind.
    try {
      if (statSync(capture.final).size === 0) unlinkSync(capture.final);
    } catch {
      /* already gone */
    }
    const why = this.child ? '' : `; the camera ${this.lastExit || 'exited'}`;
    return { error: `no photo came within ${FILE_WAIT_MS / 1000} s of the signal${why}${diskHint(why)}`, exposureUnknown: 'no photo' };
  }

  private async exposureOf(capture: PendingCapture): Promise<Pick<LaterOutcome, 'exposure' | 'exposureUnknown'>> {
    if (!this.supportsMetadata) return { exposureUnknown: NO_METADATA };
    const meta = await this.waitMetadata(capture, FILE_WAIT_MS);
    if (meta === 'timeout') return { exposureUnknown: 'rpicam-still printed no metadata for this capture' };
    if (!meta) return { exposureUnknown: "the capture's metadata could not be read" };
    const result = frameExposure(meta, this.options.geometry);
    if (!result.ok) return { exposureUnknown: result.reason };
    return { exposure: exposureReport(result.exposure, this.utcAt, capture.instantNs, 'signal: SensorTimestamp − ExposureTime of the frame saved') };
  }

  /** Waits for pending files to be named, then stops the process (SIGUSR2 is rpicam-still's "exit"). */
  async release(): Promise<void> {
    if (this.released) return;
    this.stopping = true; // no restart while the last files are being named
    clearTimeout(this.restartTimer);
    this.restartTimer = undefined;
    await Promise.all([...this.pending]);
    this.released = true;
    this.stopping = false;
    const child = this.child;
    this.child = undefined;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    child.kill('SIGUSR2');
    const timer = setTimeout(() => child.kill('SIGTERM'), 2000);
    await exited;
    clearTimeout(timer);
  }
}
