/**
 * `npm run bench`: runs every test/bench/*.bench.js (or those named on the
 * command line by exact name: `npm run bench -- scheduler ntp`), each printing its table and
 * writing JSON under bench-results/. Never part of `npm test`.
 */
import { readdirSync, mkdirSync, writeFileSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { join } from 'node:path';

export interface BenchModule {
  /** Runs the benchmark, prints its table, returns what goes into its JSON file. */
  run(): Promise<unknown>;
}

const here = fileURLToPath(new URL('.', import.meta.url));
const wanted = process.argv.slice(2);
const files = readdirSync(here)
  .filter((f) => f.endsWith('.bench.js'))
  .filter((f) => wanted.length === 0 || wanted.some((w) => f === `${w}.bench.js`))
  .sort();
if (files.length === 0) {
  console.error(`no benchmark matches ${wanted.join(' ') || '(any)'}`);
  process.exit(2);
}
const outDir = join(process.cwd(), 'bench-results');
mkdirSync(outDir, { recursive: true });
const failed: string[] = [];
for (const file of files) {
  const name = file.replace(/\.bench\.js$/, '');
  console.log(`\n=== ${name} ===`);
  const mod = (await import(pathToFileURL(join(here, file)).href)) as BenchModule;
  let result: unknown;
  try {
    result = await mod.run();
  } catch (error) {
    // One broken benchmark must not cost the figures of the others.
    failed.push(name);
    console.log(`${name} FAILED: ${(error as Error).stack ?? error}`);
    continue;
  }
  const path = join(outDir, `${name}.json`);
  writeFileSync(path, JSON.stringify({ name, date: new Date().toISOString(), result }, (_k, v) => (typeof v === 'bigint' ? v.toString() : v), 2) + '\n');
  console.log(`(written ${path})`);
}
if (failed.length) {
  console.error(`\nbenchmarks that failed: ${failed.join(', ')}`);
  process.exitCode = 1;
}
