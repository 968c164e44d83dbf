/**
 * Launches the system's Chromium for the browser tests and the README
 * screenshots. Playwright's own browser download is never used: the binary is
 * `CHROMIUM_PATH` when set, else the first of `/usr/bin/chromium`,
 * `/usr/bin/chromium-browser` or `chromium` / `chromium-browser` on the PATH.
 */
import { accessSync, constants } from 'node:fs';
import { delimiter, join } from 'node:path';
import { type Browser, type LaunchOptions, chromium } from 'playwright-core';

const WELL_KNOWN = ['/usr/bin/chromium', '/usr/bin/chromium-browser'];
const NAMES = ['chromium', 'chromium-browser'];

function executable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** The Chromium binary to drive; throws with what to do when there is none. */
export function chromiumPath(env: NodeJS.ProcessEnv = process.env): string {
  const fromEnv = env.CHROMIUM_PATH?.trim();
  if (fromEnv !== undefined && fromEnv !== '') {
    if (!executable(fromEnv)) throw new Error(`CHROMIUM_PATH is set to ${fromEnv}, which is not an executable file.`);
    return fromEnv;
  }
  const onPath = (env.PATH ?? '')
    .split(delimiter)
    .filter((dir) => dir !== '')
    .flatMap((dir) => NAMES.map((name) => join(dir, name)));
  const found = [...WELL_KNOWN, ...onPath].find(executable);
  if (found !== undefined) return found;
  throw new Error(
    'Chromium was not found (looked for /usr/bin/chromium, /usr/bin/chromium-browser and chromium on the PATH). ' +
      "Install Debian's package (apt-get install -y chromium) or set CHROMIUM_PATH to a Chromium or Chrome binary. " +
      "Playwright's own browser download is not used.",
  );
}

/** Headless Chromium via playwright-core. Close it (`browser.close()`) when done. */
export async function launchBrowser(opts: LaunchOptions = {}): Promise<Browser> {
  const executablePath = chromiumPath();
  try {
    return await chromium.launch({
      headless: true,
      ...opts,
      executablePath,
      // Containers often have a tiny /dev/shm.
      args: ['--disable-dev-shm-usage', ...(opts.args ?? [])],
    });
  } catch (err) {
    throw new Error(`Could not start Chromium at ${executablePath}: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
  }
}
