/**
 * This package's version, read once from its package.json: nodes put it in
 * their state and the hub's page flags a group that mixes versions (a node
 * left behind by an update is a classic cause of "one headset is off").
 */
import { readFileSync } from 'node:fs';

function readVersion(): string {
  try {
    // dist/src/mesh/version.js and src/mesh/version.ts both sit three levels below the package root.
    const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version?: unknown };
    return typeof pkg.version === 'string' ? pkg.version : 'unknown';
  } catch {
    return 'unknown';
  }
}

export const LOCKSTEP_VERSION = readVersion();
