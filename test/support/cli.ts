/** Runs the built `lockstep` command as a user would, and collects what it says. */
import { spawn, type SpawnOptions } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { track, untrack } from './processes.js';

/** dist/src/cli/main.js, found relative to this compiled file (any outDir works). */
export const CLI_PATH = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

export function runCli(args: string[], options: SpawnOptions & { timeoutMs?: number; input?: string } = {}): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI_PATH, ...args], { stdio: ['pipe', 'pipe', 'pipe'], ...options });
    if (child.pid) track(child.pid);
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 20000);
    child.once('error', reject);
    child.once('close', (code) => {
      clearTimeout(timer);
      if (child.pid) untrack(child.pid);
      resolve({ code, stdout, stderr });
    });
    child.stdin!.end(options.input ?? '');
  });
}

/**
 * Runs many short CLI invocations (bad input, unusable hardware: each exits
 * at once) `limit` at a time, results in order: on 2 cores that is most of
 * the gain, without starting so many Node processes that each one's start
 * takes seconds.
 */
export async function runCliAll(runs: { args: string[]; options?: Parameters<typeof runCli>[1] }[], limit = 3): Promise<CliResult[]> {
  const results: CliResult[] = new Array(runs.length);
  let next = 0;
  const worker = async () => {
    for (let i = next++; i < runs.length; i = next++) results[i] = await runCli(runs[i]!.args, runs[i]!.options);
  };
  await Promise.all(Array.from({ length: Math.min(limit, runs.length) }, worker));
  return results;
}

/** A promise made on first use and shared: tests that need the same slow run (a process waiting for its instant) start it together. */
export function shared<T>(make: () => Promise<T>): () => Promise<T> {
  let promise: Promise<T> | undefined;
  return () => (promise ??= make());
}
