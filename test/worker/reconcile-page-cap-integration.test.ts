/**
 * Reconciliation's hard page cap (README "Reconciliation" → "Catch-up"): a run
 * never reads more than 45 Events API pages, whatever `reconcile_max_pages`
 * says, so it stays within Workers Free's 50 requests to the Internet per
 * invocation. Here the 900-request service budget cannot be what stops it
 * (one ledger shard: about 2 service requests a page) and neither can the
 * ~20 s catch-up time (the clock runs slowed down while the run reads), so
 * what stops the run is the page cap alone.
 *
 * The WorkOS Events API is played at the network edge (`fetch`); the
 * reconciler, the ledger shard and the queue are real.
 */
import { runInDurableObject } from 'cloudflare:test';
import { env } from 'cloudflare:workers';
import { type MockInstance, afterAll, afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { DedupLedger } from '../../src/dedup/ledger';
import { shardName } from '../../src/dedup/shard';
import type { RouterMessage } from '../../src/queue/message';
import { MAX_PAGES_PER_RUN, type RunReport, reconcilerStub } from '../../src/reconcile/reconciler';
import { makeEvent } from '../fixtures/events';
import { postWebhook } from '../helpers/webhook';

const API = 'https://api.workos.com/events';
const SECOND = 1000;
const MINUTE = 60 * SECOND;
const HOUR = 60 * MINUTE;

interface ApiEvent {
  object: 'event';
  id: string;
  event: string;
  data: Record<string, unknown>;
  created_at: string;
}

/** A model of the API over these visible events (range_start, after, limit), when set. */
let visible: ApiEvent[] | null;
let requests: URL[];
let restoreReconcilerEnv: (() => Promise<void>) | null = null;

let seq = 0;
/** A `user.created` event created at `ms`, about its own user. */
function ev(ms: number): ApiEvent {
  const e = makeEvent('user.created', { created_at: new Date(ms).toISOString(), data: { id: `user_cap_${Date.now()}_${++seq}` } });
  return { object: 'event', ...(e as unknown as Omit<ApiEvent, 'object'>) };
}

/** `n` events from `fromMs`, one second apart. */
function evs(n: number, fromMs: number): ApiEvent[] {
  return Array.from({ length: n }, (_, i) => ev(fromMs + i * SECOND));
}

function page(events: object[], after: string | null = null): Response {
  return Response.json({ object: 'list', data: events, list_metadata: { before: null, after } });
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
    return visible !== null ? serveModel(url, visible) : page([]);
  });
});

afterEach(async () => {
  vi.restoreAllMocks();
  if (restoreReconcilerEnv !== null) await restoreReconcilerEnv();
  restoreReconcilerEnv = null;
});

// The worker's queue consumer delivers what the tests admitted about a second later. Before the
// environment closes, wait until it delivered one last event, admitted after all the others.
afterAll(async () => {
  const logs = vi.spyOn(console, 'log');
  const { object: _o, ...last } = ev(Date.now());
  expect((await postWebhook(last)).status).toBe(200);
  await vi.waitFor(
    () => expect(logs.mock.calls.some((c) => String(c[0]).includes('"msg":"delivered"') && String(c[0]).includes(last.id))).toBe(true),
    { timeout: 100_000, interval: 100 },
  );
  logs.mockRestore();
}, 120_000);

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

const reconciler = () => reconcilerStub(env);
const run = (trigger: 'cron' | 'admin' = 'admin', rangeStart?: string): Promise<RunReport> =>
  reconciler().run({ trigger, ...(rangeStart !== undefined ? { rangeStart } : {}) }) as Promise<RunReport>;
const status = () => reconciler().status();

/** Runs the reconciler with these ROUTER settings on top of wrangler.toml's (until the test ends). */
async function reconcilerSettings(extra: Record<string, unknown>): Promise<void> {
  const stub = reconciler();
  await runInDurableObject(stub, (instance) => {
    const holder = instance as unknown as { env: Env };
    const original = holder.env;
    holder.env = { ...original, ROUTER: { ...(original.ROUTER as object), ...extra } } as unknown as Env;
    restoreReconcilerEnv = async () => {
      await runInDurableObject(stub, (i) => {
        (i as unknown as { env: Env }).env = original;
      });
    };
  });
}

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

/** Spies on the router queue as the ledger shards see it (one binding object, shared by every shard): the ids sent. */
async function spyQueueSends(): Promise<{ ids: () => string[] }> {
  const stub = env.DEDUP_LEDGER.get(env.DEDUP_LEDGER.idFromName(shardName(0))) as DurableObjectStub<DedupLedger>;
  const spy = await runInDurableObject(stub, (instance) => vi.spyOn((instance as unknown as { env: Env }).env.EVENTS_QUEUE, 'send'));
  return { ids: () => spy.mock.calls.map((c) => (c[0] as RouterMessage).id) };
}

/**
 * From now on the clock runs ten times slower: the run's ~20 s catch-up time
 * becomes ~200 s of real time, so a loaded machine cannot make the time limit
 * stop the run before the page cap does.
 */
function slowClock(): void {
  const realNow = Date.now.bind(Date);
  const from = realNow();
  vi.spyOn(Date, 'now').mockImplementation(() => from + Math.floor((realNow() - from) / 10));
}

function logLines(spy: MockInstance, msg: string): Record<string, unknown>[] {
  return spy.mock.calls
    .map((c) => String(c[0]))
    .filter((l) => l.includes(`"msg":"${msg}"`))
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

/** How many times each id occurs. */
function tally(ids: readonly string[]): Map<string, number> {
  const m = new Map<string, number>();
  for (const id of ids) m.set(id, (m.get(id) ?? 0) + 1);
  return m;
}

// ---------------------------------------------------------------------------

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
