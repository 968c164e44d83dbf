/**
 * What the consumer leaves behind after delivering (defects 8–10 of the
 * delivery-promises issue): follow-ups and dead letters, each message acked or
 * retried on its own outcome; the platform DLQ consumer that never discards;
 * stored bodies that live as long as a delivery may still need them.
 */
import { createExecutionContext, createMessageBatch, getQueueResult, runDurableObjectAlarm, runInDurableObject } from 'cloudflare:test';
import { env } from 'cloudflare:workers';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { DedupLedger } from '../../src/dedup/ledger';
import { ledgerShardOf, ledgerStubByName } from '../../src/dedup/shard';
import type { UnknownEvent } from '../../src/events/catalog';
import { MAX_DELAY_SECONDS } from '../../src/destinations/types';
import { type RouterMessage, QUEUE_MESSAGE_LIMIT, messageBytes } from '../../src/queue/message';
import { retryDelaysOf, routerMessage, runBatch, testEnv } from '../helpers/consumer';
import { deadLettersFor, watchLogs } from '../helpers/observe';
import { sentinelConsumed } from '../helpers/queue-sentinel';
import { Sink } from '../helpers/sink';
import { sampleEvent } from '../helpers/webhook';
import worker from '../../src/index';
import { BIG, CRM, OPS } from './router';

const sink = new Sink();
beforeEach(() => sink.reset().install());
afterEach(() => vi.restoreAllMocks());

type Sent = { body: RouterMessage; delaySeconds?: number };
const sentBy = (spy: { mock: { calls: unknown[][] } }): Sent[] => spy.mock.calls.flatMap((c) => c[0] as Sent[]);

/** This project's `users` route, each destination retried after a second: a follow-up is consumed within the test. */
const USERS = {
  destinations: [
    { name: 'crm', type: 'http', url: CRM, max_attempts: 3, retry_delay_seconds: 1 },
    { name: 'ops', type: 'http', url: OPS, max_attempts: 3, retry_delay_seconds: 1 },
  ],
  rules: [{ name: 'users', events: ['user.*'], to: ['crm', 'ops'] }],
};

function bigEvent(type: string, chars: number): Record<string, unknown> {
  return sampleEvent({ event: type, data: { id: `conn_${crypto.randomUUID()}`, object: 'connection', blob: 'x'.repeat(chars) } });
}

async function ledgerRow(shard: string, id: string): Promise<{ expires_at: number } | undefined> {
  return runInDurableObject(ledgerStubByName(env, shard) as DurableObjectStub<DedupLedger>, (_i, state) =>
    state.storage.sql.exec<{ expires_at: number }>('SELECT expires_at FROM bodies WHERE id = ?', id).toArray()[0],
  );
}

describe('a partly failed flush', () => {
  it('acks the messages whose follow-ups were sent and retries only the one whose chunk failed', async () => {
    // Three ~110 KB events whose "big" delivery fails: their follow-ups take two sendBatch chunks.
    const events = [0, 1, 2].map(() => bigEvent('connection.activated', 110_000));
    sink.on(BIG, () => new Response('busy', { status: 500 }));
    const real = env.EVENTS_QUEUE.sendBatch.bind(env.EVENTS_QUEUE);
    let calls = 0;
    const sendBatch = vi.spyOn(env.EVENTS_QUEUE, 'sendBatch').mockImplementation(async (messages, options) => {
      calls += 1;
      if (calls === 2) throw new Error('queue down'); // the second chunk fails
      return real(messages, options);
    });
    const { batch, result } = await runBatch(events.map((e) => routerMessage(e)), env);
    expect(sendBatch).toHaveBeenCalledTimes(2);
    const firstChunk = (sendBatch.mock.calls[0]?.[0] ?? []) as Sent[];
    const failedChunk = (sendBatch.mock.calls[1]?.[0] ?? []) as Sent[];
    expect(firstChunk.length + failedChunk.length).toBe(3);
    const idOf = (msgId: string) => (batch.messages.find((m) => m.id === msgId)?.body as RouterMessage).id;
    expect(result.explicitAcks.map(idOf).sort()).toEqual(firstChunk.map((s) => s.body.id).sort());
    expect(result.retryMessages.map((r: { msgId: string }) => idOf(r.msgId))).toEqual(failedChunk.map((s) => s.body.id));
  });

  it("the flush's calls come from the service budget, not the HTTP one: three ~110 KB events that fail are each tried once and acked with their follow-up", async () => {
    // HTTP budget 8: the three deliveries. Each failure's follow-up needs up to
    // a sendBatch chunk of its own and a body move to the ledger: calls to
    // Cloudflare services, reserved from the other budget (900 here).
    const router = {
      consumer_subrequest_budget: 8,
      destinations: [{ name: 'big', type: 'http', url: BIG, max_attempts: 3, retry_delay_seconds: 1 }],
      rules: [{ name: 'all', events: ['connection.*'], to: ['big'] }],
    };
    sink.on(BIG, () => new Response('busy', { status: 500 }));
    const events = [0, 1, 2].map(() => bigEvent('connection.activated', 110_000));
    const { result } = await runBatch(events.map((e) => routerMessage(e)), testEnv(router));
    for (const e of events) expect(sink.about(e.id as string, BIG)).toHaveLength(1);
    expect(result.explicitAcks).toHaveLength(3);
    expect(result.retryMessages).toEqual([]);
    // Each failed event has its follow-up (its body inline or moved to the ledger): consumed a second
    // later, it brings the event to big again, whole.
    sink.on(BIG, () => new Response('ok'));
    await sink.until(() => events.every((e) => sink.about(e.id as string, BIG).length === 2), 'each retry at big');
    for (const e of events) expect(sink.about(e.id as string, BIG)[1]?.body === JSON.stringify(e)).toBe(true);
  });
});

describe('stored bodies live as long as a delivery may need them', () => {
  it('a retry scheduled past the body expiry extends it (a 12-hour Retry-After late in a chain)', async () => {
    const event = bigEvent('connection.activated', 1_000);
    const raw = JSON.stringify(event);
    const shard = 'ledger-3';
    const soon = Date.now() + 3_600_000;
    await ledgerStubByName(env, shard).storeBody(event.id as string, raw, soon);
    const msg = routerMessage(event, { body_ref: { shard, until: soon }, pending: { big: { attempts: 1, rules: ['connections'] } } });
    delete msg.body;
    sink.on(BIG, () => new Response('later', { status: 429, headers: { 'Retry-After': String(MAX_DELAY_SECONDS) } }));
    // observed, not stubbed: the follow-up waits 12 hours (MAX_DELAY_SECONDS), so no consumer takes it within the test
    const sendBatch = vi.spyOn(env.EVENTS_QUEUE, 'sendBatch');
    const { result } = await runBatch([msg], env);
    expect(result.explicitAcks).toHaveLength(1);
    const [follow] = sentBy(sendBatch);
    expect(follow?.delaySeconds).toBe(MAX_DELAY_SECONDS);
    const needed = Date.now() + MAX_DELAY_SECONDS * 1000;
    expect(follow?.body.body_ref?.until).toBeGreaterThan(needed);
    expect((await ledgerRow(shard, event.id as string))?.expires_at).toBe(follow?.body.body_ref?.until);
    // The ledger's sweep keeps it.
    await runDurableObjectAlarm(ledgerStubByName(env, shard));
    expect(await ledgerStubByName(env, shard).getBody(event.id as string)).toBe(raw);
  });

  it('a follow-up that would outgrow a queue message moves its body to the ledger', async () => {
    // A message just under the platform limit (it was enqueued), to which the
    // follow-up adds a few bytes (`not_before`, the attempt count): inline, it
    // would be past the limit, and the queue would refuse it.
    const rules = Array.from({ length: 150 }, (_, i) => `a-rather-long-rule-name-to-fill-the-pending-metadata-${i}`);
    const event = bigEvent('connection.activated', 100_000);
    const data = event.data as { blob: string };
    const sized = () => routerMessage(event, { pending: { big: { attempts: 1, rules } } });
    data.blob = 'x'.repeat(data.blob.length + (QUEUE_MESSAGE_LIMIT - 20 - messageBytes(sized())));
    const msg = sized();
    const raw = msg.body as string;
    expect(messageBytes(msg)).toBe(QUEUE_MESSAGE_LIMIT - 20);
    sink.on(BIG, () => new Response('busy', { status: 503 }));
    const { result } = await runBatch([msg], env);
    // Acked: its follow-up was taken by the queue.
    expect(result.explicitAcks).toHaveLength(1);
    expect(await ledgerStubByName(env, ledgerShardOf(event as unknown as UnknownEvent, 16)).getBody(event.id as string)).toBe(raw);
    // Consumed when due (big: retry_delay_seconds = 1), it delivers the body read back from the ledger.
    sink.on(BIG, () => new Response('ok'));
    await sink.until(() => sink.about(event.id as string, BIG).length === 2, 'the retry at big');
    expect(sink.about(event.id as string, BIG)[1]?.body === raw).toBe(true);
  });
});

describe("a batch whose own services fail: retried whole, with waits that grow, leaving nothing behind", () => {
  const storeDown = () => vi.spyOn(env.DEAD_LETTERS, 'get').mockReturnValue({ addShared: () => Promise.reject(new Error('store down')) } as never);

  const runAt = async (e: Record<string, unknown>, attempts: number, runEnv: Env = env) => ({ delays: await retryDelaysOf(routerMessage(e), attempts, runEnv) });

  it('dead letters that cannot be written: no follow-up is sent for the destination still failing (each redelivery started one more retry chain)', async () => {
    const e = sampleEvent({ event: 'user.created' });
    sink.on(CRM, () => new Response('no', { status: 400 })); // permanent: a dead letter
    sink.on(OPS, () => new Response('busy', { status: 503 })); // retryable: a follow-up
    storeDown();
    const logs = watchLogs();
    const runs = [];
    // (ops retried after a second: a follow-up would be consumed within the test.)
    for (const attempts of [1, 2, 3]) runs.push(await runAt(e, attempts, testEnv(USERS)));
    // Both destinations were tried each time (the redelivery runs the deliveries again: at-least-once) …
    expect(sink.about(e.id as string, CRM)).toHaveLength(3);
    expect(sink.about(e.id as string, OPS)).toHaveLength(3);
    expect(logs.records().filter((r) => r.msg === 'dead_letter_store_failed')).toHaveLength(3);
    expect(runs.map((r) => r.delays)).toEqual([[30], [60], [120]]);
    // … but no follow-up was ever sent (ops never had the event again): the platform's retry of the message is the only chain.
    await sentinelConsumed(1);
    expect(sink.about(e.id as string, OPS)).toHaveLength(3);
  });

  it('a follow-up that fails after the dead letters were stored: the redelivery stores them again, and the store keeps one (a duplicate record replayed the event twice)', async () => {
    const e = sampleEvent({ event: 'user.created' });
    sink.on(CRM, () => new Response('no', { status: 400 })); // permanent: a dead letter
    sink.on(OPS, () => new Response('busy', { status: 503 })); // retryable: a follow-up
    const real = env.EVENTS_QUEUE.sendBatch.bind(env.EVENTS_QUEUE);
    let sends = 0;
    vi.spyOn(env.EVENTS_QUEUE, 'sendBatch').mockImplementation(async (messages, options) => {
      if (++sends === 1) throw new Error('queue down'); // the first follow-up fails
      return real(messages, options);
    });
    const body = routerMessage(e);
    const id = `m-${crypto.randomUUID()}`;
    for (const attempts of [1, 2]) {
      // The same platform message, delivered again.
      const batch = createMessageBatch<RouterMessage>('workos-router-events', [{ id, timestamp: new Date(), attempts, body }]);
      const ctx = createExecutionContext();
      await worker.queue(batch as MessageBatch<unknown>, env, ctx);
      const result = await getQueueResult(batch, ctx);
      expect(attempts === 1 ? result.retryMessages.length : result.explicitAcks.length).toBe(1);
    }
    expect(sink.about(e.id as string, CRM)).toHaveLength(2);
    const dead = await deadLettersFor(e.id as string);
    expect(dead.map((d) => [d.destination, d.reason])).toEqual([['crm', 'http_400']]);
  });

  it('a follow-up the queue stored but reported failed: the two retry chains of one acceptance end in one dead letter, not two (a bulk replay delivered it twice)', async () => {
    const e = sampleEvent({ event: 'user.created' });
    sink.on(CRM, () => new Response('busy', { status: 503 })); // retryable, and still failing at the last attempt
    sink.on(OPS, () => new Response(null, { status: 204 }));
    // The last hop of each chain: two follow-ups of the same acceptance (one the queue kept although it reported
    // failure, one the redelivery of the original sent), each a message of its own, at crm's last attempt.
    const hop = routerMessage(e, { pending: { crm: { attempts: 2, rules: ['users'] } } });
    for (const chain of ['kept despite the error', 'sent by the redelivery']) {
      const batch = createMessageBatch<RouterMessage>('workos-router-events', [{ id: `m-${crypto.randomUUID()}`, timestamp: new Date(), attempts: 1, body: { ...hop } }]);
      const ctx = createExecutionContext();
      await worker.queue(batch as MessageBatch<unknown>, testEnv(USERS), ctx);
      expect((await getQueueResult(batch, ctx)).explicitAcks, chain).toHaveLength(1);
    }
    expect(sink.about(e.id as string, CRM)).toHaveLength(2); // each chain tried it (at-least-once)
    const dead = await deadLettersFor(e.id as string);
    expect(dead.map((d) => [d.destination, d.reason])).toEqual([['crm', 'attempts_exhausted: http_503']]);
  });

  it('the waits double from 30 s to 12 hours, so a long outage does not use up the platform\'s 100 tries within the hour', async () => {
    const e = sampleEvent({ event: 'user.created' });
    sink.on(CRM, () => new Response('no', { status: 400 }));
    storeDown();
    const delays: (number | undefined)[] = [];
    for (const attempts of [1, 2, 5, 11, 12, 100]) delays.push(...(await runAt(e, attempts)).delays);
    expect(delays).toEqual([30, 60, 480, 30_720, 43_200, 43_200]);
  });

  it('the destination registry unreachable: every message waits the same growing time, no delivery is tried, and the body kept in the ledger outlives the wait', async () => {
    const e = bigEvent('connection.activated', 150_000);
    const shard = 'ledger-0';
    const until = Date.now() + 60_000;
    await ledgerStubByName(env, shard).storeBody(e.id as string, JSON.stringify(e), until);
    const registryDown = { ...env, DESTINATIONS: { idFromName: () => env.DESTINATIONS.idFromName('x'), get: () => ({ blocked: () => Promise.reject(new Error('registry reset')) }) } } as unknown as Env;
    const logs = watchLogs();
    const batch = createMessageBatch<RouterMessage>('workos-router-events', [
      { id: `m-${crypto.randomUUID()}`, timestamp: new Date(), attempts: 6, body: { ...routerMessage(e), body: undefined, body_ref: { shard, until } } },
    ]);
    const message = batch.messages[0] as Message<RouterMessage>;
    const retry = vi.spyOn(message, 'retry');
    const ctx = createExecutionContext();
    await worker.queue(batch as MessageBatch<unknown>, registryDown, ctx);
    await getQueueResult(batch, ctx);
    expect(retry.mock.calls.map((c) => c[0]?.delaySeconds)).toEqual([960]);
    expect(logs.records().filter((r) => r.msg === 'destination_registry_unavailable')).toHaveLength(1);
    expect(sink.about(e.id as string, BIG)).toEqual([]);
    // Kept through the wait and a day after it.
    expect((await ledgerRow(shard, e.id as string))?.expires_at).toBeGreaterThanOrEqual(Date.now() + 960_000 + 86_400_000);
  });
});

describe('the platform dead-letter queue consumer never discards', () => {
  it('while the dead-letter store is down, a large event\'s body in the ledger is kept through the wait (it expired a day after its last expected use)', async () => {
    const e = bigEvent('connection.activated', 150_000);
    const shard = 'ledger-1';
    await ledgerStubByName(env, shard).storeBody(e.id as string, JSON.stringify(e), Date.now() + 60_000);
    vi.spyOn(env.DEAD_LETTERS, 'get').mockReturnValue({ addShared: () => Promise.reject(new Error('store down')) } as never);
    const message: RouterMessage = { ...routerMessage(e), body: undefined, body_ref: { shard, until: Date.now() + 60_000 }, pending: { big: { attempts: 3, rules: ['connections'] } } };
    const { result } = await runBatch([message], env, 'workos-router-events-dlq', 100);
    expect(result.explicitAcks).toHaveLength(1); // back to the DLQ, in 300 s
    expect((await ledgerRow(shard, e.id as string))?.expires_at).toBeGreaterThanOrEqual(Date.now() + 300_000 + 86_400_000);
  });

  it('when the dead-letter store is down, the batch is re-sent to the DLQ as fresh messages and acked', async () => {
    const e = sampleEvent({ event: 'user.created' });
    vi.spyOn(env.DEAD_LETTERS, 'get').mockReturnValue({ add: () => Promise.reject(new Error('store down')) } as never);
    // observed, not stubbed: the re-sent message waits 300 s in the DLQ, so no consumer takes it within the test
    const dlqSend = vi.spyOn(env.EVENTS_DLQ, 'sendBatch');
    const { batch, result } = await runBatch([routerMessage(e)], env, 'workos-router-events-dlq', 100);
    expect(result.explicitAcks).toEqual(batch.messages.map((m) => m.id));
    const resent = sentBy(dlqSend);
    expect(resent.map((m) => m.body.id)).toEqual([e.id]);
    expect(resent[0]?.delaySeconds).toBe(300);
  });

  it('when the DLQ cannot take them back either, each message is retried (not acked)', async () => {
    const e = sampleEvent({ event: 'user.created' });
    vi.spyOn(env.DEAD_LETTERS, 'get').mockReturnValue({ add: () => Promise.reject(new Error('store down')) } as never);
    vi.spyOn(env.EVENTS_DLQ, 'sendBatch').mockRejectedValue(new Error('queue down'));
    const { batch, result } = await runBatch([routerMessage(e)], env, 'workos-router-events-dlq', 100);
    expect(result.ackAll).toBe(false);
    expect(result.explicitAcks).toEqual([]);
    expect(result.retryMessages.map((r: { msgId: string }) => r.msgId)).toEqual(batch.messages.map((m) => m.id));
  });

  it('the waits between those tries double from a minute up to 12 hours, so the platform\'s 100 tries span weeks, not 100 minutes', async () => {
    const e = sampleEvent({ event: 'user.created' });
    vi.spyOn(env.DEAD_LETTERS, 'get').mockReturnValue({ add: () => Promise.reject(new Error('store down')) } as never);
    vi.spyOn(env.EVENTS_DLQ, 'sendBatch').mockRejectedValue(new Error('queue down'));
    const delays: (number | undefined)[] = [];
    for (const attempts of [1, 2, 3, 10, 11, 100]) {
      const batch = createMessageBatch<RouterMessage>('workos-router-events-dlq', [{ id: `dlq-${attempts}`, timestamp: new Date(), attempts, body: routerMessage(e) }]);
      const message = batch.messages[0] as Message<RouterMessage>;
      // The platform's message, observed: what the consumer asks of it.
      const retry = vi.spyOn(message, 'retry');
      const ctx = createExecutionContext();
      await worker.queue(batch as MessageBatch<unknown>, env, ctx);
      await getQueueResult(batch, ctx);
      delays.push(...retry.mock.calls.map((c) => c[0]?.delaySeconds));
    }
    expect(delays).toEqual([60, 120, 240, 30_720, 43_200, 43_200]);
  });

  it('a batch of large events goes back in chunks a sendBatch takes, every message acked', async () => {
    // Three inline events of ~100 KB each: together more than one sendBatch may carry. The local queue
    // refuses a larger call, as the platform does: a message is acked only once its chunk was taken.
    const events = [0, 1, 2].map(() => bigEvent('connection.activated', 100_000));
    vi.spyOn(env.DEAD_LETTERS, 'get').mockReturnValue({ add: () => Promise.reject(new Error('store down')) } as never);
    const { batch, result } = await runBatch(events.map((e) => routerMessage(e)), env, 'workos-router-events-dlq', 100);
    expect(result.explicitAcks.sort()).toEqual(batch.messages.map((m) => m.id).sort());
    expect(result.retryMessages).toEqual([]);
  });

});

describe('follow-ups for a destination that succeeded are never written', () => {
  it('one follow-up per event, carrying only the failed destinations', async () => {
    const e = sampleEvent({ event: 'user.created' });
    sink.on(CRM, () => new Response('busy', { status: 500 }));
    await runBatch([routerMessage(e)], testEnv(USERS));
    // Its follow-up, consumed a second later, brings the event to crm again; once a later message was
    // consumed, crm had it just twice (one follow-up) and ops, which succeeded, once.
    sink.on(CRM, () => new Response('ok'));
    await sink.until(() => sink.about(e.id as string, CRM).length >= 2, 'the retry at crm');
    await sentinelConsumed(1);
    expect(sink.about(e.id as string, CRM)).toHaveLength(2);
    expect(sink.about(e.id as string, OPS)).toHaveLength(1);
    expect(await deadLettersFor(e.id as string)).toEqual([]);
  });
});
