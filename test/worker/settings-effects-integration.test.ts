/**
 * What a `[vars.ROUTER]` setting set to something other than its default
 * does, as README's "Configuration reference" promises it — not only that it
 * parses. Each test runs the real Worker (webhook handler, ledger shards, queue
 * consumer, trace buckets, admin API) under a ROUTER that sets the knob, with
 * a value the default would answer differently, so a setting read in the wrong
 * place (or not at all) fails here. Only outbound `fetch` to destinations is
 * played (test/helpers/sink.ts); the router's queue is observed, not replaced.
 */
import { createExecutionContext, runInDurableObject, waitOnExecutionContext } from 'cloudflare:test';
import { env } from 'cloudflare:workers';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import worker from '../../src/index';
import { loadConfig } from '../../src/config/load';
import { shardKeyOf, shardName, shardOf } from '../../src/dedup/shard';
import type { UnknownEvent } from '../../src/events/catalog';
import { traceOf } from '../helpers/audit-sentinel';
import { routerMessage, runBatch, testEnv } from '../helpers/consumer';
import { watchLogs } from '../helpers/observe';
import { Sink } from '../helpers/sink';
import { URL_BASE, sampleEvent, webhookRequest } from '../helpers/webhook';

const DAY = 86_400_000;
const SINK = 'https://settings-effects.example.test/in';
const ADMIN = { Authorization: 'Bearer test-admin-token' };

/** A valid ROUTER: one HTTP destination every event goes to, plus the knobs under test. */
function routerWith(knobs: Record<string, unknown>, destination: Record<string, unknown> = {}) {
  return {
    ...knobs,
    destinations: [{ name: 'effects', type: 'http', url: SINK, ...destination }],
    rules: [{ name: 'all', events: ['*'], to: ['effects'] }],
  };
}

async function post(body: object, runEnv: Env, t?: number): Promise<Response> {
  const ctx = createExecutionContext();
  const res = await worker.fetch(await webhookRequest(body, t === undefined ? {} : { t }), runEnv, ctx);
  await waitOnExecutionContext(ctx);
  return res;
}

async function errorOf(res: Response): Promise<string> {
  return ((await res.json()) as { error: string }).error;
}

/** A sample event whose id passes `accept` (ids are random). */
function eventWhere(accept: (e: Record<string, unknown>) => boolean, overrides: Record<string, unknown> = {}): Record<string, unknown> {
  for (;;) {
    const e = sampleEvent({ data: { id: `user_${crypto.randomUUID()}`, email: 'ada@example.com', object: 'user' }, ...overrides });
    if (accept(e)) return e;
  }
}

/** The consumer's record of a failed delivery it will try again: the attempt that failed and the wait before the next. */
function retriesOf(logs: ReturnType<typeof watchLogs>, eventId: string): { attempt: number; retry_in_s: number; reason: string }[] {
  return logs.about(eventId, 'delivery_failed').map((r) => ({ attempt: r.attempt as number, retry_in_s: r.retry_in_s as number, reason: r.reason as string }));
}

const sink = new Sink();
beforeEach(() => {
  sink.install();
});
afterEach(() => {
  vi.restoreAllMocks();
  sink.reset();
  loadConfig(env); // the suite's own config (and its log level) again
});

describe('signature_tolerance_seconds', () => {
  it('a configured tolerance, not the default 180 s, bounds the signature timestamp in both directions', async () => {
    // Narrower than the default: a signature 30 s old (accepted at 180) is refused.
    const narrow = testEnv(routerWith({ signature_tolerance_seconds: 10 }));
    const late = await post(sampleEvent(), narrow, Date.now() - 30_000);
    expect(late.status).toBe(401);
    expect(await errorOf(late)).toBe('timestamp_out_of_tolerance');
    const early = await post(sampleEvent(), narrow, Date.now() + 30_000);
    expect(early.status).toBe(401);
    expect(await errorOf(early)).toBe('timestamp_out_of_tolerance');
    expect((await post(sampleEvent(), narrow, Date.now() - 2_000)).status).toBe(200);

    // Wider than the default: 5 minutes either way (refused at 180) is accepted; past 10 minutes is not.
    const wide = testEnv(routerWith({ signature_tolerance_seconds: 600 }));
    expect((await post(sampleEvent(), wide, Date.now() - 300_000)).status).toBe(200);
    expect((await post(sampleEvent(), wide, Date.now() + 300_000)).status).toBe(200);
    const tooOld = await post(sampleEvent(), wide, Date.now() - 700_000);
    expect(tooOld.status).toBe(401);
    expect(await errorOf(tooOld)).toBe('timestamp_out_of_tolerance');
  });
});

describe('max_body_bytes', () => {
  it('a configured cap, not the default 1 MiB, refuses larger bodies with 413 and accepts smaller ones', async () => {
    const runEnv = testEnv(routerWith({ max_body_bytes: 2048 }));
    const small = sampleEvent({ data: { id: `user_${crypto.randomUUID()}`, object: 'user', note: 'x'.repeat(1000) } });
    expect(JSON.stringify(small).length).toBeLessThan(2048);
    const smallRes = await post(small, runEnv);
    expect(smallRes.status).toBe(200);
    expect(await smallRes.json()).toEqual({ status: 'accepted', id: small.id });

    // 3 KB: far under the default cap, over this one. Correctly signed, so only the size can refuse it.
    const large = sampleEvent({ data: { id: `user_${crypto.randomUUID()}`, object: 'user', note: 'x'.repeat(3000) } });
    expect(JSON.stringify(large).length).toBeGreaterThan(2048);
    const res = await post(large, runEnv);
    expect(res.status).toBe(413);
    const body = (await res.json()) as { error: string; message: string };
    expect(body.error).toBe('payload_too_large');
    expect(body.message).toContain('2048');
  });
});

describe('dedup_retention_days', () => {
  it("the ledger keeps an accepted id's day for the configured retention after that day ends, not the default 30 days", async () => {
    // An unusual shard count and a created_at three days ago: a ledger day table no other test writes to
    // (a day is kept as long as the longest retention any of its events asked for).
    const shards = 997;
    const created = new Date(Date.now() - 3 * DAY);
    const event = eventWhere((e) => shardOf(shardKeyOf(e as unknown as UnknownEvent), shards) >= 64, { created_at: created.toISOString() });
    const runEnv = testEnv(routerWith({ dedup_shards: shards, dedup_retention_days: 5 }));
    expect(await (await post(event, runEnv)).json()).toEqual({ status: 'accepted', id: event.id });

    const shard = shardName(shardOf(shardKeyOf(event as unknown as UnknownEvent), shards));
    const stub = env.DEDUP_LEDGER.get(env.DEDUP_LEDGER.idFromName(shard));
    const day = `ledger_d${created.toISOString().slice(0, 10).replace(/-/g, '')}`;
    const dayEnd = Date.UTC(created.getUTCFullYear(), created.getUTCMonth(), created.getUTCDate()) + DAY;
    const kept = await runInDurableObject(stub, (_i, state) => ({
      dropAt: state.storage.sql.exec<{ drop_at: number }>('SELECT drop_at FROM ledger_days WHERE name = ?', day).one().drop_at,
      row: state.storage.sql.exec<{ expires_at: number }>(`SELECT expires_at FROM ${day} WHERE id = ?`, event.id as string).one().expires_at,
    }));
    expect(kept).toEqual({ dropAt: dayEnd + 5 * DAY, row: dayEnd + 5 * DAY });
    // Remembered meanwhile: a repeat is a duplicate.
    expect(await (await post(event, runEnv)).json()).toEqual({ status: 'duplicate', id: event.id });
  });
});

describe('retry_delay_seconds', () => {
  it('backs off exponentially from the configured base: attempt n waits 50–100 % of base × 2^(n-1)', async () => {
    const runEnv = testEnv(routerWith({}, { max_attempts: 10, retry_delay_seconds: 100 }));
    sink.on(SINK, () => new Response('down', { status: 503 }));
    const logs = watchLogs();
    const delayAfter = async (attemptsBefore: number): Promise<{ delay: number; attempts: number }> => {
      const event = sampleEvent();
      const message = routerMessage(event, attemptsBefore === 0 ? {} : { pending: { effects: { attempts: attemptsBefore, rules: ['all'] } } });
      const { result } = await runBatch([message], runEnv);
      expect(result.explicitAcks).toHaveLength(1);
      const [retry] = retriesOf(logs, event.id as string);
      expect(retry, `a retry after attempt ${attemptsBefore + 1}`).toBeDefined();
      // The trace shows the same retry, due after that wait.
      const [delivery] = (await traceOf(event.id as string))?.deliveries ?? [];
      expect(delivery).toMatchObject({ destination: 'effects', state: 'retrying', rules: ['all'] });
      const due = (Date.parse(delivery?.next_attempt_at ?? '') - Date.parse(delivery?.attempts.at(-1)?.at ?? '')) / 1000;
      expect(Math.abs(due - (retry?.retry_in_s ?? -1))).toBeLessThan(60);
      return { delay: retry?.retry_in_s ?? -1, attempts: retry?.attempt ?? -1 };
    };
    const first = await delayAfter(0);
    expect(first.attempts).toBe(1);
    expect(first.delay).toBeGreaterThanOrEqual(50);
    expect(first.delay).toBeLessThanOrEqual(100);
    const third = await delayAfter(2);
    expect(third.attempts).toBe(3);
    expect(third.delay).toBeGreaterThanOrEqual(200);
    expect(third.delay).toBeLessThanOrEqual(400);
    const fifth = await delayAfter(4);
    expect(fifth.attempts).toBe(5);
    expect(fifth.delay).toBeGreaterThanOrEqual(800);
    expect(fifth.delay).toBeLessThanOrEqual(1600);
  });
});

describe('timeout_ms (http)', () => {
  it("a request the destination never answers is given up after the destination's timeout_ms, not the default 10 s, and retried", async () => {
    const runEnv = testEnv(routerWith({}, { timeout_ms: 300, max_attempts: 3, retry_delay_seconds: 3600 }));
    // Answers only when the router gives up (aborts) the request.
    sink.on(SINK, (req) => new Promise<Response>((_resolve, reject) => req.signal.addEventListener('abort', () => reject(req.signal.reason))));
    const logs = vi.spyOn(console, 'warn');
    const event = sampleEvent();
    const started = Date.now();
    const { result } = await runBatch([routerMessage(event)], runEnv);
    const took = Date.now() - started;
    expect(result.explicitAcks).toHaveLength(1);
    expect(sink.about(event.id as string, SINK)).toHaveLength(1);
    expect(took).toBeGreaterThanOrEqual(250);
    expect(took).toBeLessThan(4_000);
    const failed = logs.mock.calls
      .map((c) => JSON.parse(String(c[0])) as Record<string, unknown>)
      .filter((l) => l.msg === 'delivery_failed' && l.event_id === event.id);
    expect(failed).toEqual([expect.objectContaining({ destination: 'effects', reason: 'timeout', attempt: 1 })]);
    // Retried: the trace shows the delivery waiting for its second attempt, its first one timed out.
    const [delivery] = (await traceOf(event.id as string))?.deliveries ?? [];
    expect(delivery).toMatchObject({ destination: 'effects', state: 'retrying', rules: ['all'], next_attempt_at: expect.any(String) });
    expect(delivery?.attempts.map((a) => a.error)).toEqual(['timeout']);
  }, 30_000);
});

describe('the delivery trace', () => {
  /** The trace bucket of an acceptance: `trace:<UTC day>:<shard>`. */
  const bucket = (acceptedAt: number, shard: number) => `trace:${new Date(acceptedAt).toISOString().slice(0, 10)}:${shard}`;

  it('trace_shards and trace_retention_days: each event is written to its shard of the day, found there by GET /admin/events/<id>, and that bucket is deleted (alarm) the configured days after its day ends', async () => {
    // A shard count and a shard no other test writes to (every default config writes shard 0 only), so the
    // bucket's alarm — only ever moved later — is this test's own.
    const shards = 61;
    const event = eventWhere((e) => shardOf(e.id as string, shards) >= 32);
    const runEnv = testEnv(routerWith({ trace_shards: shards, trace_retention_days: 2 }));
    const message = routerMessage(event);
    const { result } = await runBatch([message], runEnv);
    expect(result.explicitAcks).toHaveLength(1);
    expect(sink.about(event.id as string, SINK)).toHaveLength(1);

    const ctx = createExecutionContext();
    const res = await worker.fetch(new Request(`${URL_BASE}/admin/events/${event.id as string}`, { headers: ADMIN }), runEnv, ctx);
    await waitOnExecutionContext(ctx);
    expect(res.status).toBe(200);
    const view = (await res.json()) as { id: string; deliveries: Array<{ destination: string; state: string }> };
    expect(view.id).toBe(event.id);
    expect(view.deliveries).toEqual([expect.objectContaining({ destination: 'effects', state: 'delivered' })]);

    // In the bucket of its own shard, which expires two days after its day ends.
    const stub = env.DELIVERY_TRACE.get(env.DELIVERY_TRACE.idFromName(bucket(message.accepted_at, shardOf(event.id as string, shards))));
    const stored = await runInDurableObject(stub, async (_i, state) => ({
      rows: state.storage.sql.exec<{ n: number }>('SELECT COUNT(*) AS n FROM trace WHERE event_id = ?', event.id as string).one().n,
      alarm: await state.storage.getAlarm(),
    }));
    const dayEnd = (Math.floor(message.accepted_at / DAY) + 1) * DAY;
    expect(stored).toEqual({ rows: 1, alarm: dayEnd + 2 * DAY });
  });
});
