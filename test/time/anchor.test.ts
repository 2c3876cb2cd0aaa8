import { expect } from 'chai';
import { anchorToSystemClock, type AnchorReader } from '../../src/time/clock.js';

/**
 * A scripted pair of clocks: true time advances READ_COST_NS per read, the
 * realtime clock is the monotonic one plus OFFSET_NS, and `stallAt` makes one
 * read take `stallNs` (the scheduler took the CPU there).
 */
const READ_COST_NS = 40n;
const OFFSET_NS = 1_700_000_000_123_456_789n;

function scriptedReader(stall?: { afterRealtimeReads: number; stallNs: bigint }): AnchorReader {
  let monotonic = 5_000_000_000n;
  let realtimeReads = 0;
  return {
    nowMs: () => {
      monotonic += READ_COST_NS;
      const ms = Number((monotonic + OFFSET_NS) / 1_000_000n);
      realtimeReads++;
      // The preemption falls between this Date.now() and the next monotonic read.
      if (stall && realtimeReads === stall.afterRealtimeReads) monotonic += stall.stallNs;
      return ms;
    },
    monotonicNs: () => (monotonic += READ_COST_NS),
  };
}

/** The anchor's error: its epoch against the scripted realtime at its monotonic instant. */
function anchorErrorNs(anchor: { epochNs: bigint; hrtimeNs: bigint }): bigint {
  return anchor.epochNs - (anchor.hrtimeNs + OFFSET_NS);
}

/** Which Date.now() read is the last one before the first millisecond edge (so a stall there hides the edge). */
function readsBeforeFirstEdge(): number {
  const reader = scriptedReader();
  const first = reader.nowMs();
  let reads = 1;
  while (reader.nowMs() === first) reads++;
  return reads;
}

describe('time/anchor: reading the system clock at a millisecond edge', () => {
  it('is within its stated uncertainty of the scripted clock, which is below a µs', () => {
    const anchor = anchorToSystemClock(scriptedReader());
    const error = anchorErrorNs(anchor);
    expect(Number(anchor.uncertaintyNs)).to.be.below(1000);
    expect(Number(error < 0n ? -error : error)).to.be.at.most(Number(anchor.uncertaintyNs));
  });

  it('a preemption that hides an edge widens that bracket, so another edge is chosen: no 700 µs error', () => {
    // Every tick's edge but one is read cleanly; the first one is hidden behind a 700 µs stall right
    // after the last Date.now() that still showed the old millisecond. Bracketing from the monotonic
    // read after that stall would place the edge 700 µs late with a bracket of 80 ns, and win.
    const stall = { afterRealtimeReads: readsBeforeFirstEdge(), stallNs: 700_000n };
    const anchor = anchorToSystemClock(scriptedReader(stall));
    const error = anchorErrorNs(anchor);
    expect(Number(error < 0n ? -error : error)).to.be.below(1000);
    expect(Number(anchor.uncertaintyNs)).to.be.below(1000);
  });

  it('on the real clocks, the anchor agrees with Date.now() and states a bound below 1 ms', () => {
    const anchor = anchorToSystemClock();
    const sinceNs = process.hrtime.bigint() - anchor.hrtimeNs;
    const nowNs = BigInt(Date.now()) * 1_000_000n;
    const predictedNs = anchor.epochNs + sinceNs;
    // Date.now() truncates to the ms: the prediction lies within [now, now + 1 ms) give or take the bound.
    expect(Number(predictedNs - nowNs)).to.be.within(-Number(anchor.uncertaintyNs) - 200_000, 1_000_000 + Number(anchor.uncertaintyNs) + 200_000);
    expect(Number(anchor.uncertaintyNs)).to.be.below(1_000_000);
  });
});
