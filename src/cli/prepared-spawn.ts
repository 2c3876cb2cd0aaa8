/**
 * A command made ready before its instant: the executable is looked up in
 * PATH and checked now, the spawn options are built now, so the instant does
 * one spawn() and nothing else (no PATH search, no option parsing).
 */
import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { accessSync, constants, statSync } from 'node:fs';
import { delimiter, isAbsolute, join, resolve } from 'node:path';
import { UsageError } from './errors.js';

export interface Spawned {
  child: ChildProcess;
  /** process.hrtime when spawn() returned: libuv returns once the child has exec'd. */
  spawnedHrNs: bigint;
  /** Resolves with the exit code (128 + signal number when killed by a signal). */
  exited: Promise<number>;
}

export interface PreparedCommand {
  readonly path: string;
  readonly args: readonly string[];
  readonly display: string;
  /** instantNs: given to the child as LOCKSTEP_INSTANT_NS (the instant it was started for). */
  start(instantNs?: bigint): Spawned;
  /** Releases what was made ready in advance (nothing yet; #10's pre-forked process). */
  dispose(): void;
}

export interface PrepareOptions {
  /** 'pipe': the child's stdin/stdout/stderr are streams on Spawned.child (default 'inherit'). */
  stdio?: 'inherit' | 'pipe';
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

const SIGNAL_NUMBERS: Record<string, number> = { SIGHUP: 1, SIGINT: 2, SIGQUIT: 3, SIGKILL: 9, SIGUSR1: 10, SIGSEGV: 11, SIGUSR2: 12, SIGPIPE: 13, SIGALRM: 14, SIGTERM: 15 };

/** `extraEnv`: variables for the child on top of ours, merged now rather than at the instant. */
export function prepareCommand(argv: string[], extraEnv?: Record<string, string>, prepareOptions: PrepareOptions = {}): PreparedCommand {
  if (argv.length === 0) throw new UsageError("a command is needed after '--' (-- CMD [ARGS...])");
  const [command, ...args] = argv as [string, ...string[]];
  const path = resolveCommand(command);
  const env: NodeJS.ProcessEnv = { ...process.env, ...extraEnv };
  const options: SpawnOptions = { stdio: prepareOptions.stdio ?? 'inherit', argv0: command, env };
  return {
    path,
    args,
    display: argv.join(' '),
    start(instantNs?: bigint): Spawned {
      if (instantNs !== undefined) env.LOCKSTEP_INSTANT_NS = instantNs.toString(); // spawn copies env now: one object reused
      const child = spawn(path, args, options);
      const spawnedHrNs = process.hrtime.bigint();
      const exited = new Promise<number>((resolveExit) => {
        child.once('error', () => resolveExit(127));
        child.once('exit', (code, signal) => resolveExit(code ?? 128 + (signal ? SIGNAL_NUMBERS[signal] ?? 1 : 1)));
      });
      return { child, spawnedHrNs, exited };
    },
    dispose() {},
  };
}
