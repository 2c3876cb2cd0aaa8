import { expect } from 'chai';
import { fitEnvelope, type EnvelopePoint } from '../../src/ntp/envelope.js';
import { seededRandom } from '../support/random.js';

/** 30 s at 16 polls a second through 1 ms + exp(3 ms) each way: the start-up link of issue #14. */
function legs(seed: number, slopePpb: number): EnvelopePoint[] {
  const random = seededRandom(seed);
  const exp = (meanNs: number) => -meanNs * Math.log(1 - random());
  const points: EnvelopePoint[] = [];
  for (let k = 0; k < 480; k++) {
    const t = k / 16;
    const offset = slopePpb * t;
    // u = θ + δ/2 and v = θ − δ/2 for one-way delays of 1 ms plus each leg's queue.
    points.push({ t, u: offset + 1e6 + exp(3e6), v: offset - 1e6 - exp(3e6) });
  }
  return points;
}

describe('ntp/envelope: the frequency estimate', () => {
  it('is the slopes\' weighed mean: inside the claimed band, and nearer the truth than the widest band\'s slope over many links', () => {
    const truthPpb = 30_000;
    let meanSq = 0;
    let widestSq = 0;
    for (let seed = 1; seed <= 40; seed++) {
      const fit = fitEnvelope(legs(seed, truthPpb));
      expect(fit.slopeMean, `seed ${seed}`).to.be.within(fit.slopeLo, fit.slopeHi);
      expect(truthPpb, `seed ${seed}: the truth inside the band`).to.be.within(fit.slopeLo, fit.slopeHi);
      meanSq += (fit.slopeMean - truthPpb) ** 2;
      widestSq += (fit.slope - truthPpb) ** 2;
    }
    expect(Math.sqrt(meanSq / 40)).to.be.below(Math.sqrt(widestSq / 40));
  });
});
