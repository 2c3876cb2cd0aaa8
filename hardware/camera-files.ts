/**
 * Photo file names, shared by every camera mode: <tag>-<node>-<index>.<ext>,
 * claimed with O_EXCL so no capture (of this run, a later run, another
 * process) can take a name that is already someone's photo. The photo is
 * then renamed over our own empty placeholder, never over an earlier photo.
 */
import { closeSync, mkdirSync, openSync, statSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { ActuatorFailed, ActuatorUnavailable } from '../src/schedule/actuator.js';

/** Keeps names file-safe: the node name comes from the host name or the user. */
export function safeNamePart(part: string): string {
  return part.replace(/[^A-Za-z0-9._-]/g, '_').slice(0, 64) || 'x';
}

/** The first free <tag>-<node>-<index> from `index` on, created empty (O_EXCL). */
export function claimPhotoName(dir: string, tag: string, node: string, index: number, extension: string, what: string): string {
  for (let i = index; ; i++) {
    const candidate = join(dir, `${tag}-${node}-${String(i).padStart(3, '0')}.${extension}`);
    try {
      closeSync(openSync(candidate, 'wx'));
      return candidate;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'EEXIST') continue;
      throw new ActuatorFailed(`${what}: cannot create ${candidate} (${(error as Error).message})${diskHint(error)}`, error);
    }
  }
}

/** Removes a placeholder that never received its photo (only if it is still empty: never a photo). */
export function dropPlaceholder(path: string): void {
  try {
    if (statSync(path).size === 0) unlinkSync(path);
  } catch {
    /* already gone */
  }
}

/** " — the disk is full..." when an error (or a camera's last words) says so. */
export function diskHint(error: unknown): string {
  const text = error instanceof Error ? `${(error as NodeJS.ErrnoException).code ?? ''} ${error.message}` : String(error);
  return /ENOSPC|no space left/i.test(text) ? ': the disk is full; free space there or choose another --out' : '';
}

/** Creates the photo directory, or says it cannot (before the instant, in prepare()). */
export function ensureDir(dir: string): void {
  try {
    mkdirSync(dir, { recursive: true });
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'EACCES' || code === 'EPERM') throw new ActuatorUnavailable('permission', `cannot create ${dir}`, 'choose a directory you can write (--out)');
    throw error;
  }
}
