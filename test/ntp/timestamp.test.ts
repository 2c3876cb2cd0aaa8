import { expect } from 'chai';
import { unixNsToNtp, ntpToUnixNs, NTP_UNIX_OFFSET_SECONDS } from '../../src/ntp/timestamp.js';
import { NS_PER_SECOND } from '../../src/time/units.js';

describe('ntp/timestamp', () => {
  it('encodes the Unix epoch as 2208988800 seconds since 1900', () => {
    expect(unixNsToNtp(0n) >> 32n).to.equal(NTP_UNIX_OFFSET_SECONDS);
  });

  it('round-trips to within the 2^-32 s resolution', () => {
    for (const ns of [0n, 1_763_726_410_250_000_001n, 1_700_000_000_999_999_999n]) {
      const back = ntpToUnixNs(unixNsToNtp(ns), ns);
      expect(Number(back - ns)).to.be.within(-1, 1);
    }
  });

  it('crosses the 2036 era rollover', () => {
    // 2036-02-07T06:28:16Z is NTP second 2^32: era 1 starts, the seconds field wraps to 0.
    const rollover = ((1n << 32n) - NTP_UNIX_OFFSET_SECONDS) * NS_PER_SECOND;
    const before = rollover - NS_PER_SECOND / 2n;
    const after = rollover + NS_PER_SECOND / 2n;
    expect(unixNsToNtp(after) >> 32n).to.equal(0n);
    expect(unixNsToNtp(before) >> 32n).to.equal((1n << 32n) - 1n);
    // Decoded next to a pivot on the other side of the rollover, each lands in its own era.
    expect(ntpToUnixNs(unixNsToNtp(after), before)).to.equal(after);
    expect(ntpToUnixNs(unixNsToNtp(before), after)).to.equal(before);
    // A pivot far into era 1 still decodes era-1 timestamps.
    const in2050 = 2_524_608_000n * NS_PER_SECOND;
    expect(ntpToUnixNs(unixNsToNtp(in2050), in2050 + 86_400n * NS_PER_SECOND)).to.equal(in2050);
  });
});
