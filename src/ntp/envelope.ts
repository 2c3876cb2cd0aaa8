/**
 * The delay envelope: offset and frequency from the FLOOR of each leg's
 * delay, not from the average of the samples.
 *
 * Every sample says the true offset at its raw instant lies in
 * [θ − δ/2, θ + δ/2]: the upper edge u = T2 − T1 is the offset plus the
 * outbound delay, the lower edge v = T3 − T4 is the offset minus the inbound
 * delay. On a queueing link (Wi-Fi) each leg's delay is a fixed part plus a
 * queue that is often nearly empty, so the lowest u's lie on a line (offset
 * + frequency·t + fixed delay) and the highest v's on a parallel one. The
 * line midway between the two envelopes is the offset if the fixed parts of
 * the legs are equal (NTP's own assumption).
 *
 * For a slope b, the gap between the envelopes is
 *     G(b) = min(u − b·t) − max(v − b·t),
 * a concave function of b, largest at the true slope (tilt the line and
 * some early or late sample cuts into the band). So b = argmax G and the
 * offset is the band's middle. This is the linear-programming skew
 * estimate of the one-way-delay literature (Moon, Skelly, Towsley 1999),
 * applied to both legs at once.
 *
 * Why not only the regression: each leg's queueing is roughly exponential,
 * which has most of its mass near zero, so the floor of 40 samples is within
 * ~mean/40 of the truth; an average converges as 1/√n and the round trip's
 * sum of two queues has almost no mass near zero. Over 1 ms + exp(3 ms) each
 * way this is the difference between ±300 µs and ±50 µs after 10 s.
 *
 * How far the envelope may still be above the true floor (a leg whose
 * queue was never empty in the window) is estimated from the spacing of the
 * lowest excesses above it: k samples within r of the floor means about one
 * per r/k, and the floor itself is missed by a few of those.
 */

export interface EnvelopePoint {
  /** Seconds from the window's reference. */
  t: number;
  /** Upper edge θ + δ/2 (ns, relative to the window's offset reference). */
  u: number;
  /** Lower edge θ − δ/2. */
  v: number;
}

export interface EnvelopeFit {
  /** Offset at t = 0 (ns). */
  offset: number;
  /** ns per s (ppb). */
  slope: number;
  /** Half the band's width at the best slope: the fixed one-way delay, ns. */
  halfGapNs: number;
  /** How far each leg's envelope may lie above its true floor (see the file comment), ns. */
  floorSlackOutNs: number;
  floorSlackInNs: number;
  /**
   * Slopes whose band is narrower than the best by at most both legs' floor
   * slacks in each half of the window: lines the data cannot tell from the best one (ppb).
   */
  slopeLo: number;
  slopeHi: number;
  /** Largest |offset at t = 0| difference of those lines from the best one, ns. */
  offsetSpreadNs: number;
}

/** Slopes searched: ±2000 ppm in ppb (the Timescale refuses beyond ±1000). */
const MAX_SLOPE_PPB = 2_000_000;
/** Golden-section iterations: 4e6 ppb / φ^60 is far below 0.001 ppb. */
const SEARCH_ITERATIONS = 60;
/** Lowest excesses used to measure the density of samples near each floor. */
const FLOOR_SPACING_SAMPLES = 4;
/**
 * The floor is missed by more than s·ln(1/p) with probability p if the
 * samples near it are spaced s apart (exponential spacing); p = 1e-3.
 */
const FLOOR_MISS_FACTOR = Math.log(1000);

function gap(points: EnvelopePoint[], b: number): { lo: number; hi: number } {
  let lo = Infinity;
  let hi = -Infinity;
  for (const p of points) {
    const u = p.u - b * p.t;
    const v = p.v - b * p.t;
    if (u < lo) lo = u;
    if (v > hi) hi = v;
  }
  return { lo, hi };
}

/**
 * The points on the lower convex hull of (t, u) and the upper hull of (t, v)
 * (monotone chain; points are in time order): min(u − b·t) and max(v − b·t)
 * are always attained there. A point on one hull only is kept with its
 * other edge made harmless (±Infinity).
 */
function hullPoints(points: EnvelopePoint[]): EnvelopePoint[] {
  const sorted = isSorted(points) ? points : [...points].sort((a, b) => a.t - b.t);
  const chain = (value: (p: EnvelopePoint) => number, sign: 1 | -1): EnvelopePoint[] => {
    const h: EnvelopePoint[] = [];
    for (const p of sorted) {
      while (h.length >= 2) {
        const a = h[h.length - 2]!;
        const b = h[h.length - 1]!;
        // Lower hull (sign 1): drop b while it lies on or above the segment a→p.
        const cross = (b.t - a.t) * (value(p) - value(a)) - (value(b) - value(a)) * (p.t - a.t);
        if (sign * cross <= 0) h.pop();
        else break;
      }
      h.push(p);
    }
    return h;
  };
  const lower = chain((p) => p.u, 1).map((p) => ({ t: p.t, u: p.u, v: -Infinity }));
  const upper = chain((p) => p.v, -1).map((p) => ({ t: p.t, u: Infinity, v: p.v }));
  return [...lower, ...upper];
}

function isSorted(points: EnvelopePoint[]): boolean {
  for (let i = 1; i < points.length; i++) if (points[i]!.t < points[i - 1]!.t) return false;
  return true;
}

/** The k-th smallest of values (k from 1), by partial sort: k is tiny. */
function kthSmallest(values: number[], k: number): number {
  const best: number[] = [];
  for (const x of values) {
    if (best.length < k) {
      best.push(x);
      best.sort((a, b) => a - b);
    } else if (x < best[k - 1]!) {
      best[k - 1] = x;
      best.sort((a, b) => a - b);
    }
  }
  return best[Math.min(k, best.length) - 1]!;
}

/**
 * The envelope fit of the window, with slopes searched around `guessPpb`
 * (the regression's estimate) within ±spanPpb first: the optimum is a kink
 * of a piecewise-linear function, and a narrow bracket finds it precisely.
 */
export function fitEnvelope(points: EnvelopePoint[], guessPpb = 0, spanPpb = MAX_SLOPE_PPB): EnvelopeFit {
  if (points.length === 0) throw new RangeError('an envelope needs points');
  // Only the lower hull of the u's and the upper hull of the v's can be the extremes: search those (a few dozen points).
  const hull = hullPoints(points);
  const G = (b: number) => {
    const { lo, hi } = gap(hull, b);
    return lo - hi;
  };
  let a = Math.max(-MAX_SLOPE_PPB, guessPpb - spanPpb);
  let c = Math.min(MAX_SLOPE_PPB, guessPpb + spanPpb);
  const phi = (Math.sqrt(5) - 1) / 2;
  let x1 = c - phi * (c - a);
  let x2 = a + phi * (c - a);
  let g1 = G(x1);
  let g2 = G(x2);
  for (let i = 0; i < SEARCH_ITERATIONS; i++) {
    // ≥ keeps a plateau's middle: both ends move in.
    if (g1 >= g2) {
      c = x2;
      x2 = x1;
      g2 = g1;
      x1 = c - phi * (c - a);
      g1 = G(x1);
    } else {
      a = x1;
      x1 = x2;
      g1 = g2;
      x2 = a + phi * (c - a);
      g2 = G(x2);
    }
  }
  const slope = (a + c) / 2;
  const { lo, hi } = gap(points, slope);
  const outExcess = points.map((p) => p.u - slope * p.t - lo);
  const inExcess = points.map((p) => hi - (p.v - slope * p.t));
  const k = Math.min(FLOOR_SPACING_SAMPLES, points.length - 1);
  const slack = (excess: number[]) => (k >= 1 ? (FLOOR_MISS_FACTOR * kthSmallest(excess, k + 1)) / k : Infinity);
  const floorSlackOutNs = slack(outExcess);
  const floorSlackInNs = slack(inExcess);
  const best = lo - hi;
  const offset = (lo + hi) / 2;
  // A tilted line gains on the best one where a leg's envelope lies above its floor near either END of
  // the window, not only where the floor is missed overall: each half's slack, both legs. (With the
  // whole window's slacks alone the true slope fell outside the band in 4 of 1,000 seeded start-ups,
  // once by 2.3×: test/ntp/honesty-sim.ts.)
  const halfSlack = (excess: number[], first: boolean) => {
    const part = excess.filter((_, i) => (points[i]!.t < midT) === first);
    const kk = Math.min(FLOOR_SPACING_SAMPLES, part.length - 1);
    if (kk < 1) return Infinity;
    let least = Infinity;
    for (const x of part) if (x < least) least = x;
    return (FLOOR_MISS_FACTOR * kthSmallest(part.map((x) => x - least), kk + 1)) / kk + least;
  };
  let firstT = Infinity;
  let lastT = -Infinity;
  for (const p of points) {
    if (p.t < firstT) firstT = p.t;
    if (p.t > lastT) lastT = p.t;
  }
  const midT = (firstT + lastT) / 2;
  const slopeTolerance =
    halfSlack(outExcess, true) + halfSlack(outExcess, false) + halfSlack(inExcess, true) + halfSlack(inExcess, false);
  // The offset's spread keeps the whole window's slacks: its bound was never below the truth in those
  // runs (worst 0.7 of it), and the wider band would keep a 1 ms gate shut on a 2 ms Wi-Fi round trip.
  const offsetTolerance = floorSlackOutNs + floorSlackInNs;
  // The band narrows as the slope leaves the best one (G is concave): find where it has lost `tolerance`.
  const edge = (direction: 1 | -1, tolerance: number): number => {
    let inside = slope;
    let step = Math.max(1, Math.abs(tolerance) > 0 && Number.isFinite(tolerance) ? 1 : MAX_SLOPE_PPB);
    let outside = slope + direction * step;
    while (Math.abs(outside) < MAX_SLOPE_PPB && G(outside) >= best - tolerance) {
      inside = outside;
      step *= 2;
      outside = slope + direction * step;
    }
    if (Math.abs(outside) >= MAX_SLOPE_PPB) return direction * MAX_SLOPE_PPB;
    for (let i = 0; i < 40; i++) {
      const mid = (inside + outside) / 2;
      if (G(mid) >= best - tolerance) inside = mid;
      else outside = mid;
    }
    return outside;
  };
  const slopeLo = edge(-1, slopeTolerance);
  const slopeHi = edge(1, slopeTolerance);
  const offsetAt = (b: number) => {
    const g = gap(hull, b);
    return (g.lo + g.hi) / 2;
  };
  const offsetSpreadNs = Math.max(Math.abs(offsetAt(edge(-1, offsetTolerance)) - offset), Math.abs(offsetAt(edge(1, offsetTolerance)) - offset));
  return { offset, slope, halfGapNs: best / 2, floorSlackOutNs, floorSlackInNs, slopeLo, slopeHi, offsetSpreadNs };
}
