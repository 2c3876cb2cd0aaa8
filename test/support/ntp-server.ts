/** Starting our NtpServer in a test and talking to it with raw datagrams. */
import { createSocket } from 'node:dgram';
import { NtpServer, type NtpServerOptions } from '../../src/ntp/server.js';
import { Timescale } from '../../src/time/timescale.js';
import { realClock } from '../../src/time/clock.js';
import type { NtpPacket } from '../../src/ntp/packet.js';
import { unixNsToNtp } from '../../src/ntp/timestamp.js';

export function systemTimescale(): Timescale {
  return new Timescale(realClock(), { trustRawClock: { errorBoundNs: 1_000_000 } });
}

export async function startServer(options: Partial<NtpServerOptions> = {}): Promise<{ server: NtpServer; port: number }> {
  const server = new NtpServer({ timescale: systemTimescale(), port: 0, bind: '127.0.0.1', ...options });
  const { port } = await server.start();
  return { server, port };
}

export function clientRequest(overrides: Partial<NtpPacket> = {}): NtpPacket {
  return {
    leap: 0,
    version: 4,
    mode: 3,
    stratum: 0,
    poll: 6,
    precision: -20,
    rootDelaySeconds: 0,
    rootDispersionSeconds: 0,
    referenceId: 0,
    referenceTime: 0n,
    originTime: 0n,
    receiveTime: 0n,
    transmitTime: unixNsToNtp(realClock().nowNs()),
    extensions: [],
    ...overrides,
  };
}

/** Sends datagrams from one socket and collects every reply for `waitMs`. */
export async function exchange(
  port: number,
  datagrams: Buffer[],
  options: { waitMs?: number; host?: string; from?: string } = {},
): Promise<Buffer[]> {
  const host = options.host ?? '127.0.0.1';
  const socket = createSocket(host.includes(':') ? 'udp6' : 'udp4');
  const replies: Buffer[] = [];
  socket.on('message', (msg) => replies.push(msg));
  await new Promise<void>((resolve) => socket.bind(0, options.from ?? (host.includes(':') ? '::1' : '127.0.0.1'), resolve));
  try {
    for (const d of datagrams) socket.send(d, port, host);
    await new Promise((r) => setTimeout(r, options.waitMs ?? 300));
    return replies;
  } finally {
    socket.close();
  }
}

/** The server measures its own receive/send latency for a second or so after start (rxlatency.ts); a long-running hub always has. */
export const WARM_UP_MS = 1200;

