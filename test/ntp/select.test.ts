import { expect } from 'chai';
import { selectSources, type Candidate } from '../../src/ntp/select.js';

function c(id: string, offsetUs: number, distanceUs: number, stratum = 2): Candidate {
  return { id, offsetNs: BigInt(Math.round(offsetUs * 1000)) + 1_700_000_000_000_000_000n, distanceNs: distanceUs * 1000, frequencyPpm: 1, frequencySdPpm: 0.1, stratum };
}

describe('ntp/select (Marzullo)', () => {
  it('marks one lying server of three a falseticker and combines the other two', () => {
    const s = selectSources([c('a', 10, 100), c('b', -20, 150), c('liar', 1_000_000, 100)]);
    expect(s.falsetickers).to.deep.equal(['liar']);
    expect(s.truechimers).to.have.members(['a', 'b']);
    expect(s.selectedId).to.equal('a');
    const combined = Number(s.combined!.offsetNs - 1_700_000_000_000_000_000n) / 1000;
    expect(combined).to.be.within(-20, 10);
    expect(s.combined!.errorBoundNs).to.be.at.most(150_000);
  });

  it('selects nothing when no majority agrees (two servers that disagree)', () => {
    const s = selectSources([c('a', 0, 100), c('b', 5000, 100)]);
    expect(s.combined).to.equal(undefined);
    expect(s.selectedId).to.equal(undefined);
  });

  it('one source is its own majority; its bound is its distance', () => {
    const s = selectSources([c('only', 42, 80)]);
    expect(s.selectedId).to.equal('only');
    expect(s.combined!.errorBoundNs).to.be.closeTo(80_000, 1);
  });

  it('weights by 1/distance² and prefers the lower stratum at equal distance', () => {
    const s = selectSources([c('near', 0, 10, 3), c('far', 90, 100, 1), c('same', 0, 10, 2)]);
    expect(s.selectedId).to.equal('same');
    const combined = Number(s.combined!.offsetNs - 1_700_000_000_000_000_000n) / 1000;
    expect(combined).to.be.below(5);
  });

  it('ignores candidates with a non-finite distance', () => {
    const s = selectSources([c('a', 0, 10), { ...c('b', 0, 10), distanceNs: NaN }]);
    expect(s.falsetickers).to.include('b');
    expect(s.selectedId).to.equal('a');
  });
});
