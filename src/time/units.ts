/**
 * Units and conversions shared by every layer. Absolute instants are bigint
 * nanoseconds since the Unix epoch; durations may be numbers with the unit in
 * their name.
 */

export const NS_PER_US = 1_000n;
export const NS_PER_MS = 1_000_000n;
export const NS_PER_SECOND = 1_000_000_000n;

export function secondsToNs(seconds: number): bigint {
  if (!Number.isFinite(seconds)) throw new RangeError(`not a finite number of seconds: ${seconds}`);
  // Split so that large values keep nanosecond precision of the fraction.
  const whole = Math.trunc(seconds);
  return BigInt(whole) * NS_PER_SECOND + BigInt(Math.round((seconds - whole) * 1e9));
}

export function nsToSeconds(ns: bigint | number): number {
  if (typeof ns === 'number') return ns / 1e9;
  const whole = ns / NS_PER_SECOND;
  return Number(whole) + Number(ns - whole * NS_PER_SECOND) / 1e9;
}

export function absNs(ns: bigint): bigint {
  return ns < 0n ? -ns : ns;
}

/** "2026-11-21T12:00:10.250000000Z": an instant with all nine fraction digits. */
export function formatUtcNs(instantNs: bigint): string {
  const ms = instantNs / NS_PER_MS - (instantNs < 0n && instantNs % NS_PER_MS !== 0n ? 1n : 0n);
  const secondsFloor = ms / 1000n - (ms < 0n && ms % 1000n !== 0n ? 1n : 0n);
  const fraction = instantNs - secondsFloor * NS_PER_SECOND;
  const iso = new Date(Number(secondsFloor) * 1000).toISOString(); // whole seconds: exact in a double
  return `${iso.slice(0, 19)}.${fraction.toString().padStart(9, '0')}Z`;
}

const DURATION_UNITS: Record<string, bigint> = {
  ns: 1n,
  us: NS_PER_US,
  µs: NS_PER_US,
  ms: NS_PER_MS,
  s: NS_PER_SECOND,
  m: 60n * NS_PER_SECOND,
  min: 60n * NS_PER_SECOND,
  h: 3600n * NS_PER_SECOND,
};

export class DurationSyntaxError extends Error {
  constructor(readonly input: string) {
    super(`not a duration: '${input}' (expected a number with a unit: 250ms, 1.5s, 2m, 100us)`);
    this.name = 'DurationSyntaxError';
  }
}

/**
 * Parses "250ms", "1.5s", "2m", "100us", "0.5h" into nanoseconds. A bare
 * number is refused: a duration without its unit is the bug this prevents.
 * Decimal fractions are parsed exactly (no binary floating point).
 */
export function parseDurationNs(input: string): bigint {
  const match = /^\s*(\d+)(?:\.(\d{1,9}))?\s*(ns|us|µs|ms|s|min|m|h)\s*$/.exec(input);
  if (!match) throw new DurationSyntaxError(input);
  const [, whole, fraction = '', unit] = match;
  const unitNs = DURATION_UNITS[unit!]!;
  const scale = 10n ** BigInt(fraction.length);
  const numerator = BigInt(whole!) * scale + BigInt(fraction || '0');
  const ns = (numerator * unitNs) / scale;
  if ((numerator * unitNs) % scale !== 0n) throw new DurationSyntaxError(input); // finer than 1 ns
  return ns;
}
