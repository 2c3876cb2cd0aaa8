/**
 * A camera that delivers every frame, each with its own metadata: a kept
 * running `rpicam-vid --codec mjpeg --segment 1 -o DIR/.staging-%06d.jpg
 * --metadata - --metadata-format json`. rpicam-vid writes one file per
 * frame and one metadata entry per output frame, in the same order, so entry
 * n belongs to file n (CAMERA-NOTES.md §2; nothing pauses the output, which
 * is what could misalign them).
 *
 * The owner (frame select, hardware trigger) decides which frames to keep;
 * this class only spawns, pairs, tells, and says why the camera stopped.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { ActuatorFailed } from '../src/schedule/actuator.js';
import { classifyCameraFailure } from './camera.js';
import { JsonObjectSplitter, parseFrameMetadata, type FrameMetadata } from './camera-metadata.js';

export interface SourceFrame {
  /** Output frame number since start (the segment counter). */
  n: number;
  file: string;
  /** Undefined when the entry could not be parsed. */
  meta: FrameMetadata | undefined;
}

export interface FrameSourceOptions {
  binaryPath: string;
  outDir: string;
  /** Staging name prefix, unique to this process and start. */
  prefix: string;
  extension: string;
  /** Mode options (--framerate, --shutter, ...), before the user's extra ones. */
  args: string[];
  extraArgs?: string[];
  env?: NodeJS.ProcessEnv;
  /** How long after start it must still be running to count as started, ms. */
  warmupMs: number;
  onOutput?: (chunk: string) => void;
}

export class FrameSource {
  private child: ChildProcess | undefined;
  private output = '';
  private received = 0;
  private readonly splitter = new JsonObjectSplitter();
  private frameListeners = new Set<(frame: SourceFrame) => void>();
  private exitListeners = new Set<(reason: string) => void>();
  private stopping = false;
  /** Set once the process ended: how, and its last words. */
  exitReason: string | undefined;

  constructor(private readonly o: FrameSourceOptions) {}

  get pattern(): string {
    return join(this.o.outDir, `${this.o.prefix}-%06d.${this.o.extension}`);
  }

  fileOf(n: number): string {
    return join(this.o.outDir, `${this.o.prefix}-${String(n).padStart(6, '0')}.${this.o.extension}`);
  }

  get running(): boolean {
    return this.child !== undefined && this.exitReason === undefined;
  }

  onFrame(listener: (frame: SourceFrame) => void): () => void {
    this.frameListeners.add(listener);
    return () => this.frameListeners.delete(listener);
  }

  onExit(listener: (reason: string) => void): () => void {
    this.exitListeners.add(listener);
    return () => this.exitListeners.delete(listener);
  }

  async start(): Promise<void> {
    const args = ['-t', '0', '-n', '--codec', 'mjpeg', '--segment', '1', '-o', this.pattern, '--metadata', '-', '--metadata-format', 'json', ...this.o.args, ...(this.o.extraArgs ?? [])];
    const child = spawn(this.o.binaryPath, args, { stdio: ['ignore', 'pipe', 'pipe'], env: this.o.env ?? process.env });
    this.child = child;
    const onProcessExit = () => child.kill('SIGTERM');
    process.once('exit', onProcessExit);
    child.once('exit', () => process.off('exit', onProcessExit));
    child.stdout!.setEncoding('utf8');
    child.stderr!.setEncoding('utf8');
    child.stdout!.on('data', (chunk: string) => {
      for (const text of this.splitter.push(chunk)) {
        const n = this.received++;
        const frame: SourceFrame = { n, file: this.fileOf(n), meta: parseFrameMetadata(text) };
        for (const listener of this.frameListeners) listener(frame);
      }
    });
    child.stderr!.on('data', (chunk: string) => {
      this.o.onOutput?.(chunk);
      this.output = (this.output + chunk).slice(-4096);
    });
    child.once('close', () => {
      const last = this.output.trim().split('\n').filter((l) => /error|fail|denied|busy/i.test(l)).pop() ?? this.output.trim().split('\n').pop();
      this.exitReason = `${this.o.binaryPath} exited (${child.exitCode !== null ? `code ${child.exitCode}` : child.signalCode})${last ? `: ${last}` : ''}`;
      if (!this.stopping) for (const listener of this.exitListeners) listener(this.exitReason);
    });
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        child.off('close', onEarly);
        resolve();
      }, this.o.warmupMs);
      const onEarly = () => {
        clearTimeout(timer);
        reject(classifyCameraFailure(this.output, this.o.binaryPath));
      };
      child.once('close', onEarly);
      child.once('error', (error) => {
        clearTimeout(timer);
        reject(new ActuatorFailed(`cannot start ${this.o.binaryPath}: ${error.message}`, error));
      });
    });
  }

  /** SIGTERM (rpicam-vid closes its output and exits), SIGKILL after a grace. */
  async stop(): Promise<void> {
    this.stopping = true;
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => child.once('close', () => resolve()));
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 2000);
    await exited;
    clearTimeout(timer);
  }
}
