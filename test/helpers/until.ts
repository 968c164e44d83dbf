/**
 * Waits for a positive signal (a condition that becomes true when processing
 * has finished), polling; fails with what it waited for when it never comes.
 * Checks that something did NOT happen wait on one of these first.
 */
export async function until(check: () => boolean | Promise<boolean>, what: string, timeoutMs = 15_000, intervalMs = 50): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}
