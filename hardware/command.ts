/**
 * Command: a program started at the instant. prepare() resolves the program
 * on PATH (a missing one is reported before the instant) and forks a small
 * helper that waits to exec it (launcher.ts); fire() releases that helper:
 * one write to a pipe, no fork of Node at the instant (which cost
 * milliseconds). A new helper is forked shortly after each fire, for the next.
 * The time from fire() to the release is reported with every fire; the exec
 * and the program's own start-up follow it.
 */
import type { ChildProcess } from 'node:child_process';
import { ActuatorFailed, ActuatorNotPrepared, ActuatorUnavailable, monotonicNs, type Actuator, type FireInput, type FireOutcome, type LaterOutcome } from '../src/schedule/actuator.js';
import { findExecutable } from './executables.js';
import { Launcher } from './launcher.js';

export interface CommandOptions {
  argv: string[];
  pathEnv?: string;
  /** Where the child's output goes: our own stdout/stderr by default. */
  stdio?: 'inherit' | 'pipe' | 'ignore';
  /** Extra environment for the child (LOCKSTEP_INSTANT_NS etc. are always set). */
  env?: NodeJS.ProcessEnv;
}

/** What fire() tells the program through the launcher: instants and indices are digits, a tag has no newline (mesh ids are checked). */
function runEnv(instantNs: bigint, input: FireInput): Record<string, string> {
  const env: Record<string, string> = { LOCKSTEP_INSTANT_NS: instantNs.toString(), LOCKSTEP_INDEX: String(input.index ?? 0) };
  if (input.tag) env.LOCKSTEP_TAG = input.tag.replace(/[\r\n]/g, ' ');
  return env;
}

export class CommandActuator implements Actuator {
  readonly name: string;
  private launcher: Launcher | undefined;
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
    this.launcher ??= new Launcher({
      path: this.program,
      args: this.options.argv.slice(1),
      env: { ...process.env, ...this.options.env },
      stdio: this.options.stdio ?? 'inherit',
      reusable: true,
    });
  }

  /** fire()'s path short of releasing the program (the scheduler's rehearsals). */
  rehearse(instantNs: bigint, input: FireInput = {}): void {
    this.launcher?.rehearse(runEnv(instantNs, input));
  }

  fire(instantNs: bigint, input: FireInput = {}): FireOutcome {
    if (!this.launcher) throw new ActuatorNotPrepared(this.name);
    const start = monotonicNs();
    const launched = this.launcher.start(runEnv(instantNs, input));
    const { child } = launched;
    const costNs = Number(launched.releasedHrNs - start);
    this.running.add(child);
    const later = new Promise<LaterOutcome>((resolve) => {
      if (launched.preforked) return resolve({ spawnLatencyNs: costNs });
      child.once('spawn', () => resolve({ spawnLatencyNs: Number(monotonicNs() - start) }));
      child.once('error', (error) => resolve({ error: `cannot start ${this.program}: ${error.message}` }));
    });
    void launched.exited.then((code) => {
      this.exitCodes.push(code);
      this.running.delete(child);
    });
    return { costNs, pid: child.pid, detail: `${launched.preforked ? 'released' : 'started'} ${this.program} pid ${child.pid ?? '?'}`, later };
  }

  /** Waits for every started program to finish (they are the user's work, not ours to kill). */
  async release(): Promise<void> {
    this.launcher?.dispose();
    this.launcher = undefined;
    await Promise.all([...this.running].map((child) => new Promise<void>((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) return resolve();
      child.once('exit', () => resolve());
      child.once('error', () => resolve());
    })));
    this.program = undefined;
  }

  /** Stops programs still running (SIGTERM), for a cancelled run. */
  terminate(): void {
    for (const child of this.running) child.kill('SIGTERM');
  }
}
