/**
 * CIDR ranges for the server's allow list, IPv4 and IPv6 alike.
 *
 * Every address is held as 16 bytes: IPv4 as its IPv4-mapped IPv6 form
 * (::ffff:a.b.c.d, RFC 4291 §2.5.5.2), so "192.168.1.0/24" also matches a
 * client that reaches a dual-stack socket as ::ffff:192.168.1.7. That is how
 * Node reports IPv4 peers on a socket bound to "::".
 */
import { isIPv4, isIPv6 } from 'node:net';

export class CidrError extends Error {
  constructor(readonly reason: string) {
    super(reason);
    this.name = 'CidrError';
  }
}

export interface Cidr {
  /** As given, for messages and status. */
  text: string;
  /** 16-byte network address (IPv4 mapped), host bits cleared. */
  network: Buffer;
  /** Prefix length over the 16-byte form (an IPv4 /24 is /120 here). */
  bits: number;
}

const V4_MAPPED_PREFIX = Buffer.from([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff]);
/** An IPv4 prefix counts from bit 96 of the mapped form. */
const V4_MAPPED_BITS = 96;

/** 16 bytes for an IPv4 or IPv6 address (zone ids like %eth0 are dropped), or undefined if it is neither. */
export function addressBytes(address: string): Buffer | undefined {
  const plain = address.replace(/%.*$/, '');
  if (isIPv4(plain)) return Buffer.concat([V4_MAPPED_PREFIX, Buffer.from(plain.split('.').map(Number))]);
  if (!isIPv6(plain)) return undefined;
  let text = plain;
  // A trailing dotted quad (::ffff:1.2.3.4) becomes two hex groups.
  const quad = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (quad) {
    const [a, b, c, d] = quad[1]!.split('.').map(Number) as [number, number, number, number];
    text = text.slice(0, quad.index) + ((a << 8) | b).toString(16) + ':' + ((c << 8) | d).toString(16);
  }
  const [head, tail] = text.includes('::') ? (text.split('::') as [string, string]) : [text, undefined];
  const headGroups = head ? head.split(':') : [];
  const tailGroups = tail ? tail.split(':') : [];
  const missing = 8 - headGroups.length - tailGroups.length;
  const groups = tail === undefined ? headGroups : [...headGroups, ...Array<string>(missing).fill('0'), ...tailGroups];
  const bytes = Buffer.alloc(16);
  groups.forEach((g, i) => bytes.writeUInt16BE(parseInt(g, 16), i * 2));
  return bytes;
}

/** "10.0.0.0/8", "fd00::/8", or a bare address (a host: /32 or /128). */
export function parseCidr(text: string): Cidr {
  const [addressText, bitsText, extra] = text.trim().split('/');
  if (extra !== undefined || !addressText) throw new CidrError(`'${text}' is not a CIDR range like 192.168.1.0/24 or fd00::/8`);
  const address = addressBytes(addressText);
  if (!address) throw new CidrError(`'${text}': '${addressText}' is not an IPv4 or IPv6 address`);
  const v4 = isIPv4(addressText);
  const maxBits = v4 ? 32 : 128;
  let bits = maxBits;
  if (bitsText !== undefined) {
    if (!/^\d{1,3}$/.test(bitsText) || Number(bitsText) > maxBits) {
      throw new CidrError(`'${text}': the prefix length must be 0–${maxBits}`);
    }
    bits = Number(bitsText);
  }
  const totalBits = v4 ? V4_MAPPED_BITS + bits : bits;
  return { text: text.trim(), network: maskTo(address, totalBits), bits: totalBits };
}

function maskTo(address: Buffer, bits: number): Buffer {
  const out = Buffer.from(address);
  for (let i = 0; i < 16; i++) {
    const keep = Math.max(0, Math.min(8, bits - i * 8));
    out[i]! &= (0xff << (8 - keep)) & 0xff;
  }
  return out;
}

export function cidrContains(cidr: Cidr, address: Buffer): boolean {
  const fullBytes = cidr.bits >> 3;
  for (let i = 0; i < fullBytes; i++) if (address[i] !== cidr.network[i]) return false;
  const rest = cidr.bits & 7;
  if (rest === 0) return true;
  const mask = (0xff << (8 - rest)) & 0xff;
  return (address[fullBytes]! & mask) === cidr.network[fullBytes];
}

/** An allow list: empty means everyone. Matches cache per address string (bounded), since peers repeat. */
export class AllowList {
  readonly ranges: readonly Cidr[];
  private readonly cache = new Map<string, boolean>();
  /** Enough for a LAN of nodes; beyond it the cache is simply cleared (correctness never depends on it). */
  private static readonly CACHE_LIMIT = 4096;

  constructor(ranges: Array<string | Cidr> = []) {
    this.ranges = ranges.map((r) => (typeof r === 'string' ? parseCidr(r) : r));
  }

  get allowsEveryone(): boolean {
    return this.ranges.length === 0;
  }

  allows(address: string): boolean {
    if (this.ranges.length === 0) return true;
    const cached = this.cache.get(address);
    if (cached !== undefined) return cached;
    const bytes = addressBytes(address);
    const result = bytes !== undefined && this.ranges.some((r) => cidrContains(r, bytes));
    if (this.cache.size >= AllowList.CACHE_LIMIT) this.cache.clear();
    this.cache.set(address, result);
    return result;
  }
}
