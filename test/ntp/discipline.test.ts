import { expect } from 'chai';
import { discipline, sourceDistanceNs, MAX_ESTIMATE_FREQUENCY_PPM, type SourceView } from '../../src/ntp/discipline.js';
import type { SourceEstimate } from '../../src/ntp/sourcestats.js';

function view(id: string, offsetNs: bigint, patch: Partial<SourceEstimate> = {}): SourceView {
  return {
    id,
    estimate: { rawNs: 1_000_000_000_000n, offsetNs, frequencyPpm: 10, offsetSdNs: 1_000, frequencySdPpm: 0.1, samples: 20, minDelayNs: 100_000, noiseSdNs: 1_000, asymmetry: 0, ...patch },
    lastSample: { rawNs: 1_000_000_000_000n, offsetNs, delayNs: 100_000, stratum: 2, leap: 0, refId: 0, rootDelayNs: 2_000, rootDispersionNs: 3_000 },
  };
}

describe('ntp/discipline', () => {
  it('the interval is root delay/2 + root dispersion + min delay/2 + 3σ, and grows with age', () => {
    const v = view('a', 0n);
    expect(sourceDistanceNs(v, v.estimate.rawNs)).to.be.closeTo(1_000 + 3_000 + 50_000 + 3_000, 1e-6);
    const tenSecondsLater = sourceDistanceNs(v, v.estimate.rawNs + 10_000_000_000n);
    expect(tenSecondsLater - sourceDistanceNs(v, v.estimate.rawNs)).to.be.closeTo(10 * (3 * 0.1 + 0.5) * 1e3, 1e-6);
  });

  it('projects the estimate to now with its frequency and hands the Timescale a bounded estimate', () => {
    const v = view('a', 5_000_000n);
    const now = v.estimate.rawNs + 2_000_000_000n; // 2 s later at +10 ppm: +20 µs
    const { estimate, selection } = discipline([v], now);
    expect(selection.selectedId).to.equal('a');
    expect(estimate!.rawNs).to.equal(now);
    expect(Number(estimate!.offsetNs)).to.be.closeTo(5_020_000, 1);
    expect(estimate!.frequencyPpm).to.equal(10);
    expect(estimate!.errorBoundNs).to.be.above(50_000);
    expect(estimate!.frequencyErrorPpm).to.be.closeTo(0.3, 1e-9);
  });

  it('clamps a runaway frequency; gives no estimate without a majority', () => {
    const wild = discipline([view('a', 0n, { frequencyPpm: 5000 })], 1_000_000_000_000n);
    expect(wild.estimate!.frequencyPpm).to.equal(MAX_ESTIMATE_FREQUENCY_PPM);
    const split = discipline([view('a', 0n), view('b', 10_000_000n)], 1_000_000_000_000n);
    expect(split.estimate).to.equal(undefined);
  });
});
