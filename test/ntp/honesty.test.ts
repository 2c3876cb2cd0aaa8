import { expect } from 'chai';
import { runMany } from './honesty-sim.js';
import { simulateClientStartup } from './startup-sim.js';

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

  it('a whole client (poll schedule, discipline, Timescale) through the Wi-Fi-like path: honest all along, the 1 ms gate open within 15 s', () => {
    for (let seed = 1; seed <= 6; seed++) {
      const r = simulateClientStartup({ seed, seconds: 20 });
      expect(r.dishonest, `seed ${seed}: checks whose bound was below the truth`).to.equal(0);
      expect(r.gatePassedAfterSeconds, `seed ${seed}: when the 1 ms gate passed`).to.be.a('number').and.at.most(15);
      expect(r.errorAtUs['10'], `seed ${seed}: |error| after 10 s, µs`).to.be.a('number').and.below(1000);
    }
  });
});
