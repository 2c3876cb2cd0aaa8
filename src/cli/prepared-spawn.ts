/**
 * A command made ready before its instant: the executable is looked up in
 * PATH and checked now, its environment merged now, and a helper process is
 * forked now (hardware/launcher.ts) that only has to exec it: the instant
 * costs a write to a pipe, the helper's wake-up and an exec, not a fork of
 * Node (milliseconds).
 */
import { accessSync, constants, statSync } from 'node:fs';
import type { ChildProcess } from 'node:child_process';
import { delimiter, isAbsolute, join, resolve } from 'node:path';
import { UsageError } from './errors.js';
import { Launcher } from '../../hardware/launcher.js';

export interface Spawned {
  /** The program's process (the helper became it); stdin/stdout/stderr streams when stdio is 'pipe'. */
  child: ChildProcess;
  /**
   * process.hrtime when the program was released: the go written to its
   * pre-forked helper, which then execs it (~1 ms more for a small static
   * program here); or, when no helper was ready, when spawn() returned.
   */
  spawnedHrNs: bigint;
  /** true: a pre-forked helper was released; false: it was spawned at the instant (no helper ready). */
  preforked: boolean;
  /** Resolves with the exit code (128 + signal number when killed by a signal; 127 when it could not start). */
  exited: Promise<number>;
}

export interface PreparedCommand {
  readonly path: string;
  readonly args: readonly string[];
  readonly display: string;
  /**
   * Starts the program: the first thing to call at the instant. `instantNs`
   * becomes its LOCKSTEP_INSTANT_NS. May be called again (cron): a new
   * helper is forked ~20 ms after each start.
   */
  start(instantNs?: bigint): Spawned;
  /** start()'s path short of starting anything: for the scheduler's rehearse option (src/schedule/warm-up.ts). */
  rehearse(instantNs?: bigint): void;
  /** Ends the helper still waiting (no program is run). Idempotent. */
  dispose(): void;
}

export interface PrepareOptions {
  /** The program's stdin/stdout/stderr: ours (default) or pipes on Spawned.child. */
  stdio?: 'inherit' | 'pipe';
  /** Only one start() will come (`lockstep at`): no helper is forked after it. */
  once?: boolean;
}

function executable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return statSync(path).isFile();
  } catch {
    return false;
  }
}

/** Finds the command like a shell would; a UsageError (exit 2) when it is not there. */
export function resolveCommand(command: string, envPath = process.env.PATH ?? ''): string {
  if (command.includes('/')) {
    const path = isAbsolute(command) ? command : resolve(command);
    if (!executable(path)) throw new UsageError(`command '${command}' is not an executable file`);
    return path;
  }
  for (const dir of envPath.split(delimiter)) {
    if (dir === '') continue;
    const path = join(dir, command);
    if (executable(path)) return path;
  }
  throw new UsageError(`command '${command}' not found in PATH`);
}

/** Checks a command line now (a UsageError when it names nothing runnable) without forking anything. */
export function checkCommand(argv: string[]): string {
  if (argv.length === 0) throw new UsageError("a command is needed after '--' (-- CMD [ARGS...])");
  return resolveCommand(argv[0]!);
}

/**
 * `extraEnv`: variables for the child on top of ours, merged now rather than
 * at the instant. A helper is forked now: call dispose() if start() will not
 * come (its helper also ends by itself when this process exits).
 */
export function prepareCommand(argv: string[], extraEnv?: Record<string, string>, options: PrepareOptions = {}): PreparedCommand {
  const path = checkCommand(argv);
  const args = argv.slice(1);
  const launcher = new Launcher({ path, args, env: { ...process.env, ...extraEnv }, stdio: options.stdio ?? 'inherit', reusable: !options.once });
  return {
    path,
    args,
    display: argv.join(' '),
    start(instantNs?: bigint): Spawned {
      const launched = launcher.start(instantNs === undefined ? {} : { LOCKSTEP_INSTANT_NS: instantNs.toString() });
      return { child: launched.child, spawnedHrNs: launched.releasedHrNs, preforked: launched.preforked, exited: launched.exited };
    },
    rehearse(instantNs?: bigint): void {
      launcher.rehearse(instantNs === undefined ? {} : { LOCKSTEP_INSTANT_NS: instantNs.toString() });
    },
    dispose(): void {
      launcher.dispose();
    },
  };
}
