/**
 * The Pi install route of the README: `npm pack`, then a global install of
 * the tarball with install scripts disabled (what a Pi Zero without a
 * compiler can do). It must hold compiled JavaScript only, and run.
 */
import { expect } from 'chai';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { repoRoot } from '../support/repo.js';

const run = promisify(execFile);

describe('cli: the packed package installs without scripts and runs', function () {
  this.timeout(120_000);
  const dir = mkdtempSync(join(tmpdir(), 'lockstep-pack-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('npm pack holds dist/ and no TypeScript; installed with --ignore-scripts, lockstep --help works', async () => {
    // The tests run after tsc, so dist/ is current: skip `prepare` (another tsc run).
    const { stdout } = await run('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', dir], { cwd: repoRoot(), timeout: 60_000 });
    const [packed] = JSON.parse(stdout) as { filename: string; files: { path: string }[] }[];
    const paths = packed!.files.map((f) => f.path);
    expect(paths).to.include('dist/src/cli/main.js');
    expect(paths.some((p) => p.startsWith('dist/hardware/'))).to.equal(true);
    // The hub's page: static files shipped beside the compiled server (npm run build copies them).
    expect(paths).to.include.members(['dist/src/mesh/web/index.html', 'dist/src/mesh/web/app.js', 'dist/src/mesh/web/style.css']);
    expect(paths.filter((p) => p.endsWith('.ts') && !p.endsWith('.d.ts')), 'no sources').to.deep.equal([]);
    expect(paths.filter((p) => p.startsWith('dist/test/')), 'no tests').to.deep.equal([]);
    const prefix = join(dir, 'prefix');
    await run('npm', ['install', '-g', '--prefix', prefix, '--ignore-scripts', '--prefer-offline', '--no-audit', '--no-fund', join(dir, packed!.filename)], { timeout: 90_000 });
    // uPlot comes as a dependency: the page loads it from node_modules.
    expect(existsSync(join(prefix, 'lib', 'node_modules', 'lockstep', 'node_modules', 'uplot', 'dist', 'uPlot.iife.min.js')), 'uplot installed').to.equal(true);
    const help = await run(join(prefix, 'bin', 'lockstep'), ['--help'], { timeout: 20_000 });
    expect(help.stdout).to.match(/^usage: lockstep COMMAND/);
    // Real work, not only the front page: the scheduler and the WHEN parser (luxon) run.
    const wait = await run(join(prefix, 'bin', 'lockstep'), ['wait', '+100ms', '--json'], { timeout: 20_000 });
    expect(JSON.parse(wait.stdout.trim().split('\n')[0]!)).to.have.property('latenessNs');
  });
});
