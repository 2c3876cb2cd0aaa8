/** What AdaptiveMargin learns from known lateness distributions (no timers: the samples are the input). */
import { expect } from 'chai';
import { AdaptiveMargin, type MarginOptions } from '../../src/schedule/index.js';

const US = 1_000;
const MS = 1_000_000;
/** Default window and headroom of AdaptiveMargin, restated so a changed default shows here. */
const WINDOW = 256;
const HEADROOM = 1.25;
const OPTIONS: MarginOptions = { initialNs: 4 * MS, minNs: 100 * US, maxNs: 20 * MS };

/** A fixed shuffle (LCG): the order of samples must not matter, and the test must not be flaky. */
function shuffled(values: number[], seed = 7): number[] {
  const out = [...values];
  let s = seed;
  for (let i = out.length - 1; i > 0; i--) {
    s = (s * 1103515245 + 12345) % 2 ** 31;
    const j = s % (i + 1);
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}

/**
 * One window of samples whose p50 (200 µs), p99 (1 ms) and max (5 ms) all
 * differ: a margin that followed p50 or the max instead of p99 would not match.
 * Sorted, indices 0–245 are 200 µs, 246–253 are 1 ms, 254–255 are 5 ms; p99 is
 * index ceil(0.99 · 256) − 1 = 253.
 */
const NOISY = shuffled([...Array(246).fill(200 * US), ...Array(8).fill(1 * MS), ...Array(2).fill(5 * MS)]);

function feed(margin: AdaptiveMargin, samples: number[]): void {
  for (const s of samples) margin.record(s);
}

describe('schedule/margins: AdaptiveMargin', () => {
  it('starts at the safe initial margin and keeps it while it has too few samples to know a p99', () => {
    const margin = new AdaptiveMargin(OPTIONS);
    expect(margin.ns).to.equal(4 * MS);
    feed(margin, Array(20).fill(50 * US)); // a quiet start says nothing about the 1-in-100 wake yet
    expect(margin.ns).to.equal(4 * MS);
  });

  it('learns p99 × headroom of a window of samples (not p50, not the max)', () => {
    const margin = new AdaptiveMargin(OPTIONS);
    feed(margin, NOISY);
    expect(margin.ns).to.equal(1 * MS * HEADROOM);
    expect(margin.ns).to.not.equal(200 * US * HEADROOM); // p50
    expect(margin.ns).to.not.equal(5 * MS * HEADROOM); // max
  });

  it('follows the quantile and headroom it is given', () => {
    const margin = new AdaptiveMargin({ ...OPTIONS, quantile: 0.995, headroom: 2 });
    feed(margin, NOISY); // p99.5: index ceil(0.995 · 256) − 1 = 254, a 5 ms sample
    expect(margin.ns).to.equal(10 * MS);
  });

  it('shrinks back when the timer gets quieter, once the noisy samples have left the window', () => {
    const margin = new AdaptiveMargin(OPTIONS);
    feed(margin, NOISY);
    expect(margin.ns).to.equal(1.25 * MS);
    const quiet = Array(WINDOW).fill(300 * US);
    // Half a window: the oldest half is replaced; 4 of the 10 outliers are in the newer half (this shuffle), still ≥ p99.
    feed(margin, quiet.slice(0, WINDOW / 2));
    expect(margin.ns).to.equal(1.25 * MS);
    feed(margin, quiet.slice(WINDOW / 2)); // a full quiet window: none left
    expect(margin.ns).to.equal(300 * US * HEADROOM);
  });

  it('never goes below its floor, even for early wakes (negative lateness)', () => {
    const margin = new AdaptiveMargin(OPTIONS);
    feed(margin, Array(WINDOW).fill(10 * US));
    expect(margin.ns).to.equal(OPTIONS.minNs);
    feed(margin, Array(WINDOW).fill(-800 * US));
    expect(margin.ns).to.equal(OPTIONS.minNs);
  });

  it('never goes above its cap; a wake past the margin doubles it at once, within the cap', () => {
    const margin = new AdaptiveMargin(OPTIONS);
    feed(margin, Array(WINDOW).fill(15 * MS)); // p99 × 1.25 = 18.75 ms: under the 20 ms cap
    expect(margin.ns).to.equal(18.75 * MS);
    margin.record(19 * MS, true); // missed: double (37.5 ms), capped
    expect(margin.ns).to.equal(OPTIONS.maxNs);
    const quiet = new AdaptiveMargin(OPTIONS);
    feed(quiet, Array(WINDOW).fill(200 * US));
    expect(quiet.ns).to.equal(250 * US);
    quiet.record(600 * US, true); // missed a deadline: max(2 × 250 µs, 600 µs × 1.25) = 750 µs, without waiting for a window
    expect(quiet.ns).to.equal(750 * US);
  });

  it('ignores stalls beyond the cap (a suspend is not wake-up jitter)', () => {
    const margin = new AdaptiveMargin(OPTIONS);
    feed(margin, Array(WINDOW).fill(200 * US));
    feed(margin, Array(WINDOW).fill(5_000 * MS)); // five-second stalls, a whole window of them
    margin.record(5_000 * MS, true);
    expect(margin.ns).to.equal(250 * US);
  });

  it('adapt: false keeps the initial margin whatever it sees', () => {
    const margin = new AdaptiveMargin({ ...OPTIONS, adapt: false });
    feed(margin, NOISY);
    margin.record(10 * MS, true);
    expect(margin.ns).to.equal(OPTIONS.initialNs);
  });
});
