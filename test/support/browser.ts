/**
 * A real headless Chromium for page tests, driven by playwright-core (which
 * never downloads a browser): Debian's chromium-headless-shell or chromium,
 * installed by .ci/ensure-deps. A temporary HOME (Chromium writes under it)
 * and no background networking (this machine refuses it, many at a time).
 */
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type Browser } from 'playwright-core';

const CANDIDATES = ['/usr/bin/chromium-headless-shell', '/usr/lib/chromium/chromium', '/usr/bin/chromium'];

/** The browser binary, or undefined (LOCKSTEP_CHROMIUM overrides). */
export function findChromium(): string | undefined {
  const forced = process.env.LOCKSTEP_CHROMIUM;
  if (forced) return existsSync(forced) ? forced : undefined;
  return CANDIDATES.find((p) => existsSync(p));
}

export interface TestBrowser {
  browser: Browser;
  close(): Promise<void>;
}

export async function launchBrowser(executablePath: string): Promise<TestBrowser> {
  const home = mkdtempSync(join(tmpdir(), 'lockstep-browser-home-'));
  const browser = await chromium.launch({
    executablePath,
    // Over a pipe, with --no-sandbox added by playwright (root): a killed test leaves no browser behind.
    args: ['--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    env: { ...process.env, HOME: home },
    timeout: 20_000,
  });
  return {
    browser,
    async close() {
      await browser.close().catch(() => undefined);
      rmSync(home, { recursive: true, force: true });
    },
  };
}
