/** `lockstep demo` end to end, small: NTP-synced simulated node processes, one short train. */
import { expect } from 'chai';
import { spawn } from 'node:child_process';
import { runCli, CLI_PATH } from '../support/cli.js';
import { track, untrack, waitFor } from '../support/processes.js';

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

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

  it('a SIGTERM during its final stop (just after the results) is handled: exit 130, nothing it started survives', async () => {
    // The old demo removed its listeners before the final stop: a signal then killed it by the default action.
    const child = spawn(process.execPath, [CLI_PATH, 'demo', '--nodes', '1', '--blinks', '1'], { stdio: ['ignore', 'pipe', 'pipe'] });
    track(child.pid!);
    let out = '';
    child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
    const exited = new Promise<{ code: number | null; signal: string | null }>((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
    await waitFor(() => /a shared 2-core machine/.test(out), 60_000, `the demo's results (output: ${out})`);
    const pids = [...out.matchAll(/pid (\d+)/g)].map((m) => Number(m[1]));
    expect(pids.length, 'the broker and node pids are printed').to.be.greaterThanOrEqual(2);
    child.kill('SIGTERM');
    const r = await exited;
    untrack(child.pid!);
    expect(r, out).to.deep.equal({ code: 130, signal: null });
    await waitFor(() => pids.every((p) => !alive(p)), 5_000, `the broker and nodes (${pids.join(', ')}) to be gone`);
  });

  it('refuses bad options with exit 2', async () => {
    const r = await runCli(['demo', '--nodes', 'zero']);
    expect(r.code).to.equal(2);
    expect(r.stderr).to.match(/--nodes/);
  });
});
