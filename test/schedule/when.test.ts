import { expect } from 'chai';
import { parseWhen, WhenSyntaxError } from '../../src/schedule/when.js';
import { NS_PER_SECOND } from '../../src/time/units.js';

const ms = (iso: string) => BigInt(Date.parse(iso)) * 1_000_000n;
const NOW = ms('2026-11-21T11:59:00Z') + 123_456_789n;

describe('schedule/when (WHEN parser)', () => {
  it('ISO 8601 with fraction and offset, exact to the nanosecond', () => {
    expect(parseWhen('2026-11-21T12:00:10.250Z', { nowNs: NOW })).to.deep.include({ instantNs: ms('2026-11-21T12:00:10.250Z'), kind: 'iso' });
    expect(parseWhen('2026-11-21T12:00:10.123456789Z', { nowNs: NOW }).instantNs).to.equal(ms('2026-11-21T12:00:10Z') + 123_456_789n);
    expect(parseWhen('2026-11-21T13:00:10.5+01:00', { nowNs: NOW }).instantNs).to.equal(ms('2026-11-21T12:00:10.500Z'));
    expect(parseWhen('2026-11-21T07:00:10-0500', { nowNs: NOW }).instantNs).to.equal(ms('2026-11-21T12:00:10Z'));
    expect(parseWhen('2000-02-29T00:00:00Z', { nowNs: NOW }).instantNs).to.equal(ms('2000-02-29T00:00:00Z'));
    expect(parseWhen('1969-12-31T23:59:59.5Z', { nowNs: NOW }).instantNs).to.equal(-500_000_000n);
  });

  it('ISO without offset is a wall time in the zone; a DST-gap wall time is refused', () => {
    expect(parseWhen('2026-07-01T12:00:00.000000001', { nowNs: NOW, zone: 'Europe/Berlin' }).instantNs).to.equal(ms('2026-07-01T10:00:00Z') + 1n);
    expect(() => parseWhen('2026-03-29T02:30:00', { nowNs: NOW, zone: 'Europe/Berlin' })).to.throw(WhenSyntaxError, /does not exist/);
  });

  it('HH:MM:SS[.fff] is the next occurrence, in the given zone', () => {
    // 11:59:00.123 UTC now: 12:00:10 UTC is 70 s ahead; 11:00:00 is tomorrow.
    expect(parseWhen('12:00:10.250', { nowNs: NOW, zone: 'UTC' })).to.deep.include({ instantNs: ms('2026-11-21T12:00:10.250Z'), kind: 'time-of-day' });
    expect(parseWhen('11:00:00', { nowNs: NOW, zone: 'UTC' }).instantNs).to.equal(ms('2026-11-22T11:00:00Z'));
    expect(parseWhen('13:00:10', { nowNs: NOW, zone: 'Europe/Berlin' }).instantNs).to.equal(ms('2026-11-21T12:00:10Z'));
    expect(parseWhen('07:00:10', { nowNs: NOW, zone: 'America/New_York' }).instantNs).to.equal(ms('2026-11-21T12:00:10Z'));
  });

  it('relative +1.5s / +250ms and @EPOCH[.fraction]', () => {
    expect(parseWhen('+1.5s', { nowNs: NOW })).to.deep.include({ instantNs: NOW + 1_500_000_000n, kind: 'relative' });
    expect(parseWhen('+250ms', { nowNs: NOW }).instantNs).to.equal(NOW + 250_000_000n);
    expect(parseWhen('@1795262410', { nowNs: NOW })).to.deep.include({ instantNs: 1_795_262_410n * NS_PER_SECOND, kind: 'epoch' });
    expect(parseWhen('@1795262410.000000250', { nowNs: NOW }).instantNs).to.equal(1_795_262_410n * NS_PER_SECOND + 250n);
  });

  it('refuses everything else with a message that lists the accepted forms', () => {
    for (const bad of ['tomorrow', '', '12:00', '25:00:00', '12:61:00', '2026-02-30T00:00:00Z', '2026-11-21T12:00:60Z',
      '2026-11-21T12:00:00.1234567891Z', '+5', '+-1s', '@-5', '@12abc', '2026-11-21', '12:00:00 extra']) {
      expect(() => parseWhen(bad, { nowNs: NOW, zone: 'UTC' }), bad).to.throw(WhenSyntaxError, /Accepted: /);
    }
    expect(() => parseWhen('12:00:00', { nowNs: NOW, zone: 'Nowhere/Land' })).to.throw(WhenSyntaxError, /unknown time zone/);
  });
});
