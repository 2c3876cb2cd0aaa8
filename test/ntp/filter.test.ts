import { expect } from 'chai';
import { ClockFilter, FILTER_STAGES } from '../../src/ntp/filter.js';
import type { Sample } from '../../src/ntp/source.js';

function sample(i: number, offsetNs: number, delayNs: number): Sample {
  return { rawNs: BigInt(i) * 1_000_000_000n, offsetNs: BigInt(offsetNs), delayNs, stratum: 2, leap: 0, refId: 0, rootDelayNs: 0, rootDispersionNs: 0 };
}

describe('ntp/filter', () => {
  it('picks the minimum-delay sample of the last eight and measures jitter around it', () => {
    const f = new ClockFilter();
    const delays = [900, 500, 700, 300, 800, 600, 950, 1000, 400];
    let out;
    delays.forEach((d, i) => (out = f.add(sample(i, i === 3 ? 100 : 100 + (i % 2 ? 50 : -50), d))));
    expect(f.size).to.equal(FILTER_STAGES);
    expect(out!.best.delayNs).to.equal(300);
    expect(out!.best.offsetNs).to.equal(100n);
    expect(out!.jitterNs).to.be.closeTo(50, 1e-9);
  });

  it('corrects offsets for the frequency before measuring jitter', () => {
    const f = new ClockFilter();
    let out;
    for (let i = 0; i < 8; i++) out = f.add(sample(i, i * 100_000, 1000 + i), 100); // +100 ppm exactly
    expect(out!.jitterNs).to.be.below(1);
  });
});
