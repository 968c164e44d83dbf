/**
 * Defect 7 of the delivery-promises issue: an invalid config must hold events,
 * not delay their loss. Before, the consumer retried the batch every minute
 * until the platform's `max_retries` (100) sent everything to the DLQ after
 * about 100 minutes, and a Slack outbox meeting an invalid config in a fresh
 * isolate dead-lettered its buffer as `destination_removed`.
 */
import { runDurableObjectAlarm, runInDurableObject } from 'cloudflare:test';
import { env } from 'cloudflare:workers';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { deadLetterStub } from '../../src/deadletters/store';
import { type HeldDeliveries, heldStub } from '../../src/destinations/held';
import { type SlackOutbox, outboxStub } from '../../src/destinations/slack/outbox';
import { HOLD_DELAY_SECONDS } from '../../src/queue/consumer';
import type { RouterMessage } from '../../src/queue/message';
import { retryDelaysOf, routerMessage, runBatch, testEnv } from '../helpers/consumer';
import { deadLettersFor, watchLogs } from '../helpers/observe';
import { Sink } from '../helpers/sink';
import { sampleEvent } from '../helpers/webhook';
import { SLACK } from './router';

const sink = new Sink();
beforeEach(() => sink.reset().install());
afterEach(() => vi.restoreAllMocks());

const INVALID = { rules: [{ name: 'x', events: [''], to: [] }] };
const FIXED_URL = 'https://fixed.example.test/in';
const FIXED = {
  destinations: [{ name: 'fixed', type: 'http', url: FIXED_URL }],
  rules: [{ name: 'sessions', events: ['session.created'], to: ['fixed'] }],
};

describe('an invalid config holds events', () => {
  it('for 24 hours of checks nothing is dead-lettered or dropped; once fixed, each event is delivered once', async () => {
    // session.created is routed nowhere by this project's own ROUTER, so the
    // held copies the real consumer picks up a minute later are merely acked.
    const events = [sampleEvent({ event: 'session.created' }), sampleEvent({ event: 'session.created' })];
    let held: RouterMessage[] = events.map((e) => routerMessage(e));
    // observed, not stubbed: each held copy waits HOLD_DELAY_SECONDS (a minute), and the test walks 24 hours of them
    const sendBatch = vi.spyOn(env.EVENTS_QUEUE, 'sendBatch');
    const deadBefore = await deadLetterStub(env).count();
    const checks = (24 * 3600) / HOLD_DELAY_SECONDS;
    for (let i = 0; i < checks; i++) {
      sendBatch.mockClear();
      // The platform's attempt count is at its maximum: a retry would send the batch to the DLQ.
      const { result } = await runBatch(held, testEnv(INVALID), 'workos-router-events', 100);
      expect(result.explicitAcks).toHaveLength(held.length);
      expect(result.retryMessages).toEqual([]);
      const sent = sendBatch.mock.calls.flatMap((c) => c[0] as { body: RouterMessage; delaySeconds?: number }[]);
      expect(sent.map((m) => m.delaySeconds)).toEqual(held.map(() => HOLD_DELAY_SECONDS));
      held = sent.map((m) => m.body);
    }
    expect(held.map((m) => m.id)).toEqual(events.map((e) => e.id));
    expect(await deadLetterStub(env).count()).toBe(deadBefore);

    const { result } = await runBatch(held, testEnv(FIXED));
    expect(result.explicitAcks).toHaveLength(2);
    for (const e of events) {
      const got = sink.about(e.id as string, FIXED_URL);
      expect(got).toHaveLength(1);
      expect(got[0]?.body).toBe(JSON.stringify(e));
    }
  });

  it('a held message whose re-enqueue fails is retried by the platform, not acked', async () => {
    vi.spyOn(env.EVENTS_QUEUE, 'sendBatch').mockRejectedValueOnce(new Error('queue down'));
    const { result } = await runBatch([routerMessage(sampleEvent({ event: 'session.created' }))], testEnv(INVALID));
    expect(result.explicitAcks).toEqual([]);
    expect(result.retryMessages).toHaveLength(1);
  });

  it('while the queue stays down, those retries wait 60 s doubling up to 12 hours, so the platform\'s 100 tries are not used up in 100 minutes (then dead-lettered)', async () => {
    vi.spyOn(env.EVENTS_QUEUE, 'sendBatch').mockRejectedValue(new Error('queue down'));
    const waits: (number | undefined)[] = [];
    for (const attempts of [1, 2, 5, 11, 12, 100]) {
      waits.push(...(await retryDelaysOf(routerMessage(sampleEvent({ event: 'session.created' })), attempts, testEnv(INVALID))));
    }
    expect(waits).toEqual([60, 120, 960, 43_200, 43_200, 43_200]);
  });

  it('deliveries held for a paused destination past 14 days are not dead-lettered while the config is invalid; once it is valid again, they are (held_too_long)', async () => {
    const name = 'warehouse';
    const store = heldStub(env, `invalid-${crypto.randomUUID()}`) as DurableObjectStub<HeldDeliveries>;
    const e = sampleEvent({ event: 'organization_domain.verified', data: { id: `org_domain_${crypto.randomUUID()}`, object: 'organization_domain' } });
    await store.hold(name, [
      { event_id: e.id as string, event_type: 'organization_domain.verified', created_at: e.created_at as string, source: 'webhook', stale: false, accepted_at: Date.now(), attempts: 0, rules: ['domains'], body: JSON.stringify(e) },
    ]);
    const saved = await runInDurableObject(store, (instance, state) => {
      state.storage.sql.exec('UPDATE held SET held_at = held_at - ?', 15 * 86_400_000);
      const o = instance as unknown as { env: Env };
      const original = o.env;
      o.env = testEnv(INVALID);
      return original;
    });
    expect(await runDurableObjectAlarm(store)).toBe(true); // its 6-hourly check ran
    expect(await store.count()).toBe(1);
    expect(await deadLettersFor(e.id as string)).toEqual([]);
    expect(await runInDurableObject(store, (_i, state) => state.storage.getAlarm())).not.toBeNull(); // and looks again later
    // Fixed: the next check dead-letters it, as it would have been.
    await runInDurableObject(store, (instance) => {
      (instance as unknown as { env: Env }).env = saved;
    });
    await runDurableObjectAlarm(store);
    expect(await store.count()).toBe(0);
    expect(await deadLettersFor(e.id as string)).toMatchObject([{ destination: name, reason: 'held_too_long', rules: ['domains'] }]);
    for (const r of await deadLettersFor(e.id as string)) await deadLetterStub(env).remove(r.seq);
  });

  it('a Slack outbox that meets an invalid config holds its buffer, then sends it once the config is valid', async () => {
    const name = `security-hold-${crypto.randomUUID()}`;
    const stub = outboxStub(env, name) as DurableObjectStub<SlackOutbox>;
    const event = sampleEvent({ event: 'authentication.password_failed', data: { type: 'password', status: 'failed', email: 'ada@example.com', user_id: null } });
    const dest = { name, type: 'slack' as const, url: SLACK, digestWindowSeconds: 1, maxPending: 10_000, timeoutMs: 1000, retry: { maxAttempts: 3, retryDelaySeconds: 1 }, circuit: null, maxPerSecond: null };
    // Slack is down when the event is handed over, so it stays buffered.
    sink.on(SLACK, () => new Response('down', { status: 503 }));
    await stub.submit(dest, { event_id: event.id as string, event_type: event.event as string, rules: ['failed-logins'], raw: JSON.stringify(event) });
    expect(await stub.pending()).toBe(1);
    // A fresh isolate (no remembered destination) whose config is invalid.
    const saved = await runInDurableObject(stub, (instance) => {
      const o = instance as unknown as { lastDest: unknown; env: Env; ctx: DurableObjectState };
      const original = o.env;
      o.lastDest = undefined;
      o.env = testEnv(INVALID);
      o.ctx.storage.sql.exec("UPDATE meta SET value = 0 WHERE key = 'blocked_until'");
      return original;
    });
    sink.on(SLACK, () => new Response('ok'));
    const logs = watchLogs();
    // Each alarm ran (one was scheduled every time: the hold schedules the next look) and said it held the buffer.
    for (let i = 0; i < 3; i++) expect(await runDurableObjectAlarm(stub), `alarm ${i + 1} ran`).toBe(true);
    const held = logs.records().filter((r) => r.msg === 'slack_outbox_held' && r.destination === name);
    expect(held).toHaveLength(3);
    expect(held[0]).toMatchObject({ level: 'warn', events: 1, retry_in_s: HOLD_DELAY_SECONDS });
    expect(await stub.pending()).toBe(1);
    expect(await deadLettersFor(event.id as string)).toEqual([]);
    expect(sink.about(event.id as string, SLACK)).toHaveLength(1); // only the failed attempt, before the hold

    // The config is fixed (this destination exists again).
    await runInDurableObject(stub, (instance) => {
      const o = instance as unknown as { env: Env; lastDest: unknown };
      o.env = saved;
      o.lastDest = dest;
      // (Its one-message-per-window slot, taken by the failed attempt, has passed.)
      (instance as unknown as { ctx: DurableObjectState }).ctx.storage.sql.exec("UPDATE meta SET value = 0 WHERE key = 'last_sent_at'");
    });
    await runDurableObjectAlarm(stub);
    expect(await stub.pending()).toBe(0);
    expect(sink.about(event.id as string, SLACK)).toHaveLength(2);
    expect(await deadLettersFor(event.id as string)).toEqual([]);
  });
});
