/**
 * Process-wide tuning for precise waiting: one small named step each.
 *
 * Timer slack. Linux lets every hrtimer of a normal (non-realtime) task
 * expire up to its "timer slack" late (50 µs by default), so that nearby
 * wake-ups can be served by one interrupt. Atomics.wait (a futex with a
 * timeout) and libuv's epoll_wait both sleep on such timers, so every wake
 * before an instant pays up to 50 µs extra, which the scheduler then has to
 * cover by spinning. A task may lower its own slack by writing to
 * /proc/self/timerslack_ns (the same as prctl(PR_SET_TIMERSLACK), which Node
 * cannot call). Measured on the 2-core dev machine: Atomics.wait(1 ms)
 * oversleep p50 81 → 52 µs, p99 130 → 97 µs.
 *
 * The write must be SYNCHRONOUS: /proc/self names the process's main thread,
 * and the kernel lets a task change only its own slack without CAP_SYS_NICE.
 * An async write runs on a libuv pool thread, i.e. "another task", and fails
 * for an unprivileged user. It may also fail on kernels without the file
 * (before 4.6) or in sandboxes that mount /proc read-only: then the default
 * slack stays, which costs some spin, never correctness.
 */
import { readFileSync, writeFileSync } from 'node:fs';

const TIMER_SLACK_PATH = '/proc/self/timerslack_ns';
/** 1 ns: the smallest slack; 0 would mean "back to the default" (50 µs). */
const LOWEST_TIMER_SLACK_NS = 1;

export interface TimerSlackResult {
  /** True when the slack is now LOWEST_TIMER_SLACK_NS. */
  lowered: boolean;
  /** The slack in force afterwards, ns (undefined if it cannot be read). */
  slackNs?: number;
  /** Why it was not lowered (an errno code such as EACCES, ENOENT, EROFS), for a log line. */
  reason?: string;
}

let last: TimerSlackResult | undefined;

/** Lowers this process's (main thread's) timer slack to 1 ns; returns whether that worked. Never throws. */
export function lowerTimerSlack(): boolean {
  return lowerTimerSlackDetailed().lowered;
}

/** As lowerTimerSlack, with what is in force afterwards and why not, for a status line. Idempotent. */
export function lowerTimerSlackDetailed(): TimerSlackResult {
  if (last?.lowered) return last;
  let reason: string | undefined;
  try {
    writeFileSync(TIMER_SLACK_PATH, String(LOWEST_TIMER_SLACK_NS));
  } catch (error) {
    reason = (error as NodeJS.ErrnoException).code ?? (error as Error).message;
  }
  const slackNs = readTimerSlackNs();
  const lowered = reason === undefined && slackNs === LOWEST_TIMER_SLACK_NS;
  last = { lowered, ...(slackNs !== undefined ? { slackNs } : {}), ...(reason !== undefined ? { reason } : !lowered ? { reason: 'not applied' } : {}) };
  return last;
}

/** The calling process's timer slack, ns; undefined where the kernel does not expose it. */
export function readTimerSlackNs(): number | undefined {
  try {
    const n = Number(readFileSync(TIMER_SLACK_PATH, 'utf8').trim());
    return Number.isFinite(n) ? n : undefined;
  } catch {
    return undefined;
  }
}

/** The result of the last attempt (undefined: never tried), for status output. */
export function timerSlackStatus(): TimerSlackResult | undefined {
  return last;
}
