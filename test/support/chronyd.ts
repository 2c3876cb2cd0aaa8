/**
 * A real chronyd serving its own clock on loopback, never touching it
 * (-x, local stratum 8), on a free port: the peer our client must agree with.
 * See shared/FIELD-NOTES.md for the configuration this relies on.
 */
import { mkdtempSync, writeFileSync, existsSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execFileSync } from 'node:child_process';
import { freeUdpPort } from './ports.js';
import { start, stopByPidFile, track, waitFor } from './processes.js';

export interface ChronydServer {
  host: string;
  port: number;
  dir: string;
  stop(): Promise<void>;
}

/**
 * Debian installs chronyd in /usr/sbin, which is not on a non-root user's
 * PATH: looking only on PATH would silently skip every chronyd-backed test.
 */
const SBIN_DIRS = ['/usr/sbin', '/usr/local/sbin', '/sbin'];
let resolved: string | null | undefined;

/** The chronyd to run (a PATH name or an absolute path), or undefined if none runs. */
export function chronydPath(): string | undefined {
  if (resolved === undefined) {
    resolved = null;
    for (const candidate of ['chronyd', ...SBIN_DIRS.map((d) => join(d, 'chronyd'))]) {
      try {
        execFileSync(candidate, ['-v'], { stdio: 'ignore' });
        resolved = candidate;
        break;
      } catch {
        /* not this one */
      }
    }
  }
  return resolved ?? undefined;
}

export function haveChronyd(): boolean {
  return chronydPath() !== undefined;
}

function chronyd(): string {
  const path = chronydPath();
  if (!path) throw new Error(`chronyd is not installed (looked on PATH and in ${SBIN_DIRS.join(', ')})`);
  return path;
}

export interface ChronydOptions {
  /** keyfile lines in chrony's format ("1 SHA1 HEX:..."), if any. */
  keyLines?: string[];
  localStratum?: number;
}

export async function startChronydServer(options: ChronydOptions = {}): Promise<ChronydServer> {
  const dir = mkdtempSync(join(tmpdir(), 'lockstep-chronyd-'));
  const port = await freeUdpPort();
  const conf = join(dir, 'chrony.conf');
  const lines = [
    `port ${port}`,
    'bindaddress 127.0.0.1',
    'allow 127.0.0.1',
    `local stratum ${options.localStratum ?? 8}`,
    'cmdport 0',
    `pidfile ${join(dir, 'pid')}`,
    `driftfile ${join(dir, 'drift')}`,
  ];
  if (options.keyLines) {
    writeFileSync(join(dir, 'keys'), options.keyLines.join('\n') + '\n', { mode: 0o600 });
    lines.push(`keyfile ${join(dir, 'keys')}`);
  }
  writeFileSync(conf, lines.join('\n') + '\n');
  const launcher = start(chronyd(), ['-f', conf, '-x', '-u', 'root', '-L', '0', '-l', join(dir, 'log')]);
  const pidFile = join(dir, 'pid');
  await waitFor(() => existsSync(pidFile), 5000, 'chronyd pidfile');
  await launcher.stop().catch(() => undefined); // the launcher forks; the daemon is in the pidfile
  const { readFileSync } = await import('node:fs');
  track(Number(readFileSync(pidFile, 'utf8').trim()));
  return {
    host: '127.0.0.1',
    port,
    dir,
    async stop() {
      await stopByPidFile(pidFile);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
