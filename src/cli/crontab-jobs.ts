/**
 * The entries of a crontab as jobs of one Scheduler: each fires its prepared
 * shell command at its instants, passes the command's output on line by line
 * under the entry's name, counts runs, failures and skips, and follows
 * reloads (an unchanged entry keeps its scheduler job and running command).
 */
import { prepareCommand, type PreparedCommand, type Spawned } from './prepared-spawn.js';
import { processTree, signalAll } from './process-tree.js';
import { splitLines } from './line-splitter.js';
import type { CrontabLog } from './crontab-log.js';
import type { Crontab, CrontabEntry, CrontabProblem } from '../schedule/crontab.js';
import type { Scheduler, Job } from '../schedule/scheduler.js';
import type { FireAction, FireReport, SkipReason, SkipReport } from '../schedule/reports.js';
import { UsageError } from './errors.js';

/**
 * @reboot entries run this long after start: far enough ahead for the
 * scheduler's precise path (coarse timer, sleep, spin), near enough to be
 * "at start" to anyone watching.
 */
const REBOOT_DELAY_NS = 500_000_000n;
/** After a child exits, its output pipes get this long to drain before its exit is logged (a background grandchild may hold them open). */
const OUTPUT_DRAIN_MS = 200;

export interface EntryStats {
  runs: number;
  failures: number;
  skips: Partial<Record<SkipReason, number>>;
  /** Planned instant of the last start, UTC ns. */
  lastStartNs: bigint | undefined;
  /** Last run's duration from spawn to exit, ns. */
  lastDurationNs: number | undefined;
  /** Last start's lateness: from the instant to the program started (action lateness + spawn), ns. */
  lastStartLatenessNs: number | undefined;
  lastExitCode: number | undefined;
}

export interface Run {
  entry: EntryState;
  index: number;
  spawned: Spawned;
  /** Pids seen in its tree when a stop signal went out (they get the SIGKILL too if still there). */
  tree: number[];
}

export class EntryState {
  entry: CrontabEntry;
  job: Job | undefined;
  removed = false;
  readonly prepared: PreparedCommand;
  readonly runs = new Set<Run>();
  readonly stats: EntryStats = { runs: 0, failures: 0, skips: {}, lastStartNs: undefined, lastDurationNs: undefined, lastStartLatenessNs: undefined, lastExitCode: undefined };

  constructor(entry: CrontabEntry, readonly jobId: string) {
    this.entry = entry;
    this.prepared = prepareCommand([entry.shell, '-c', entry.command], entry.env, { stdio: 'pipe' });
  }

  get name(): string {
    return this.entry.name;
  }
}

export interface ReloadChanges {
  unchanged: string[];
  added: string[];
  removed: string[];
  /** Entries that only moved in the file: their automatic name followed the line. */
  renamed: Array<{ from: string; to: string }>;
  /** Removed entries whose command is still running (left to finish). */
  leftRunning: string[];
  /** @reboot entries new in a reload: not run (cron runs them at start only). */
  rebootNotRun: string[];
}

interface Started {
  state: EntryState;
  report: FireReport;
  spawned: Spawned;
  firedHrNs: bigint;
}

export class CrontabJobs {
  private states: EntryState[] = [];
  private readonly byJobId = new Map<string, EntryState>();
  private nextJobNumber = 0;
  private started: Started[] = [];
  private flushQueued = false;
  private readonly idleWaiters: Array<() => void> = [];
  /** stop() was called: a second call (a second signal) kills at once. */
  private stopping = false;

  constructor(
    private readonly scheduler: Scheduler,
    private readonly log: CrontabLog,
  ) {
    scheduler.onSkip((skip) => this.onSkip(skip));
  }

  /** The entries in force (for metrics), and removed ones still running. */
  entries(): EntryState[] {
    const live = new Set(this.states);
    const leaving = [...this.byJobId.values()].filter((s) => !live.has(s) && s.runs.size > 0);
    return [...this.states, ...leaving];
  }

  get runningCount(): number {
    let n = 0;
    for (const state of this.byJobId.values()) n += state.runs.size;
    return n;
  }

  /**
   * Makes crontab the one in force. Every command is prepared before anything
   * changes: a file whose shell cannot be run is refused whole (UsageError
   * with FILE:LINE), and the old schedule stays.
   */
  apply(crontab: Crontab, options: { initial: boolean }): ReloadChanges {
    const oldByKey = new Map<string, EntryState[]>();
    for (const state of this.states) oldByKey.set(state.entry.key, [...(oldByKey.get(state.entry.key) ?? []), state]);
    const plan: Array<{ entry: CrontabEntry; keep: EntryState | undefined }> = [];
    for (const entry of crontab.entries) {
      const candidates = oldByKey.get(entry.key) ?? [];
      const sameName = candidates.findIndex((s) => s.name === entry.name);
      const keep = candidates.splice(sameName === -1 ? 0 : sameName, candidates.length === 0 ? 0 : 1)[0];
      plan.push({ entry, keep });
    }
    const problems: CrontabProblem[] = [];
    const fresh = new Map<CrontabEntry, EntryState>();
    for (const { entry, keep } of plan) {
      if (keep) continue;
      try {
        fresh.set(entry, new EntryState(entry, `e${this.nextJobNumber++}`));
      } catch (error) {
        if (!(error instanceof UsageError)) throw error;
        problems.push({ line: entry.line, reason: `SHELL ${entry.shell}: ${error.message}` });
      }
    }
    if (problems.length > 0) {
      for (const state of fresh.values()) state.prepared.dispose();
      throw new UsageError(problems.map((p) => `${crontab.source}:${p.line}: ${p.reason}`).join('\n'));
    }
    const changes: ReloadChanges = { unchanged: [], added: [], removed: [], renamed: [], leftRunning: [], rebootNotRun: [] };
    const next: EntryState[] = [];
    for (const { entry, keep } of plan) {
      if (keep) {
        if (keep.name !== entry.name) changes.renamed.push({ from: keep.name, to: entry.name });
        else changes.unchanged.push(entry.name);
        keep.entry = entry;
        next.push(keep);
        continue;
      }
      const state = fresh.get(entry)!;
      this.byJobId.set(state.jobId, state);
      if (!options.initial) changes.added.push(entry.name);
      if (entry.reboot && !options.initial) changes.rebootNotRun.push(entry.name);
      else this.schedule(state);
      next.push(state);
    }
    for (const leftovers of oldByKey.values()) {
      for (const state of leftovers) {
        state.removed = true;
        state.job?.cancel();
        state.job = undefined;
        state.prepared.dispose();
        changes.removed.push(state.name);
        if (state.runs.size > 0) changes.leftRunning.push(state.name);
        else this.byJobId.delete(state.jobId);
      }
    }
    this.states = next;
    return changes;
  }

  private schedule(state: EntryState): void {
    const { entry } = state;
    // Each entry's action is its own rehearsal (src/schedule/warm-up.ts): the same lines, down to the launcher's rehearse().
    const action: FireAction = (report, rehearsal = false) => {
      const firedHrNs = process.hrtime.bigint();
      if (rehearsal) return state.prepared.rehearse(report.plannedNs);
      const spawned = state.prepared.start(report.plannedNs); // the first thing at the instant
      this.started.push({ state, report, spawned, firedHrNs });
      if (!this.flushQueued) {
        this.flushQueued = true;
        // After the tail (every entry due at this instant started), before the event loop polls: a child
        // that has already exited gets its unread pipes drained (flushStdio) there, its output lost.
        queueMicrotask(() => this.flush());
      }
      return spawned.exited as Promise<unknown> as Promise<void>; // the scheduler only waits on it (overlap)
    };
    if (entry.expression === undefined) {
      state.job = this.scheduler.at(this.scheduler.timescale.nowNs() + REBOOT_DELAY_NS, action, { id: state.jobId, ifPast: 'fire-late', rehearse: action });
    } else {
      state.job = this.scheduler.cron(entry.expression, { tz: entry.tz, overlap: entry.overlap, id: state.jobId, rehearse: action }, action);
    }
  }

  /** After the instant: pipes, stdin, reports and counters of every command just started. */
  private flush(): void {
    this.flushQueued = false;
    const started = this.started;
    this.started = [];
    for (const { state, report, spawned, firedHrNs } of started) {
      const spawnLatencyNs = Number(spawned.spawnedHrNs - firedHrNs);
      const run: Run = { entry: state, index: report.index, spawned, tree: [] };
      state.runs.add(run);
      const stats = state.stats;
      stats.runs++;
      stats.lastStartNs = report.plannedNs;
      stats.lastStartLatenessNs = report.latenessNs + spawnLatencyNs;
      this.log.fire(state, report, spawnLatencyNs, spawned.child.pid ?? -1);
      const { child } = spawned;
      child.stdin?.on('error', () => {}); // a command that does not read its stdin closes the pipe: EPIPE is no error of ours
      child.stdin?.end(state.entry.input ?? '');
      let openStreams = 0;
      let drained!: () => void;
      const allDrained = new Promise<void>((resolve) => (drained = resolve));
      for (const [stream, name] of [
        [child.stdout, 'stdout'],
        [child.stderr, 'stderr'],
      ] as const) {
        if (!stream) continue;
        openStreams++;
        splitLines(
          stream,
          (line) => this.log.output(state, run.index, name, line),
          () => --openStreams === 0 && drained(),
        );
      }
      if (openStreams === 0) drained();
      void spawned.exited.then(async (code) => {
        const durationNs = Number(process.hrtime.bigint() - spawned.spawnedHrNs);
        await Promise.race([allDrained, new Promise((r) => setTimeout(r, OUTPUT_DRAIN_MS).unref())]);
        stats.lastDurationNs = durationNs;
        stats.lastExitCode = code;
        if (code !== 0) stats.failures++;
        state.runs.delete(run);
        this.log.exit(state, run.index, spawned.child.pid ?? -1, code, durationNs);
        if (state.removed && state.runs.size === 0) this.byJobId.delete(state.jobId);
        if (this.runningCount === 0) for (const wake of this.idleWaiters.splice(0)) wake();
      });
    }
  }

  private onSkip(skip: SkipReport): void {
    const state = this.byJobId.get(skip.jobId);
    if (!state) return;
    if (skip.reason === 'stopped' || skip.reason === 'cancelled') return; // ours: a reload or the exit, logged as such
    state.stats.skips[skip.reason] = (state.stats.skips[skip.reason] ?? 0) + 1;
    this.log.skip(state, skip);
  }

  /**
   * The exit: no new runs; every running command's process tree gets signal;
   * resolves when they have all exited, or after graceMs with SIGKILL sent to
   * what is left of their trees (nothing outlives us as an orphan).
   */
  async stop(signal: NodeJS.Signals, graceMs: number): Promise<{ signalled: number; killed: number }> {
    this.scheduler.stop();
    if (this.started.length > 0) this.flush(); // a command started in this very tick must be counted and signalled
    const runs = [...this.byJobId.values()].flatMap((s) => [...s.runs]);
    if (this.stopping) return { signalled: 0, killed: this.kill(runs) };
    this.stopping = true;
    let signalled = 0;
    for (const run of runs) {
      const pid = run.spawned.child.pid;
      if (pid === undefined) continue;
      run.tree = processTree(pid);
      signalled += signalAll(run.tree, signal) > 0 ? 1 : 0;
    }
    if (this.runningCount === 0) return { signalled, killed: 0 };
    const idle = new Promise<void>((resolve) => this.idleWaiters.push(resolve));
    let timer: NodeJS.Timeout | undefined;
    const timedOut = await Promise.race([idle.then(() => false), new Promise<boolean>((r) => (timer = setTimeout(() => r(true), graceMs)))]);
    clearTimeout(timer);
    const killed = timedOut ? this.kill(runs) : 0;
    // The descendants of a run that exited on the signal may still be there (they ignored it, or were never signalled).
    const leftovers = runs.flatMap((r) => r.tree.slice(1));
    if (!timedOut) signalAll(leftovers.filter(alive), 'SIGKILL');
    return { signalled, killed };
  }

  /** SIGKILL to every process of runs' trees (as recorded, and as they are now). */
  private kill(runs: Run[]): number {
    let killed = 0;
    for (const run of runs) {
      const pid = run.spawned.child.pid;
      if (pid === undefined) continue;
      const pids = new Set([...run.tree, ...(alive(pid) ? processTree(pid) : [])]);
      killed += signalAll([...pids].filter(alive), 'SIGKILL') > 0 ? 1 : 0;
    }
    return killed;
  }

  disposeAll(): void {
    for (const state of this.states) state.prepared.dispose();
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
