/**
 * The NTPv4 packet (RFC 5905 §7.3): a 48-byte header, then extension fields
 * (RFC 7822) and an optional MAC, told apart by their lengths — never by
 * "the last 8 bytes". Decoding checks structure only; whether a reply is
 * acceptable is the client's business (source.ts), whether a request is
 * served is the server's.
 */
import { shortToSeconds, secondsToShort, type NtpTimestamp } from './timestamp.js';

export const NTP_HEADER_BYTES = 48;
/** A MAC is a 4-byte key id and a 16- or 20-byte digest (MD5/CMAC, SHA1/truncated SHA256). */
export const MAC_LENGTHS = [20, 24] as const;
/** RFC 7822: an extension field is at least 16 bytes. */
export const MIN_EXTENSION_BYTES = 16;
/** Larger packets are refused outright: nothing legitimate we speak needs more. */
export const MAX_PACKET_BYTES = 1024;

export const enum Mode {
  SymmetricActive = 1,
  SymmetricPassive = 2,
  Client = 3,
  Server = 4,
  Broadcast = 5,
  Control = 6,
  Private = 7,
}

export const LEAP_UNSYNCHRONIZED = 3;

export interface ExtensionField {
  type: number;
  body: Buffer;
}

export interface Mac {
  keyId: number;
  digest: Buffer;
}

export interface NtpPacket {
  leap: number; // 0..3
  version: number; // 1..7
  mode: number; // 0..7
  stratum: number; // 0..255
  poll: number; // log2 s, signed
  precision: number; // log2 s, signed
  rootDelaySeconds: number;
  rootDispersionSeconds: number;
  referenceId: number; // uint32
  referenceTime: NtpTimestamp;
  originTime: NtpTimestamp;
  receiveTime: NtpTimestamp;
  transmitTime: NtpTimestamp;
  extensions: ExtensionField[];
  mac?: Mac;
}

export class NtpDecodeError extends Error {
  constructor(readonly reason: string) {
    super(`malformed NTP packet: ${reason}`);
    this.name = 'NtpDecodeError';
  }
}

export function decodePacket(buf: Buffer): NtpPacket {
  if (buf.length < NTP_HEADER_BYTES) throw new NtpDecodeError(`truncated: ${buf.length} bytes, a header is ${NTP_HEADER_BYTES}`);
  if (buf.length > MAX_PACKET_BYTES) throw new NtpDecodeError(`oversized: ${buf.length} bytes (limit ${MAX_PACKET_BYTES})`);
  if (buf.length % 4 !== 0) throw new NtpDecodeError(`length ${buf.length} is not a multiple of 4`);
  const first = buf.readUInt8(0);
  const packet: NtpPacket = {
    leap: first >> 6,
    version: (first >> 3) & 7,
    mode: first & 7,
    stratum: buf.readUInt8(1),
    poll: buf.readInt8(2),
    precision: buf.readInt8(3),
    rootDelaySeconds: shortToSeconds(buf.readUInt32BE(4)),
    rootDispersionSeconds: shortToSeconds(buf.readUInt32BE(8)),
    referenceId: buf.readUInt32BE(12),
    referenceTime: buf.readBigUInt64BE(16),
    originTime: buf.readBigUInt64BE(24),
    receiveTime: buf.readBigUInt64BE(32),
    transmitTime: buf.readBigUInt64BE(40),
    extensions: [],
  };
  let offset = NTP_HEADER_BYTES;
  while (offset < buf.length) {
    const remaining = buf.length - offset;
    if ((MAC_LENGTHS as readonly number[]).includes(remaining)) {
      packet.mac = { keyId: buf.readUInt32BE(offset), digest: Buffer.from(buf.subarray(offset + 4)) };
      break;
    }
    if (remaining < MIN_EXTENSION_BYTES) throw new NtpDecodeError(`${remaining} trailing bytes are neither a MAC nor an extension field`);
    const type = buf.readUInt16BE(offset);
    const length = buf.readUInt16BE(offset + 2);
    if (length < MIN_EXTENSION_BYTES || length % 4 !== 0 || length > remaining) {
      throw new NtpDecodeError(`extension field at byte ${offset} has bad length ${length}`);
    }
    packet.extensions.push({ type, body: Buffer.from(buf.subarray(offset + 4, offset + length)) });
    offset += length;
  }
  return packet;
}

/** Encodes header and extension fields; a MAC, if any, is appended by auth.ts over these bytes. */
export function encodePacket(packet: NtpPacket): Buffer {
  const extBytes = packet.extensions.reduce((n, e) => n + 4 + e.body.length, 0);
  const macBytes = packet.mac ? 4 + packet.mac.digest.length : 0;
  const buf = Buffer.alloc(NTP_HEADER_BYTES + extBytes + macBytes);
  buf.writeUInt8(((packet.leap & 3) << 6) | ((packet.version & 7) << 3) | (packet.mode & 7), 0);
  buf.writeUInt8(packet.stratum & 0xff, 1);
  buf.writeInt8(Math.max(-128, Math.min(127, packet.poll)), 2);
  buf.writeInt8(Math.max(-128, Math.min(127, packet.precision)), 3);
  buf.writeUInt32BE(secondsToShort(packet.rootDelaySeconds), 4);
  buf.writeUInt32BE(secondsToShort(packet.rootDispersionSeconds), 8);
  buf.writeUInt32BE(packet.referenceId >>> 0, 12);
  buf.writeBigUInt64BE(packet.referenceTime, 16);
  buf.writeBigUInt64BE(packet.originTime, 24);
  buf.writeBigUInt64BE(packet.receiveTime, 32);
  buf.writeBigUInt64BE(packet.transmitTime, 40);
  let offset = NTP_HEADER_BYTES;
  for (const ext of packet.extensions) {
    const length = 4 + ext.body.length;
    if (length < MIN_EXTENSION_BYTES || length % 4 !== 0) throw new RangeError(`extension field length ${length} is invalid`);
    buf.writeUInt16BE(ext.type, offset);
    buf.writeUInt16BE(length, offset + 2);
    ext.body.copy(buf, offset + 4);
    offset += length;
  }
  if (packet.mac) {
    buf.writeUInt32BE(packet.mac.keyId >>> 0, offset);
    packet.mac.digest.copy(buf, offset + 4);
  }
  return buf;
}

/** Bytes a MAC covers: everything before it. */
export function authenticatedBytes(buf: Buffer, packet: NtpPacket): Buffer {
  return packet.mac ? buf.subarray(0, buf.length - 4 - packet.mac.digest.length) : buf;
}

/** The four-letter Kiss-o'-Death code of a stratum-0 packet, if it is one. */
export function kissCode(packet: NtpPacket): string | undefined {
  if (packet.stratum !== 0) return undefined;
  return refIdAscii(packet.referenceId);
}

export function refIdAscii(refId: number): string {
  const bytes = [refId >>> 24, (refId >>> 16) & 0xff, (refId >>> 8) & 0xff, refId & 0xff];
  return String.fromCharCode(...bytes.filter((b) => b >= 0x20 && b < 0x7f));
}

export function asciiRefId(code: string): number {
  const padded = (code + '\0\0\0\0').slice(0, 4);
  return ((padded.charCodeAt(0) << 24) | (padded.charCodeAt(1) << 16) | (padded.charCodeAt(2) << 8) | padded.charCodeAt(3)) >>> 0;
}

/** refid as a person reads it: ASCII at stratum 0–1, a dotted quad above. */
export function formatRefId(refId: number, stratum: number): string {
  if (stratum <= 1) return refIdAscii(refId);
  return [refId >>> 24, (refId >>> 16) & 0xff, (refId >>> 8) & 0xff, refId & 0xff].join('.');
}
