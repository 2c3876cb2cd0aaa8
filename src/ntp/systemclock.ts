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
 *   offset instead of a constant, and "not synchronised" becomes leap 3.
 */
import { execFile } from 'node:child_process';
import type { Timescale } from '../time/timescale.js';
import { anchorToSystemClock } from '../time/clock.js';
import type { UpstreamInfo } from './server.js';

/** Coarse comparison every second: Date.now() costs nothing. */
const CHECK_INTERVAL_MS = 1000;
/** Beyond the 1 ms resolution of Date.now() and its jitter: a step, not noise. */
const STEP_DETECT_NS = 3_000_000;
/** A fresh precise anchor (up to 3 ms of spinning) once a minute keeps the bound from growing. */
const REFRESH_MS = 60_000;
/** chronyc is asked this often; its answers change slowly. */
const CHRONY_INTERVAL_MS = 16_000;
const CHRONYC_TIMEOUT_MS = 1000;
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

export interface SystemClockFollowerOptions {
  /** Declared error when chronyd cannot tell us better. */
  errorBoundNs: number;
  /** Ask the local chronyd (default true); chronycArgs e.g. ['-h', '127.0.0.1', '-p', '323']. */
  useChrony?: boolean;
  chronycArgs?: string[];
}

export class SystemClockFollower {
  private readonly timescale: Timescale;
  private readonly fallbackErrorNs: number;
  private readonly useChrony: boolean;
  private readonly chronycArgs: string[];
  private tracking: ChronyTracking | undefined;
  private trackingReadAtMs = 0;
  private timers: NodeJS.Timeout[] = [];
  private lastRefreshMs = 0;
  /** Steps of the system clock we followed. */
  stepsFollowed = 0;

  constructor(timescale: Timescale, options: SystemClockFollowerOptions) {
    this.timescale = timescale;
    this.fallbackErrorNs = options.errorBoundNs;
    this.useChrony = options.useChrony ?? true;
    this.chronycArgs = options.chronycArgs ?? [];
  }

  /** Anchors now, asks chronyd once, then keeps following. */
  async start(): Promise<void> {
    if (this.useChrony) await this.pollChrony();
    this.refresh();
    this.timers.push(setInterval(() => this.check(), CHECK_INTERVAL_MS));
    if (this.useChrony) this.timers.push(setInterval(() => void this.pollChrony(), CHRONY_INTERVAL_MS));
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

  /** For NtpServer's `upstream`: chronyd's view (leap 3 when it is not synchronised), or undefined without chronyd. */
  upstream(): UpstreamInfo | undefined {
    const t = this.tracking;
    if (!t) return undefined;
    return {
      stratum: t.stratum,
      refId: t.refId,
      rootDelaySeconds: t.rootDelaySeconds,
      rootDispersionSeconds: this.rootDispersionNow(t),
      ...(t.leap === 'Not synchronised' ? { leap: 3 } : {}),
    };
  }

  private rootDispersionNow(t: ChronyTracking): number {
    const since = Math.max(0, Date.now() / 1000 - t.refTimeSeconds);
    return t.rootDispersionSeconds + since * (Math.abs(t.skewPpm) + CLOCK_WANDER_PPM) * 1e-6;
  }

  /** The bound we declare now: chronyd's root distance plus its offset, or the configured constant. */
  errorBoundNs(): number {
    const t = this.tracking;
    if (!t || t.leap === 'Not synchronised') return this.fallbackErrorNs;
    return (Math.abs(t.systemOffsetSeconds) + t.rootDelaySeconds / 2 + this.rootDispersionNow(t)) * 1e9;
  }

  private async pollChrony(): Promise<void> {
    const t = await readChronyTracking(this.chronycArgs);
    if (t) {
      this.tracking = t;
      this.trackingReadAtMs = Date.now();
    } else if (Date.now() - this.trackingReadAtMs > 4 * CHRONY_INTERVAL_MS) {
      this.tracking = undefined; // chronyd went away: back to the declared constant
    }
  }

  /** Cheap check each second: a step of the system clock, or time for a refresh. */
  private check(): void {
    const systemNs = BigInt(Date.now()) * 1_000_000n;
    const ours = this.timescale.nowNs();
    const diff = systemNs - ours;
    // Date.now() truncates to the ms, so it reads up to 1 ms behind: compare with that in mind.
    const stepped = diff > STEP_DETECT_NS || diff < -STEP_DETECT_NS;
    if (stepped) this.stepsFollowed++;
    if (stepped || Date.now() - this.lastRefreshMs >= REFRESH_MS) this.refresh();
  }

  /** A precise anchor of the system clock, applied as a fresh estimate. */
  private refresh(): void {
    const anchor = anchorToSystemClock();
    const rawNowNs = this.timescale.clock.nowNs();
    const rawAtAnchor = rawNowNs - (process.hrtime.bigint() - anchor.hrtimeNs);
    this.timescale.apply({
      rawNs: rawAtAnchor,
      offsetNs: anchor.epochNs - rawAtAnchor,
      frequencyPpm: 0,
      errorBoundNs: this.errorBoundNs(),
    });
    this.lastRefreshMs = Date.now();
  }
}
