import { expect } from 'chai';
import { SourceStats, weightedRegression, runsTestPasses, MAX_SAMPLES } from '../../src/ntp/sourcestats.js';
import type { Sample } from '../../src/ntp/source.js';
import { seededRandom as rng } from '../support/random.js';


function sample(rawNs: bigint, offsetNs: bigint, delayNs: number): Sample {
  return { rawNs, offsetNs, delayNs, stratum: 2, leap: 0, refId: 0, rootDelayNs: 0, rootDispersionNs: 0 };
}

describe('ntp/sourcestats', () => {
  it('recovers a known offset and frequency from clean synthetic data', () => {
    const x = [0, 1, 2, 3, 4, 5, 6, 7];
    const y = x.map((t) => 1000 + 50 * t);
    const fit = weightedRegression(x, y, x.map(() => 1), 7);
    expect(fit.intercept).to.be.closeTo(1350, 1e-6);
    expect(fit.slope).to.be.closeTo(50, 1e-9);
  });

  it('finds offset AND frequency of a Pi in 1970 (offset 1.7e18 ns, drift −37 ppm) through noise', () => {
    const random = rng(1);
    const stats = new SourceStats();
    const raw0 = 1_000_000_000_000_000n; // raw clock near 1970 + 11 days
    const offset0 = 1_700_000_000_000_000_000n; // UTC − raw
    const driftPpm = -37;
    const minDelay = 200_000;
    let last = stats.estimate;
    for (let i = 0; i < 120; i++) {
      const rawNs = raw0 + BigInt(i) * 1_000_000_000n;
      // Wi-Fi-like queueing: exponential (mean 3 ms) on each leg independently.
      const outbound = -3e6 * Math.log(1 - random());
      const inbound = -3e6 * Math.log(1 - random());
      const excess = outbound + inbound;
      const errorNs = (outbound - inbound) / 2;
      const trueOffset = offset0 + BigInt(Math.round(i * 1e9 * driftPpm * 1e-6));
      last = stats.add(sample(rawNs, trueOffset + BigInt(Math.round(errorNs)), minDelay + excess));
    }
    const truthAtLast = offset0 + BigInt(Math.round(119 * 1e9 * driftPpm * 1e-6));
    // 120 s of 3 ms queueing pins the frequency to a few ppm, and the estimate knows how well.
    expect(last!.frequencySdPpm).to.be.below(3);
    expect(Math.abs(last!.frequencyPpm - driftPpm)).to.be.below(4 * last!.frequencySdPpm);
    const offsetError = Number(last!.offsetNs - truthAtLast);
    expect(Math.abs(offsetError)).to.be.below(300_000); // 0.3 ms through 3 ms mean queueing
    expect(Math.abs(offsetError)).to.be.below(4 * last!.offsetSdNs + 50_000);
  });

  it('removes a one-sided delay asymmetry (T4 read late) with the asymmetry term', () => {
    const random = rng(2);
    const stats = new SourceStats();
    for (let i = 0; i < 60; i++) {
      const excess = 80_000 * random();
      // All excess on the inbound leg: the sample reads −excess/2 too low.
      stats.add(sample(BigInt(i) * 1_000_000_000n, 5_000n - BigInt(Math.round(excess / 2)), 90_000 + excess));
    }
    const e = stats.estimate!;
    expect(Number(e.offsetNs) - 5_000).to.be.within(-2_000, 2_000);
    expect(e.asymmetry).to.be.closeTo(-0.5, 0.05);
  });

  it('drops old samples when the frequency changes (runs test) and follows the new one', () => {
    const stats = new SourceStats();
    const random = rng(3);
    let offset = 0;
    for (let i = 0; i < 100; i++) {
      offset += i < 50 ? 10_000 : -10_000; // +10 ppm, then −10 ppm
      stats.add(sample(BigInt(i) * 1_000_000_000n, BigInt(Math.round(offset + (random() - 0.5) * 2000)), 100_000));
    }
    const e = stats.estimate!;
    expect(e.samples).to.be.below(60);
    expect(e.frequencyPpm).to.be.closeTo(-10, 0.5);
  });

  it('keeps at most MAX_SAMPLES and ignores samples out of raw order', () => {
    const stats = new SourceStats();
    for (let i = 0; i < MAX_SAMPLES + 40; i++) stats.add(sample(BigInt(i) * 1_000_000n, 0n, 1000));
    expect(stats.size).to.be.at.most(MAX_SAMPLES);
    const before = stats.estimate;
    stats.add(sample(5n, 1_000_000n, 1000));
    expect(stats.estimate).to.equal(before);
  });

  it('a frequency prior keeps two noisy early samples from claiming thousands of ppm', () => {
    const stats = new SourceStats();
    stats.add(sample(0n, 0n, 2_000_000));
    const e = stats.add(sample(250_000_000n, 2_000_000n, 9_000_000)); // 2 ms in 0.25 s = 8000 ppm, delay says noise
    expect(Math.abs(e.frequencyPpm)).to.be.below(300);
  });

  it('runs test: alternating residuals pass, a bend fails', () => {
    expect(runsTestPasses([1, -1, 1, -1, 1, -1, 1, -1, 1, -1])).to.equal(true);
    expect(runsTestPasses([1, 1, 1, 1, 1, -1, -1, -1, -1, -1, -1, -1, 1, 1, 1, 1, 1, 1])).to.equal(false);
  });
});
