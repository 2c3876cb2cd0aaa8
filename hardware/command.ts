/**
 * Command: a program started at the instant. prepare() resolves the program
 * on PATH (a missing one is reported before the instant, and spawn() does no
 * PATH search at the instant); fire() is one spawn() — a fork/exec, which
 * costs a millisecond or more, so the spawn latency (fire() to the child
 * running) is measured and reported with every fire.
 */
import { spawn, type ChildProcess, type StdioOptions } from 'node:child_process';
import { ActuatorFailed, ActuatorNotPrepared, ActuatorUnavailable, monotonicNs, type Actuator, type FireInput, type FireOutcome, type LaterOutcome } from '../src/schedule/actuator.js';
import { findExecutable } from './executables.js';

export interface CommandOptions {
  argv: string[];
  pathEnv?: string;
  /** Where the child's output goes: our own stdout/stderr by default. */
  stdio?: StdioOptions;
  /** Extra environment for the child (LOCKSTEP_INSTANT_NS etc. are always set). */
  env?: NodeJS.ProcessEnv;
}

export class CommandActuator implements Actuator {
  readonly name: string;
  private program: string | undefined;
  private readonly running = new Set<ChildProcess>();
  /** Exit codes of finished runs, in order of exit. */
  readonly exitCodes: (number | null)[] = [];

  constructor(private readonly options: CommandOptions) {
    if (options.argv.length === 0) throw new ActuatorFailed('command: empty argv');
    this.name = `command ${options.argv[0]}`;
  }

  async prepare(): Promise<void> {
    const name = this.options.argv[0]!;
    this.program = findExecutable(name, this.options.pathEnv);
    if (!this.program) {
      throw new ActuatorUnavailable('missing-binary', `cannot find the program '${name}'${name.includes('/') ? '' : ' on PATH'}`, 'install it, or give its full path');
    }
  }

  fire(instantNs: bigint, input: FireInput = {}): FireOutcome {
    if (!this.program) throw new ActuatorNotPrepared(this.name);
    const start = monotonicNs();
    const child = spawn(this.program, this.options.argv.slice(1), {
      stdio: this.options.stdio ?? 'inherit',
      env: { ...process.env, ...this.options.env, LOCKSTEP_INSTANT_NS: instantNs.toString(), LOCKSTEP_INDEX: String(input.index ?? 0), ...(input.tag ? { LOCKSTEP_TAG: input.tag } : {}) },
    });
    const costNs = Number(monotonicNs() - start);
    this.running.add(child);
    const later = new Promise<LaterOutcome>((resolve) => {
      child.once('spawn', () => resolve({ spawnLatencyNs: Number(monotonicNs() - start) }));
      child.once('error', (error) => resolve({ error: `cannot start ${this.program}: ${error.message}` }));
    });
    child.once('close', (code) => {
      this.exitCodes.push(code);
      this.running.delete(child);
    });
    child.once('error', () => this.running.delete(child));
    return { costNs, pid: child.pid, detail: `started ${this.program} pid ${child.pid ?? '?'}`, later };
  }

  /** Waits for every started program to finish (they are the user's work, not ours to kill). */
  async release(): Promise<void> {
    await Promise.all([...this.running].map((child) => new Promise<void>((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) return resolve();
      child.once('close', () => resolve());
      child.once('error', () => resolve());
    })));
    this.program = undefined;
  }

  /** Stops programs still running (SIGTERM), for a cancelled run. */
  terminate(): void {
    for (const child of this.running) child.kill('SIGTERM');
  }
}
