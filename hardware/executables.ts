/**
 * Finding and probing the programs a driver keeps running (gpioset,
 * rpicam-still): found on PATH up front, so a missing one is reported in
 * prepare() with the package to install, never at the instant.
 */
import { accessSync, constants, statSync } from 'node:fs';
import { delimiter, join, isAbsolute } from 'node:path';
import { execFile } from 'node:child_process';

/** The absolute path of an executable on PATH (or the path itself if it has a slash), or undefined. */
export function findExecutable(name: string, pathEnv: string = process.env.PATH ?? ''): string | undefined {
  const candidates = name.includes('/') ? [isAbsolute(name) ? name : join(process.cwd(), name)] : pathEnv.split(delimiter).filter(Boolean).map((dir) => join(dir, name));
  for (const candidate of candidates) {
    try {
      if (!statSync(candidate).isFile()) continue;
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      /* not here */
    }
  }
  return undefined;
}

export interface ProbeResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** How long a `--version` / `--help` probe may take before we call the program broken. */
const PROBE_TIMEOUT_MS = 5000;

/** Runs a program briefly (a --version or --help probe) and collects its output; never throws. */
export function probe(path: string, args: string[], timeoutMs = PROBE_TIMEOUT_MS): Promise<ProbeResult> {
  return new Promise((resolve) => {
    execFile(path, args, { timeout: timeoutMs, maxBuffer: 1 << 20 }, (error, stdout, stderr) => {
      const code = error ? (typeof (error as NodeJS.ErrnoException & { code?: unknown }).code === 'number' ? ((error as unknown as { code: number }).code) : null) : 0;
      resolve({ code, stdout: String(stdout), stderr: String(stderr) });
    });
  });
}
