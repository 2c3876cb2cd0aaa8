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
  /** ns per s (ppb): the slope of the widest band, which the offset is the middle of. */
  slope: number;
  /**
   * The slopes' mean, each weighed by how well its band fits the data (see
   * POSTERIOR_SCALE), ppb: the frequency estimate. The widest band's slope
   * is one kink of a piecewise-linear function, set by two or three
   * samples; the mean takes in every slope the data nearly allow.
   */
  slopeMean: number;
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
/**
 * The offset's spread (lines the data cannot tell from the best one) takes
 * the two legs' misses together, each leg's spacing measured from its 16
 * lowest excesses, not 4: the spacing from 4 is itself so uncertain
 * (Gamma(4)/4) that ln 1000 × it is exceeded far more often than 1e-3, and
 * the sum of both legs' misses above ln 1000 × the two estimates is a
 * ~0.2 % tail (exponential queues, Monte Carlo). 4.76 × the spacing from
 * 16 has the same tail and is ~30 % narrower: the 1 ms gate opened sooner
 * (offline start-ups over captured relay legs, 250 seeds: p99 18.2 → 12.6 s),
 * no bound below the truth there nor in test/ntp/honesty-sim.ts's runs.
 * Windows with fewer samples keep the 4-spacing slacks.
 */
const SPREAD_SPACING_SAMPLES = 16;
const SPREAD_MISS_FACTOR = 4.76;

/**
 * The frequency is the mean of the slopes weighed by exp(κ·(G(b) − G_max)).
 * For legs whose queues are exponential of mean m this is the likelihood
 * with each leg's floor profiled out, κ = n/m (G is the band's width, n the
 * samples): its mean is the estimate of least squared error, where the
 * widest band's slope is its mode. The relay's real legs have less mass near
 * their floors than an exponential of the same mean (a ramp ~100-150 µs
 * wide: 11 of 18,766 captured legs lie within 50 µs of their floor, where an
 * exponential of 3 ms puts ~310), so the data say less than n/m claims: κ is
 * a quarter of it. Over 40 clients' legs captured from case E (200 seeded
 * start-ups) and 20 real windows, the frequency's error after 30 s went
 * rms 3.3 → 2.5 ppm and 3.05 → 1.97 ppm (scales ½ and ⅒ give within
 * 0.2 ppm of it). The offset stays the widest band's middle.
 */
const POSTERIOR_SCALE = 0.25;
/** The weights are integrated where κ·(G_max − G) < this (e^−20 of the peak); */
const POSTERIOR_SPAN = 20;
/** ...in this many trapezoids (the weight is exp of a piecewise-linear function: smooth enough). */
const POSTERIOR_STEPS = 32;
/** Halvings that place the ends of that range (within 1/16 of their doubling step: the weight there is ~0 either way). */
const POSTERIOR_RANGE_HALVINGS = 4;

/**
 * The envelope fit of the window, with slopes searched around `guessPpb`
 * (the regression's estimate) within ±spanPpb first: the optimum is a kink
 * of a piecewise-linear function, and a narrow bracket finds it precisely.
 */
export function fitEnvelope(points: EnvelopePoint[], guessPpb = 0, spanPpb = MAX_SLOPE_PPB): EnvelopeFit {
  if (points.length === 0) throw new RangeError('an envelope needs points');
  const sorted = isSorted(points) ? points : [...points].sort((a, b) => a.t - b.t);
  const n = sorted.length;
  const t = new Float64Array(n);
  const u = new Float64Array(n);
  const v = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    t[i] = sorted[i]!.t;
    u[i] = sorted[i]!.u;
    v[i] = sorted[i]!.v;
  }
  return fitEnvelopeSorted(n, t, u, v, guessPpb, spanPpb);
}

function isSorted(points: EnvelopePoint[]): boolean {
  for (let i = 1; i < points.length; i++) if (points[i]!.t < points[i - 1]!.t) return false;
  return true;
}

/**
 * Working arrays, shared by every fit in the process (a fit runs to its end
 * synchronously): this runs for every sample of a 512-sample window in each
 * of a swarm's thousand clients, and allocating a point object per sample
 * per fit was much of its cost. Grown on demand, never shrunk.
 */
const work = {
  capacity: 0,
  lowT: new Float64Array(0),
  lowU: new Float64Array(0),
  upT: new Float64Array(0),
  upV: new Float64Array(0),
};

function ensureWork(n: number): void {
  if (work.capacity >= n) return;
  const capacity = Math.max(n, 64, work.capacity * 2);
  work.capacity = capacity;
  work.lowT = new Float64Array(capacity);
  work.lowU = new Float64Array(capacity);
  work.upT = new Float64Array(capacity);
  work.upV = new Float64Array(capacity);
}

/**
 * One hull of points (t[i], value[i]) in time order (monotone chain) into
 * (hullT, hullValue); sign 1 the lower hull, −1 the upper. Returns its length.
 * min(u − b·t) over the lower hull of the u's, and max(v − b·t) over the upper
 * hull of the v's, are those of all the points: the search needs only these
 * (a few dozen of 512).
 */
function chain(n: number, t: Float64Array, value: Float64Array, sign: 1 | -1, hullT: Float64Array, hullValue: Float64Array): number {
  let h = 0;
  for (let i = 0; i < n; i++) {
    const pt = t[i]!;
    const pv = value[i]!;
    while (h >= 2) {
      const at = hullT[h - 2]!;
      const av = hullValue[h - 2]!;
      // Lower hull (sign 1): drop the last point while it lies on or above the segment from the one before to p.
      const cross = (hullT[h - 1]! - at) * (pv - av) - (hullValue[h - 1]! - av) * (pt - at);
      if (sign * cross <= 0) h--;
      else break;
    }
    hullT[h] = pt;
    hullValue[h] = pv;
    h++;
  }
  return h;
}

/**
 * The least LEAST_KEPT values of each of four lists (the outbound and the
 * inbound leg's excesses, each in the window's first and second half),
 * kept in order by insertion: the slacks need the least few, and sorting or
 * filtering the window for them was a third of a fit.
 */
const LEAST_KEPT = Math.max(FLOOR_SPACING_SAMPLES, SPREAD_SPACING_SAMPLES) + 1;
class LeastValues {
  private readonly values = new Float64Array(4 * LEAST_KEPT);
  private readonly sizes = new Int32Array(4);
  private readonly seen = new Int32Array(4);

  reset(): void {
    this.sizes.fill(0);
    this.seen.fill(0);
  }

  add(list: number, x: number): void {
    this.seen[list]!++;
    const base = list * LEAST_KEPT;
    const size = this.sizes[list]!;
    let j: number;
    if (size < LEAST_KEPT) {
      j = size;
      this.sizes[list] = size + 1;
    } else if (x < this.values[base + LEAST_KEPT - 1]!) {
      j = LEAST_KEPT - 1;
    } else return;
    while (j > 0 && this.values[base + j - 1]! > x) {
      this.values[base + j] = this.values[base + j - 1]!;
      j--;
    }
    this.values[base + j] = x;
  }

  /** How many values the list was given. */
  count(list: number): number {
    return this.seen[list]!;
  }

  /** The k-th least (from 1, k ≤ LEAST_KEPT) of a list, or its largest kept if it had fewer. */
  kth(list: number, k: number): number {
    return this.values[list * LEAST_KEPT + Math.min(k, this.sizes[list]!) - 1]!;
  }

  /** The k-th least of lists `first` and `first + 1` together (a leg's two halves: the whole window). */
  kthOfBoth(first: number, k: number): number {
    const a = first * LEAST_KEPT;
    const b = (first + 1) * LEAST_KEPT;
    const na = this.sizes[first]!;
    const nb = this.sizes[first + 1]!;
    let i = 0;
    let j = 0;
    let x = NaN;
    for (let taken = 0; taken < k && (i < na || j < nb); taken++) {
      if (j >= nb || (i < na && this.values[a + i]! <= this.values[b + j]!)) x = this.values[a + i++]!;
      else x = this.values[b + j++]!;
    }
    return x;
  }
}
const leastExcesses = new LeastValues();

/**
 * fitEnvelope over the first n entries of t, u, v, which must be in time
 * order (SourceStats' window is): no point objects, no arrays allocated.
 */
export function fitEnvelopeSorted(n: number, t: Float64Array, u: Float64Array, v: Float64Array, guessPpb = 0, spanPpb = MAX_SLOPE_PPB): EnvelopeFit {
  if (n === 0) throw new RangeError('an envelope needs points');
  ensureWork(n);
  const { lowT, lowU, upT, upV } = work;
  // Only the lower hull of the u's and the upper hull of the v's can be the extremes: search those.
  const lowN = chain(n, t, u, 1, lowT, lowU);
  const upN = chain(n, t, v, -1, upT, upV);
  const hullLo = (b: number) => {
    let lo = Infinity;
    for (let i = 0; i < lowN; i++) {
      const x = lowU[i]! - b * lowT[i]!;
      if (x < lo) lo = x;
    }
    return lo;
  };
  const hullHi = (b: number) => {
    let hi = -Infinity;
    for (let i = 0; i < upN; i++) {
      const x = upV[i]! - b * upT[i]!;
      if (x > hi) hi = x;
    }
    return hi;
  };
  const G = (b: number) => hullLo(b) - hullHi(b);
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
  let lo = Infinity;
  let hi = -Infinity;
  for (let i = 0; i < n; i++) {
    const ui = u[i]! - slope * t[i]!;
    const vi = v[i]! - slope * t[i]!;
    if (ui < lo) lo = ui;
    if (vi > hi) hi = vi;
  }
  const best = lo - hi;
  const offset = (lo + hi) / 2;
  // The points are in time order: the first and the last are the window's ends, and the first half
  // (t < midT) is a prefix [0, half).
  const midT = (t[0]! + t[n - 1]!) / 2;
  let half = 0;
  for (let top = n; half < top; ) {
    const mid = (half + top) >>> 1;
    if (t[mid]! < midT) half = mid + 1;
    else top = mid;
  }
  // Each leg's excess above its envelope; of each half, only the least few matter (the slacks below).
  const least = leastExcesses;
  least.reset();
  let excessSum = 0;
  for (let i = 0; i < n; i++) {
    const second = i >= half ? 1 : 0;
    const out = u[i]! - slope * t[i]! - lo;
    const back = hi - (v[i]! - slope * t[i]!);
    least.add(second, out);
    least.add(2 + second, back);
    excessSum += out + back;
  }
  const k = Math.min(FLOOR_SPACING_SAMPLES, n - 1);
  const slack = (leg: 0 | 2) => (k >= 1 ? (FLOOR_MISS_FACTOR * least.kthOfBoth(leg, k + 1)) / k : Infinity);
  const floorSlackOutNs = slack(0);
  const floorSlackInNs = slack(2);
  // A tilted line gains on the best one where a leg's envelope lies above its floor near either END of
  // the window, not only where the floor is missed overall: each half's slack, both legs. (With the
  // whole window's slacks alone the true slope fell outside the band in 4 of 1,000 seeded start-ups,
  // once by 2.3×: test/ntp/honesty-sim.ts.) The k-th least excess above the half's least is the k-th
  // least less the least: subtracting a constant keeps the order.
  const halfSlack = (list: number) => {
    const kk = Math.min(FLOOR_SPACING_SAMPLES, least.count(list) - 1);
    if (kk < 1) return Infinity;
    const floor = least.kth(list, 1);
    return (FLOOR_MISS_FACTOR * (least.kth(list, kk + 1) - floor)) / kk + floor;
  };
  const slopeTolerance =
    halfSlack(0) + halfSlack(1) + halfSlack(2) + halfSlack(3);
  // The offset's spread keeps the whole window's misses (not the halves'): its bound was never below the
  // truth in those runs (worst 0.7 of it), and the wider band would keep a 1 ms gate shut on a 2 ms Wi-Fi
  // round trip. Both legs' misses together, from more spacings where the window has them (see
  // SPREAD_MISS_FACTOR).
  const spreadSlack = (leg: 0 | 2) =>
    least.count(leg) + least.count(leg + 1) > SPREAD_SPACING_SAMPLES
      ? (SPREAD_MISS_FACTOR * least.kthOfBoth(leg, SPREAD_SPACING_SAMPLES + 1)) / SPREAD_SPACING_SAMPLES
      : slack(leg);
  const offsetTolerance = spreadSlack(0) + spreadSlack(2);
  // The band narrows as the slope leaves the best one (G is concave): find where it has lost `tolerance`.
  const edge = (direction: 1 | -1, tolerance: number, halvings = 40): number => {
    let inside = slope;
    let step = Math.max(1, Math.abs(tolerance) > 0 && Number.isFinite(tolerance) ? 1 : MAX_SLOPE_PPB);
    let outside = slope + direction * step;
    while (Math.abs(outside) < MAX_SLOPE_PPB && G(outside) >= best - tolerance) {
      inside = outside;
      step *= 2;
      outside = slope + direction * step;
    }
    if (Math.abs(outside) >= MAX_SLOPE_PPB) return direction * MAX_SLOPE_PPB;
    for (let i = 0; i < halvings; i++) {
      const mid = (inside + outside) / 2;
      if (G(mid) >= best - tolerance) inside = mid;
      else outside = mid;
    }
    return outside;
  };
  const slopeLo = edge(-1, slopeTolerance);
  const slopeHi = edge(1, slopeTolerance);
  const offsetAt = (b: number) => (hullLo(b) + hullHi(b)) / 2;
  const offsetSpreadNs = Math.max(Math.abs(offsetAt(edge(-1, offsetTolerance)) - offset), Math.abs(offsetAt(edge(1, offsetTolerance)) - offset));
  // The slopes' weighed mean (POSTERIOR_SCALE); the mean excess of both legs stands for the queues' mean.
  const meanExcess = excessSum / (2 * n);
  let slopeMean = slope;
  if (n >= 3 && meanExcess > 0 && Number.isFinite(meanExcess)) {
    const kappa = (POSTERIOR_SCALE * n) / meanExcess;
    // The range need not be exact (beyond it the weights are below e^−20): a few halvings, not 40.
    const from = edge(-1, POSTERIOR_SPAN / kappa, POSTERIOR_RANGE_HALVINGS);
    const to = edge(1, POSTERIOR_SPAN / kappa, POSTERIOR_RANGE_HALVINGS);
    let weights = 0;
    let moment = 0;
    for (let k = 0; k <= POSTERIOR_STEPS; k++) {
      const b = from + ((to - from) * k) / POSTERIOR_STEPS;
      const w = Math.exp(-kappa * (best - G(b))) * (k === 0 || k === POSTERIOR_STEPS ? 0.5 : 1);
      weights += w;
      moment += w * b;
    }
    if (weights > 0 && Number.isFinite(moment / weights)) slopeMean = moment / weights;
  }
  return { offset, slope, slopeMean, halfGapNs: best / 2, floorSlackOutNs, floorSlackInNs, slopeLo, slopeHi, offsetSpreadNs };
}
