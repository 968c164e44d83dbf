/**
 * Reconciliation edge cases: events that cannot be enqueued, events another
 * delivery holds, the dedup retention, catch-up, the overlap window and page
 * order. The WorkOS Events API is played at the network edge (`fetch`); the
 * reconciler, the ledger shards, the queue and the dead-letter store are real.
 * Time is simulated with timestamps relative to now and with Durable Object
 * storage, never by sleeping.
 */
import { runInDurableObject } from 'cloudflare:test';
import { env, exports } from 'cloudflare:workers';
import { afterAll, afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { loadConfig } from '../../src/config/load';
import { deadLetterStub } from '../../src/deadletters/store';
import type { DedupLedger } from '../../src/dedup/ledger';
import { ledgerShardOf, ledgerStub, shardKeyOf, shardName } from '../../src/dedup/shard';
import type { UnknownEvent } from '../../src/events/catalog';
import type { RouterMessage } from '../../src/queue/message';
import { MAX_EVENT_ATTEMPTS, MAX_PAGES_PER_RUN, type RunReport, reconcilerStub } from '../../src/reconcile/reconciler';
import { makeEvent } from '../fixtures/events';
import { postWebhook } from '../helpers/webhook';
import { asOlderRelease } from '../helpers/older-release';
import { WORKERS_ROUTER } from './router';

const API = 'https://api.workos.com/events';
const ADMIN = { Authorization: 'Bearer test-admin-token' };
const SECOND = 1000;
const MINUTE = 60 * SECOND;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;

interface ApiEvent {
  object: 'event';
  id: string;
  event: string;
  data: Record<string, unknown>;
  created_at: string;
}

type ApiAnswer = (url: URL) => Response | Promise<Response>;
/** Scripted answers, one per request, first. */
let answers: ApiAnswer[];
/** Else, when set, a model of the API over these visible events (range_start, after, limit). */
let visible: ApiEvent[] | null;
let requests: URL[];
let restoreReconcilerEnv: (() => Promise<void>) | null = null;

let seq = 0;
/** A `user.created` event created at `ms`, about its own user. */
function ev(ms: number): ApiEvent {
  const e = makeEvent('user.created', { created_at: new Date(ms).toISOString(), data: { id: `user_edge_${Date.now()}_${++seq}` } });
  return { object: 'event', ...(e as unknown as Omit<ApiEvent, 'object'>) };
}

/** `n` events from `fromMs`, one second apart. */
function evs(n: number, fromMs: number): ApiEvent[] {
  return Array.from({ length: n }, (_, i) => ev(fromMs + i * SECOND));
}

function page(events: object[], after: string | null = null): Response {
  return Response.json({ object: 'list', data: events, list_metadata: { before: null, after } });
}

/** Full pages of 100 (each naming its last id as `after`), then the rest. */
function pages(events: ApiEvent[]): ApiAnswer[] {
  const out: ApiAnswer[] = [];
  for (let i = 0; i < events.length; i += 100) {
    const slice = events.slice(i, i + 100);
    const more = i + 100 < events.length;
    out.push(() => page(slice, more ? slice[slice.length - 1]!.id : null));
  }
  return out;
}

function serveModel(url: URL, events: ApiEvent[]): Response {
  const sorted = [...events].sort((a, b) => Date.parse(a.created_at) - Date.parse(b.created_at) || (a.id < b.id ? -1 : 1));
  const limit = Number(url.searchParams.get('limit'));
  const after = url.searchParams.get('after');
  const rangeStart = url.searchParams.get('range_start');
  let from = 0;
  if (after !== null) from = sorted.findIndex((e) => e.id === after) + 1;
  else if (rangeStart !== null) {
    from = sorted.findIndex((e) => Date.parse(e.created_at) >= Date.parse(rangeStart));
    if (from < 0) from = sorted.length;
  }
  const data = sorted.slice(from, from + limit);
  return page(data, from + limit < sorted.length ? data[data.length - 1]!.id : null);
}

beforeEach(async () => {
  answers = [];
  visible = null;
  requests = [];
  await runInDurableObject(reconcilerStub(env), async (_i, state) => {
    await state.storage.deleteAll();
  });
  vi.spyOn(globalThis, 'fetch').mockImplementation(async (input, init) => {
    const req = new Request(input as RequestInfo, init);
    const url = new URL(req.url);
    if (`${url.origin}${url.pathname}` !== API) throw new Error(`unexpected fetch ${req.url}`);
    requests.push(url);
    const next = answers.shift();
    if (next !== undefined) return next(url);
    return visible !== null ? serveModel(url, visible) : page([]);
  });
});

afterEach(async () => {
  vi.restoreAllMocks();
  if (restoreReconcilerEnv !== null) await restoreReconcilerEnv();
  restoreReconcilerEnv = null;
});

// The worker's queue consumer delivers what the tests admitted about a second later. Before the
// environment closes, wait until it delivered one last event, admitted after all the others (the
// tests admit a few thousand events: on a loaded machine the consumer takes a while to get there).
afterAll(async () => {
  const logs = vi.spyOn(console, 'log');
  const { object: _o, ...last } = ev(Date.now());
  expect((await postWebhook(last)).status).toBe(200);
  await vi.waitFor(
    () => expect(logs.mock.calls.some((c) => String(c[0]).includes('"msg":"delivered"') && String(c[0]).includes(last.id))).toBe(true),
    { timeout: 200_000, interval: 100 },
  );
  logs.mockRestore();
}, 240_000);

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

const reconciler = () => reconcilerStub(env);
const run = (trigger: 'cron' | 'admin' = 'admin', rangeStart?: string): Promise<RunReport> =>
  reconciler().run({ trigger, ...(rangeStart !== undefined ? { rangeStart } : {}) }) as Promise<RunReport>;
const status = () => reconciler().status();

async function adminReconcile(body?: object): Promise<Response> {
  return exports.default.fetch(
    new Request('https://router.test/admin/reconcile', { method: 'POST', headers: ADMIN, ...(body ? { body: JSON.stringify(body) } : {}) }),
  );
}

/** The reconciler's storage, synchronously. */
async function withReconcilerStorage<T>(fn: (kv: SyncKvStorage) => T): Promise<T> {
  return runInDurableObject(reconciler(), (_i, state) => fn(state.storage.kv));
}

/** The backoff has run out (as if its time had passed). */
async function expireBackoff(): Promise<void> {
  await withReconcilerStorage((kv) => kv.put('backoff_until', Date.now() - 1));
}

/** Runs the reconciler with these ROUTER settings on top of the project's (until the test ends). */
async function reconcilerSettings(extra: Record<string, unknown>): Promise<void> {
  const stub = reconciler();
  await runInDurableObject(stub, (instance) => {
    const holder = instance as unknown as { env: Env };
    const original = holder.env;
    holder.env = { ...original, ROUTER: { ...WORKERS_ROUTER, ...extra } } as unknown as Env;
    restoreReconcilerEnv = async () => {
      await runInDurableObject(stub, (i) => {
        (i as unknown as { env: Env }).env = original;
      });
    };
  });
}

function shards(): number {
  const loaded = loadConfig(env);
  if (!loaded.ok) throw new Error('config invalid');
  return loaded.config.settings.dedupShards;
}

function ledgerOf(event: ApiEvent): DurableObjectStub<DedupLedger> {
  return ledgerStub(env, shardKeyOf(event as unknown as UnknownEvent), shards()).stub as DurableObjectStub<DedupLedger>;
}

/**
 * Spies on the router queue as `event`'s ledger shard sees it: sends of the
 * ids in `failing` throw (the queue is down for them), the others go through
 * to the real queue. The binding object is shared by every shard.
 */
async function queueFor(event: ApiEvent, failing: Set<string> = new Set()) {
  const sent: string[] = [];
  const failed: string[] = [];
  await runInDurableObject(ledgerOf(event), (instance) => {
    const queue = (instance as unknown as { env: Env }).env.EVENTS_QUEUE;
    const original = queue.send.bind(queue);
    vi.spyOn(queue, 'send').mockImplementation(async (message, options) => {
      const id = (message as RouterMessage).id;
      if (failing.has(id)) {
        failed.push(id);
        throw new Error('queue unavailable');
      }
      sent.push(id);
      return original(message, options);
    });
  });
  return { sent, failed, heal: () => failing.clear() };
}

/** Another delivery holds `event`'s claim in its ledger shard until `leaseUntil`. */
async function claim(event: ApiEvent, leaseUntil: number): Promise<void> {
  await asOlderRelease(ledgerOf(event), (sql) => {
    sql.exec(
      "INSERT OR REPLACE INTO ledger (id, state, lease_until, expires_at, source) VALUES (?, 'pending', ?, ?, 'webhook')",
      event.id,
      leaseUntil,
      Math.max(leaseUntil, Date.now()) + HOUR,
    );
  });
}

/** The run resumed `overlap` ms before `last` (range_start, no after). */
function expectResumedFrom(q: URL, last: ApiEvent, overlapMs = 120 * SECOND): void {
  expect(q.searchParams.get('after')).toBeNull();
  expect(q.searchParams.get('range_start')).toBe(new Date(Date.parse(last.created_at) - overlapMs).toISOString());
}

function logLines(spy: { mock: { calls: unknown[][] } }, msg: string): Record<string, unknown>[] {
  return spy.mock.calls
    .map((c) => String(c[0]))
    .filter((l) => l.includes(`"msg":"${msg}"`))
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

/**
 * From now on the clock runs ten times slower: a run's ~20 s catch-up time
 * becomes ~200 s of real time, so a loaded machine cannot make the time limit
 * stop a run before its page cap does.
 */
function slowClock(): void {
  const realNow = Date.now.bind(Date);
  const from = realNow();
  vi.spyOn(Date, 'now').mockImplementation(() => from + Math.floor((realNow() - from) / 10));
}

/** How many times each id occurs. */
function tally(ids: readonly string[]): Map<string, number> {
  const m = new Map<string, number>();
  for (const id of ids) m.set(id, (m.get(id) ?? 0) + 1);
  return m;
}

/** Spies on the router queue as the ledger shards see it (one binding object, shared by every shard): the ids sent. */
async function spyQueueSends(): Promise<{ ids: () => string[] }> {
  const stub = env.DEDUP_LEDGER.get(env.DEDUP_LEDGER.idFromName(shardName(0))) as DurableObjectStub<DedupLedger>;
  const spy = await runInDurableObject(stub, (instance) => vi.spyOn((instance as unknown as { env: Env }).env.EVENTS_QUEUE, 'send'));
  return { ids: () => spy.mock.calls.map((c) => (c[0] as RouterMessage).id) };
}

// ---------------------------------------------------------------------------

describe('reconciliation: events that cannot be enqueued', () => {
  it('retries the event on later runs with a growing backoff, then dead-letters it and moves past it', async () => {
    const t = Date.now() - MINUTE;
    const [a, x, b] = [ev(t), ev(t + SECOND), ev(t + 2 * SECOND)] as [ApiEvent, ApiEvent, ApiEvent];
    const queue = await queueFor(x, new Set([x.id]));
    const answer = () => page([a, x, b]);

    answers.push(answer);
    expect(await run('admin')).toMatchObject({ status: 'failed', error: 'enqueue_failed', recovered: 2, retrying: 1, dead_lettered: 0 });
    let st = await status();
    expect(st).toMatchObject({ consecutive_failures: 1, retrying_events: 1, dead_lettered: 0, cursor: { id: a.id } });
    expect(st.last_error).toMatchObject({ kind: 'enqueue_failed' });
    expect(Date.parse(st.backoff_until!) - Date.now()).toBeGreaterThan(MINUTE - 5 * SECOND);

    // The cron respects the backoff: no request.
    const made = requests.length;
    expect(await run('cron')).toMatchObject({ status: 'backing_off' });
    expect(requests).toHaveLength(made);

    // Attempts 2 to 4, each once the backoff ran out: the position holds before x, the backoff doubles.
    for (let attempt = 2; attempt < MAX_EVENT_ATTEMPTS; attempt++) {
      await expireBackoff();
      answers.push(answer);
      expect(await run('cron')).toMatchObject({ status: 'failed', error: 'enqueue_failed', recovered: 0, retrying: 1, dead_lettered: 0 });
      expectResumedFrom(requests.at(-1)!, a);
      st = await status();
      expect(st).toMatchObject({ consecutive_failures: attempt, cursor: { id: a.id } });
      expect(Date.parse(st.backoff_until!) - Date.now()).toBeGreaterThan(MINUTE * 2 ** (attempt - 1) - 5 * SECOND);
    }

    // The last attempt fails too: x is dead-lettered and the position moves past it.
    await expireBackoff();
    answers.push(answer);
    expect(await run('cron')).toMatchObject({ status: 'completed', dead_lettered: 1, retrying: 0 });
    expect(queue.failed.filter((id) => id === x.id)).toHaveLength(MAX_EVENT_ATTEMPTS);
    st = await status();
    expect(st).toMatchObject({ consecutive_failures: 0, backoff_until: null, last_error: null, dead_lettered: 1, retrying_events: 0, cursor: { id: b.id } });

    const items = (await deadLetterStub(env).list(500, 0)).filter((i) => i.event_id === x.id);
    expect(items).toHaveLength(1);
    expect(items[0]).toMatchObject({ event_type: 'user.created', destination: '(router)', reason: 'reconcile_enqueue_failed', attempts: MAX_EVENT_ATTEMPTS, source: 'reconcile' });
    const record = await deadLetterStub(env).take(items[0]!.seq);
    expect(JSON.parse(record!.body)).toEqual(x);

    // The queue is back; the next run reads x again in its overlap window but does not deliver it a second time.
    queue.heal();
    answers.push(answer);
    expect(await run('cron')).toMatchObject({ status: 'completed', reread: 3, recovered: 0, dead_lettered: 0 });
    expect(queue.sent).not.toContain(x.id);
    expect(await ledgerOf(x).isCommitted(x.id)).toBe(false);
  });

  it('recovers an event whose enqueue failed once, on the next run, without dead-lettering it', async () => {
    const t = Date.now() - MINUTE;
    const [a, x] = [ev(t), ev(t + SECOND)] as [ApiEvent, ApiEvent];
    const queue = await queueFor(x, new Set([x.id]));
    answers.push(() => page([a, x]));
    expect(await run()).toMatchObject({ status: 'failed', retrying: 1 });
    queue.heal();
    answers.push(() => page([a, x]));
    expect(await run()).toMatchObject({ status: 'completed', recovered: 1, retrying: 0, dead_lettered: 0 });
    expect(queue.sent).toContain(x.id);
    expect(await status()).toMatchObject({ consecutive_failures: 0, retrying_events: 0, dead_lettered: 0, cursor: { id: x.id } });
  });
});

describe('reconciliation: a backfill while an event is still being retried', () => {
  it('starts no later than the oldest event still being retried (logged), so that event is read again and recovered, not abandoned', async () => {
    const logs = vi.spyOn(console, 'warn');
    const t = Date.now() - 10 * MINUTE;
    const [a, x, b] = [ev(t), ev(t + SECOND), ev(t + 5 * MINUTE)] as [ApiEvent, ApiEvent, ApiEvent];
    const queue = await queueFor(x, new Set([x.id]));
    visible = [a, x, b];
    expect(await run('admin', new Date(t - SECOND).toISOString())).toMatchObject({ status: 'failed', error: 'enqueue_failed', retrying: 1 });
    expect((await status()).retrying_events).toBe(1);
    // The queue is back, and an operator backfills from a time after x.
    queue.heal();
    const requested = new Date(t + 2 * MINUTE).toISOString();
    expect(await run('admin', requested)).toMatchObject({ status: 'completed', retrying: 0 });
    expect(Date.parse(requests.at(-1)!.searchParams.get('range_start')!)).toBeLessThanOrEqual(Date.parse(x.created_at));
    expect(logLines(logs, 'reconcile_backfill_moved')).toMatchObject([{ requested, moved_to: x.created_at, retrying: 1 }]);
    expect(queue.sent).toContain(x.id);
    expect(await ledgerOf(x).isCommitted(x.id)).toBe(true);
    expect((await status()).retrying_events).toBe(0);
  });
});

describe('reconciliation: an event another delivery is admitting (in_progress)', () => {
  it('holds the position before it without failing the run, never dead-letters it while its claim may be live, and delivers it once the lease ran out', async () => {
    const t = Date.now() - MINUTE;
    const [a, x, b] = [ev(t), ev(t + SECOND), ev(t + 2 * SECOND)] as [ApiEvent, ApiEvent, ApiEvent];
    await claim(x, Date.now() + 30 * SECOND);
    for (let i = 0; i <= MAX_EVENT_ATTEMPTS; i++) {
      answers.push(() => page([a, x, b]));
      expect(await run()).toMatchObject({ status: 'completed', in_progress: 1, dead_lettered: 0, recovered: i === 0 ? 2 : 0 });
    }
    expect(await status()).toMatchObject({ cursor: { id: a.id }, consecutive_failures: 0, backoff_until: null, retrying_events: 1, dead_lettered: 0 });

    // The holder crashed: its lease runs out, and the next run takes the claim over.
    await claim(x, Date.now() - 1);
    answers.push(() => page([a, x, b]));
    expect(await run()).toMatchObject({ status: 'completed', recovered: 1, in_progress: 0, dead_lettered: 0 });
    expect(await ledgerOf(x).isCommitted(x.id)).toBe(true);
    expect(await status()).toMatchObject({ cursor: { id: b.id }, retrying_events: 0, dead_lettered: 0 });
  });

  it('gives up on it only after the bound and once its first failure is older than the claim lease', async () => {
    const t = Date.now() - MINUTE;
    const [a, x] = [ev(t), ev(t + SECOND)] as [ApiEvent, ApiEvent];
    await claim(x, Date.now() + HOUR); // a claim that never ends
    for (let i = 0; i < MAX_EVENT_ATTEMPTS; i++) {
      answers.push(() => page([a, x]));
      expect(await run()).toMatchObject({ in_progress: 1, dead_lettered: 0 });
    }
    // Its first failure is now older than claim_lease_seconds (30).
    await withReconcilerStorage((kv) => {
      const f = kv.get<{ attempts: number; first_at: number }>(`evfail:${x.id}`)!;
      expect(f.attempts).toBe(MAX_EVENT_ATTEMPTS);
      kv.put(`evfail:${x.id}`, { ...f, first_at: Date.now() - 31 * SECOND });
    });
    answers.push(() => page([a, x]));
    expect(await run()).toMatchObject({ status: 'completed', in_progress: 0, dead_lettered: 1 });
    expect(await status()).toMatchObject({ cursor: { id: x.id }, dead_lettered: 1, retrying_events: 0 });
    const items = (await deadLetterStub(env).list(500, 0)).filter((i) => i.event_id === x.id);
    expect(items).toHaveLength(1);
    expect(items[0]).toMatchObject({ reason: 'reconcile_enqueue_failed', attempts: MAX_EVENT_ATTEMPTS + 1 });
  });
  it('waits as long as claim_lease_seconds says: 300 s keeps a claim held for 5 minutes from being dead-lettered', async () => {
    await reconcilerSettings({ claim_lease_seconds: 300 });
    const t = Date.now() - MINUTE;
    const [a, x] = [ev(t), ev(t + SECOND)] as [ApiEvent, ApiEvent];
    await claim(x, Date.now() + HOUR);
    for (let i = 0; i < MAX_EVENT_ATTEMPTS; i++) {
      answers.push(() => page([a, x]));
      expect(await run()).toMatchObject({ in_progress: 1, dead_lettered: 0 });
    }
    const firstFailedAgo = async (ms: number) =>
      withReconcilerStorage((kv) => {
        const f = kv.get<{ attempts: number; first_at: number }>(`evfail:${x.id}`)!;
        kv.put(`evfail:${x.id}`, { ...f, first_at: Date.now() - ms });
      });
    // Older than the default lease (30 s), younger than this one: still held, not given up on.
    await firstFailedAgo(31 * SECOND);
    answers.push(() => page([a, x]));
    expect(await run()).toMatchObject({ status: 'completed', in_progress: 1, dead_lettered: 0 });
    expect((await deadLetterStub(env).list(500, 0)).filter((i) => i.event_id === x.id)).toHaveLength(0);
    // Older than 300 s: given up on.
    await firstFailedAgo(301 * SECOND);
    answers.push(() => page([a, x]));
    expect(await run()).toMatchObject({ status: 'completed', in_progress: 0, dead_lettered: 1 });
    expect((await deadLetterStub(env).list(500, 0)).filter((i) => i.event_id === x.id)).toMatchObject([{ reason: 'reconcile_enqueue_failed' }]);
  });
});

describe('reconciliation: back-off and status', () => {
  it('backs off exponentially on repeated failures of any kind, and a good run clears it', async () => {
    for (let n = 1; n <= 3; n++) {
      answers.push(() => new Response('no', { status: 401 }));
      expect(await run()).toMatchObject({ status: 'failed', error: 'unauthorized' });
      const st = await status();
      expect(st.consecutive_failures).toBe(n);
      expect(Date.parse(st.backoff_until!) - Date.now()).toBeGreaterThan(MINUTE * 2 ** (n - 1) - 5 * SECOND);
    }
    const st = await status();
    expect(Date.parse(st.backoff_until!) - Date.now()).toBeLessThanOrEqual(15 * MINUTE);
    const made = requests.length;
    expect(await run('cron')).toMatchObject({ status: 'backing_off' });
    expect(requests).toHaveLength(made);
    answers.push(() => page([]));
    expect(await run()).toMatchObject({ status: 'completed' });
    expect(await status()).toMatchObject({ consecutive_failures: 0, backoff_until: null, last_error: null });
  });

  it('caps the backoff at 15 minutes', async () => {
    await withReconcilerStorage((kv) => kv.put('failures', 12));
    answers.push(() => new Response('oops', { status: 503 }));
    await run();
    const st = await status();
    expect(st.consecutive_failures).toBe(13);
    const wait = Date.parse(st.backoff_until!) - Date.now();
    expect(wait).toBeGreaterThan(14 * MINUTE);
    expect(wait).toBeLessThanOrEqual(15 * MINUTE);
  });

  it('reports lag, behind, failures and dead letters on GET /admin/status', async () => {
    // First run, nothing to read: the lag counts from the start (now).
    await run();
    let st = await status();
    expect(st).toMatchObject({ behind: false, consecutive_failures: 0, dead_lettered: 0, clamped_since: null, retrying_events: 0 });
    expect(st.lag_seconds).toBeLessThanOrEqual(2);

    // A backfill from two days ago that reads nothing: the lag counts from there.
    await run('admin', new Date(Date.now() - 2 * DAY).toISOString());
    expect((await status()).lag_seconds).toBeGreaterThanOrEqual(2 * 86_400 - 2);

    // Events read: the lag counts from the newest one's created_at.
    const e = ev(Date.now() - 90 * SECOND);
    answers.push(() => page([e]));
    await run();
    // Nothing new next time: still from the newest event read.
    await run();
    const res = await exports.default.fetch(new Request('https://router.test/admin/status', { headers: ADMIN }));
    const body = (await res.json()) as { reconcile: { lag_seconds: number; behind: boolean; consecutive_failures: number; dead_lettered: number } };
    expect(body.reconcile.lag_seconds).toBeGreaterThanOrEqual(89);
    expect(body.reconcile.lag_seconds).toBeLessThan(100);
    expect(body.reconcile).toMatchObject({ behind: false, consecutive_failures: 0, dead_lettered: 0 });
    st = await status();
    expect(st.cursor).toEqual({ id: e.id, created_at: e.created_at });
  });
});

describe('reconciliation: the dedup retention', () => {
  it('right after dedup_retention_days is raised, a backfill is clamped to what the shorter retention still keeps', async () => {
    await reconcilerSettings({ dedup_retention_days: 7 });
    visible = [];
    await run();
    await restoreReconcilerEnv?.();
    await reconcilerSettings({ dedup_retention_days: 30 });
    const before = Date.now();
    const report = await run('admin', new Date(Date.now() - 20 * DAY).toISOString());
    // The ledger may already have dropped days older than 7 days: the backfill starts there.
    expect(report.clamped_since).toBeDefined();
    const used = Date.parse(requests.at(-1)!.searchParams.get('range_start')!);
    expect(used).toBeGreaterThanOrEqual(before - 7 * DAY + HOUR - 1000);
    expect(used).toBeLessThanOrEqual(Date.now() - 7 * DAY + HOUR);
  });

  it('clamps a backfill older than the retention to now − retention + 1 hour, warns once, and shows it on status', async () => {
    const warn = vi.spyOn(console, 'warn');
    const requested = new Date(Date.now() - 40 * DAY).toISOString();
    const before = Date.now();
    const res = await adminReconcile({ range_start: requested });
    const after = Date.now();
    expect(res.status).toBe(200);
    const report = (await res.json()) as RunReport;
    const q = requests.at(-1)!;
    expect(q.searchParams.get('after')).toBeNull();
    const used = Date.parse(q.searchParams.get('range_start')!);
    expect(used).toBeGreaterThanOrEqual(before - 30 * DAY + HOUR);
    expect(used).toBeLessThanOrEqual(after - 30 * DAY + HOUR);
    const warnings = logLines(warn, 'reconcile_since_clamped');
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatchObject({ requested, clamped_to: new Date(used).toISOString(), dedup_retention_days: 30 });
    expect(report.clamped_since).toMatchObject({ requested, clamped_to: new Date(used).toISOString() });
    const st = await status();
    expect(st.clamped_since).toMatchObject({ requested, clamped_to: new Date(used).toISOString() });
    expect(st.since).toBe(new Date(used).toISOString());

    // A backfill inside the retention is used as given, and clears the mark.
    const recent = new Date(Math.floor(Date.now() / 1000) * 1000 - 29 * DAY).toISOString();
    expect(await (await adminReconcile({ range_start: recent })).json()).not.toHaveProperty('clamped_since');
    expect(requests.at(-1)!.searchParams.get('range_start')).toBe(recent);
    expect((await status()).clamped_since).toBeNull();
    expect(logLines(warn, 'reconcile_since_clamped')).toHaveLength(1);
  });

  it('clamps reconcile_since the same way on the first run', async () => {
    const warn = vi.spyOn(console, 'warn');
    await reconcilerSettings({ reconcile_since: '2020-01-01T00:00:00Z' });
    const before = Date.now();
    await run('cron');
    const used = Date.parse(requests[0]!.searchParams.get('range_start')!);
    expect(used).toBeGreaterThanOrEqual(before - 30 * DAY + HOUR);
    expect(used).toBeLessThan(Date.now() - 30 * DAY + HOUR + SECOND);
    expect(logLines(warn, 'reconcile_since_clamped')).toHaveLength(1);
    expect((await status()).clamped_since).toMatchObject({ requested: '2020-01-01T00:00:00.000Z' });
  });

  it('skips, without admitting, events older than the retention read on resume', async () => {
    const now = Date.now();
    // A position stored by an older release (a bare id) from long ago: the run reads strictly after it.
    await withReconcilerStorage((kv) => {
      kv.put('since', new Date(now - 40 * DAY).toISOString());
      kv.put('cursor', 'event_01OLDPOSITION0000000000000');
    });
    const expired = [ev(now - 31 * DAY), ev(now - 30 * DAY + 10 * MINUTE)];
    const kept = [ev(now - 29 * DAY), ev(now - MINUTE)];
    answers.push(() => page([...expired, ...kept]));
    const report = await run();
    expect(requests[0]!.searchParams.get('after')).toBe('event_01OLDPOSITION0000000000000');
    expect(report).toMatchObject({ status: 'completed', skipped_expired: 2, recovered: 2 });
    // The run finished and the kept events were enqueued and committed, before looking for what did not happen.
    for (const e of kept) expect(await ledgerOf(e).isCommitted(e.id)).toBe(true);
    for (const e of expired) expect(await ledgerOf(e).isCommitted(e.id)).toBe(false);
    const st = await status();
    expect(st.cursor).toEqual({ id: kept[1]!.id, created_at: kept[1]!.created_at });
    expect(st.totals).toMatchObject({ skipped_expired: 2, recovered: 2 });
  });
});

describe('reconciliation: catching up', { timeout: 30_000 }, () => {
  it('keeps reading past reconcile_max_pages in the same run while more pages remain', async () => {
    // A reconciler that was off for a month resumes: 6 full pages older than the retention, then new events.
    const old = evs(600, Date.now() - 35 * DAY);
    const fresh = evs(3, Date.now() - MINUTE);
    answers.push(...pages([...old, ...fresh]));
    const report = await run();
    expect(report).toMatchObject({ status: 'completed', pages: 7, skipped_expired: 600, recovered: 3, behind: false });
    expect(requests).toHaveLength(7);
    expect(requests[6]!.searchParams.get('after')).toBe(old[599]!.id);
    expect(await status()).toMatchObject({ behind: false, cursor: { id: fresh[2]!.id } });
  });

  it('stops at 8× reconcile_max_pages, reports behind, and the next run continues', async () => {
    const old = evs(4000, Date.now() - 35 * DAY);
    const fresh = evs(5, Date.now() - MINUTE);
    answers.push(...pages([...old, ...fresh]));
    const first = await run('cron');
    expect(first).toMatchObject({ status: 'completed', pages: 40, skipped_expired: 4000, behind: true });
    expect(await status()).toMatchObject({ behind: true, cursor: { id: old[3999]!.id } });

    const second = await run('cron');
    // It carries on from the retention floor: the last event read is older than the API may still serve.
    expect(requests[40]!.searchParams.get('after')).toBeNull();
    expect(Date.parse(requests[40]!.searchParams.get('range_start')!)).toBeGreaterThan(Date.now() - 30 * DAY);
    expect(second).toMatchObject({ status: 'completed', pages: 1, recovered: 5, behind: false });
    expect(await status()).toMatchObject({ behind: false, cursor: { id: fresh[4]!.id } });
  });

  it('a catch-up that stops close to real time: the first run after it re-reads the overlap before where it stopped', async () => {
    await reconcilerSettings({ reconcile_max_pages: 1 }); // 8 pages a run at most
    const t = Date.now() - 1100 * SECOND;
    const all = evs(1100, t); // one a second, up to now
    visible = all;
    expect(await run('admin', new Date(t - SECOND).toISOString())).toMatchObject({ pages: 8, behind: true });
    const stop = all[799]!; // about 300 s ago: more than an overlap before the newest event
    // Created 5 s before where the catch-up stopped, visible only now; its webhook never came.
    const late = ev(Date.parse(stop.created_at) - 5 * SECOND);
    visible = [...all, late];
    expect(await run()).toMatchObject({ behind: false }); // carries on after `stop`: does not see `late`
    const report = await run(); // reads an overlap again, from before `stop`
    expect(report).toMatchObject({ status: 'completed', recovered: 1 });
    expect(await ledgerOf(late).isCommitted(late.id)).toBe(true);
  });

  it('…and when that first run fails, the overlap it owed is still owed to the next one (it was dropped as soon as read)', async () => {
    await reconcilerSettings({ reconcile_max_pages: 1 });
    const t = Date.now() - 1100 * SECOND;
    const all = evs(1100, t);
    visible = all;
    expect(await run('admin', new Date(t - SECOND).toISOString())).toMatchObject({ pages: 8, behind: true });
    const stop = all[799]!;
    const late = ev(Date.parse(stop.created_at) - 5 * SECOND);
    visible = [...all, late];
    expect(await run()).toMatchObject({ behind: false });
    // The run that reads the overlap fails on its first page (the Events API answers 500).
    answers.push(() => new Response('unavailable', { status: 500 }));
    expect(await run()).toMatchObject({ status: 'failed' });
    // The next one still reads from before `stop`.
    const report = await run();
    expect(report).toMatchObject({ status: 'completed', recovered: 1 });
    expect(await ledgerOf(late).isCommitted(late.id)).toBe(true);
  });

  it('makes progress when the overlap window alone holds more than a run can read', async () => {
    await reconcilerSettings({ reconcile_max_pages: 1 });
    const t = Date.now() - 5 * MINUTE;
    const window = Array.from({ length: 250 }, (_, i) => ev(t + i * 400)); // 100 s of events
    visible = window;
    expect(await run('admin', new Date(t - SECOND).toISOString())).toMatchObject({ status: 'completed', pages: 3, recovered: 250 });
    const fresh = evs(10, Date.parse(window[249]!.created_at) + SECOND);
    visible = [...window, ...fresh];

    // From now on every API call takes 11 s: a run reads 2 pages before its time is up.
    const realNow = Date.now.bind(Date);
    let skew = 0;
    vi.spyOn(Date, 'now').mockImplementation(() => realNow() + skew);
    answers.push(
      ...Array.from({ length: 10 }, () => (url: URL) => {
        skew += 11 * SECOND;
        return serveModel(url, visible!);
      }),
    );
    expect(await run('cron')).toMatchObject({ status: 'completed', pages: 2, reread: 200, recovered: 0, behind: true });
    expectResumedFrom(requests.at(-2)!, window[249]!);
    // The next run carries on after the last event read instead of re-reading the same window.
    expect(await run('cron')).toMatchObject({ status: 'completed', pages: 1, reread: 50, read: 10, recovered: 10, behind: false });
    expect(requests.at(-1)!.searchParams.get('after')).toBe(window[199]!.id);
    expect(await status()).toMatchObject({ behind: false, cursor: { id: fresh[9]!.id } });
  });

  it('stops continuing after about 20 s of wall-clock time', async () => {
    const realNow = Date.now.bind(Date);
    let skew = 0;
    vi.spyOn(Date, 'now').mockImplementation(() => realNow() + skew);
    const old = evs(1000, realNow() - 35 * DAY);
    // Every API call takes 3 s.
    answers.push(
      ...pages(old).map((answer) => (url: URL) => {
        skew += 3 * SECOND;
        return answer(url);
      }),
    );
    expect(await run()).toMatchObject({ status: 'completed', pages: 7, behind: true });
    expect((await status()).behind).toBe(true);
  });
});

/** Counts the ledger stubs the reconciler asks for: one per request it makes to a ledger shard. */
async function countLedgerRequests(): Promise<{ count: () => number }> {
  let n = 0;
  await runInDurableObject(reconciler(), (instance) => {
    const ns = (instance as unknown as { env: Env }).env.DEDUP_LEDGER;
    const original = ns.get.bind(ns);
    vi.spyOn(ns, 'get').mockImplementation((id, options) => {
      n += 1;
      return original(id, options);
    });
  });
  return { count: () => n };
}

describe('reconciliation: requests per run', { timeout: 60_000 }, () => {
  it('admits a page with one request to each ledger shard its events meet, and reads the overlap again the same way', async () => {
    const t = Date.now() - 10 * MINUTE;
    const all = evs(100, t);
    const shardsMet = new Set(all.map((e) => shardKeyOf(e as unknown as UnknownEvent)).map((k) => ledgerStub(env, k, shards()).name)).size;
    const ledger = await countLedgerRequests();
    answers.push(() => page(all));
    expect(await run()).toMatchObject({ status: 'completed', pages: 1, recovered: 100 });
    expect(ledger.count()).toBe(shardsMet);
    expect(ledger.count()).toBeLessThanOrEqual(shards());
    // The next run reads them again in its overlap: duplicates, one request per shard again.
    answers.push(() => page(all));
    expect(await run()).toMatchObject({ status: 'completed', reread: 100, recovered: 0 });
    expect(ledger.count()).toBe(2 * shardsMet);
    // Every event was admitted, in its own shard.
    for (const e of all) expect(await ledgerOf(e).isCommitted(e.id)).toBe(true);
  });

  it('a ledger shard that cannot be reached fails only its events: they are retried on the next run, the others are taken', async () => {
    const t = Date.now() - 10 * MINUTE;
    const all = evs(40, t);
    const logs = vi.spyOn(console, 'error');
    let failed: string | null = null;
    const spy = await runInDurableObject(reconciler(), (instance) => {
      const ns = (instance as unknown as { env: Env }).env.DEDUP_LEDGER;
      const original = ns.get.bind(ns);
      return vi.spyOn(ns, 'get').mockImplementation((id, options) => {
        const stub = original(id, options);
        if (failed !== null && failed !== id.name) return stub;
        failed = id.name ?? '?';
        return { admitMany: () => Promise.reject(new Error('shard reset')) } as never;
      });
    });
    answers.push(() => page(all));
    const first = await run();
    const lost = all.filter((e) => ledgerShardOf(e as unknown as UnknownEvent, shards()) === failed);
    expect(lost.length).toBeGreaterThan(0);
    expect(first).toMatchObject({ status: 'failed', error: 'enqueue_failed', recovered: 40 - lost.length, retrying: lost.length });
    const line = logLines(logs, 'ledger_unavailable').find((l) => l.shard === failed);
    expect(line).toMatchObject({ level: 'error', events: lost.length, error: 'Error: shard reset' });
    spy.mockRestore();
    logs.mockRestore();
    await expireBackoff();
    answers.push(() => page(all));
    expect(await run('cron')).toMatchObject({ status: 'completed', recovered: lost.length, retrying: 0 });
    for (const e of all) expect(await ledgerOf(e).isCommitted(e.id)).toBe(true);
  });

  it('a shard whose events carry more than 4 MB of bodies gets them in several requests, one after another', async () => {
    // 100 updates of one user (one ordering key: one shard), 50 KB each.
    const t = Date.now() - 10 * MINUTE;
    const user = `user_big_${Date.now()}`;
    const all = Array.from({ length: 100 }, (_, i) => {
      const e = makeEvent('user.updated', { created_at: new Date(t + i * SECOND).toISOString(), data: { id: user, first_name: 'x'.repeat(50_000) } });
      return { object: 'event' as const, ...(e as unknown as Omit<ApiEvent, 'object'>) };
    });
    const ledger = await countLedgerRequests();
    answers.push(() => page(all));
    expect(await run()).toMatchObject({ status: 'completed', recovered: 100 });
    expect(ledger.count()).toBe(2); // 5 MB of bodies: 4 MB at most a request
    for (const e of [all[0]!, all[79]!, all[80]!, all[99]!]) expect(await ledgerOf(e).isCommitted(e.id)).toBe(true);
  });

  it('keeps a run within Workers Free (1,000 requests to Cloudflare services) with many shards, reports behind, and the next runs read the rest', async () => {
    await reconcilerSettings({ dedup_shards: 200, reconcile_max_pages: 40 }); // up to 101 requests a page
    const all = evs(1200, Date.now() - 2 * HOUR); // 12 full pages
    visible = all;
    const ledger = await countLedgerRequests();
    const first = await run('admin', new Date(Date.parse(all[0]!.created_at) - SECOND).toISOString());
    expect(first).toMatchObject({ status: 'completed', behind: true });
    expect(first.pages).toBeLessThan(12);
    expect(ledger.count() + 1).toBeLessThanOrEqual(900); // its ledger requests and one to the alert notifier
    let recovered = first.recovered;
    for (let i = 0; i < 3 && recovered < all.length; i++) recovered += (await run('cron')).recovered;
    expect(recovered).toBe(all.length);
    expect(await status()).toMatchObject({ behind: false, cursor: { id: all[1199]!.id } });
  });
});

describe('reconciliation: the overlap window', () => {
  it('re-reads the last reconcile_overlap_seconds on every run and recovers an event that became visible late', async () => {
    const t = Date.now() - 100 * SECOND;
    const [a, b] = [ev(t), ev(t + 20 * SECOND)] as [ApiEvent, ApiEvent];
    visible = [a, b];
    expect(await run('admin', new Date(t - SECOND).toISOString())).toMatchObject({ read: 2, recovered: 2 });

    // An event created between a and b shows up in the API only now, with a new one after b.
    const late = ev(t + 10 * SECOND);
    const c = ev(t + 30 * SECOND);
    visible = [a, late, b, c];
    const report = await run();
    expectResumedFrom(requests.at(-1)!, b);
    // a, late and b are in the window (reread), c is new (read); the repeats are duplicates, not recoveries.
    expect(report).toMatchObject({ status: 'completed', read: 1, reread: 3, recovered: 2 });
    expect(await ledgerOf(late).isCommitted(late.id)).toBe(true);
    expect((await status()).cursor).toEqual({ id: c.id, created_at: c.created_at });
  });

  it('pages with after inside a run that started from range_start', async () => {
    const t = Date.now() - 100 * SECOND;
    const first = evs(1, t);
    visible = first;
    await run('admin', new Date(t - SECOND).toISOString());
    visible = [...first, ...evs(150, t + SECOND)];
    expect(await run()).toMatchObject({ pages: 2, reread: 1, read: 150, recovered: 150 });
    const [q1, q2] = requests.slice(-2) as [URL, URL];
    expectResumedFrom(q1, first[0]!);
    expect(q2.searchParams.get('range_start')).toBeNull();
    expect(q2.searchParams.get('after')).toBe(visible[99]!.id);
  });

  it('an event dated in the future does not move the window past events still to come: the overlap counts back from now', async () => {
    const now = Date.now();
    const a = ev(now - 50 * SECOND);
    const ahead = ev(now + 10 * 60 * SECOND); // a clock ten minutes ahead
    visible = [a, ahead];
    expect(await run('admin', new Date(now - 60 * SECOND).toISOString())).toMatchObject({ read: 2 });
    // Missed by the webhooks, created after the first run read: still inside the window.
    const b = ev(now + 30 * SECOND);
    visible = [a, b, ahead];
    const before = Date.now();
    const report = await run();
    expect(Date.parse(requests.at(-1)!.searchParams.get('range_start')!)).toBeLessThanOrEqual(before - 120 * SECOND + 1000);
    expect(report).toMatchObject({ status: 'completed', recovered: 1 });
    expect(await ledgerOf(b).isCommitted(b.id)).toBe(true);
  });

  it('after an event dated in the future, a gap between runs longer than the overlap is still read (the window counts back from the last run)', async () => {
    const now = Date.now();
    const ahead = ev(now + 10 * 60 * SECOND);
    visible = [ahead];
    expect(await run('admin', new Date(now - 60 * SECOND).toISOString())).toMatchObject({ read: 1 });
    // The last run ended ten minutes ago (a backoff, an invalid ROUTER); an event created five minutes ago was missed by its webhook.
    await runInDurableObject(reconciler(), (_i, state) => state.storage.kv.put('last_run_at', now - 10 * 60 * SECOND));
    const gap = ev(now - 5 * 60 * SECOND);
    visible = [gap, ahead];
    expect(await run()).toMatchObject({ status: 'completed', recovered: 1 });
    expect(await ledgerOf(gap).isCommitted(gap.id)).toBe(true);
  });

  it('a continuation left by a run that stopped behind, then weeks without reconciliation: starts from the retention floor', async () => {
    const old = ev(Date.now() - 40 * DAY);
    await runInDurableObject(reconciler(), (_i, state) => {
      state.storage.kv.put('position', { id: old.id, created_at: old.created_at });
      state.storage.kv.put('continue_after', { id: old.id, ms: Date.parse(old.created_at) });
    });
    visible = [];
    await run();
    const q = requests.at(-1)!;
    expect(q.searchParams.get('after')).toBeNull();
    expect(Date.parse(q.searchParams.get('range_start')!)).toBeGreaterThan(Date.now() - 31 * DAY);
  });

  it('with reconcile_overlap_seconds = 0, after an event dated in the future, reads from when the last run ended instead of after it', async () => {
    await reconcilerSettings({ reconcile_overlap_seconds: 0 });
    const now = Date.now();
    const ahead = ev(now + 10 * 60 * SECOND);
    visible = [ahead];
    expect(await run('admin', new Date(now - 60 * SECOND).toISOString())).toMatchObject({ read: 1 });
    const b = ev(Date.now() + 30 * SECOND); // created after that run, before the future time
    visible = [b, ahead];
    expect(await run()).toMatchObject({ status: 'completed', recovered: 1 });
    expect(requests.at(-1)!.searchParams.get('after')).toBeNull();
    expect(await ledgerOf(b).isCommitted(b.id)).toBe(true);
  });

  it('with reconcile_overlap_seconds = 0 and a position older than the retention, starts from the retention floor', async () => {
    await reconcilerSettings({ reconcile_overlap_seconds: 0 });
    const old = ev(Date.now() - 40 * DAY);
    await runInDurableObject(reconciler(), (_i, state) => state.storage.kv.put('position', { id: old.id, created_at: old.created_at }));
    visible = [];
    await run();
    const q = requests.at(-1)!;
    expect(q.searchParams.get('after')).toBeNull();
    expect(Date.parse(q.searchParams.get('range_start')!)).toBeGreaterThan(Date.now() - 31 * DAY);
  });

  it('with reconcile_overlap_seconds = 0, reads strictly after the last id', async () => {
    await reconcilerSettings({ reconcile_overlap_seconds: 0 });
    const t = Date.now() - 100 * SECOND;
    const [a, b] = [ev(t), ev(t + 20 * SECOND)] as [ApiEvent, ApiEvent];
    visible = [a, b];
    expect(await run('admin', new Date(t - SECOND).toISOString())).toMatchObject({ read: 2 });
    visible = [a, ev(t + 10 * SECOND), b];
    expect(await run()).toMatchObject({ read: 0, reread: 0, recovered: 0 });
    const q = requests.at(-1)!;
    expect(q.searchParams.get('after')).toBe(b.id);
    expect(q.searchParams.get('range_start')).toBeNull();
  });
});

describe('reconciliation: page order', () => {
  it('does not move the position past events out of created_at order within a page, still admits them, logs once, and passes the same disorder on the next run', async () => {
    const errors = vi.spyOn(console, 'error');
    const t = Date.now() - 100 * SECOND;
    const e1 = ev(t);
    const e2 = ev(t + 30 * SECOND);
    const e3 = ev(t + 10 * SECOND); // earlier than e2
    const e4 = ev(t + 40 * SECOND);
    answers.push(() => page([e1, e2, e3, e4]));
    expect(await run()).toMatchObject({ status: 'failed', error: 'out_of_order', recovered: 4 });
    let st = await status();
    expect(st.last_error).toMatchObject({ kind: 'out_of_order' });
    expect(st.consecutive_failures).toBe(1);
    // e1 is the last event not after the earliest one from the disorder on.
    expect(st.cursor).toEqual({ id: e1.id, created_at: e1.created_at });

    // The API answers the same way again: the disorder is passed (else every run would fail here for ever).
    const warn = vi.spyOn(console, 'warn');
    answers.push(() => page([e1, e2, e3, e4]));
    expect(await run()).toMatchObject({ status: 'completed', recovered: 0 });
    expectResumedFrom(requests.at(-1)!, e1);
    st = await status();
    expect(st.cursor?.id).toBe(e4.id);
    expect(logLines(errors, 'reconcile_failed').filter((l) => l.kind === 'out_of_order')).toHaveLength(1);
    expect(logLines(warn, 'reconcile_disorder_passed')).toMatchObject([{ event_id: e3.id }]);
  });

  it('one misplaced event with several later ones earlier than it: one failed run, then the same answer passes (every out-of-order event of the failed run is remembered)', async () => {
    const errors = vi.spyOn(console, 'error');
    const t = Date.now() - 100 * SECOND;
    const e1 = ev(t);
    const e2 = ev(t + 30 * SECOND); // misplaced: e3 and e4 are earlier
    const e3 = ev(t + 10 * SECOND);
    const e4 = ev(t + 20 * SECOND);
    const e5 = ev(t + 40 * SECOND);
    const same = () => page([e1, e2, e3, e4, e5]);
    answers.push(same);
    expect(await run()).toMatchObject({ status: 'failed', error: 'out_of_order' });
    answers.push(same);
    expect(await run()).toMatchObject({ status: 'completed' });
    expect((await status()).cursor?.id).toBe(e5.id);
    answers.push(same);
    expect(await run()).toMatchObject({ status: 'completed' });
    expect(logLines(errors, 'reconcile_failed').filter((l) => l.kind === 'out_of_order')).toHaveLength(1);
  });

  it('checks the order across pages too', async () => {
    const t = Date.now() - 10 * MINUTE;
    const first = evs(100, t);
    const back = ev(t + 50 * SECOND + 500); // between first[50] and first[51]
    const next = ev(t + 200 * SECOND);
    answers.push(() => page(first, first[99]!.id), () => page([back, next]));
    expect(await run()).toMatchObject({ status: 'failed', error: 'out_of_order', pages: 2, recovered: 102 });
    expect((await status()).cursor?.id).toBe(first[50]!.id);
  });

  it('accepts events with equal created_at', async () => {
    const t = Date.now() - MINUTE;
    const same = [ev(t), ev(t), ev(t), ev(t + SECOND)];
    answers.push(() => page(same));
    expect(await run()).toMatchObject({ status: 'completed', recovered: 4 });
    expect((await status()).cursor?.id).toBe(same[3]!.id);
  });
});

/**
 * The hard page cap (README "Reconciliation" → "Catch-up"): a run never reads
 * more than 45 Events API pages, whatever `reconcile_max_pages` says, so it
 * stays within Workers Free's 50 requests to the Internet per invocation. The
 * 900-request service budget cannot be what stops it here (one ledger shard:
 * about 2 service requests a page), nor the ~20 s catch-up time (the clock runs
 * slowed down while the run reads).
 */
describe('reconciliation: the hard page cap (Workers Free: 50 requests to the Internet)', { timeout: 180_000 }, () => {
  it('the cap is 45 pages', () => {
    expect(MAX_PAGES_PER_RUN).toBe(45);
  });

  it('with the largest reconcile_max_pages and one ledger shard, a run reads exactly 45 pages, reports behind, and the next run carries on where it stopped', async () => {
    // 40 is the largest value the config accepts (8 × 40 = 320 pages without the cap); one shard: about 2 service requests a page.
    await reconcilerSettings({ reconcile_max_pages: 40, dedup_shards: 1 });
    const all = evs(4630, Date.now() - 3 * HOUR); // 46 full pages, then 30 events
    visible = all;
    const queue = await spyQueueSends();
    const ledger = await countLedgerRequests(); // after spyQueueSends, which asks for a ledger stub itself
    const logs = vi.spyOn(console, 'log');
    slowClock();

    const first = await run('admin', new Date(Date.parse(all[0]!.created_at) - SECOND).toISOString());
    expect(first).toMatchObject({ status: 'completed', pages: 45, read: 4500, reread: 0, recovered: 4500, behind: true });
    expect(requests).toHaveLength(45);
    // Not the service budget: one ledger request a page.
    expect(ledger.count()).toBe(45);
    expect(await status()).toMatchObject({ behind: true, cursor: { id: all[4499]!.id, created_at: all[4499]!.created_at } });

    // One reconcile_run line with the run's counts; one event_recovered line per recovery.
    const runLines = logLines(logs, 'reconcile_run');
    expect(runLines).toHaveLength(1);
    expect(runLines[0]).toEqual({
      level: 'info',
      msg: 'reconcile_run',
      trigger: 'admin',
      status: 'completed',
      pages: 45,
      read: 4500,
      reread: 0,
      recovered: 4500,
      skipped_expired: 0,
      skipped_malformed: 0,
      dead_lettered: 0,
      retrying: 0,
      in_progress: 0,
      behind: true,
    });
    const recoveredLines = logLines(logs, 'event_recovered');
    expect(recoveredLines).toHaveLength(4500);
    expect(recoveredLines[0]).toEqual({ level: 'info', msg: 'event_recovered', event_id: all[0]!.id, event_type: 'user.created' });
    expect(new Set(recoveredLines.map((l) => l.event_id))).toEqual(new Set(all.slice(0, 4500).map((e) => e.id)));

    // The next run carries on right after the last event read (not from the overlap window) and reads the rest.
    const second = await run('cron');
    expect(requests[45]!.searchParams.get('after')).toBe(all[4499]!.id);
    expect(requests[45]!.searchParams.get('range_start')).toBeNull();
    expect(second).toMatchObject({ status: 'completed', pages: 2, read: 130, reread: 0, recovered: 130, behind: false });
    expect(requests).toHaveLength(47);
    expect(await status()).toMatchObject({ behind: false, cursor: { id: all[4629]!.id } });
    expect(logLines(logs, 'reconcile_run').at(-1)).toMatchObject({ level: 'info', trigger: 'cron', pages: 2, recovered: 130, behind: false });

    // A third run reads its overlap window again: repeats only, nothing recovered twice.
    const third = await run('cron');
    expect(third).toMatchObject({ status: 'completed', read: 0, recovered: 0, behind: false });
    expect(third.reread).toBeGreaterThan(0);
    expect(logLines(logs, 'reconcile_run')).toHaveLength(3);

    // Every event was recovered, and enqueued, exactly once.
    const ids = all.map((e) => e.id).sort();
    const recovered = tally(logLines(logs, 'event_recovered').map((l) => String(l.event_id)));
    expect([...recovered.keys()].sort()).toEqual(ids);
    expect([...recovered.values()].every((n) => n === 1)).toBe(true);
    const sent = tally(queue.ids());
    expect([...sent.keys()].sort()).toEqual(ids);
    expect([...sent.values()].every((n) => n === 1)).toBe(true);
    expect((await status()).totals).toMatchObject({ read: 4630, recovered: 4630 });
  });

  it('reconcile_max_pages above 40 is refused by the config: no run reads more than the cap through it', async () => {
    for (const pages of [46, 50, 1000]) {
      await reconcilerSettings({ reconcile_max_pages: pages, dedup_shards: 1 });
      visible = evs(200, Date.now() - HOUR);
      expect(await run('admin'), String(pages)).toMatchObject({ status: 'config_invalid', pages: 0 });
      await restoreReconcilerEnv?.();
      restoreReconcilerEnv = null;
    }
    // A valid config reads again (the positive signal before the check that nothing was requested above).
    expect(await run('admin', new Date(Date.now() - HOUR - SECOND).toISOString())).toMatchObject({ status: 'completed', pages: 2, recovered: 200 });
    expect(requests).toHaveLength(2);
  });
});
