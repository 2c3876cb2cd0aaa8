/**
 * Phase-locked periodic patterns: edge k is at epoch + k·period + offset,
 * computed from k every time (never previous + period), so nothing
 * accumulates and a node that joins late lands on the same edges as the rest.
 */
import { PatternError } from './errors.js';
import type { Occurrence, Recurrence } from './recurrence.js';

export interface PeriodicPattern {
  epochNs: bigint;
  periodNs: bigint;
  offsetNs?: bigint;
  /** Edges 0..count−1 exist; forever when absent. */
  count?: number;
  /** No edge before this instant (a late joiner's "not before"). */
  startNs?: bigint;
}

export class PeriodicRecurrence implements Recurrence {
  private readonly epochNs: bigint;
  private readonly periodNs: bigint;
  private readonly offsetNs: bigint;
  private readonly count: bigint | undefined;
  private readonly startNs: bigint | undefined;

  constructor(pattern: PeriodicPattern) {
    if (pattern.periodNs <= 0n) throw new PatternError(`period must be > 0 ns, not ${pattern.periodNs}`);
    if (pattern.count !== undefined && !(Number.isInteger(pattern.count) && pattern.count >= 0)) {
      throw new PatternError(`count must be an integer ≥ 0, not ${pattern.count}`);
    }
    this.epochNs = pattern.epochNs;
    this.periodNs = pattern.periodNs;
    this.offsetNs = pattern.offsetNs ?? 0n;
    this.count = pattern.count === undefined ? undefined : BigInt(pattern.count);
    this.startNs = pattern.startNs;
  }

  edgeNs(k: bigint): bigint {
    return this.epochNs + k * this.periodNs + this.offsetNs;
  }

  /** The first edge strictly after afterNs (and not before startNs). */
  next(afterNs: bigint): Occurrence | undefined {
    let floor = afterNs + 1n;
    if (this.startNs !== undefined && this.startNs > floor) floor = this.startNs;
    // Smallest k ≥ 0 with edge(k) ≥ floor: ceil((floor − epoch − offset) / period).
    const span = floor - this.epochNs - this.offsetNs;
    let k = span <= 0n ? 0n : (span + this.periodNs - 1n) / this.periodNs;
    if (k < 0n) k = 0n;
    if (this.count !== undefined && k >= this.count) return undefined;
    return { instantNs: this.edgeNs(k), edge: k };
  }
}
