/**
 * The soak run (`npm run soak`) in a small configuration, through the same
 * code: a real `wrangler dev`, 150 events with re-sends, a burst of
 * concurrent copies and forgeries, a destination failing ~30 % of requests
 * (500, 503, 429, hangs past timeout_ms) and Slack. Nothing lost, nothing
 * delivered twice, no forged event anywhere, the JSON result written, and no
 * process left behind.
 *
 * Processes started here are recognized by a marker variable put in the
 * environment wrangler and workerd inherit (other test runs may have their
 * own workerd processes on this machine).
 */
import { randomUUID } from 'node:crypto';
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, expect, it } from 'vitest';
import { type SoakResult, runSoak } from '../../scripts/lib/soak-runner';

const MARKER_NAME = 'SOAK_E2E_MARKER';
const MARKER_VALUE = randomUUID();
const MARKER = `${MARKER_NAME}=${MARKER_VALUE}`;
const dir = mkdtempSync(join(tmpdir(), 'soak-e2e-'));

afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Live (non-zombie) processes carrying our marker: anything the run started and left running. */
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

it('150 events through failing, hanging and rate-limiting destinations: none lost, none twice, no forgery through', async () => {
  const outFile = join(dir, 'soak.json');
  let result: SoakResult;
  process.env[MARKER_NAME] = MARKER_VALUE;
  try {
    result = await runSoak({
      events: 150,
      seed: 150,
      // Bounded retry tail: 1+2+4+8+16 s at most before the 6th attempt, which
      // dead-letters if it fails too (a dead letter is accounted for, not lost).
      maxAttempts: 6,
      drainTimeoutSeconds: 60,
      outFile,
      log: (line) => console.log(line),
    });
  } finally {
    delete process.env[MARKER_NAME];
  }
  const summary = JSON.stringify({ failures: result.failures, problems: result.problems.slice(0, 5) }, null, 2);

  expect(result.timing.drained, summary).toBe(true);
  expect(result.destinations.healthy.lost + result.destinations.flaky.lost, summary).toBe(0);
  expect(result.destinations.healthy.extra + result.destinations.flaky.extra, summary).toBe(0);
  expect(result.forged.reachingAnyone, summary).toBe(0);
  expect(result.ok, summary).toBe(true);

  // The traffic and the faults were what they claim to be.
  expect(result.traffic.accepted).toBe(150);
  expect(result.traffic.duplicates).toBe(result.traffic.expectedDuplicates);
  expect(result.traffic.bursts).toBeGreaterThan(0);
  expect(result.forged.sent).toBeGreaterThanOrEqual(5);
  expect(result.forged.rejected).toBe(result.forged.sent);
  expect(Object.keys(result.forged.byKind).sort()).toEqual(['future_timestamp', 'missing_header', 'stale_timestamp', 'tampered_body', 'wrong_secret']);
  expect(result.destinations.flaky.calls).toBeGreaterThan(result.destinations.flaky.owed);
  expect(result.destinations.healthy.delivered).toBe(150);
  expect(result.slack.routed).toBeGreaterThan(0);
  expect(result.slack.counted + result.slack.deadLettered).toBe(result.slack.routed);
  expect(result.router.logsConsistent, result.router.inconsistent.join('\n')).toBe(true);

  // The JSON result, in the shape of bench/results/*.json.
  const json = JSON.parse(readFileSync(outFile, 'utf8')) as { name: string; targets: { met: boolean | null }[]; raw: SoakResult };
  expect(json.name).toBe('soak');
  expect(json.targets.length).toBeGreaterThan(0);
  expect(json.targets.every((t) => t.met === true)).toBe(true);
  expect(json.raw.traffic.uniqueEvents).toBe(150);
  expect(json.raw.destinations.flaky.lost).toBe(0);

  // wrangler dev and workerd are gone.
  expect(markedProcesses()).toEqual([]);
}, 120_000);
