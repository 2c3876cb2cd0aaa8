/** `lockstep demo` end to end, small: NTP-synced simulated node processes, one short train. */
import { expect } from 'chai';
import { runCli } from '../support/cli.js';

describe('lockstep demo', function () {
  this.timeout(90_000);
  it('syncs 3 simulated node processes (clocks ±5 s, ±100 ppm) and fires a train on all of them, then stops everything', async () => {
    const result = await runCli(['demo', '--nodes', '3', '--blinks', '2', '--json'], { timeoutMs: 80_000 });
    expect(result.code, result.stderr).to.equal(0);
    const out = JSON.parse(result.stdout) as {
      rows: { node: string; ack: string; fires: number; offsetNs: number }[];
      edges: { nodes: number; trueSpreadNs?: number; clockSpreadNs?: number }[];
      clockSpread?: { p50: number };
    };
    expect(out.rows).to.have.length(3);
    for (const row of out.rows) {
      expect(row.ack).to.equal('scheduled');
      expect(row.fires).to.equal(2);
    }
    // Node 1's clock is 5 s slow, node 3's 5 s fast: the offsets found (UTC − its clock) say so.
    expect(out.rows[0]!.offsetNs).to.be.closeTo(5e9, 1e7);
    expect(out.rows[2]!.offsetNs).to.be.closeTo(-5e9, 1e7);
    expect(out.edges).to.have.length(4);
    // Generous: the 2-core machine is shared; the benchmark measures the real figure.
    for (const e of out.edges) expect(e.trueSpreadNs!).to.be.lessThan(50_000_000);
    // Next to it, when the clocks themselves read each instant: present for every edge, and (loopback
    // NTP to the same machine) well under the 1 ms the gate asked for.
    for (const e of out.edges) expect(e.clockSpreadNs, 'clock agreement spread per edge').to.be.a('number').and.lessThan(1_000_000);
    expect(out.clockSpread?.p50).to.be.a('number');
  });

  it('refuses a --spin the nodes would refuse, at once (not after the readiness timeout)', async () => {
    const r = await runCli(['demo', '--nodes', '1', '--spin', 'soon'], { timeoutMs: 10_000 });
    expect(r.code).to.equal(2);
    expect(r.stderr).to.match(/--spin/);
  });

  it('refuses bad options with exit 2', async () => {
    const r = await runCli(['demo', '--nodes', 'zero']);
    expect(r.code).to.equal(2);
    expect(r.stderr).to.match(/--nodes/);
  });
});
