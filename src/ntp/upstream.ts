/**
 * What the hub's server says about its own source when the embedded NtpClient
 * disciplines its Timescale (`serve-time --upstream`, the mesh hub): stratum
 * one below the selected server, refid naming that server (RFC 5905: its IPv4
 * address, else the first four bytes of the MD5 of its address), root delay
 * and dispersion grown by our path to it.
 *
 * Cached from the client's updates, because the server asks for every request.
 * Through a loss of all sources (holdover) the last information stays: the
 * Timescale's error bound, which the server also declares, grows meanwhile.
 */
import { createHash } from 'node:crypto';
import { isIPv4 } from 'node:net';
import type { ClientStatus } from './client.js';
import type { UpstreamInfo } from './server.js';

/** The RFC 5905 refid for a server we synchronize to. */
export function refIdForAddress(host: string): number {
  if (isIPv4(host)) return host.split('.').reduce((acc, part) => ((acc << 8) | Number(part)) >>> 0, 0);
  return createHash('md5').update(host).digest().readUInt32BE(0);
}

/** "host:port" / "[v6]:port" → host. */
function hostOf(address: string): string {
  const bracketed = /^\[([^\]]+)\]/.exec(address);
  if (bracketed) return bracketed[1]!;
  const colons = (address.match(/:/g) ?? []).length;
  return colons === 1 ? address.slice(0, address.indexOf(':')) : address;
}

/** UpstreamInfo from one client status, or undefined when nothing is selected. */
export function upstreamFromStatus(status: ClientStatus): UpstreamInfo | undefined {
  const selected = status.sources.find((s) => s.state === 'selected');
  if (!status.synchronized || !selected || selected.stratum === undefined) return undefined;
  return {
    stratum: selected.stratum,
    refId: refIdForAddress(hostOf(selected.address)),
    rootDelaySeconds: (status.rootDelaySeconds ?? 0) + Math.max(0, selected.delaySeconds),
    rootDispersionSeconds: (status.rootDispersionSeconds ?? 0) + Math.max(0, selected.jitterSeconds),
  };
}

/** Something that reports client status updates (NtpClient does). */
export interface StatusSource {
  status(): ClientStatus;
  onUpdate(listener: (status: ClientStatus) => void): () => void;
}

/** A cached `upstream` callback for NtpServer, following the client; call the returned `stop` when done. */
export function followClient(client: StatusSource): { upstream: () => UpstreamInfo | undefined; stop: () => void } {
  let last: UpstreamInfo | undefined = upstreamFromStatus(client.status());
  const stop = client.onUpdate((status) => {
    last = upstreamFromStatus(status) ?? last;
  });
  return { upstream: () => last, stop };
}
