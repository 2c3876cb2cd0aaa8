/**
 * Source selection across servers (RFC 5905 §11.2.1, chrony's sources.c):
 * each source claims "the offset lies in [θ − λ, θ + λ]" where λ is its root
 * distance. Marzullo's algorithm finds the region the most intervals share;
 * if a majority shares it, those sources are truechimers and the others are
 * falsetickers (one lying server of three is outvoted). The truechimers are
 * then combined, weighted by 1/λ², and the one with the smallest λ is
 * "selected" (the one whose stratum and refid we report).
 *
 * Offsets are bigint (UTC − raw can be 1.7e18 ns): intervals are computed
 * relative to the first candidate's offset, as doubles.
 */

export interface Candidate {
  id: string;
  /** UTC − raw at the common raw instant of the selection, ns. */
  offsetNs: bigint;
  /** Half-width of the interval the true offset lies in (root distance), ns. */
  distanceNs: number;
  frequencyPpm: number;
  frequencySdPpm: number;
  stratum: number;
}

export interface Selection {
  /** The best truechimer (smallest distance, then lowest stratum), if a majority agreed. */
  selectedId?: string;
  truechimers: string[];
  falsetickers: string[];
  /** The truechimers combined; undefined when no majority agrees. */
  combined?: {
    offsetNs: bigint;
    frequencyPpm: number;
    frequencySdPpm: number;
    /** Bound on |true offset − combined offset|: the distance to the far edge of the agreed region. */
    errorBoundNs: number;
  };
}

/** Marzullo over the candidates' intervals; see the file comment. */
export function selectSources(candidates: Candidate[]): Selection {
  const usable = candidates.filter((c) => Number.isFinite(c.distanceNs) && c.distanceNs >= 0);
  const unusable = candidates.filter((c) => !usable.includes(c)).map((c) => c.id);
  if (usable.length === 0) return { truechimers: [], falsetickers: unusable };
  const ref = usable[0]!.offsetNs;
  const rel = usable.map((c) => ({ c, mid: Number(c.offsetNs - ref), lo: 0, hi: 0 }));
  for (const r of rel) {
    r.lo = r.mid - r.c.distanceNs;
    r.hi = r.mid + r.c.distanceNs;
  }
  // Sweep the endpoints: +1 at a low edge, −1 after a high edge (lows first at ties, so touching intervals overlap).
  const edges = rel.flatMap((r) => [
    { at: r.lo, step: 1 },
    { at: r.hi, step: -1 },
  ]);
  edges.sort((a, b) => a.at - b.at || b.step - a.step);
  let depth = 0;
  let best = 0;
  let regionLo = 0;
  let regionHi = 0;
  for (let i = 0; i < edges.length; i++) {
    const e = edges[i]!;
    depth += e.step;
    if (e.step === 1 && depth > best) {
      best = depth;
      regionLo = e.at;
      regionHi = edges[i + 1]!.at; // the next edge ends this deepest stretch
    }
  }
  const majority = best > usable.length / 2;
  if (!majority) return { truechimers: [], falsetickers: unusable };

  const truechimers = rel.filter((r) => r.lo <= regionHi && r.hi >= regionLo);
  const falsetickers = rel.filter((r) => !truechimers.includes(r)).map((r) => r.c.id);
  let sw = 0;
  let sOffset = 0;
  let sFreq = 0;
  let sFreqVar = 0;
  for (const r of truechimers) {
    const w = 1 / Math.max(r.c.distanceNs, 1) ** 2;
    sw += w;
    sOffset += w * r.mid;
    sFreq += w * r.c.frequencyPpm;
    sFreqVar += w * w * r.c.frequencySdPpm ** 2;
  }
  const mid = sOffset / sw;
  const selected = [...truechimers].sort((a, b) => a.c.distanceNs - b.c.distanceNs || a.c.stratum - b.c.stratum)[0]!;
  // The truth lies in every truechimer's interval, hence in their intersection.
  const lo = Math.max(...truechimers.map((r) => r.lo));
  const hi = Math.min(...truechimers.map((r) => r.hi));
  const errorBoundNs = lo <= hi ? Math.max(mid - lo, hi - mid, 0) : selected.c.distanceNs;
  return {
    selectedId: selected.c.id,
    truechimers: truechimers.map((r) => r.c.id),
    falsetickers: [...falsetickers, ...unusable],
    combined: {
      offsetNs: ref + BigInt(Math.round(mid)),
      frequencyPpm: sFreq / sw,
      frequencySdPpm: Math.sqrt(sFreqVar) / sw,
      errorBoundNs,
    },
  };
}
