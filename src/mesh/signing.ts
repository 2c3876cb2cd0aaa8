/**
 * Authenticating triggers: HMAC-SHA256 over canonical JSON with a key id, and
 * replay protection.
 *
 * Without it anyone on the Wi-Fi who can reach the broker can fire the
 * cameras. The signature covers the message exactly as received (every field
 * except `sig`), serialised canonically: object keys sorted, no whitespace,
 * strings and numbers as JSON.stringify writes them. A signed message is
 * accepted once: its id is remembered until it expires, and an issue time far
 * from the node's clock is refused as stale, so a captured trigger cannot be
 * replayed later. A message that is meant to live longer (a retained train,
 * which nodes that connect later take up in phase) may be older than that, up
 * to its own expiry: its id is remembered that long, so it still runs once.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { NS_PER_SECOND } from '../time/units.js';
import type { RejectReason, Signature } from './messages.js';

/** A shorter key would be brute-forceable; 16 bytes is what HMAC needs to be safe. */
export const MIN_KEY_BYTES = 16;

export class KeyFileError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'KeyFileError';
  }
}

/** Serialises a JSON value with object keys sorted at every level: the bytes that are signed. */
export function canonicalJson(value: unknown): string {
  if (value === null || typeof value !== 'object') {
    if (typeof value === 'number' && !Number.isFinite(value)) throw new TypeError('cannot sign a non-finite number');
    if (typeof value === 'bigint') return JSON.stringify(value.toString());
    const text = JSON.stringify(value);
    if (text === undefined) throw new TypeError(`cannot sign a ${typeof value}`);
    return text;
  }
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  const entries = Object.keys(value as Record<string, unknown>)
    .filter((k) => (value as Record<string, unknown>)[k] !== undefined)
    .sort()
    .map((k) => `${JSON.stringify(k)}:${canonicalJson((value as Record<string, unknown>)[k])}`);
  return `{${entries.join(',')}}`;
}

/** Shared secrets by key id. */
export class KeyRing {
  private readonly keys = new Map<string, Buffer>();

  constructor(entries: Iterable<[string, Buffer]> = []) {
    for (const [id, key] of entries) this.add(id, key);
  }

  add(id: string, key: Buffer): void {
    if (!/^[A-Za-z0-9._-]{1,64}$/.test(id)) throw new KeyFileError(`key id '${id}' must be 1-64 letters, digits, '.', '_' or '-'`);
    if (key.length < MIN_KEY_BYTES) throw new KeyFileError(`key '${id}' is ${key.length} bytes; use at least ${MIN_KEY_BYTES} (e.g. HEX: of 'openssl rand -hex 32')`);
    this.keys.set(id, key);
  }

  get(id: string): Buffer | undefined {
    return this.keys.get(id);
  }

  get size(): number {
    return this.keys.size;
  }

  ids(): string[] {
    return [...this.keys.keys()];
  }

  /**
   * A key file: one key per line, `ID HEX:<hex>` or `ID ASCII:<text>` (or a
   * bare text secret), '#' comments. Like chrony's keyfile without the hash
   * name: the hash is always SHA-256.
   */
  static parse(text: string, origin = 'key file'): KeyRing {
    const ring = new KeyRing();
    text.split('\n').forEach((line, n) => {
      const trimmed = line.replace(/#.*/, '').trim();
      if (!trimmed) return;
      const parts = trimmed.split(/\s+/);
      if (parts.length !== 2) throw new KeyFileError(`${origin}:${n + 1}: expected 'ID HEX:<hex>' or 'ID ASCII:<text>'`);
      const [id, secret] = parts as [string, string];
      let key: Buffer;
      if (/^HEX:/i.test(secret)) {
        const hex = secret.slice(4);
        if (!/^([0-9a-fA-F]{2})+$/.test(hex)) throw new KeyFileError(`${origin}:${n + 1}: bad hex key`);
        key = Buffer.from(hex, 'hex');
      } else {
        key = Buffer.from(secret.replace(/^ASCII:/i, ''), 'utf8');
      }
      try {
        ring.add(id, key);
      } catch (error) {
        throw new KeyFileError(`${origin}:${n + 1}: ${(error as Error).message}`);
      }
    });
    if (ring.size === 0) throw new KeyFileError(`${origin}: no keys`);
    return ring;
  }

  static load(path: string): KeyRing {
    let text: string;
    try {
      text = readFileSync(path, 'utf8');
    } catch (error) {
      throw new KeyFileError(`cannot read key file ${path}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
    }
    return KeyRing.parse(text, path);
  }
}

function hmacHex(key: Buffer, body: Record<string, unknown>): string {
  const { sig: _ignored, ...rest } = body;
  return createHmac('sha256', key).update(canonicalJson(rest)).digest('hex');
}

/** Adds `sig` to a wire object (bigints already as strings), signed with key `keyId`. */
export function signWire(wire: Record<string, unknown>, keyId: string, ring: KeyRing): Record<string, unknown> & { sig: Signature } {
  const key = ring.get(keyId);
  if (!key) throw new KeyFileError(`no key with id '${keyId}' (have: ${ring.ids().join(', ') || 'none'})`);
  return { ...wire, sig: { keyId, hmac: hmacHex(key, wire) } };
}

export type VerifyResult = { ok: true; keyId?: string } | { ok: false; reason: RejectReason; detail: string };

/**
 * Checks the signature of a received wire object. With `required`, an
 * unsigned message is refused; without a key ring, signatures are ignored.
 */
export function verifyWire(wire: Record<string, unknown>, ring: KeyRing | undefined, required: boolean): VerifyResult {
  const sig = wire.sig as Signature | undefined;
  if (!sig) {
    return required ? { ok: false, reason: 'bad-signature', detail: 'unsigned, and this node requires a signature' } : { ok: true };
  }
  if (!ring) return required ? { ok: false, reason: 'bad-signature', detail: 'this node has no keys' } : { ok: true };
  const key = ring.get(sig.keyId);
  if (!key) return { ok: false, reason: 'bad-signature', detail: `unknown key id '${sig.keyId}'` };
  const expected = Buffer.from(hmacHex(key, wire), 'hex');
  const given = Buffer.from(sig.hmac, 'hex');
  // Lengths are fixed by the schema (64 hex digits); compare in constant time.
  if (given.length !== expected.length || !timingSafeEqual(given, expected)) {
    return { ok: false, reason: 'bad-signature', detail: `HMAC does not match key '${sig.keyId}'` };
  }
  return { ok: true, keyId: sig.keyId };
}

export interface ReplayGuardOptions {
  /** An issue time further than this from our clock (either way) is stale. */
  maxAgeNs?: bigint;
  /** Ids remembered at most; the oldest are forgotten first (they are stale by then). */
  capacity?: number;
}

/** 60 s: ample for delivery through a reconnecting broker, short enough to bound the id memory. */
export const DEFAULT_MAX_AGE_NS = 60n * NS_PER_SECOND;
const DEFAULT_CAPACITY = 10_000;

/**
 * Refuses a message id seen before, and issue times outside ±maxAge of now.
 * Ids are remembered until their message is stale anyway, so memory is bounded
 * by the message rate × maxAge (and by `capacity`).
 */
export class ReplayGuard {
  readonly maxAgeNs: bigint;
  private readonly capacity: number;
  /** id → instant after which it may be forgotten (insertion-ordered). */
  private readonly seen = new Map<string, bigint>();
  /**
   * Until this instant an id may have been forgotten before its message
   * expired (the capacity was exceeded): old messages are then judged by
   * their age alone again, since their ids can no longer vouch for them.
   */
  private evictedUntilNs = 0n;

  constructor(options: ReplayGuardOptions = {}) {
    this.maxAgeNs = options.maxAgeNs ?? DEFAULT_MAX_AGE_NS;
    this.capacity = options.capacity ?? DEFAULT_CAPACITY;
  }

  /**
   * Checks without remembering. `expiresNs`: the message's own expiry; one
   * issued longer ago than maxAge is still fresh until then (a late joiner
   * receiving a retained train), as long as every id is remembered that long.
   * A node without a state file forgets at a restart: a still-valid signed
   * train replayed to it then runs again from where it stands, in phase, as
   * the retained copy would make it anyway; a cancelled one stays cancelled
   * only where the id is remembered (use --state-file).
   */
  check(id: string, issuedNs: bigint, nowNs: bigint, expiresNs?: bigint): { reason: RejectReason; detail: string } | undefined {
    if (this.seen.has(id)) return { reason: 'replayed', detail: `message id '${id}' was already received` };
    const age = nowNs - issuedNs;
    const livesLonger = expiresNs !== undefined && nowNs <= expiresNs && this.evictedUntilNs < nowNs;
    if (-age > this.maxAgeNs || (age > this.maxAgeNs && !livesLonger)) {
      const seconds = Number(age) / 1e9;
      return { reason: 'stale', detail: `issued ${seconds.toFixed(3)} s ${age > 0n ? 'ago' : 'in the future'}; the limit is ±${Number(this.maxAgeNs) / 1e9} s` };
    }
    return undefined;
  }

  /** Remembers an id until `untilNs` (at least until its issue time is stale). */
  remember(id: string, issuedNs: bigint, untilNs: bigint, nowNs: bigint): void {
    this.forget(nowNs);
    const staleAt = issuedNs + this.maxAgeNs;
    this.seen.set(id, untilNs > staleAt ? untilNs : staleAt);
    while (this.seen.size > this.capacity) {
      const [oldest, until] = this.seen.entries().next().value as [string, bigint];
      this.seen.delete(oldest);
      if (until > this.evictedUntilNs) this.evictedUntilNs = until;
    }
  }

  has(id: string): boolean {
    return this.seen.has(id);
  }

  /** What to persist across a restart (so a replay right after a restart is still refused). */
  entries(): [string, bigint][] {
    return [...this.seen.entries()];
  }

  private forget(nowNs: bigint): void {
    for (const [id, until] of this.seen) {
      if (until < nowNs) this.seen.delete(id);
    }
  }
}
