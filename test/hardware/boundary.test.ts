import { expect } from 'chai';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The sources, not dist: dist/test/hardware → ../../../hardware. */
const HARDWARE_DIR = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', 'hardware');

describe('hardware/ boundary (DESIGN.md)', () => {
  it('imports nothing from src/ but the Actuator contract', () => {
    const files = readdirSync(HARDWARE_DIR).filter((f) => f.endsWith('.ts'));
    expect(files).to.include('index.ts');
    const fromSrc = files.flatMap((file) =>
      [...readFileSync(join(HARDWARE_DIR, file), 'utf8').matchAll(/from '(\.\.\/src\/[^']+)'/g)].map((m) => `${file}: ${m[1]}`),
    );
    expect(fromSrc.length).to.be.above(0);
    expect(fromSrc.filter((line) => !line.endsWith(': ../src/schedule/actuator.js'))).to.deep.equal([]);
  });
});
