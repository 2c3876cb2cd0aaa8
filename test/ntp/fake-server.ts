/**
 * A programmable NTP responder for tests: honest, lying by an offset, or
 * hostile (each reply built by a function the test gives). It answers on a
 * free loopback port and is stopped by the test.
 */
import { createSocket, type Socket } from 'node:dgram';
import { decodePacket, encodePacket, Mode, type NtpPacket } from '../../src/ntp/packet.js';
import { unixNsToNtp } from '../../src/ntp/timestamp.js';
import { realClock } from '../../src/time/clock.js';

export interface FakeServerOptions {
  /** Added to true time in every honest reply, seconds. */
  offsetSeconds?: number;
  /** Listen here (default 127.0.0.1; '::1' for IPv6). */
  host?: string;
  /** Builds the datagrams sent for a request (default: one honest reply). */
  respond?: (request: NtpPacket, honest: () => NtpPacket, requestBytes: Buffer) => Buffer[];
}

export interface FakeServer {
  host: string;
  port: number;
  requests: number;
  stop(): Promise<void>;
}

export function honestReply(request: NtpPacket, offsetSeconds = 0): NtpPacket {
  const now = realClock().nowNs() + BigInt(Math.round(offsetSeconds * 1e9));
  return {
    leap: 0,
    version: request.version || 4,
    mode: Mode.Server,
    stratum: 2,
    poll: request.poll,
    precision: -20,
    rootDelaySeconds: 0.0001,
    rootDispersionSeconds: 0.0001,
    referenceId: 0x7f7f0101,
    referenceTime: unixNsToNtp(now - 1_000_000_000n),
    originTime: request.transmitTime,
    receiveTime: unixNsToNtp(now),
    transmitTime: unixNsToNtp(now + 10_000n),
    extensions: [],
  };
}

export async function startFakeServer(options: FakeServerOptions = {}): Promise<FakeServer> {
  const host = options.host ?? '127.0.0.1';
  const socket: Socket = createSocket(host.includes(':') ? 'udp6' : 'udp4');
  const server: FakeServer = {
    host,
    port: 0,
    requests: 0,
    stop: () => new Promise<void>((r) => socket.close(() => r())),
  };
  socket.on('message', (msg, rinfo) => {
    let request: NtpPacket;
    try {
      request = decodePacket(msg);
    } catch {
      return;
    }
    server.requests++;
    const honest = () => honestReply(request, options.offsetSeconds ?? 0);
    const replies = options.respond ? options.respond(request, honest, msg) : [encodePacket(honest())];
    for (const reply of replies) socket.send(reply, rinfo.port, rinfo.address);
  });
  socket.on('error', () => undefined);
  await new Promise<void>((r) => socket.bind(0, host, () => r()));
  server.port = socket.address().port;
  return server;
}
