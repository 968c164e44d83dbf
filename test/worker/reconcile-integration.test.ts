/**
 * Reconciliation from the WorkOS Events API. Outbound fetch to the WorkOS API
 * is mocked at the edge; the reconciler, ledger shards and queue are real.
 */
import { createExecutionContext, createScheduledController, runInDurableObject } from 'cloudflare:test';
import { env, exports } from 'cloudflare:workers';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { DedupLedger } from '../../src/dedup/ledger';
import { shardName } from '../../src/dedup/shard';
import { EVENT_TYPES } from '../../src/events/catalog';
import worker from '../../src/index';
import { reconcilerStub } from '../../src/reconcile/reconciler';
import { makeEvent } from '../fixtures/events';
import { postWebhook } from '../helpers/webhook';

const API = 'https://api.workos.com/events';
const ADMIN = { Authorization: 'Bearer test-admin-token' };

type ApiAnswer = (url: URL) => Response | Promise<Response>;
let answers: ApiAnswer[];
let requests: URL[];
/** The Authorization header of each request in `requests` (checked in the test body: a throw inside the mock would be caught by the reconciler). */
let authorizations: Array<string | null>;
/** Requests to anything but the Events API (answered with a network error). */
let unexpected: string[];

function page(events: object[], after: string | null = null): Response {
  return Response.json({ object: 'list', data: events, list_metadata: { before: null, after } });
}

function events(n: number) {
  return Array.from({ length: n }, (_, i) => ({ object: 'event', ...makeEvent(i % 2 === 0 ? 'dsync.user.created' : 'user.created') }));
}

beforeEach(async () => {
  answers = [];
  requests = [];
  authorizations = [];
  unexpected = [];
  await runInDurableObject(reconcilerStub(env), async (_i, state) => {
    await state.storage.deleteAll();
  });
  vi.spyOn(globalThis, 'fetch').mockImplementation(async (input, init) => {
    const req = new Request(input as RequestInfo, init);
    const url = new URL(req.url);
    if (`${url.origin}${url.pathname}` !== API) {
      unexpected.push(req.url);
      throw new Error(`unexpected fetch ${req.url}`);
    }
    requests.push(url);
    authorizations.push(req.headers.get('authorization'));
    const next = answers.shift();
    if (next === undefined) return page([]);
    return next(url);
  });
});
afterEach(() => vi.restoreAllMocks());

/** A run resumes `reconcile_overlap_seconds` (default 120) before the last event read, paging from there. */
function expectResumesFrom(q: URL, last: { created_at: string }) {
  expect(q.searchParams.get('after')).toBeNull();
  expect(q.searchParams.get('range_start')).toBe(new Date(Date.parse(last.created_at) - 120_000).toISOString());
}

/** Every request reached the Events API with the configured key, and nothing else was fetched (asserted in the test body). */
function expectAuthenticatedApiCallsOnly(): void {
  expect(unexpected).toEqual([]);
  expect(authorizations).toHaveLength(requests.length);
  expect(authorizations.filter((a) => a !== 'Bearer sk_test_reconcile')).toEqual([]);
}

async function reconcile(body?: object): Promise<Response> {
  return exports.default.fetch(
    new Request('https://router.test/admin/reconcile', { method: 'POST', headers: ADMIN, ...(body ? { body: JSON.stringify(body) } : {}) }),
  );
}

/** Spies on the router queue as the ledger shards see it (one binding object, shared by every shard). */
async function spyAllShards() {
  const stub = env.DEDUP_LEDGER.get(env.DEDUP_LEDGER.idFromName(shardName(0))) as DurableObjectStub<DedupLedger>;
  const spy = await runInDurableObject(stub, (instance) => vi.spyOn((instance as unknown as { env: Env }).env.EVENTS_QUEUE, 'send'));
  return { count: () => spy.mock.calls.length };
}

describe('reconciliation', () => {
  it('reads every routed type with limit=100, order=asc, from now on the first run', async () => {
    const before = Date.now();
    const res = await reconcile();
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ status: 'completed', pages: 1, read: 0, recovered: 0 });
    const q = requests[0]!;
    expect(q.searchParams.getAll('events[]').sort()).toEqual([...EVENT_TYPES].sort()); // the default rule routes "*"
    expect(q.searchParams.get('limit')).toBe('100');
    expect(q.searchParams.get('order')).toBe('asc');
    expect(q.searchParams.get('after')).toBeNull();
    expect(Date.parse(q.searchParams.get('range_start')!)).toBeGreaterThanOrEqual(before - 1000);
    expectAuthenticatedApiCallsOnly();
  });

  it('follows pages, recovers missed events once, and persists the cursor across runs', async () => {
    const all = events(130);
    answers.push(() => page(all.slice(0, 100), all[99]!.id), () => page(all.slice(100)));
    const sends = await spyAllShards();
    const first = (await (await reconcile()).json()) as { pages: number; read: number; recovered: number };
    expect(first).toMatchObject({ status: 'completed', pages: 2, read: 130, recovered: 130 });
    expect(sends.count()).toBe(130);
    expect(requests[1]!.searchParams.get('after')).toBe(all[99]!.id);

    // Next run starts from the last event read, less the overlap window, and finds nothing new.
    answers.push(() => page(all.slice(129)));
    const second = (await (await reconcile()).json()) as { read: number; reread: number; recovered: number };
    expect(second).toMatchObject({ status: 'completed', read: 0, reread: 1, recovered: 0 });
    expectResumesFrom(requests[2]!, all[129]!);
    expect(sends.count()).toBe(130);
    expectAuthenticatedApiCallsOnly();
  });

  it('delivers only the events the webhooks missed', async () => {
    const all = events(10);
    for (const e of all.slice(0, 6)) {
      const { object: _o, ...envelope } = e;
      expect((await postWebhook(envelope)).status).toBe(200);
    }
    const sends = await spyAllShards();
    answers.push(() => page(all));
    const report = (await (await reconcile()).json()) as { read: number; recovered: number };
    expect(report).toMatchObject({ read: 10, recovered: 4 });
    expect(sends.count()).toBe(4);
    // And a webhook arriving after reconciliation is a duplicate.
    const { object: _o, ...late } = all[9]!;
    expect(await (await postWebhook(late)).json()).toMatchObject({ status: 'duplicate' });
    expectAuthenticatedApiCallsOnly();
  });

  it('does not move the cursor when a later page fails, and backs off after 5xx', async () => {
    const all = events(100);
    answers.push(() => page(all, all[99]!.id), () => new Response('oops', { status: 500 }));
    const report = (await (await reconcile()).json()) as { status: string; read: number; error: string };
    expect(report).toMatchObject({ status: 'failed', read: 100, error: 'server_error' });
    const status = await reconcilerStub(env).status();
    expect(status.last_error).toMatchObject({ kind: 'server_error', status: 500 });
    expect(status.backoff_until).not.toBeNull();
    // The cron run respects the backoff: no request is made.
    const n = requests.length;
    await worker.scheduled(createScheduledController(), env, createExecutionContext());
    expect(requests.length).toBe(n);
    // An admin run retries from the last good page.
    await reconcile();
    expectResumesFrom(requests.at(-1)!, all[99]!);
    expectAuthenticatedApiCallsOnly();
  });

  it('honours Retry-After on 429', async () => {
    answers.push(() => new Response('slow', { status: 429, headers: { 'Retry-After': '600' } }));
    expect(await (await reconcile()).json()).toMatchObject({ status: 'failed', error: 'rate_limited' });
    const status = await reconcilerStub(env).status();
    expect(Date.parse(status.backoff_until!) - Date.now()).toBeGreaterThan(590_000);
    expectAuthenticatedApiCallsOnly();
  });

  it('401: a clear error, logged once, surfaced on the status endpoint', async () => {
    const errors = vi.spyOn(console, 'error');
    answers.push(() => new Response('no', { status: 401 }), () => new Response('no', { status: 401 }));
    await reconcile();
    await reconcile();
    expect(errors.mock.calls.filter((c) => String(c[0]).includes('reconcile_failed'))).toHaveLength(1);
    const res = await exports.default.fetch(new Request('https://router.test/admin/status', { headers: ADMIN }));
    const body = (await res.json()) as { reconcile: { last_error: { kind: string; message: string } } };
    expect(body.reconcile.last_error.kind).toBe('unauthorized');
    expect(body.reconcile.last_error.message).toContain('WORKOS_API_KEY');
    expect(JSON.stringify(body)).not.toContain('sk_test_reconcile');
    expectAuthenticatedApiCallsOnly();
  });

  it.each([
    ['a body that is not JSON', () => new Response('<html>', { status: 200 })],
    ['no data list', () => Response.json({ object: 'list' })],
  ])('skips the run without moving the cursor on %s', async (_name, answer) => {
    const good = events(3);
    answers.push(() => page(good));
    await reconcile();
    answers.push(answer);
    expect(await (await reconcile()).json()).toMatchObject({ status: 'failed', error: 'malformed' });
    answers.push(() => page([]));
    await reconcile();
    expectResumesFrom(requests.at(-1)!, good[2]!);
    expectAuthenticatedApiCallsOnly();
  });

  it('skips a malformed item of a page (logged and counted) and takes the events around it, on this run and the next', async () => {
    const warn = vi.spyOn(console, 'warn');
    const good = events(3);
    const bad = [
      { id: 'event_no_data', event: 'user.created', created_at: new Date().toISOString() },
      { ...good[0], id: 'event_bad_time', created_at: 'yesterday' },
    ];
    answers.push(() => page([good[0]!, bad[0]!, good[1]!, bad[1]!, good[2]!]));
    const sends = await spyAllShards();
    expect(await (await reconcile()).json()).toMatchObject({ status: 'completed', pages: 1, read: 3, recovered: 3, skipped_malformed: 2 });
    expect(sends.count()).toBe(3);
    const skipped = warn.mock.calls.map((c) => JSON.parse(String(c[0])) as { msg: string; event_id?: string }).filter((l) => l.msg === 'reconcile_item_skipped');
    expect(skipped.map((l) => l.event_id)).toEqual(['event_no_data', 'event_bad_time']);
    // The next run moves on from the last good event: the bad items do not hold it back.
    answers.push(() => page([]));
    expect(await (await reconcile()).json()).toMatchObject({ status: 'completed' });
    expectResumesFrom(requests.at(-1)!, good[2]!);
    expectAuthenticatedApiCallsOnly();
  });

  it('a full page that ends with a skipped item: the next page starts after that item', async () => {
    const all = events(99);
    const tail = { id: 'event_tail_bad', event: 'user.created' };
    answers.push(() => page([...all, tail], 'event_tail_bad'), () => page([]));
    expect(await (await reconcile()).json()).toMatchObject({ status: 'completed', pages: 2, read: 99, skipped_malformed: 1 });
    expect(requests[1]!.searchParams.get('after')).toBe('event_tail_bad');
    expectAuthenticatedApiCallsOnly();
  });

  it('backfills from range_start on request', async () => {
    answers.push(() => page(events(2)));
    await reconcile();
    // Two days back: well inside the dedup retention, so used as given.
    const start = new Date(Math.floor(Date.now() / 1000) * 1000 - 2 * 86_400_000).toISOString();
    const res = await reconcile({ range_start: start });
    expect(res.status).toBe(200);
    const q = requests.at(-1)!;
    expect(q.searchParams.get('range_start')).toBe(start);
    expect(q.searchParams.get('after')).toBeNull();
    expect((await reconcilerStub(env).status()).clamped_since).toBeNull();
    expectAuthenticatedApiCallsOnly();
  });

  it('rejects a bad range_start with 400 invalid_request, and a body that is not JSON; nothing is read', async () => {
    // Date.parse takes all but the first: "1" as 2001-01-01, 30 February as 2 March, a time without a zone as local.
    const before = requests.length;
    for (const rs of ['yesterday', '1', 'November 1, 2026', '2026-02-30T00:00:00Z', '2026-11-01T00:00:00', '2026-11-01T24:00:00Z', 42]) {
      const res = await reconcile({ range_start: rs });
      expect(res.status, String(rs)).toBe(400);
      expect(await res.json(), String(rs)).toMatchObject({ error: 'invalid_request' });
    }
    const notJson = await exports.default.fetch(new Request('https://router.test/admin/reconcile', { method: 'POST', headers: ADMIN, body: '{range_start:' }));
    expect(notJson.status).toBe(400);
    expect(await notJson.json()).toMatchObject({ error: 'invalid_request' });
    expect(requests.length).toBe(before);
    expectAuthenticatedApiCallsOnly();
  });

  it('rejects a body that is not an object, or has a field other than range_start (a misspelt one would run an ordinary reconciliation, answered 200): 400, nothing read', async () => {
    const before = requests.length;
    const post = (body: string) => exports.default.fetch(new Request('https://router.test/admin/reconcile', { method: 'POST', headers: ADMIN, body }));
    const misspelt = await post('{"rangeStart":"2026-11-01T00:00:00Z"}');
    expect(misspelt.status).toBe(400);
    const error = (await misspelt.json()) as { error: string; message: string };
    expect(error.error).toBe('invalid_request');
    expect(error.message).toContain('Unknown field "rangeStart"');
    expect(error.message).toContain('range_start');
    for (const body of ['"2026-11-01T00:00:00Z"', '["2026-11-01T00:00:00Z"]', 'null', '42', '{"range_start":"2026-11-01T00:00:00Z","dry_run":true}']) {
      const res = await post(body);
      expect(res.status, body).toBe(400);
      expect(await res.json(), body).toMatchObject({ error: 'invalid_request' });
    }
    expect(requests.length).toBe(before);
    expectAuthenticatedApiCallsOnly();
  });

  it('is off without WORKOS_API_KEY: no request, one notice', async () => {
    // The notice is written once per isolate (logOnce). Each test file runs
    // in a fresh runtime, and no other test here runs the cron without a key:
    // this test's first run is the isolate's first without one.
    const logs = vi.spyOn(console, 'log');
    const noKey = { ...env, WORKOS_API_KEY: '' } as Env;
    await worker.scheduled(createScheduledController(), noKey, createExecutionContext());
    await worker.scheduled(createScheduledController(), noKey, createExecutionContext());
    expect(requests).toHaveLength(0);
    expect(logs.mock.calls.filter((c) => String(c[0]).includes('"msg":"reconcile_disabled"'))).toHaveLength(1);
    expectAuthenticatedApiCallsOnly();
  });

  it('admin endpoints need the bearer token', async () => {
    const res = await exports.default.fetch(new Request('https://router.test/admin/reconcile', { method: 'POST' }));
    expect(res.status).toBe(401);
    expect(await res.json()).toMatchObject({ error: 'unauthorized' });
    const wrong = await exports.default.fetch(new Request('https://router.test/admin/status', { headers: { Authorization: 'Bearer nope' } }));
    expect(wrong.status).toBe(401);
    expectAuthenticatedApiCallsOnly();
  });
});
