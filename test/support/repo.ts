/** The repository's root, found from any compiled location (dist/ or .build/<name>/). */
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export function repoRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'package.json')) || !existsSync(join(dir, 'hardware'))) {
    const parent = dirname(dir);
    if (parent === dir) throw new Error('cannot find the lockstep repository above the compiled tests');
    dir = parent;
  }
  return dir;
}
