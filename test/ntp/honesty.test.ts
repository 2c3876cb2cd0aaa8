import { expect } from 'chai';
import { runMany } from './honesty-sim.js';

// Seeded offline start-ups (no sockets, no timers): the claimed bounds are held to the truth after every
// sample. `npm run bench -- ntp-honesty` runs thousands; these few hundred take about a second.
describe('ntp/sourcestats: honest bounds from few samples (seeded start-ups)', () => {
  const seeds = Array.from({ length: 120 }, (_, i) => i + 1);

  it('through a Wi-Fi-like path with 10 % loss, no run ever claims less than its offset or frequency error', () => {
    const s = runMany({ path: 'wifi', pollSeconds: 0.25, seconds: 8 }, seeds);
    expect(s.failedSeeds, `seeds whose claim was below the truth`).to.deep.equal([]);
    // And the claims are not vacuous: the worst run used most of its frequency bound.
    expect(s.worstFrequencyRatio).to.be.above(0.3);
  });

  it('on a loopback-like path with late T4 reads and load bursts, likewise', () => {
    const s = runMany({ path: 'loopback', pollSeconds: 0.5, seconds: 6 }, seeds);
    expect(s.failedSeeds).to.deep.equal([]);
    expect(s.worstFrequencyRatio).to.be.above(0.3);
  });
});
