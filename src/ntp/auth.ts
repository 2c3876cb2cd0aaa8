/**
 * Symmetric-key authentication of NTP packets (RFC 5905 §7.3, RFC 8573),
 * interoperable with chrony:
 *
 * - The keyfile is chrony's: one key per line, `ID TYPE KEY` or `ID KEY`
 *   (then MD5), KEY as `HEX:...`, `ASCII:...` or bare ASCII; a line whose
 *   first non-blank character is one of `# ; ! %` is a comment.
 * - Hash types (MD5, SHA1, SHA256, SHA512) use NTP's classic MAC,
 *   digest(key || packet), not HMAC. AES128/AES256 use CMAC (RFC 4493),
 *   which RFC 8573 recommends.
 * - NTPv4 MACs are truncated to 20 bytes (chrony: NTP_MAX_V4_MAC_LENGTH is
 *   4 + 20), so a MAC can be told from an extension field by its length
 *   (RFC 7822). That is why chrony's client falls back to NTPv3 for SHA256 and
 *   SHA512 keys: an NTPv3 packet carries the full digest (up to 64 bytes),
 *   which decodePacketWithMac() below understands.
 * - A receiver accepts a MAC only of exactly the expected length
 *   (min(digest length, truncation)), compared in constant time.
 */
import { createCipheriv, createHash, timingSafeEqual } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { authenticatedBytes, decodePacket, NtpDecodeError, NTP_HEADER_BYTES, type NtpPacket } from './packet.js';

export type KeyType = 'MD5' | 'SHA1' | 'SHA256' | 'SHA512' | 'AES128' | 'AES256';

export interface SymmetricKey {
  id: number;
  type: KeyType;
  key: Buffer;
}

/** A keyfile problem, with the line it is on (1-based), worded so a person can fix it. */
export class KeyFileError extends Error {
  constructor(
    readonly reason: string,
    readonly line?: number,
    readonly path?: string,
  ) {
    const where = [path, line !== undefined ? `line ${line}` : undefined].filter(Boolean).join(', ');
    super(where ? `keyfile ${where}: ${reason}` : `keyfile: ${reason}`);
    this.name = 'KeyFileError';
  }
}

/** chrony: NTP_MAX_V4_MAC_LENGTH (4 + 20) − the key id. Longer digests are truncated in NTPv4. */
export const MAX_V4_DIGEST_BYTES = 20;
/** chrony: NTP_MAX_MAC_LENGTH (4 + 64): NTPv3 carries up to a full SHA512 digest. */
export const MAX_DIGEST_BYTES = 64;
/** chrony: NTP_MIN_MAC_LENGTH (4 + 16): shorter MACs are never accepted. */
export const MIN_DIGEST_BYTES = 16;

const HASH_ALGORITHMS: Record<Exclude<KeyType, 'AES128' | 'AES256'>, { node: string; bytes: number }> = {
  MD5: { node: 'md5', bytes: 16 },
  SHA1: { node: 'sha1', bytes: 20 },
  SHA256: { node: 'sha256', bytes: 32 },
  SHA512: { node: 'sha512', bytes: 64 },
};
const CMAC_KEY_BYTES: Record<'AES128' | 'AES256', number> = { AES128: 16, AES256: 32 };
const AES_BLOCK = 16;
const KEY_TYPES: readonly KeyType[] = ['MD5', 'SHA1', 'SHA256', 'SHA512', 'AES128', 'AES256'];

/** chrony's CPS_NormalizeLine: a line starting with one of these is a comment. */
const COMMENT_STARTS = '#;!%';

/** Full digest length of a key type (before any truncation). */
export function digestLength(type: KeyType): number {
  return type === 'AES128' || type === 'AES256' ? AES_BLOCK : HASH_ALGORITHMS[type].bytes;
}

/** Parses a keyfile's text; throws KeyFileError naming the first bad line. */
export function parseKeyFile(text: string): Map<number, SymmetricKey> {
  const keys = new Map<number, SymmetricKey>();
  const lines = text.split(/\r?\n/);
  lines.forEach((raw, index) => {
    const lineNo = index + 1;
    const line = raw.trim();
    if (line === '' || COMMENT_STARTS.includes(line[0]!)) return;
    const words = line.split(/\s+/);
    if (words.length < 2 || words.length > 3) {
      throw new KeyFileError(`expected 'ID TYPE KEY' (or 'ID KEY' for MD5), found ${words.length} word(s)`, lineNo);
    }
    const [idText, typeText, keyText] = words.length === 3 ? (words as [string, string, string]) : [words[0]!, 'MD5', words[1]!];
    if (!/^\d+$/.test(idText) || Number(idText) > 0xffff_ffff) {
      throw new KeyFileError(`key id '${idText}' is not an integer from 0 to 4294967295`, lineNo);
    }
    const id = Number(idText);
    const type = KEY_TYPES.find((t) => t === typeText.toUpperCase());
    if (!type) throw new KeyFileError(`key ${id}: unknown type '${typeText}' (use one of ${KEY_TYPES.join(', ')})`, lineNo);
    const key = decodeKeyValue(keyText, id, lineNo);
    if (type === 'AES128' || type === 'AES256') {
      const want = CMAC_KEY_BYTES[type];
      if (key.length !== want) {
        throw new KeyFileError(`key ${id}: ${type} needs exactly ${want} bytes (${want * 2} hex digits), got ${key.length}`, lineNo);
      }
    }
    if (keys.has(id)) throw new KeyFileError(`key id ${id} is defined twice`, lineNo);
    keys.set(id, { id, type, key });
  });
  return keys;
}

function decodeKeyValue(text: string, id: number, lineNo: number): Buffer {
  let key: Buffer;
  if (text.startsWith('HEX:')) {
    const hex = text.slice(4);
    if (hex.length === 0 || hex.length % 2 !== 0 || !/^[0-9a-fA-F]+$/.test(hex)) {
      throw new KeyFileError(`key ${id}: HEX: value must be an even number of hex digits`, lineNo);
    }
    key = Buffer.from(hex, 'hex');
  } else if (text.startsWith('ASCII:')) {
    key = Buffer.from(text.slice(6), 'latin1');
  } else {
    key = Buffer.from(text, 'latin1');
  }
  if (key.length === 0) throw new KeyFileError(`key ${id}: the key value is empty`, lineNo);
  return key;
}

/** Reads and parses a keyfile; every failure (missing, unreadable, bad line) is a KeyFileError. */
export async function loadKeyFile(path: string): Promise<Map<number, SymmetricKey>> {
  let text: string;
  try {
    text = await readFile(path, 'latin1');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? 'permission denied' : (error as Error).message;
    throw new KeyFileError(`cannot read it: ${why}`, undefined, path);
  }
  try {
    return parseKeyFile(text);
  } catch (error) {
    if (error instanceof KeyFileError) throw new KeyFileError(error.reason, error.line, path);
    throw error;
  }
}

// ---- digests ---------------------------------------------------------------

/** CMAC subkeys (RFC 4493 §2.3), cached per key object: they cost one AES block each. */
const cmacSubkeys = new WeakMap<SymmetricKey, { k1: Buffer; k2: Buffer }>();

function aesName(key: SymmetricKey, mode: 'ecb' | 'cbc'): string {
  return `aes-${key.key.length * 8}-${mode}`;
}

/** Doubling in GF(2^128) (RFC 4493's "<< 1, xor Rb if the top bit was set"). */
function doubleBlock(block: Buffer): Buffer {
  const out = Buffer.alloc(AES_BLOCK);
  let carry = 0;
  for (let i = AES_BLOCK - 1; i >= 0; i--) {
    const b = block[i]!;
    out[i] = ((b << 1) | carry) & 0xff;
    carry = b >> 7;
  }
  if (block[0]! & 0x80) out[AES_BLOCK - 1]! ^= 0x87;
  return out;
}

function subkeys(key: SymmetricKey): { k1: Buffer; k2: Buffer } {
  let cached = cmacSubkeys.get(key);
  if (!cached) {
    const ecb = createCipheriv(aesName(key, 'ecb'), key.key, null).setAutoPadding(false);
    const l = Buffer.concat([ecb.update(Buffer.alloc(AES_BLOCK)), ecb.final()]);
    const k1 = doubleBlock(l);
    cached = { k1, k2: doubleBlock(k1) };
    cmacSubkeys.set(key, cached);
  }
  return cached;
}

/** AES-CMAC (RFC 4493): CBC-MAC with a zero IV, the last block masked with K1 (full) or padded and masked with K2. */
export function aesCmac(key: SymmetricKey, data: Buffer): Buffer {
  const { k1, k2 } = subkeys(key);
  const complete = data.length > 0 && data.length % AES_BLOCK === 0;
  const blocks = complete ? data.length / AES_BLOCK : Math.floor(data.length / AES_BLOCK) + 1;
  const message = Buffer.alloc(blocks * AES_BLOCK);
  data.copy(message);
  if (!complete) message[data.length] = 0x80;
  const mask = complete ? k1 : k2;
  const last = (blocks - 1) * AES_BLOCK;
  for (let i = 0; i < AES_BLOCK; i++) message[last + i]! ^= mask[i]!;
  const cbc = createCipheriv(aesName(key, 'cbc'), key.key, Buffer.alloc(AES_BLOCK)).setAutoPadding(false);
  const out = Buffer.concat([cbc.update(message), cbc.final()]);
  return out.subarray(out.length - AES_BLOCK);
}

/**
 * The MAC digest of `data` under `key`: digest(key || data) for hash types
 * (NTP's classic MAC, as chrony and ntpd compute it), CMAC for AES; truncated
 * to maxDigestBytes (20 for NTPv4, like chrony; pass MAX_DIGEST_BYTES for NTPv3).
 */
export function computeDigest(key: SymmetricKey, data: Buffer, maxDigestBytes: number = MAX_V4_DIGEST_BYTES): Buffer {
  let digest: Buffer;
  if (key.type === 'AES128' || key.type === 'AES256') {
    digest = aesCmac(key, data);
  } else {
    digest = createHash(HASH_ALGORITHMS[key.type].node).update(key.key).update(data).digest();
  }
  return digest.length > maxDigestBytes ? digest.subarray(0, maxDigestBytes) : digest;
}

/** The packet bytes followed by the MAC: the 4-byte key id and the digest of those bytes. */
export function appendMac(packetBytes: Buffer, key: SymmetricKey, maxDigestBytes: number = MAX_V4_DIGEST_BYTES): Buffer {
  const digest = computeDigest(key, packetBytes, maxDigestBytes);
  const keyId = Buffer.alloc(4);
  keyId.writeUInt32BE(key.id >>> 0);
  return Buffer.concat([packetBytes, keyId, digest]);
}

/** How long a digest must be to be accepted, as chrony decides (check_auth's MIN(hash_len, trunc_len)). */
export function expectedDigestLength(key: SymmetricKey, version: number, receivedDigestBytes: number): number {
  const truncation = version === 4 && receivedDigestBytes <= MAX_V4_DIGEST_BYTES ? MAX_V4_DIGEST_BYTES : MAX_DIGEST_BYTES;
  return Math.min(digestLength(key.type), truncation);
}

/**
 * Checks a packet's MAC against the keys. `bytes` is the packet as received,
 * `packet` its decoding (which located the MAC by length). The comparison is
 * constant-time; a MAC of the wrong length is refused before comparing.
 */
export function verifyMac(
  bytes: Buffer,
  packet: NtpPacket,
  keys: Map<number, SymmetricKey>,
): { ok: true; key: SymmetricKey } | { ok: false; reason: string } {
  const mac = packet.mac;
  if (!mac) return { ok: false, reason: 'the packet carries no MAC' };
  const key = keys.get(mac.keyId);
  if (!key) return { ok: false, reason: `unknown key id ${mac.keyId}` };
  const want = expectedDigestLength(key, packet.version, mac.digest.length);
  if (mac.digest.length !== want) {
    return { ok: false, reason: `key ${key.id} (${key.type}) needs a ${want}-byte digest, the packet has ${mac.digest.length}` };
  }
  const digest = computeDigest(key, authenticatedBytes(bytes, packet), want);
  if (!timingSafeEqual(digest, mac.digest)) return { ok: false, reason: `MAC does not match key ${key.id}` };
  return { ok: true, key };
}

/**
 * decodePacket, plus NTPv3's long MACs: an NTPv1–3 packet has no extension
 * fields, so anything after the header is a MAC (4-byte key id + 16–64 byte
 * digest). This is what chrony sends with SHA256/SHA512 keys. NTPv4 goes to
 * decodePacket unchanged (MAC told from extension fields by length).
 */
export function decodePacketWithMac(bytes: Buffer): NtpPacket {
  const version = bytes.length > 0 ? (bytes[0]! >> 3) & 7 : 0;
  const trailing = bytes.length - NTP_HEADER_BYTES;
  if (version >= 4 || trailing <= 0) return decodePacket(bytes);
  if (trailing % 4 !== 0 || trailing < 4 + MIN_DIGEST_BYTES || trailing > 4 + MAX_DIGEST_BYTES) {
    throw new NtpDecodeError(`NTPv${version}: ${trailing} bytes after the header are not a MAC`);
  }
  const packet = decodePacket(bytes.subarray(0, NTP_HEADER_BYTES));
  packet.mac = { keyId: bytes.readUInt32BE(NTP_HEADER_BYTES), digest: Buffer.from(bytes.subarray(NTP_HEADER_BYTES + 4)) };
  return packet;
}
