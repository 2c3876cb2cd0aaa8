/**
 * `lockstep node --exit-with-stdin` (how the demo, the bench and the tests
 * start nodes): it must EXIT on SIGTERM, not only stop. Its resumed stdin
 * used to keep the event loop alive, so every demo stop waited 3 s for the
 * SIGKILL that followed; and it must still go when its parent's pipe closes.
 */
import { expect } from 'chai';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CLI_PATH } from '../support/cli.js';
import { freeTcpPort } from '../support/ports.js';
import { track, untrack, waitFor } from '../support/processes.js';

/** Generous for a shared 2-core machine, far under the 3 s after which the demo SIGKILLs. */
const PROMPT_EXIT_MS = 2_000;

describe('lockstep node --exit-with-stdin', function () {
  this.timeout(20_000);
  let dir: string;
  before(() => (dir = mkdtempSync(join(tmpdir(), 'lockstep-node-exit-'))));
  after(() => rmSync(dir, { recursive: true, force: true }));

  async function startNode(id: string): Promise<{ child: ChildProcess; exited: Promise<{ code: number | null; signal: string | null; afterMs: number }>; mark: () => void }> {
    const port = await freeTcpPort(); // nothing listens: the node runs without a broker, as it may
    const child = spawn(process.execPath, [CLI_PATH, 'node', '--id', id, '--system-clock', '--broker', `mqtt://127.0.0.1:${port}`, '--state-file', join(dir, `${id}.json`), '--exit-with-stdin'], {
      stdio: ['pipe', 'ignore', 'pipe'],
    });
    track(child.pid!);
    let stderr = '';
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    let t0 = 0;
    const exited = new Promise<{ code: number | null; signal: string | null; afterMs: number }>((resolve) =>
      child.once('exit', (code, signal) => {
        untrack(child.pid!);
        resolve({ code, signal, afterMs: Date.now() - t0 });
      }),
    );
    await waitFor(() => /running:/.test(stderr), 10_000, `node ${id} to start (stderr: ${stderr})`);
    return { child, exited, mark: () => (t0 = Date.now()) };
  }

  it('exits with status 0 promptly on SIGTERM', async () => {
    const node = await startNode('exit-term');
    node.mark();
    node.child.kill('SIGTERM');
    const r = await node.exited;
    expect(r.signal, 'not killed: it exits by itself').to.equal(null);
    expect(r.code).to.equal(0);
    expect(r.afterMs).to.be.lessThan(PROMPT_EXIT_MS);
  });

  it('exits when its parent\'s end of stdin closes', async () => {
    const node = await startNode('exit-pipe');
    node.mark();
    node.child.stdin!.end();
    const r = await node.exited;
    expect(r.code).to.equal(0);
    expect(r.afterMs).to.be.lessThan(PROMPT_EXIT_MS);
  });
});
