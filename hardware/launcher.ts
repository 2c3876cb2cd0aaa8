/**
 * A program started at an instant without forking Node at the instant.
 *
 * Forking a ~50 MB Node process costs milliseconds (spawn() at the instant
 * started a static program 2.5–7 ms late here). So a small /bin/sh helper is
 * forked in advance: it blocks reading a pipe on fd 3; at the instant we
 * write the variables of this run (LOCKSTEP_INSTANT_NS...) and an empty line,
 * and the helper exports them and execs the program. What is left at the
 * instant is a wake-up, a few reads and an exec (and the program's own
 * start-up, which is the program's business).
 *
 * One implementation for `lockstep at`/`cron` (src/cli/prepared-spawn.ts)
 * and the command actuator (`fire command`, mesh nodes): it lives here
 * because hardware/ may import nothing of src/ but the Actuator contract,
 * and src/cli may import hardware/.
 */
import { spawn, type ChildProcess, type StdioOptions } from 'node:child_process';
import type { Writable } from 'node:stream';

/**
 * The helper: reads KEY=VALUE lines until an empty one (the go), exports
 * them, closes the pipe and becomes the program. Lines starting with '#'
 * are ignored: the rehearsals' writes (see WARM_WRITES). EOF before the go
 * (the launcher was disposed, or lockstep died) ends it without running anything.
 */
const HELPER_SCRIPT =
  "go=; while IFS= read -r kv <&3; do case \"$kv\" in '#'*) continue;; esac; if [ -z \"$kv\" ]; then go=1; break; fi; export \"$kv\"; done; " +
  '[ -n "$go" ] || exit 125; exec 3<&-; exec "$@"';
/**
 * Rehearsals that write a '#' line through the helper's pipe, per helper.
 * The go is the process's first write to a socket: Node's stream and net
 * code then runs for the first time (compiled on that call; V8's eager
 * compilation covers our modules, not Node's), and the helper was released
 * 1.3–1.7 ms after the action's first line in a fresh `lockstep at` (quiet
 * machine). Only the first rehearsals (at placement, seconds or ms before the
 * instant) write; the later ones, close to the instant, wake nobody.
 */
const WARM_WRITES = 2;
const WARM_LINE = '#\n';
/** The shell that runs it: POSIX sh, present on every Linux (dash on Debian/Raspberry Pi OS: ~1 MB resident). */
const HELPER_SHELL = '/bin/sh';
/** Exit status of a helper that was never told to go (disposed). */
export const NOT_STARTED_EXIT = 125;
/**
 * After a start, the replacement helper is forked this much later: not in
 * the action (a fork is milliseconds of this thread, other jobs may fire at
 * the same instant), soon enough for a cron every second.
 */
const REPLENISH_DELAY_MS = 20;

const SIGNAL_NUMBERS: Record<string, number> = { SIGHUP: 1, SIGINT: 2, SIGQUIT: 3, SIGKILL: 9, SIGUSR1: 10, SIGSEGV: 11, SIGUSR2: 12, SIGPIPE: 13, SIGALRM: 14, SIGTERM: 15 };

export interface LauncherOptions {
  /** The program, already resolved (no PATH search at the instant). */
  path: string;
  args: readonly string[];
  /** The program's environment, merged in advance. */
  env: NodeJS.ProcessEnv;
  /** Where its stdin/stdout/stderr go: ours ('inherit', default) or pipes to us. */
  stdio?: 'inherit' | 'pipe' | 'ignore';
  /** Another start() will follow (cron, a mesh node): keep a helper forked and ready after each start. */
  reusable?: boolean;
}

export interface Launched {
  child: ChildProcess;
  /** process.hrtime when the helper was released (the go written); it then execs the program. */
  releasedHrNs: bigint;
  /** true: a pre-forked helper was released; false: none was ready, the program was spawned at the instant. */
  preforked: boolean;
  /** The exit code (128 + signal number when killed by a signal; 127 when it could not start). */
  exited: Promise<number>;
}

interface Helper {
  child: ChildProcess;
  /**
   * Our end of the helper's fd 3. Its write() is synchronous while nothing
   * is queued (libuv writes at once; measured here: 65–130 µs a go, the
   * same as a writeSync on the pipe's descriptor, which needed Node's
   * internal _handle.fd).
   */
  pipe: Writable;
  exited: Promise<number>;
  /** '#' lines written by rehearsals so far (at most WARM_WRITES). */
  warmWrites: number;
}

function exitPromise(child: ChildProcess): Promise<number> {
  return new Promise<number>((resolve) => {
    child.once('error', () => resolve(127));
    child.once('exit', (code, signal) => resolve(code ?? 128 + (signal ? SIGNAL_NUMBERS[signal] ?? 1 : 1)));
  });
}


export class Launcher {
  private ready: Helper | undefined;
  private replenishTimer: NodeJS.Timeout | undefined;
  private disposed = false;

  constructor(private readonly options: LauncherOptions) {
    this.ready = this.fork();
  }

  /**
   * Starts the program now, with `env` (values without newlines) on top of
   * the prepared environment. Cheap when a helper is ready (a write); a
   * plain spawn otherwise.
   */
  start(env: Record<string, string> = {}): Launched {
    if (this.disposed) throw new Error('launcher disposed');
    const message = this.message(env) + '\n';
    const helper = this.ready;
    this.ready = undefined;
    if (helper !== undefined && helper.child.exitCode === null && helper.child.signalCode === null && helper.pipe.writable) {
      // A write that fails (the helper died unseen: EPIPE) reports in its callback: the program is then spawned, late.
      const failed = new Promise<Launched | undefined>((resolve) => helper.pipe.write(message, (error) => resolve(error ? this.spawnNow(env) : undefined)));
      const releasedHrNs = process.hrtime.bigint();
      helper.child.ref(); // from now on it is the user's program: we wait for it
      this.scheduleReplenish();
      const exited = failed.then((late) => (late ? late.exited : helper.exited));
      return { child: helper.child, releasedHrNs, preforked: true, exited };
    }
    return this.spawnNow(env);
  }

  /** No helper ready (or its pipe failed): the program spawned now, from Node. */
  private spawnNow(env: Record<string, string>): Launched {
    const child = spawn(this.options.path, [...this.options.args], { stdio: this.options.stdio ?? 'inherit', env: { ...this.options.env, ...env } });
    const releasedHrNs = process.hrtime.bigint();
    this.scheduleReplenish();
    return { child, releasedHrNs, preforked: false, exited: exitPromise(child) };
  }

  /**
   * start()'s path short of starting (an empty write to the pipe wakes
   * nobody): called by the scheduler's rehearsals, so that the instant runs
   * code that has run before.
   */
  rehearse(env: Record<string, string> = {}): void {
    this.message(env);
    const helper = this.ready;
    if (helper === undefined || helper.child.exitCode !== null || helper.child.signalCode !== null) return;
    if (!helper.pipe.writable) return;
    if (helper.warmWrites < WARM_WRITES) {
      helper.warmWrites++;
      helper.pipe.write(WARM_LINE, () => undefined); // the same call as start()'s go; a failure shows there
    }
    process.hrtime.bigint();
  }

  /**
   * The variables to send: only those the helper was not forked with
   * already (`at` forks it with its LOCKSTEP_INSTANT_NS). The helper's shell
   * reads its pipe one byte per read(2) (it must not read past its line):
   * ~40 reads for one variable, on the path from the go to the exec.
   */
  private message(env: Record<string, string>): string {
    let message = '';
    for (const key in env) if (this.options.env[key] !== env[key]) message += `${key}=${env[key]}\n`;
    return message;
  }

  /** Ends the waiting helper without running the program. Idempotent. */
  dispose(): void {
    this.disposed = true;
    if (this.replenishTimer) clearTimeout(this.replenishTimer);
    this.replenishTimer = undefined;
    const helper = this.ready;
    this.ready = undefined;
    if (helper) {
      // EOF on its pipe: it exits 125 by itself; the kill covers a helper stuck elsewhere.
      helper.child.stdio[3]?.destroy();
      helper.child.kill('SIGTERM');
    }
  }

  private scheduleReplenish(): void {
    if (!this.options.reusable || this.disposed || this.replenishTimer) return;
    this.replenishTimer = setTimeout(() => {
      this.replenishTimer = undefined;
      if (!this.disposed && this.ready === undefined) this.ready = this.fork();
    }, REPLENISH_DELAY_MS);
    this.replenishTimer.unref();
  }

  private fork(): Helper | undefined {
    const io = this.options.stdio ?? 'inherit';
    const stdio: StdioOptions = [io, io, io, 'pipe'];
    const child = spawn(HELPER_SHELL, ['-c', HELPER_SCRIPT, 'lockstep-launcher', this.options.path, ...this.options.args], { stdio, env: this.options.env });
    const exited = exitPromise(child);
    // A waiting helper must not keep lockstep alive, nor its pipe: they are ref'd again by start().
    const pipe = child.stdio[3] as (Writable & { unref?: () => void }) | null;
    pipe?.unref?.();
    child.unref();
    if (!pipe) {
      child.kill('SIGKILL');
      return undefined;
    }
    pipe.on('error', () => undefined); // EPIPE: reported to start()'s write callback
    const helper: Helper = { child, pipe, exited, warmWrites: 0 };
    child.once('exit', () => {
      if (this.ready === helper) this.ready = undefined;
    });
    return helper;
  }
}
