/**
 * The Slack outbox's error handling as README.md "## Slack" promises it:
 * 408, timeouts (`timeout_ms`) and network errors are retried with the
 * destination's backoff, never dead-lettered on one failure; other 4xx
 * answers dead-letter the events at once as `slack_<word>` or, when Slack's
 * answer is not such a word, `slack_http_<status>`; `digest_window_seconds`
 * below 1 is refused by config validation.
 * Outbound fetch to Slack is mocked at the edge; the outbox Durable Object,
 * its alarm, the structured log and the dead-letter store are real.
 */
import { runDurableObjectAlarm, runInDurableObject } from 'cloudflare:test';
import { env } from 'cloudflare:workers';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { type SlackDestination, parseRouterConfig } from '../../src/config/router-config';
import { type DeadLetterSummary, deadLetterStub } from '../../src/deadletters/store';
import { type OutboxItem, outboxStub } from '../../src/destinations/slack/outbox';
import { makeEvent } from '../fixtures/events';
import { type LogRecord, watchLogs } from '../helpers/observe';
import { until } from '../helpers/until';

const SLACK = 'https://hooks.slack.test/services/T1/B1/errors';

interface Call {
  at: number;
  text: string;
}
let calls: Call[];
/** Slack's behaviour for one POST (it has already received the body when this runs). */
let answer: (signal: AbortSignal | null) => Promise<Response>;

beforeEach(() => {
  calls = [];
  answer = async () => new Response('ok');
  vi.spyOn(globalThis, 'fetch').mockImplementation(async (input, init) => {
    const req = new Request(input as RequestInfo, init);
    if (req.url !== SLACK) throw new Error(`unexpected fetch ${req.url}`);
    calls.push({ at: Date.now(), text: ((await req.json()) as { text: string }).text });
    return answer(init?.signal ?? null);
  });
});
afterEach(() => vi.restoreAllMocks());

/** A Slack that took the message but never answers: the request ends only when its signal aborts it, as a real fetch does. */
function hang(signal: AbortSignal | null): Promise<Response> {
  return new Promise<Response>((_resolve, reject) => {
    if (signal === null) return; // no timeout given: hangs for ever (the test then times out)
    if (signal.aborted) reject(signal.reason);
    signal.addEventListener('abort', () => reject(signal.reason));
  });
}

const HTML_403 = '<!DOCTYPE html>\n<html><head><title>403 Forbidden</title></head><body><h1>Forbidden</h1></body></html>';

let n = 0;
/** Backoff and window long enough that the outbox's own alarm never fires during a test: the test runs it. */
function destination(overrides: Partial<SlackDestination> = {}): SlackDestination {
  return {
    name: `slack-errors-${++n}-${crypto.randomUUID().slice(0, 8)}`,
    type: 'slack',
    url: SLACK,
    digestWindowSeconds: 60,
    maxPending: 10_000,
    timeoutMs: 1000,
    circuit: null,
    maxPerSecond: null,
    retry: { maxAttempts: 5, retryDelaySeconds: 60 },
    ...overrides,
  };
}

function item(i = 0): OutboxItem {
  const e = makeEvent('authentication.password_failed');
  (e.data as { ip_address: string | null }).ip_address = `203.0.113.${i % 7}`;
  return { event_id: e.id, event_type: e.event, rules: ['failed-logins'], raw: JSON.stringify(e) };
}

/** Events a message stands for: 1 for a single-event message, N for a digest. */
function countOf(text: string): number {
  const m = /([\d,]+) WorkOS events? in the last/.exec(text);
  return m ? Number((m[1] as string).replace(/,/g, '')) : 1;
}

type Stub = ReturnType<typeof outboxStub>;

async function deadLettersAt(dest: SlackDestination): Promise<DeadLetterSummary[]> {
  return deadLetterStub(env).list(500, 0, { destination: dest.name });
}

/** The outbox's retry state: failed tries in a row, and until when it waits. */
async function retryState(stub: Stub): Promise<{ attempts: number; blockedUntil: number; alarm: number | null }> {
  return runInDurableObject(stub, async (_i, state) => {
    const meta = (key: string): number => state.storage.sql.exec<{ value: number }>('SELECT value FROM meta WHERE key = ?', key).toArray()[0]?.value ?? 0;
    return { attempts: meta('attempts'), blockedUntil: meta('blocked_until'), alarm: await state.storage.getAlarm() };
  });
}

/** Lets the outbox's wait (window or backoff) pass, as time would, then runs its alarm. */
async function elapseAndRunAlarm(stub: Stub): Promise<boolean> {
  await runInDurableObject(stub, (_i, state) => {
    state.storage.sql.exec("UPDATE meta SET value = 0 WHERE key IN ('last_sent_at', 'blocked_until')");
  });
  return runDurableObjectAlarm(stub);
}

function failures(logs: ReturnType<typeof watchLogs>, dest: SlackDestination): LogRecord[] {
  return logs.records().filter((r) => r.msg === 'slack_delivery_failed' && r.destination === dest.name);
}

/**
 * A failed first try that must be retried: the event stays buffered, one
 * failure is counted, a backoff and an alarm are set, the reason logged, and
 * nothing is dead-lettered. Then Slack is healthy and the retry posts it once.
 */
async function expectRetriedThenPostedOnce(
  dest: SlackDestination,
  stub: Stub,
  it1: OutboxItem,
  logs: ReturnType<typeof watchLogs>,
  expected: { status: number | null; reason: string },
): Promise<void> {
  // The submit returns once the first try has completed (a single event in a quiet period is sent at once).
  expect(calls).toHaveLength(1);
  expect(calls[0]?.text).toContain(it1.event_id);
  expect(await stub.pending()).toBe(1);
  const state = await retryState(stub);
  expect(state.attempts).toBe(1);
  expect(state.blockedUntil).toBeGreaterThan(Date.now() + 25_000); // backoff from retry_delay_seconds 60: 30–60 s
  expect(state.alarm).not.toBeNull();
  expect((state.alarm ?? 0) - Date.now()).toBeGreaterThan(25_000);
  expect(failures(logs, dest)).toEqual([expect.objectContaining({ status: expected.status, reason: expected.reason, events: 1 })]);
  expect(await deadLettersAt(dest)).toEqual([]);

  // Slack is healthy again: the retry posts the same message, once.
  answer = async () => new Response('ok');
  expect(await elapseAndRunAlarm(stub)).toBe(true);
  expect(calls).toHaveLength(2);
  expect(calls[1]?.text).toBe(calls[0]?.text);
  expect(countOf(calls[1]?.text ?? '')).toBe(1);
  expect(await stub.pending()).toBe(0);
  const after = await retryState(stub);
  expect(after.attempts).toBe(0);
  expect(after.alarm).toBeNull(); // nothing left to send: no further POST will come
  expect(await runDurableObjectAlarm(stub)).toBe(false);
  expect(calls).toHaveLength(2);
  expect(failures(logs, dest)).toHaveLength(1);
  expect(await deadLettersAt(dest)).toEqual([]);
}

describe('Slack failures that are retried (README: "Slack 408, 429, 5xx, network errors and timeouts are retried")', () => {
  it('408, then a success: retried with the backoff, not dead-lettered, and posted once after the retry', async () => {
    const logs = watchLogs();
    const dest = destination();
    const stub = outboxStub(env, dest.name);
    let tries = 0;
    answer = async () => (++tries === 1 ? new Response('', { status: 408 }) : new Response('ok'));
    const it1 = item();
    expect(await stub.submit(dest, it1)).toBe('accepted');
    await expectRetriedThenPostedOnce(dest, stub, it1, logs, { status: 408, reason: 'slack_http_408' });
  });

  it('a POST that hangs past timeout_ms: a retryable failure (reason timeout), nothing dead-lettered, its event posted again with the next try', async () => {
    const logs = watchLogs();
    const dest = destination({ timeoutMs: 300 });
    const stub = outboxStub(env, dest.name);
    answer = hang;
    const it1 = item();
    const started = Date.now();
    expect(await stub.submit(dest, it1)).toBe('accepted');
    // The try was given up after timeout_ms, not earlier and not much later.
    expect(Date.now() - started).toBeGreaterThanOrEqual(250);
    expect(Date.now() - started).toBeLessThan(5000);
    await expectRetriedThenPostedOnce(dest, stub, it1, logs, { status: null, reason: 'timeout' });
  });

  it('a network error (fetch rejects with a TypeError): retried (reason network_error), not dead-lettered', async () => {
    const logs = watchLogs();
    const dest = destination();
    const stub = outboxStub(env, dest.name);
    answer = async () => {
      throw new TypeError('Network connection lost.');
    };
    const it1 = item();
    expect(await stub.submit(dest, it1)).toBe('accepted');
    await expectRetriedThenPostedOnce(dest, stub, it1, logs, { status: null, reason: 'network_error' });
  });

  it.each([
    { what: '408', status: 408 as number | null, reason: 'attempts_exhausted: slack_http_408', answer: async (): Promise<Response> => new Response('', { status: 408 }) },
    { what: 'a timeout', status: null, reason: 'attempts_exhausted: timeout', answer: hang },
    {
      what: 'a network error',
      status: null,
      reason: 'attempts_exhausted: network_error',
      answer: async (): Promise<Response> => {
        throw new TypeError('Network connection lost.');
      },
    },
  ])('$what counts as one of max_attempts failed tries: dead-lettered as "$reason" only once they run out', async (c) => {
    const dest = destination({ timeoutMs: 300, retry: { maxAttempts: 2, retryDelaySeconds: 60 } });
    const stub = outboxStub(env, dest.name);
    answer = c.answer;
    const it1 = item();
    expect(await stub.submit(dest, it1)).toBe('accepted');
    // One failure: still waiting, nothing dead-lettered.
    expect(calls).toHaveLength(1);
    expect(await stub.pending()).toBe(1);
    expect((await retryState(stub)).attempts).toBe(1);
    expect(await deadLettersAt(dest)).toEqual([]);
    // The second (last) try fails the same way: now dead-lettered, with the classified reason.
    expect(await elapseAndRunAlarm(stub)).toBe(true);
    expect(calls).toHaveLength(2);
    expect(await stub.pending()).toBe(0);
    const dead = await deadLettersAt(dest);
    expect(dead).toHaveLength(1);
    expect(dead[0]).toMatchObject({ event_id: it1.event_id, destination: dest.name, reason: c.reason, last_status: c.status, attempts: 2 });
  });
});

describe('Slack 4xx answers: dead-lettered at once with Slack\'s reason', () => {
  it('a 403 whose body is an HTML page (not a single word): every entry the message carried is dead-lettered at once as slack_http_403, last_status 403', async () => {
    const dest = destination({ retry: { maxAttempts: 10, retryDelaySeconds: 60 } });
    const stub = outboxStub(env, dest.name);
    answer = async () => new Response(HTML_403, { status: 403, headers: { 'Content-Type': 'text/html' } });
    const items = [item(0), item(1), item(2)];
    // Three at once: they go out together as one digest (the outbox's own alarm, 50 ms later).
    expect(await stub.submitMany(dest, items)).toEqual(['accepted', 'accepted', 'accepted']);
    await until(async () => (await deadLettersAt(dest)).length === 3, 'the 403 dead-lettered the digest');
    expect(await stub.pending()).toBe(0);
    expect(calls).toHaveLength(1); // one try, never retried
    expect(countOf(calls[0]?.text ?? '')).toBe(3);
    const dead = await deadLettersAt(dest);
    expect(dead.map((d) => d.event_id).sort()).toEqual(items.map((i) => i.event_id).sort());
    for (const d of dead) {
      expect(d).toMatchObject({ destination: dest.name, event_type: 'authentication.password_failed', rules: ['failed-logins'], reason: 'slack_http_403', last_status: 403, attempts: 1 });
    }
    const state = await retryState(stub);
    expect(state).toMatchObject({ attempts: 0, alarm: null });
    expect(await runDurableObjectAlarm(stub)).toBe(false);
    expect(calls).toHaveLength(1);
  });

  it.each([
    { status: 400, body: 'invalid_blocks', reason: 'slack_invalid_blocks' },
    { status: 404, body: 'no_service', reason: 'slack_no_service' },
    { status: 403, body: 'invalid_token', reason: 'slack_invalid_token' },
  ])('$status with the single-word body "$body": dead-lettered at once as $reason, last_status $status', async (c) => {
    const dest = destination({ retry: { maxAttempts: 10, retryDelaySeconds: 60 } });
    const stub = outboxStub(env, dest.name);
    answer = async () => new Response(c.body, { status: c.status });
    const it1 = item();
    expect(await stub.submit(dest, it1)).toBe('accepted');
    // The submit returns once the (only) try has completed.
    expect(calls).toHaveLength(1);
    expect(await stub.pending()).toBe(0);
    const dead = await deadLettersAt(dest);
    expect(dead).toHaveLength(1);
    expect(dead[0]).toMatchObject({ event_id: it1.event_id, destination: dest.name, reason: c.reason, last_status: c.status, attempts: 1 });
    expect((await retryState(stub)).alarm).toBeNull();
    expect(await runDurableObjectAlarm(stub)).toBe(false);
    expect(calls).toHaveLength(1);
  });
});

describe('Slack 3xx answers: never followed, dead-lettered at once', () => {
  it.each([{ status: 301 }, { status: 302 }, { status: 307 }, { status: 308 }])('$status: the redirect is not followed; the event is dead-lettered at once as slack_http_$status, never retried', async ({ status }) => {
    const MOVED = 'https://elsewhere.test/collect';
    const requested: string[] = [];
    // Plays fetch as the runtime does: unless `redirect: 'manual'`, it would post again to the Location, which accepts.
    vi.spyOn(globalThis, 'fetch').mockImplementation(async (input, init) => {
      const req = new Request(input as RequestInfo, init);
      requested.push(req.url);
      if (req.url !== SLACK) throw new Error(`unexpected fetch ${req.url}`);
      calls.push({ at: Date.now(), text: ((await req.json()) as { text: string }).text });
      if (req.redirect === 'manual') return new Response(null, { status, headers: { Location: MOVED } });
      requested.push(MOVED);
      return new Response('ok');
    });
    const dest = destination({ retry: { maxAttempts: 10, retryDelaySeconds: 60 } });
    const stub = outboxStub(env, dest.name);
    const it1 = item();
    expect(await stub.submit(dest, it1)).toBe('accepted');
    // The submit returns once the (only) try has completed: its dead letter is the positive signal.
    const dead = await deadLettersAt(dest);
    expect(dead).toHaveLength(1);
    expect(dead[0]).toMatchObject({ event_id: it1.event_id, destination: dest.name, reason: `slack_http_${status}`, last_status: status, attempts: 1 });
    expect(requested).toEqual([SLACK]);
    expect(await stub.pending()).toBe(0);
    expect((await retryState(stub)).alarm).toBeNull();
    expect(await runDurableObjectAlarm(stub)).toBe(false);
    expect(calls).toHaveLength(1);
    expect(requested).toEqual([SLACK]);
  });
});

describe('dead-lettering a large buffer', () => {
  it('ten events of 1.8 MB refused by Slack: dead-lettered in several calls (one call of 36 MB could not be made), every one stored, the buffer emptied', async () => {
    const dest = destination({ retry: { maxAttempts: 10, retryDelaySeconds: 60 } });
    const stub = outboxStub(env, dest.name);
    await stub.pause(); // buffered, not sent, while they are handed over one by one
    const items = Array.from({ length: 10 }, (_, i) => {
      const base = item(i);
      const e = JSON.parse(base.raw) as { data: Record<string, unknown> };
      // One character outside Latin-1: the runtime sends every character in two bytes (3.6 MB an entry).
      e.data.blob = `${'x'.repeat(1_800_000)}€`;
      return { ...base, raw: JSON.stringify(e) };
    });
    for (const it1 of items) expect(await stub.submit(dest, it1)).toBe('accepted');
    answer = async () => new Response('no_service', { status: 404 });
    await stub.resume();
    await until(async () => (await deadLettersAt(dest)).length === 10, 'all ten dead-lettered', 20_000, 100);
    expect(calls).toHaveLength(1); // one digest, refused once
    expect(await stub.pending()).toBe(0);
    const dead = await deadLettersAt(dest);
    expect(dead.map((d) => d.event_id).sort()).toEqual(items.map((i) => i.event_id).sort());
    for (const d of dead) expect(d).toMatchObject({ reason: 'slack_no_service', last_status: 404 });
  });
});

describe('digest_window_seconds validation (README: "≥ 1 s"; "digest_window_seconds (default 10, 1–3600)")', () => {
  const slackDest = (extra: Record<string, unknown>) => ({ name: 'security', type: 'slack', url: 'https://hooks.slack.test/services/T0/B0/X', ...extra });
  const check = (extra: Record<string, unknown>) => parseRouterConfig({ destinations: [slackDest(extra)] }, () => undefined);

  it.each([0, -1, 0.5, '0'])('refuses digest_window_seconds = %j, naming the field', (value) => {
    const r = check({ digest_window_seconds: value });
    expect(r.ok).toBe(false);
    if (r.ok) return;
    expect(r.problems).toEqual(['destinations[0].digest_window_seconds: must be a whole number from 1 to 3600']);
  });

  it('accepts 1 (the smallest window) and defaults to 10', () => {
    const one = parseRouterConfig(
      { destinations: [slackDest({ digest_window_seconds: 1 })], rules: [{ name: 'r', events: ['user.created'], to: ['security'] }] },
      () => undefined,
    );
    expect(one.ok).toBe(true);
    if (!one.ok) return;
    expect(one.config.destinations.get('security')).toMatchObject({ type: 'slack', digestWindowSeconds: 1 });
    const dflt = parseRouterConfig({ destinations: [slackDest({})], rules: [{ name: 'r', events: ['user.created'], to: ['security'] }] }, () => undefined);
    expect(dflt.ok && dflt.config.destinations.get('security')).toMatchObject({ digestWindowSeconds: 10 });
  });
});

describe('dead letters a failed store call still owes', () => {
  it('are dead-lettered when the store is back, without posting the entries again (a new cycle of retries, hours long, started first)', async () => {
    const dest = destination({ retry: { maxAttempts: 10, retryDelaySeconds: 60 } });
    const stub = outboxStub(env, dest.name);
    answer = async () => new Response('invalid_token', { status: 403 });
    // The dead-letter store refuses (simulated on the outbox's own binding).
    const refusal = await runInDurableObject(stub, (instance) =>
      vi.spyOn((instance as unknown as { env: Env }).env.DEAD_LETTERS, 'get').mockImplementation(() => {
        throw new Error('dead-letter store unavailable');
      }),
    );
    const it1 = item();
    const logs = watchLogs();
    expect(await stub.submit(dest, it1)).toBe('accepted');
    expect(calls).toHaveLength(1);
    expect(await stub.pending()).toBe(1); // kept: its dead letter is owed
    // The next run, store still down: it tries the store again, and posts nothing.
    expect(await elapseAndRunAlarm(stub)).toBe(true);
    expect(logs.records().filter((r) => r.msg === 'dead_letter_store_failed' && r.destination === dest.name)).toHaveLength(2);
    expect(calls).toHaveLength(1);
    // The store is back: dead-lettered with the outcome that ended it, still without a POST.
    refusal.mockRestore();
    expect(await elapseAndRunAlarm(stub)).toBe(true);
    const dead = await deadLettersAt(dest);
    expect(dead).toHaveLength(1);
    expect(dead[0]).toMatchObject({ event_id: it1.event_id, reason: 'slack_invalid_token', last_status: 403, attempts: 1 });
    expect(await stub.pending()).toBe(0);
    expect(calls).toHaveLength(1);
  });
});

describe('one run of the outbox at a time', () => {
  it('an alarm due while a run is still dead-lettering what it sent does not post or dead-letter the same entries again', async () => {
    const dest = destination({ digestWindowSeconds: 1, retry: { maxAttempts: 10, retryDelaySeconds: 60 } });
    const stub = outboxStub(env, dest.name);
    answer = async () => new Response('invalid_token', { status: 403 });
    // The dead-letter store answers slowly: the call waits for `release`.
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    let started = 0;
    const slow = await runInDurableObject(stub, (instance) => {
      const binding = (instance as unknown as { env: Env }).env.DEAD_LETTERS;
      const realGet = binding.get.bind(binding);
      return vi.spyOn(binding, 'get').mockImplementation((id) => {
        const real = realGet(id) as unknown as { add: (r: unknown) => Promise<unknown> };
        return { add: async (records: unknown) => (started++, await gate, real.add(records)) } as never;
      });
    });
    const it1 = item();
    const submitting = stub.submit(dest, it1);
    await until(async () => started === 1, 'the dead-letter call on its way');
    expect(calls).toHaveLength(1);
    // The window has passed: the alarm comes while the first run still waits for the store.
    await elapseAndRunAlarm(stub);
    expect(calls).toHaveLength(1);
    expect(started).toBe(1);
    release();
    expect(await submitting).toBe('accepted');
    slow.mockRestore();
    expect(await deadLettersAt(dest)).toHaveLength(1);
    expect(await stub.pending()).toBe(0);
    expect(calls).toHaveLength(1);
  });
});
