/**
 * `npm run demo` from start to finish, as a new user runs it: exit 0, the
 * summary table's numbers, and no wrangler/workerd process left behind.
 *
 * Other test runs may have their own workerd processes on this machine, so
 * leftovers are recognized by a marker variable put in the demo's environment
 * (wrangler and workerd inherit it).
 */
import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { readFileSync, readdirSync } from 'node:fs';
import { resolve } from 'node:path';
import { expect, it } from 'vitest';

const ROOT = resolve(new URL('../..', import.meta.url).pathname);
const MARKER_NAME = 'DEMO_E2E_MARKER';
const MARKER_VALUE = randomUUID();
const MARKER = `${MARKER_NAME}=${MARKER_VALUE}`;

function runDemo(): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((done) => {
    execFile(
      resolve(ROOT, 'node_modules/.bin/tsx'),
      ['scripts/demo.ts'],
      {
        cwd: ROOT,
        timeout: 170_000,
        maxBuffer: 20 * 1024 * 1024,
        env: { ...process.env, [MARKER_NAME]: MARKER_VALUE, NO_COLOR: '1' },
      },
      (err, stdout, stderr) => done({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : -1, stdout, stderr }),
    );
  });
}

/** Live (non-zombie) processes carrying our marker: anything the demo started and left running. */
function markedProcesses(): string[] {
  const found: string[] = [];
  for (const pid of readdirSync('/proc')) {
    if (!/^\d+$/.test(pid) || Number(pid) === process.pid) continue;
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      if (stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z')) continue;
      if (!readFileSync(`/proc/${pid}/environ`, 'latin1').split('\0').includes(MARKER)) continue;
      found.push(`${pid} ${readFileSync(`/proc/${pid}/cmdline`, 'latin1').replace(/\0/g, ' ').trim()}`);
    } catch {
      // exited meanwhile, or not readable
    }
  }
  return found;
}

/** `pgrep -f workerd` pids (exit 1 = none). */
function pgrepWorkerd(): Promise<number[]> {
  return new Promise((done) => {
    execFile('pgrep', ['-f', 'workerd'], (_err, stdout) => done(stdout.split('\n').filter(Boolean).map(Number)));
  });
}

function row(stdout: string, label: string): { actual: number; expected: number } {
  const m = new RegExp(`^\\s+${label.replace(/[()]/g, '\\$&')}\\s+(\\d+)\\s+(\\d+)\\s+✓$`, 'm').exec(stdout);
  if (m === null) throw new Error(`summary row "${label}" missing or not ✓:\n${stdout.slice(stdout.indexOf('Summary'))}`);
  return { actual: Number(m[1]), expected: Number(m[2]) };
}

it('npm run demo: every family delivered, duplicate and forgery handled, summary right, nothing left running', async () => {
  const r = await runDemo();
  const summary = r.stdout.slice(r.stdout.indexOf('Summary'));
  expect(r.code, `${summary}\n${r.stderr}`).toBe(0);
  expect(r.stdout).toContain('result: OK (every expected delivery arrived exactly once)');

  expect(row(r.stdout, 'sent')).toEqual({ actual: 22, expected: 22 });
  expect(row(r.stdout, 'accepted')).toEqual({ actual: 20, expected: 20 });
  expect(row(r.stdout, 'duplicate')).toEqual({ actual: 1, expected: 1 });
  expect(row(r.stdout, 'rejected')).toEqual({ actual: 1, expected: 1 });
  expect(row(r.stdout, 'delivered warehouse (http)')).toEqual({ actual: 20, expected: 20 });
  expect(row(r.stdout, 'delivered crm (http)')).toEqual({ actual: 5, expected: 5 });
  expect(row(r.stdout, 'delivered security (slack)')).toEqual({ actual: 5, expected: 5 });
  expect(row(r.stdout, 're-signatures verified')).toEqual({ actual: 25, expected: 25 });
  expect(row(r.stdout, 'unexpected deliveries')).toEqual({ actual: 0, expected: 0 });

  // One event per family went out, the duplicate and the forgery were answered as such.
  for (const family of ['api_key', 'authentication', 'connection', 'dsync', 'email_verification', 'flag', 'group', 'invitation', 'magic_auth', 'organization', 'organization_domain', 'organization_membership', 'organization_role', 'password_reset', 'permission', 'pipes', 'role', 'session', 'user', 'vault']) {
    expect(r.stdout).toMatch(new RegExp(`→ 200 accepted +${family}\\.[a-z_.]+ {2}event_\\w+$`, 'm'));
  }
  expect(r.stdout).toMatch(/→ 200 duplicate +api_key\.revoked {2}event_\w+ {2}\(the same event again/);
  expect(r.stdout).toMatch(/→ 401 signature_mismatch +organization\.deleted {2}event_\w+ {2}\(forged/);
  // What the destinations received, printed as it arrived.
  expect(r.stdout).toMatch(/⇠ crm \(http\) {2}POST user\.created {2}event_\w+ {2}\d+ B {2}signature ✓ \(crm secret\) {2}bytes = sent ✓/);
  expect(r.stdout).toMatch(/⇠ security \(slack\) {2}POST (message|digest of \d+ events): .*authentication\.password_failed/);
  expect(r.stdout).toMatch(/│ ▌ /); // a Slack header, rendered
  expect(r.stdout).not.toContain('NOT EXPECTED');

  // No process left behind: wrangler stops workerd as it exits; allow a moment for the kernel to reap.
  let left = markedProcesses();
  for (let i = 0; i < 50 && left.length > 0; i++) {
    await new Promise((res) => setTimeout(res, 200));
    left = markedProcesses();
  }
  expect(left).toEqual([]);
  const workerd = await pgrepWorkerd();
  const ours = workerd.filter((pid) => {
    try {
      return readFileSync(`/proc/${pid}/environ`, 'latin1').split('\0').includes(MARKER);
    } catch {
      return false;
    }
  });
  expect(ours).toEqual([]);
  expect(r.stdout).toContain('Stopped: no process left behind.');
}, 180_000);
