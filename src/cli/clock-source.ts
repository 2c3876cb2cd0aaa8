/**
 * Where `wait`, `at` and `cron` get their time: the system clock (default,
 * followed for steps while running), or the embedded NTP client (`--ntp`),
 * waited on until synchronized before anything is scheduled.
 */
import { realClock } from '../time/clock.js';
import { Timescale, type TimescaleChange } from '../time/timescale.js';
import { NtpClient } from '../ntp/client.js';
import { Scheduler } from '../schedule/scheduler.js';
import { followSystemClock, type SystemClockFollower } from '../schedule/system-clock.js';
import { parseHostPort, durationNsOption } from './args.js';
import { UsageError } from './errors.js';

/** Options every scheduling command shares (merge into its parseCommandArgs spec). */
export const CLOCK_OPTIONS = {
  ntp: { type: 'string', multiple: true },
  'sync-timeout': { type: 'string' },
} as const;

/**
 * What we assume of a system clock we cannot question: 1 ms, about what
 * chrony or systemd-timesyncd keep on a LAN. Reported as the error bound of
 * every fire in system-clock mode; use --ntp for a measured one.
 */
export const SYSTEM_CLOCK_ERROR_BOUND_NS = 1_000_000;
/** Time to reach synchronization with --ntp (the client's burst takes ~1–2 s on a LAN). */
export const DEFAULT_SYNC_TIMEOUT_MS = 15_000;
/** The follower's precise re-anchor spins up to ~5 ms: not within this of a deadline. */
const QUIET_BEFORE_DEADLINE_NS = 200_000_000n;
const NTP_PORT = 123;

export interface ClockSource {
  timescale: Timescale;
  /** 'system' or the NTP servers. */
  description: string;
  /** Connects the follower to the scheduler (its quiet periods). */
  attach(scheduler: Scheduler): void;
  /**
   * Hears every step of the Timescale once the source is open: the system
   * clock was stepped under us (`date -s`, chrony's makestep) and the follower
   * stepped with it, or NTP found us far off. Pending instants move with it (the
   * scheduler re-arms); DESIGN says such a step is reported, so commands print it.
   * Slews (corrections within the step threshold) are not steps.
   */
  onStep(listener: (step: TimescaleChange) => void): () => void;
  close(): Promise<void>;
}

function stepsOf(timescale: Timescale): ClockSource['onStep'] {
  return (listener) => timescale.onChange((change) => change.kind === 'step' && listener(change));
}

export interface ClockValues {
  ntp?: string[] | undefined;
  'sync-timeout'?: string | undefined;
}

export async function openClockSource(values: ClockValues, log: (line: string) => void = () => {}): Promise<ClockSource> {
  const servers = (values.ntp ?? []).flatMap((v) => v.split(',')).filter((v) => v.trim() !== '');
  if (values.ntp !== undefined && servers.length === 0) throw new UsageError('--ntp needs a server (host or host:port)');
  if (servers.length === 0) return systemClockSource();
  const timeoutMs = values['sync-timeout'] ? Number(durationNsOption('sync-timeout', values['sync-timeout']) / 1_000_000n) : DEFAULT_SYNC_TIMEOUT_MS;
  const specs = servers.map((s) => parseHostPort(s.trim(), NTP_PORT));
  const timescale = new Timescale(realClock());
  const client = new NtpClient({ servers: specs, timescale });
  await client.start();
  try {
    const status = await client.waitUntilSynchronized(timeoutMs);
    log(`synchronized to ${servers.join(', ')}: offset ${(status.offsetSeconds * 1e3).toFixed(3)} ms, error bound ±${(status.errorBoundSeconds * 1e6).toFixed(0)} µs`);
  } catch (error) {
    await client.stop();
    throw error;
  }
  return {
    timescale,
    description: `ntp ${servers.join(',')}`,
    attach() {},
    onStep: stepsOf(timescale),
    close: () => client.stop(),
  };
}

function systemClockSource(): ClockSource {
  const timescale = new Timescale(realClock(), { trustRawClock: { errorBoundNs: SYSTEM_CLOCK_ERROR_BOUND_NS } });
  let scheduler: Scheduler | undefined;
  const follower: SystemClockFollower = followSystemClock(timescale, {
    errorBoundNs: SYSTEM_CLOCK_ERROR_BOUND_NS,
    isQuiet: () => {
      const next = scheduler?.nextInstantNs();
      return next === undefined || next - timescale.nowNs() > QUIET_BEFORE_DEADLINE_NS;
    },
  });
  return {
    timescale,
    description: 'system',
    attach(s) {
      scheduler = s;
    },
    onStep: stepsOf(timescale),
    close: async () => follower.stop(),
  };
}
