/**
 * Turning what a user types ("pool.example:123", "[::1]:11123", "10.0.0.1")
 * into NtpServerSpecs, for every command that takes NTP servers
 * (`lockstep sync`, `--ntp` of `lockstep node`, `--upstream` of serve-time).
 * Errors are ServerSpecErrors with a message a person can act on; the CLI
 * turns them into usage errors (exit 2).
 */
import { lookup } from 'node:dns/promises';
import type { NtpServerSpec } from './source.js';
import type { SymmetricKey } from './auth.js';

export const NTP_PORT = 123;

export class ServerSpecError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ServerSpecError';
  }
}

/** "host", "host:port", "[v6]:port" or a bare IPv6 address → { host, port }. */
export function parseServerSpec(spec: string, defaultPort = NTP_PORT): NtpServerSpec {
  let host = spec.trim();
  let portText: string | undefined;
  const bracketed = /^\[([^\]]+)\](?::(.*))?$/.exec(host);
  if (bracketed) {
    host = bracketed[1]!;
    portText = bracketed[2];
  } else if ((host.match(/:/g) ?? []).length === 1) {
    [host, portText] = host.split(':') as [string, string];
  }
  if (!host) throw new ServerSpecError(`'${spec}' names no host`);
  if (/\s/.test(host)) throw new ServerSpecError(`'${spec}' is not a host name`);
  let port = defaultPort;
  if (portText !== undefined) {
    port = Number(portText);
    if (!/^\d+$/.test(portText) || port < 1 || port > 65535) throw new ServerSpecError(`'${spec}': the port must be 1–65535`);
  }
  return { host, port };
}

/**
 * Parses several specs; with keyId, every server is authenticated with that
 * key, which must be in `keys`.
 */
export function parseServerSpecs(specs: string[], options: { keyId?: number; keys?: Map<number, SymmetricKey>; defaultPort?: number } = {}): NtpServerSpec[] {
  if (specs.length === 0) throw new ServerSpecError('name at least one NTP server (HOST[:PORT])');
  if (options.keyId !== undefined && !options.keys?.has(options.keyId)) {
    throw new ServerSpecError(options.keys ? `key ${options.keyId} is not in the keyfile` : `a key id (${options.keyId}) needs a keyfile`);
  }
  return specs.map((s) => {
    const spec = parseServerSpec(s, options.defaultPort);
    return options.keyId !== undefined ? { ...spec, keyId: options.keyId } : spec;
  });
}

/** Checks that every host resolves (an unknown host is bad input, not a network failure). */
export async function checkServersResolve(servers: NtpServerSpec[]): Promise<void> {
  await Promise.all(
    servers.map(async (s) => {
      try {
        await lookup(s.host);
      } catch (error) {
        const code = (error as NodeJS.ErrnoException).code;
        throw new ServerSpecError(`unknown host '${s.host}'${code ? ` (${code})` : ''}`);
      }
    }),
  );
}
