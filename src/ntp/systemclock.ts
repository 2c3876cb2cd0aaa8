/**
 * Serving the system clock honestly (`serve-time` without --upstream, and the
 * mesh hub by default).
 *
 * The Timescale runs on the raw clock, which is CLOCK_MONOTONIC given the
 * system clock's epoch once, at start. It follows the system clock's rate
 * corrections (the kernel slews both alike) but not its steps: a hub that
 * booted in 1970 and was stepped to today by chrony a minute later would
 * otherwise serve 1970 forever. So the follower:
 *
 * - compares the system clock with the Timescale every second (Date.now(),
 *   1 ms resolution: cheap) and, when they disagree by more than
 *   STEP_DETECT_NS, re-anchors precisely and applies the difference (the
 *   Timescale steps beyond its threshold, slews below it);
 * - re-applies a fresh estimate every REFRESH_MS so the declared error bound
 *   does not grow as if in holdover (the system clock IS being disciplined);
 * - asks the local chronyd (`chronyc -c tracking`, if there is one) what it
 *   knows: leap status, stratum, reference, root delay and dispersion and its
 *   offset from NTP time; our error bound is then its root distance plus that
 *   offset instead of a constant, and "not synchronised" becomes leap 3;
 * - without chronyd, asks the kernel through `timedatectl` (systemd-timedated
 *   reads adjtimex's STA_UNSYNC flag, which chronyd, ntpd and timesyncd all
 *   maintain; Node cannot call adjtimex itself, and it needs no privilege):
 *   "not synchronized" becomes leap 3 too. Where timedated does not answer
 *   (no systemd, no D-Bus) we know nothing and declare the constant;
 * - whatever anyone says, never serves as synchronized a clock that reads
 *   earlier than PLAUSIBLE_SINCE_NS: a hub that lost power and booted in 1970
 *   (no RTC, no fake-hwclock) is wrong by decades, not by the declared bound.
 *   A clock restored from a file at boot (fake-hwclock, timesyncd's
 *   /var/lib/systemd/timesync/clock) passes this check though it may be hours
 *   behind: only the daemon or the kernel can tell, hence the questions above.
 */
import { execFile } from 'node:child_process';
import type { Timescale } from '../time/timescale.js';
import { anchorToSystemClock } from '../time/clock.js';
import type { UpstreamInfo } from './server.js';

/** Coarse comparison every second: Date.now() costs nothing. */
const CHECK_INTERVAL_MS = 1000;
/** Beyond the 1 ms resolution of Date.now() and its jitter: a step, not noise. */
const STEP_DETECT_NS = 3_000_000;
/** A fresh precise anchor (up to 5 ms of spinning) once a minute keeps the bound from growing. */
const REFRESH_MS = 60_000;
/** chronyc is asked this often; its answers change slowly. */
const CHRONY_INTERVAL_MS = 16_000;
const CHRONYC_TIMEOUT_MS = 1000;
/**
 * No correct clock running this code reads earlier than its release: 2026-01-01
 * UTC (raise it with new releases). Earlier means never set since boot (1970 on
 * a Pi without RTC) or set from something stale; not a bound we can declare.
 */
export const PLAUSIBLE_SINCE_NS = 1_767_225_600_000_000_000n;
/** The kernel's view through systemd-timedated: "yes" or "no" (its NTPSynchronized property). */
const KERNEL_SYNC_COMMAND = ['timedatectl', 'show', '-p', 'NTPSynchronized', '--value'];
/** chrony's default maxclockerror: dispersion grows by this (plus the skew) per second since its last update. */
const CLOCK_WANDER_PPM = 1;

export interface ChronyTracking {
  refId: number;
  /** The stratum chronyd itself serves. */
  stratum: number;
  refTimeSeconds: number;
  /** System clock − NTP time, seconds (chrony's "System time"; sign irrelevant to the bound). */
  systemOffsetSeconds: number;
  skewPpm: number;
  rootDelaySeconds: number;
  rootDispersionSeconds: number;
  leap: 'Normal' | 'Insert second' | 'Delete second' | 'Not synchronised' | string;
}

/** Parses one line of `chronyc -c tracking`; undefined if it is not one. */
export function parseChronyTracking(csv: string): ChronyTracking | undefined {
  const f = csv.trim().split('\n')[0]?.split(',');
  if (!f || f.length < 14) return undefined;
  const num = (i: number) => Number(f[i]);
  const tracking: ChronyTracking = {
    refId: parseInt(f[0]!, 16) >>> 0,
    stratum: num(2),
    refTimeSeconds: num(3),
    systemOffsetSeconds: num(4),
    skewPpm: num(9),
    rootDelaySeconds: num(10),
    rootDispersionSeconds: num(11),
    leap: f[13]!,
  };
  const numbers = [tracking.stratum, tracking.refTimeSeconds, tracking.systemOffsetSeconds, tracking.skewPpm, tracking.rootDelaySeconds, tracking.rootDispersionSeconds];
  return numbers.every(Number.isFinite) && /^[0-9A-Fa-f]{1,8}$/.test(f[0]!) ? tracking : undefined;
}

/** Asks the local chronyd; undefined when there is none (no chronyc, no daemon, no answer within a second). */
export function readChronyTracking(chronycArgs: string[] = []): Promise<ChronyTracking | undefined> {
  return new Promise((resolve) => {
    execFile('chronyc', [...chronycArgs, '-n', '-c', 'tracking'], { timeout: CHRONYC_TIMEOUT_MS }, (error, stdout) => {
      resolve(error ? undefined : parseChronyTracking(stdout));
    });
  });
}

/** "yes"/"no" from `timedatectl show -p NTPSynchronized --value`; undefined for anything else. */
export function parseKernelSynchronized(output: string): boolean | undefined {
  const value = output.trim();
  return value === 'yes' ? true : value === 'no' ? false : undefined;
}

/** The kernel's synchronized flag, or undefined when nobody answers (no systemd as init, no D-Bus, no timedatectl). */
export function readKernelSynchronized(command: string[] = KERNEL_SYNC_COMMAND): Promise<boolean | undefined> {
  return new Promise((resolve) => {
    execFile(command[0]!, command.slice(1), { timeout: CHRONYC_TIMEOUT_MS }, (error, stdout) => {
      resolve(error ? undefined : parseKernelSynchronized(stdout));
    });
  });
}

/** The system clock as the follower reads it; replaceable so tests can be a hub that booted in 1970. */
export interface SystemClockReader {
  /** A precise reading: the system clock's epoch ns at a process.hrtime instant. */
  anchor(): { epochNs: bigint; hrtimeNs: bigint };
  /** A cheap reading, ms since the epoch (Date.now()). */
  nowMs(): number;
}

/** Elapsed times are measured on the monotonic clock: the system clock is the one that may step under us. */
function monotonicMs(): number {
  return Number(process.hrtime.bigint() / 1_000_000n);
}

const SYSTEM_CLOCK: SystemClockReader = { anchor: anchorToSystemClock, nowMs: () => Date.now() };

export interface SystemClockFollowerOptions {
  /** Declared error when chronyd cannot tell us better. */
  errorBoundNs: number;
  /** Ask the local chronyd (default true); chronycArgs e.g. ['-h', '127.0.0.1', '-p', '323']. */
  useChrony?: boolean;
  chronycArgs?: string[];
  /** Ask the kernel (via timedatectl) whether the clock is synchronized when chronyd does not answer (default: as useChrony). */
  useKernelStatus?: boolean;
  /** The command that prints the kernel's "yes"/"no" (default timedatectl …). */
  kernelStatusCommand?: string[];
  systemClock?: SystemClockReader;
}

export class SystemClockFollower {
  private readonly timescale: Timescale;
  private readonly fallbackErrorNs: number;
  private readonly useChrony: boolean;
  private readonly chronycArgs: string[];
  private readonly useKernelStatus: boolean;
  private readonly kernelStatusCommand: string[] | undefined;
  private readonly system: SystemClockReader;
  private tracking: ChronyTracking | undefined;
  private trackingReadAtMs = -Infinity;
  /** The kernel's flag while chronyd is silent; undefined: nobody told us. */
  private kernelSynchronized: boolean | undefined;
  /** The system clock at the last check, ns since the epoch. */
  private systemNs = 0n;
  private timers: NodeJS.Timeout[] = [];
  private lastRefreshMs = -Infinity;
  /** Steps of the system clock we followed. */
  stepsFollowed = 0;

  constructor(timescale: Timescale, options: SystemClockFollowerOptions) {
    this.timescale = timescale;
    this.fallbackErrorNs = options.errorBoundNs;
    this.useChrony = options.useChrony ?? true;
    this.chronycArgs = options.chronycArgs ?? [];
    this.useKernelStatus = options.useKernelStatus ?? this.useChrony;
    this.kernelStatusCommand = options.kernelStatusCommand;
    this.system = options.systemClock ?? SYSTEM_CLOCK;
  }

  /** Anchors now, asks chronyd once, then keeps following. */
  async start(): Promise<void> {
    await this.pollDaemons();
    this.refresh();
    this.timers.push(setInterval(() => this.check(), CHECK_INTERVAL_MS));
    if (this.useChrony || this.useKernelStatus) this.timers.push(setInterval(() => void this.pollDaemons(), CHRONY_INTERVAL_MS));
    for (const t of this.timers) t.unref();
  }

  stop(): void {
    for (const t of this.timers) clearInterval(t);
    this.timers = [];
  }

  /** What chronyd said, if it is there. */
  get chrony(): ChronyTracking | undefined {
    return this.tracking;
  }

  /** The kernel's synchronized flag as timedatectl last reported it (only asked while chronyd is silent). */
  get kernel(): boolean | undefined {
    return this.kernelSynchronized;
  }

  /** Why the system clock must not be served as synchronized now, or undefined if nothing says so. */
  untrustedReason(): string | undefined {
    if (this.systemNs < PLAUSIBLE_SINCE_NS) {
      const reads = new Date(Number(this.systemNs / 1_000_000n)).toISOString();
      const floor = new Date(Number(PLAUSIBLE_SINCE_NS / 1_000_000n)).toISOString().slice(0, 10);
      return `the system clock reads ${reads}, before ${floor}: it has not been set since boot`;
    }
    if (this.tracking?.leap === 'Not synchronised') return 'the local chronyd is not synchronised';
    if (!this.tracking && this.kernelSynchronized === false) return 'the kernel says the system clock is not synchronized (timedatectl NTPSynchronized=no)';
    return undefined;
  }

  /**
   * For NtpServer's `upstream`: chronyd's view, or undefined without chronyd;
   * leap 3 with the reason whenever untrustedReason() has one.
   */
  upstream(): UpstreamInfo | undefined {
    const t = this.tracking;
    const reason = this.untrustedReason();
    const unsynchronized = reason !== undefined ? { leap: 3, reason } : {};
    if (!t) return reason !== undefined ? { stratum: 0, refId: 0, rootDelaySeconds: 0, rootDispersionSeconds: 0, ...unsynchronized } : undefined;
    return {
      stratum: t.stratum,
      refId: t.refId,
      rootDelaySeconds: t.rootDelaySeconds,
      rootDispersionSeconds: this.rootDispersionNow(t),
      ...unsynchronized,
    };
  }

  private rootDispersionNow(t: ChronyTracking): number {
    const since = Math.max(0, this.system.nowMs() / 1000 - t.refTimeSeconds);
    return t.rootDispersionSeconds + since * (Math.abs(t.skewPpm) + CLOCK_WANDER_PPM) * 1e-6;
  }

  /** The bound we declare now: chronyd's root distance plus its offset, or the configured constant. */
  errorBoundNs(): number {
    const t = this.tracking;
    if (!t || t.leap === 'Not synchronised') return this.fallbackErrorNs;
    return (Math.abs(t.systemOffsetSeconds) + t.rootDelaySeconds / 2 + this.rootDispersionNow(t)) * 1e9;
  }

  /** chronyd first (it knows the bound); the kernel's flag only while chronyd is silent. */
  private async pollDaemons(): Promise<void> {
    if (this.useChrony) await this.pollChrony();
    if (this.useKernelStatus && !this.tracking) {
      this.kernelSynchronized = await readKernelSynchronized(this.kernelStatusCommand);
    } else {
      this.kernelSynchronized = undefined;
    }
  }

  private async pollChrony(): Promise<void> {
    const t = await readChronyTracking(this.chronycArgs);
    if (t) {
      this.tracking = t;
      this.trackingReadAtMs = monotonicMs();
    } else if (monotonicMs() - this.trackingReadAtMs > 4 * CHRONY_INTERVAL_MS) {
      this.tracking = undefined; // chronyd went away: back to the declared constant
    }
  }

  /** Cheap check each second: a step of the system clock, or time for a refresh. */
  private check(): void {
    const systemNs = BigInt(this.system.nowMs()) * 1_000_000n;
    this.systemNs = systemNs;
    const ours = this.timescale.nowNs();
    const diff = systemNs - ours;
    // Date.now() truncates to the ms, so it reads up to 1 ms behind: compare with that in mind.
    const stepped = diff > STEP_DETECT_NS || diff < -STEP_DETECT_NS;
    if (stepped) this.stepsFollowed++;
    if (stepped || monotonicMs() - this.lastRefreshMs >= REFRESH_MS) this.refresh();
  }

  /** A precise anchor of the system clock, applied as a fresh estimate. */
  private refresh(): void {
    const anchor = this.system.anchor();
    this.systemNs = anchor.epochNs;
    const rawNowNs = this.timescale.clock.nowNs();
    const rawAtAnchor = rawNowNs - (process.hrtime.bigint() - anchor.hrtimeNs);
    this.timescale.apply({
      rawNs: rawAtAnchor,
      offsetNs: anchor.epochNs - rawAtAnchor,
      frequencyPpm: 0,
      errorBoundNs: this.errorBoundNs(),
    });
    this.lastRefreshMs = monotonicMs();
  }
}
