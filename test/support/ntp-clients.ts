/**
 * Real NTP clients measuring a server under test: `chronyd -Q` (any port) and
 * ntpsec's `ntpdig` / `ntpdate` (port 123 only), plus a network namespace to
 * give them a private port 123. See shared/FIELD-NOTES.md.
 */
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { track, untrack } from './processes.js';
import { chronydPath } from './chronyd.js';

export interface RunResult {
  code: number | null;
  output: string;
}

/** Runs a command to completion (bounded by timeoutMs), tracked by pid so a failed test leaves nothing behind. */
export function run(command: string, args: string[], timeoutMs = 30000): Promise<RunResult> {
  return new Promise((resolve) => {
    const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    if (child.pid) track(child.pid);
    let output = '';
    child.stdout.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr.on('data', (d: Buffer) => (output += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.once('error', (error) => {
      clearTimeout(timer);
      resolve({ code: null, output: output + String(error) });
    });
    child.once('close', (code) => {
      clearTimeout(timer);
      if (child.pid) untrack(child.pid);
      resolve({ code, output });
    });
  });
}

export function have(command: string, args = ['--version']): boolean {
  try {
    execFileSync(command, args, { stdio: 'ignore' });
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code !== 'ENOENT';
  }
}

export interface ChronyQueryOptions {
  host?: string;
  port: number;
  /** keyfile lines and the key id to use, for authenticated queries. */
  keyLines?: string[];
  keyId?: number;
  /** chronyd's own -t limit, seconds. */
  timeoutSeconds?: number;
  maxSamples?: number;
  /** Run inside this network namespace (ip netns exec). */
  netns?: string;
}

export interface ChronyQueryResult {
  /** The offset chronyd measured (truth − its clock is 0 on one machine), seconds; undefined if it found no source. */
  offsetSeconds: number | undefined;
  output: string;
}

/**
 * `chronyd -Q`: a one-shot chrony client that measures and never touches the
 * clock; prints "System clock wrong by X seconds (ignored)". X is how far our
 * server's time is from this machine's clock, i.e. from truth.
 */
export async function chronydQuery(options: ChronyQueryOptions): Promise<ChronyQueryResult> {
  const dir = mkdtempSync(join(tmpdir(), 'lockstep-chronyq-'));
  try {
    const lines = [`pidfile ${join(dir, 'pid')}`, 'cmdport 0'];
    let keyOption = '';
    if (options.keyLines) {
      writeFileSync(join(dir, 'keys'), options.keyLines.join('\n') + '\n', { mode: 0o600 });
      lines.push(`keyfile ${join(dir, 'keys')}`);
      keyOption = ` key ${options.keyId ?? 1}`;
    }
    lines.push(`server ${options.host ?? '127.0.0.1'} port ${options.port} iburst maxsamples ${options.maxSamples ?? 4}${keyOption}`);
    const timeout = options.timeoutSeconds ?? 20;
    const args = ['-Q', '-t', String(timeout), '-f', '/dev/null', ...lines];
    const chronyd = chronydPath() ?? 'chronyd';
    const result = options.netns
      ? await run('ip', ['netns', 'exec', options.netns, chronyd, ...args], (timeout + 10) * 1000)
      : await run(chronyd, args, (timeout + 10) * 1000);
    const match = /System clock wrong by (-?[0-9.eE+-]+) seconds/.exec(result.output);
    return { offsetSeconds: match ? Number(match[1]) : undefined, output: result.output };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** A network namespace with loopback up: a private 127.0.0.1:123 for ntpdig/ntpdate. */
export interface Netns {
  name: string;
  exec(command: string, args: string[], timeoutMs?: number): Promise<RunResult>;
  remove(): Promise<void>;
}

/** Makes a namespace, or says why it cannot (not root, no `ip`, kernel refuses). */
export async function createNetns(prefix = 'lockstep'): Promise<Netns | { unavailable: string }> {
  if (process.getuid?.() !== 0) return { unavailable: 'not root: cannot create a network namespace' };
  if (!have('ip', ['-V'])) return { unavailable: 'the `ip` command (iproute2) is missing' };
  const name = `${prefix}-${process.pid}-${Math.floor(Math.random() * 1e6)}`;
  const add = await run('ip', ['netns', 'add', name], 5000);
  if (add.code !== 0) return { unavailable: `ip netns add failed: ${add.output.trim()}` };
  const up = await run('ip', ['netns', 'exec', name, 'ip', 'link', 'set', 'lo', 'up'], 5000);
  if (up.code !== 0) {
    await run('ip', ['netns', 'delete', name], 5000);
    return { unavailable: `cannot bring up loopback in the namespace: ${up.output.trim()}` };
  }
  return {
    name,
    exec: (command, args, timeoutMs) => run('ip', ['netns', 'exec', name, command, ...args], timeoutMs),
    async remove() {
      await run('ip', ['netns', 'delete', name], 5000);
    },
  };
}
