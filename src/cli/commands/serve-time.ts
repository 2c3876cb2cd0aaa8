/**
 * `lockstep serve-time`: the hub's NTP server on its own. Serves the system
 * clock (trusted with a declared error bound), or a Timescale disciplined by
 * the embedded client from --upstream servers. Prints a status line per
 * interval; --json prints one JSON object per line for scripts.
 */
import type { Command } from '../command.js';
import { parseCommandArgs, numberOption, durationNsOption } from '../args.js';
import { EXIT_OK, EXIT_USAGE, UsageError } from '../errors.js';
import { NtpServer, NtpServerError, DEFAULT_NTP_PORT, DEFAULT_LOCAL_STRATUM, type NtpServerStats } from '../../ntp/server.js';
import { parseCidr, CidrError, type Cidr } from '../../ntp/cidr.js';
import { loadKeyFile, KeyFileError, type SymmetricKey } from '../../ntp/auth.js';
import { DEFAULT_BURST, DEFAULT_RATE_PER_SECOND } from '../../ntp/ratelimit.js';
import { formatRefId } from '../../ntp/packet.js';
import { openServedClock } from '../served-clock.js';

/**
 * The error we declare for the system clock when we serve it (no --upstream)
 * and no local chronyd tells us better: a hub whose clock is kept by chrony or
 * systemd-timesyncd from internet servers is typically within a few ms of UTC.
 * The kernel's flag (timedatectl) says only whether it is synchronized, not
 * how well, so this is a stated assumption; --clock-error overrides it.
 */
export const DEFAULT_SYSTEM_CLOCK_ERROR_NS = 10_000_000n;
const DEFAULT_STATUS_INTERVAL_SECONDS = 10;

const HELP = `usage: lockstep serve-time [--port ${DEFAULT_NTP_PORT}] [--bind ADDR] [--allow CIDR]... [--deny-action kod|silent]
                          [--keys FILE] [--require-auth] [--upstream SERVER[:PORT]]... [--upstream-key N]
                          [--local-stratum N] [--clock-error DURATION] [--rate N] [--burst N]
                          [--status-interval S] [--json]

Answer NTP clients (chronyd, ntpd, ntpdig, ntpdate, ESP32 SNTP, lockstep nodes)
with this machine's time.

  --port N            UDP port (default ${DEFAULT_NTP_PORT}; ports below 1024 need root or
                      CAP_NET_BIND_SERVICE)
  --bind ADDR         address to listen on (default :: — IPv6 and IPv4 — else 0.0.0.0)
  --allow CIDR        allow only these ranges (repeatable; IPv4 or IPv6, e.g.
                      192.168.1.0/24, fd00::/8); default: everyone
  --deny-action A     what others get: kod (a Kiss-o'-Death DENY, default) or silent
  --keys FILE         chrony-format keyfile ("ID TYPE HEX:KEY" per line; MD5, SHA1,
                      SHA256, SHA512, AES128, AES256): requests with a MAC are
                      answered only if it verifies, signed with the same key
  --require-auth      answer only requests with a valid MAC
  --upstream SERVER   discipline our time from these NTP servers (repeatable)
                      instead of trusting the system clock; until synchronized we
                      answer "unsynchronized" (leap 3), which clients ignore
  --upstream-key N    authenticate the upstream servers with key N from --keys
  --local-stratum N   stratum served for the system clock (default: the local
                      chronyd's + 1 if one answers 'chronyc tracking', else ${DEFAULT_LOCAL_STRATUM})
  --clock-error D     error bound declared for the system clock (default: the local
                      chronyd's root distance + offset if it answers, else 10ms),
                      e.g. 500us for a hub disciplined from a LAN server.
                      Giving --local-stratum or --clock-error stops asking chronyd
                      and the kernel (timedatectl) whether the clock is synchronized;
                      a clock that reads earlier than 2026 is never served as such.
  --rate N            requests per second per client address (default ${DEFAULT_RATE_PER_SECOND}); over it
  --burst N           ... after a burst of N (default ${DEFAULT_BURST}) a KoD RATE, then silence
  --status-interval S print a status line every S seconds (default ${DEFAULT_STATUS_INTERVAL_SECONDS}; 0: never)
  --json              one JSON object per line: {"event":"listening"|"status"|"stopped",...}

Stops cleanly on SIGINT or SIGTERM. Exit status: 0 after a clean stop, 2 on
bad input or when the port cannot be bound.`;

type Output = (event: string, human: string, data: Record<string, unknown>) => void;

export const command: Command = {
  help: HELP,
  async run(argv) {
    const { values, positionals } = parseCommandArgs(argv, {
      port: { type: 'string' },
      bind: { type: 'string' },
      allow: { type: 'string', multiple: true },
      'deny-action': { type: 'string' },
      keys: { type: 'string' },
      'require-auth': { type: 'boolean', default: false },
      upstream: { type: 'string', multiple: true },
      'upstream-key': { type: 'string' },
      'local-stratum': { type: 'string' },
      'clock-error': { type: 'string' },
      rate: { type: 'string' },
      burst: { type: 'string' },
      'status-interval': { type: 'string' },
      json: { type: 'boolean', default: false },
    });
    if (positionals.length > 0) throw new UsageError(`unexpected argument '${positionals[0]}' (upstream servers go after --upstream)`);

    const port = values.port !== undefined ? numberOption('port', values.port, { min: 0, max: 65535, integer: true }) : DEFAULT_NTP_PORT;
    const denyAction = values['deny-action'] ?? 'kod';
    if (denyAction !== 'kod' && denyAction !== 'silent') throw new UsageError(`--deny-action takes kod or silent, not '${denyAction}'`);
    const localStratum =
      values['local-stratum'] !== undefined ? numberOption('local-stratum', values['local-stratum'], { min: 1, max: 15, integer: true }) : DEFAULT_LOCAL_STRATUM;
    const statusIntervalSeconds =
      values['status-interval'] !== undefined ? numberOption('status-interval', values['status-interval'], { min: 0, max: 86400 }) : DEFAULT_STATUS_INTERVAL_SECONDS;
    const clockErrorNs = values['clock-error'] !== undefined ? durationNsOption('clock-error', values['clock-error']) : DEFAULT_SYSTEM_CLOCK_ERROR_NS;
    if (clockErrorNs <= 0n) throw new UsageError('--clock-error must be positive');
    const rate = values.rate !== undefined ? numberOption('rate', values.rate, { min: 0.001, max: 1e6 }) : DEFAULT_RATE_PER_SECOND;
    const burst = values.burst !== undefined ? numberOption('burst', values.burst, { min: 1, max: 1e6, integer: true }) : DEFAULT_BURST;

    const allow: Cidr[] = [];
    for (const text of values.allow ?? []) {
      try {
        allow.push(parseCidr(text));
      } catch (error) {
        if (error instanceof CidrError) throw new UsageError(`--allow ${error.message}`);
        throw error;
      }
    }

    let keys: Map<number, SymmetricKey> | undefined;
    if (values.keys !== undefined) {
      try {
        keys = await loadKeyFile(values.keys);
      } catch (error) {
        if (error instanceof KeyFileError) throw new UsageError(error.message);
        throw error;
      }
    }
    if (values['require-auth'] && !keys) throw new UsageError('--require-auth needs --keys FILE');
    const upstreamKeyId = values['upstream-key'] !== undefined ? numberOption('upstream-key', values['upstream-key'], { min: 0, integer: true }) : undefined;
    if (upstreamKeyId !== undefined && !values.upstream) throw new UsageError('--upstream-key needs --upstream SERVER');

    const out: Output = values.json
      ? (event, _human, data) => process.stdout.write(JSON.stringify({ event, ...data }) + '\n')
      : (_event, human) => process.stdout.write(human + '\n');

    // Our own time: the system clock (followed through steps, described by a local chronyd), or upstream servers.
    const askChrony = values['local-stratum'] === undefined && values['clock-error'] === undefined;
    const served = await openServedClock({
      errorBoundNs: Number(clockErrorNs),
      useChrony: askChrony,
      ...(values.upstream ? { upstream: values.upstream } : {}),
      ...(values.keys !== undefined ? { keysPath: values.keys } : {}),
      ...(upstreamKeyId !== undefined ? { upstreamKeyId } : {}),
      ...(keys ? { keys } : {}),
    });
    const { timescale, client, system } = served;

    const server = new NtpServer({
      timescale,
      port,
      ...(values.bind !== undefined ? { bind: values.bind } : {}),
      allow,
      denyAction,
      ...(keys ? { keys } : {}),
      requireAuth: values['require-auth'],
      localStratum,
      upstream: served.upstream,
      rateLimit: { ratePerSecond: rate, burst },
    });

    let bound: { address: string; port: number };
    try {
      bound = await server.start();
    } catch (error) {
      await served.stop();
      if (error instanceof NtpServerError) {
        process.stderr.write(`lockstep serve-time: ${error.message}\n`);
        return EXIT_USAGE;
      }
      throw error;
    }
    await client?.start();

    const source = client
      ? `upstream ${values.upstream!.join(', ')}`
      : system!.chrony
        ? `system clock (local chronyd: stratum ${system!.chrony.stratum}, ${system!.chrony.leap})`
        : `system clock (declared error ±${formatSeconds(Number(clockErrorNs) / 1e9)})`;
    const untrusted = system?.untrustedReason();
    const where = bound.address.includes(':') ? `[${bound.address}]:${bound.port}` : `${bound.address}:${bound.port}`;
    // Handlers before the 'listening' line: a supervisor (or a test) that signals as soon as it reads it would
    // otherwise find no handler installed yet, and the default action kills the process (exit by signal, no 'stopped').
    const stopRequested = new Promise<void>((resolve) => {
      const stop = () => {
        process.off('SIGINT', stop);
        process.off('SIGTERM', stop);
        resolve();
      };
      process.on('SIGINT', stop);
      process.on('SIGTERM', stop);
    });
    out('listening', `lockstep serve-time: serving ${source} on ${where}${untrusted ? ` (unsynchronized for now: ${untrusted})` : ''}`, {
      address: bound.address,
      port: bound.port,
      source: client ? 'upstream' : system!.chrony ? 'system+chronyd' : 'system',
      upstream: values.upstream ?? [],
      allow: allow.map((c) => c.text),
      keys: keys ? [...keys.keys()] : [],
    });

    let previous: NtpServerStats = server.stats();
    let previousAt = process.hrtime.bigint();
    const report = (event: 'status' | 'stopped') => {
      const stats = server.stats();
      const now = process.hrtime.bigint();
      const seconds = Number(now - previousAt) / 1e9;
      const ratePerSecond = seconds > 0 ? (stats.served - previous.served) / seconds : 0;
      previous = stats;
      previousAt = now;
      const ref = server.reference();
      const latency = server.latency();
      const human =
        `${event === 'stopped' ? 'stopped: ' : ''}served ${stats.served} (${ratePerSecond.toFixed(1)}/s), ` +
        `rate-limited ${stats.rateLimited}, denied ${stats.denied}, malformed ${stats.malformed}, auth-failed ${stats.authFailed} | ` +
        (ref.leap === 3
          ? `unsynchronized (leap 3): ${ref.unsynchronizedReason ?? 'unknown reason'}`
          : `stratum ${ref.stratum} refid ${formatRefId(ref.refId, ref.stratum)} error ±${formatSeconds(ref.errorBoundSeconds)}`);
      out(event, human, {
        ...stats,
        requestsPerSecond: Number(ratePerSecond.toFixed(1)),
        leap: ref.leap,
        ...(ref.unsynchronizedReason !== undefined ? { unsynchronizedReason: ref.unsynchronizedReason } : {}),
        stratum: ref.stratum,
        refId: formatRefId(ref.refId, ref.stratum),
        errorBoundSeconds: Number.isFinite(ref.errorBoundSeconds) ? ref.errorBoundSeconds : null,
        rootDelaySeconds: ref.rootDelaySeconds,
        rootDispersionSeconds: ref.rootDispersionSeconds,
        receiveLatencySeconds: latency.receiveNs / 1e9,
        sendLatencySeconds: latency.sendNs / 1e9,
        trackedClients: server.trackedClients,
      });
    };
    const timer = statusIntervalSeconds > 0 ? setInterval(() => report('status'), statusIntervalSeconds * 1000) : undefined;

    await stopRequested;
    if (timer) clearInterval(timer);
    await served.stop();
    await server.stop();
    report('stopped');
    return EXIT_OK;
  },
};

function formatSeconds(seconds: number): string {
  if (!Number.isFinite(seconds)) return '∞';
  if (seconds >= 1) return `${seconds.toFixed(3)} s`;
  if (seconds >= 1e-3) return `${(seconds * 1e3).toFixed(3)} ms`;
  return `${(seconds * 1e6).toFixed(1)} µs`;
}
