import { expect } from 'chai';
import { parseDurationNs, formatUtcNs, secondsToNs, nsToSeconds, DurationSyntaxError } from '../../src/time/units.js';

describe('time/units', () => {
  it('parses durations exactly', () => {
    expect(parseDurationNs('250ms')).to.equal(250_000_000n);
    expect(parseDurationNs('1.5s')).to.equal(1_500_000_000n);
    expect(parseDurationNs('100us')).to.equal(100_000n);
    expect(parseDurationNs('2m')).to.equal(120_000_000_000n);
    expect(parseDurationNs('0.000000001s')).to.equal(1n);
  });

  it('refuses durations without a unit or with garbage', () => {
    for (const bad of ['100', '-1s', '1.5', 'ms', '1e3ms', '1,5s', '']) {
      expect(() => parseDurationNs(bad), bad).to.throw(DurationSyntaxError);
    }
  });

  it('formats instants with nine fraction digits, before and after 1970', () => {
    expect(formatUtcNs(1_763_726_410_250_000_000n)).to.equal('2025-11-21T12:00:10.250000000Z');
    expect(formatUtcNs(-1n)).to.equal('1969-12-31T23:59:59.999999999Z');
  });

  it('converts seconds and nanoseconds', () => {
    expect(secondsToNs(-3.2)).to.equal(-3_200_000_000n);
    expect(nsToSeconds(1_500_000_000n)).to.equal(1.5);
  });
});
