/**
 * The clock a time server serves (`lockstep serve-time`, `lockstep hub`):
 * either this machine's system clock, followed through its steps and
 * refreshed so its declared bound does not grow as in holdover (and described
 * by the local chronyd when one answers), or a Timescale disciplined by the
 * embedded NTP client from upstream servers.
 *
 * Not `new Timescale(realClock(), { trustRawClock })`: that bound grows by
 * 0.5 ppm × uptime (the server would declare itself unsynchronized after
 * ~23 days) and never follows a step of the system clock (a hub that booted
 * in 1970 and was set by chrony a minute later would serve 1970).
 */
import { realClock } from '../time/clock.js';
import { Timescale } from '../time/timescale.js';
import { NtpClient } from '../ntp/client.js';
import { SystemClockFollower } from '../ntp/systemclock.js';
import { followClient } from '../ntp/upstream.js';
import type { UpstreamInfo } from '../ntp/server.js';
import type { SymmetricKey } from '../ntp/auth.js';
import { ntpServersFromArgs } from './ntp-servers.js';

export interface ServedClockOptions {
  /** Error bound declared for the system clock when chronyd cannot tell better, ns. */
  errorBoundNs: number;
  /** Ask the local chronyd (`chronyc tracking`) for the bound, stratum, leap (default true). */
  useChrony?: boolean;
  /** Discipline from these NTP servers instead of trusting the system clock. */
  upstream?: string[];
  /** For an authenticated upstream: the key file, the key id, and the loaded keys. */
  keysPath?: string;
  upstreamKeyId?: number;
  keys?: Map<number, SymmetricKey>;
}

export interface ServedClock {
  timescale: Timescale;
  /** For NtpServer's `upstream` option. */
  upstream: () => UpstreamInfo | undefined;
  /** Present with --upstream: start it once the server listens. */
  client?: NtpClient;
  /** Present without --upstream. */
  system?: SystemClockFollower;
  /** One phrase for a status line: where our time comes from. */
  describe(): string;
  stop(): Promise<void>;
}

/** Builds and starts (the system follower; the client is started by the caller) the served clock. */
export async function openServedClock(o: ServedClockOptions): Promise<ServedClock> {
  const timescale = new Timescale(realClock());
  if (o.upstream && o.upstream.length > 0) {
    const { servers } = await ntpServersFromArgs(o.upstream, {
      ...(o.keysPath !== undefined ? { keysPath: o.keysPath } : {}),
      ...(o.upstreamKeyId !== undefined ? { keyId: o.upstreamKeyId } : {}),
    });
    const client = new NtpClient({ servers, timescale, ...(o.keys ? { keys: o.keys } : {}) });
    const follower = followClient(client);
    const upstreamList = o.upstream;
    return {
      timescale,
      client,
      upstream: follower.upstream,
      describe: () => `upstream ${upstreamList.join(', ')}`,
      async stop() {
        follower.stop();
        await client.stop();
      },
    };
  }
  const system = new SystemClockFollower(timescale, { errorBoundNs: o.errorBoundNs, useChrony: o.useChrony ?? true });
  await system.start();
  return {
    timescale,
    system,
    upstream: () => system.upstream(),
    describe: () => {
      const untrusted = system.untrustedReason();
      const base = system.chrony
        ? `system clock (local chronyd: stratum ${system.chrony.stratum}, ${system.chrony.leap})`
        : `system clock (declared error ±${(o.errorBoundNs / 1e3).toFixed(0)} µs)`;
      return untrusted ? `${base}, unsynchronized for now: ${untrusted}` : base;
    },
    async stop() {
      system.stop();
    },
  };
}
