/**
 * Defect 6 of the delivery-promises issue: dead letters written from the
 * platform dead-letter queue were recorded as `destination: "(all)"` or
 * `"a,b"`, and large events with the `{"body_ref":…}` reference as their
 * body, so a replay delivered nothing or POSTed the reference. The round trip
 * here is the real one: platform DLQ → DLQ consumer → store → admin replay →
 * router queue → consumer → destination.
 */
import { env, exports } from 'cloudflare:workers';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { RECONCILE_ENQUEUE_FAILED, ROUTER_DESTINATION, deadLetterRecord, deadLetterStub } from '../../src/deadletters/store';
import { ledgerShardOf, ledgerStubByName } from '../../src/dedup/shard';
import type { UnknownEvent } from '../../src/events/catalog';
import { lookupEvent } from '../../src/trace/client';
import { routerMessage } from '../helpers/consumer';
import { deadLettersFor, watchLogs } from '../helpers/observe';
import { Sink } from '../helpers/sink';
import { until } from '../helpers/until';
import { URL_BASE, postWebhook, sampleEvent } from '../helpers/webhook';
import { BIG } from './router';

const sink = new Sink();
beforeEach(() => sink.reset().install());
afterEach(() => vi.restoreAllMocks());

function admin(path: string, method = 'POST'): Promise<Response> {
  return exports.default.fetch(new Request(`${URL_BASE}/admin${path}`, { method, headers: { Authorization: 'Bearer test-admin-token' } }));
}

async function waitForDeadLetters(id: string, n: number) {
  await until(async () => (await deadLettersFor(id)).length >= n, `${n} dead letters of ${id}`, 20_000, 200);
  return deadLettersFor(id);
}

/** A later event reached `big`: everything enqueued before it has been consumed. */
async function drained(): Promise<void> {
  const sentinel = sampleEvent({ event: 'connection.activated', data: { id: `conn_${crypto.randomUUID()}`, object: 'connection' } });
  expect((await postWebhook(sentinel)).status).toBe(200);
  await sink.until(() => sink.about(sentinel.id as string, BIG).length === 1, 'the sentinel event');
}

function largeEvent(type: string): { event: Record<string, unknown>; raw: string } {
  const event = sampleEvent({ event: type, data: { id: `conn_${crypto.randomUUID()}`, object: 'connection', blob: 'q"\\'.repeat(70_000) } });
  return { event, raw: JSON.stringify(event) };
}

describe('platform DLQ → dead-letter store → replay', () => {
  it('a large event owed to one destination: one record with the real body; its replay delivers the original bytes once', async () => {
    const { event, raw } = largeEvent('connection.activated');
    const id = event.id as string;
    const shard = 'ledger-5';
    await ledgerStubByName(env, shard).storeBody(id, raw, Date.now() + 86_400_000);
    const message = routerMessage(event, { body_ref: { shard }, pending: { big: { attempts: 2, rules: ['connections'] } }, stale: true });
    delete message.body;
    await env.EVENTS_DLQ.send(message, { contentType: 'json' });

    const [record] = await waitForDeadLetters(id, 1);
    expect(record).toMatchObject({ destination: 'big', rules: ['connections'], reason: 'consumer_retries_exhausted', stale: true, source: 'webhook' });
    const res = await admin(`/dead-letters/${record?.seq}/replay`);
    expect(res.status).toBe(200);
    await sink.until(() => sink.about(id, BIG).length > 0, 'the replayed event at big');
    await drained();
    const got = sink.about(id, BIG);
    expect(got).toHaveLength(1);
    expect(got[0]?.body === raw).toBe(true);
    expect(got[0]?.headers.get('x-workos-event')).toBe('connection.activated');
    expect(got[0]?.headers.get('x-workos-stale')).toBe('true'); // replay keeps the stale mark
    expect(got[0]?.headers.get('x-workos-replay')).toBe('true');
    expect(await deadLettersFor(id)).toEqual([]);
  });

  it('a first delivery that never happened: one record per destination its rules name, each replayable', async () => {
    const event = sampleEvent({ event: 'api_key.created', data: { id: `api_key_${crypto.randomUUID()}`, object: 'api_key' } });
    const id = event.id as string;
    await env.EVENTS_DLQ.send(routerMessage(event, { source: 'reconcile' }), { contentType: 'json' });
    const records = await waitForDeadLetters(id, 2);
    expect(records.map((r) => r.destination).sort()).toEqual(['audit', 'big']);
    for (const r of records) expect(r).toMatchObject({ rules: ['api-keys'], source: 'reconcile' });
    const toBig = records.find((r) => r.destination === 'big');
    expect((await admin(`/dead-letters/${toBig?.seq}/replay`)).status).toBe(200);
    await sink.until(() => sink.about(id, BIG).length > 0, 'the replayed event at big');
    await drained();
    expect(sink.about(id, BIG)).toHaveLength(1);
    expect(sink.about(id, BIG)[0]?.body).toBe(JSON.stringify(event));
    // The other record stays until it is replayed or deleted.
    expect((await deadLettersFor(id)).map((r) => r.destination)).toEqual(['audit']);
  });

  it('a record the router could not route is routed by the rules in force when replayed', async () => {
    const event = sampleEvent({ event: 'connection.deactivated', data: { id: `conn_${crypto.randomUUID()}`, object: 'connection' } });
    const id = event.id as string;
    await deadLetterStub(env).add([deadLetterRecord({ event_id: id, event_type: 'connection.deactivated', destination: ROUTER_DESTINATION, reason: 'consumer_retries_exhausted', body: JSON.stringify(event), source: 'reconcile' })]);
    const [record] = await deadLettersFor(id);
    // big refuses it for good: the replay's own dead letter shows how the consumer took it.
    sink.on(BIG, (_req, r) => new Response(null, { status: r.headers.get('x-workos-event-id') === id ? 410 : 200 }));
    expect((await admin(`/dead-letters/${record?.seq}/replay`)).status).toBe(200);
    await sink.until(() => sink.about(id, BIG).length === 1, 'the routed replay at big');
    // Routed by the rules in force (big, by "connections"), with its source kept.
    const [again] = await waitForDeadLetters(id, 1);
    expect(again).toMatchObject({ destination: 'big', rules: ['connections'], reason: 'http_410', source: 'reconcile' });
  });

  it('an event reconciliation could never enqueue is replayed through the dedup ledger: delivered once, or not again if it arrived meanwhile', async () => {
    const fresh = sampleEvent({ event: 'connection.deleted', data: { id: `conn_${crypto.randomUUID()}`, object: 'connection' } });
    const arrived = sampleEvent({ event: 'connection.deleted', data: { id: `conn_${crypto.randomUUID()}`, object: 'connection' } });
    expect((await postWebhook(arrived)).status).toBe(200); // the webhook came after all
    for (const e of [fresh, arrived]) {
      await deadLetterStub(env).add([
        deadLetterRecord({ event_id: e.id as string, event_type: 'connection.deleted', destination: ROUTER_DESTINATION, reason: RECONCILE_ENQUEUE_FAILED, body: JSON.stringify(e), source: 'reconcile' }),
      ]);
    }
    const [freshRecord] = await deadLettersFor(fresh.id as string);
    const [arrivedRecord] = await deadLettersFor(arrived.id as string);
    const replayed = await admin(`/dead-letters/${freshRecord?.seq}/replay`);
    expect(replayed.status).toBe(200);
    expect(((await replayed.json()) as { status: string }).status).toBe('replayed');
    const duplicate = await admin(`/dead-letters/${arrivedRecord?.seq}/replay`);
    expect(duplicate.status).toBe(200);
    expect(((await duplicate.json()) as { status: string }).status).toBe('duplicate');
    await sink.until(() => sink.about(fresh.id as string, BIG).length === 1 && sink.about(arrived.id as string, BIG).length === 1, 'both at big');
    await drained();
    expect(sink.about(fresh.id as string, BIG)).toHaveLength(1);
    expect(sink.about(arrived.id as string, BIG)).toHaveLength(1);
    expect(await deadLettersFor(fresh.id as string)).toEqual([]);
    expect(await deadLettersFor(arrived.id as string)).toEqual([]);
  });

  it('a single replay through the admin API logs dead_letter_replayed (audit: true) with its seq, event id, destination and status', async () => {
    const event = sampleEvent({ event: 'connection.activated', data: { id: `conn_${crypto.randomUUID()}`, object: 'connection' } });
    const id = event.id as string;
    await deadLetterStub(env).add([deadLetterRecord({ event_id: id, event_type: 'connection.activated', destination: 'big', rules: ['connections'], reason: 'http_503', body: JSON.stringify(event) })]);
    const [record] = await deadLettersFor(id);
    const logs = watchLogs();
    const res = await admin(`/dead-letters/${record?.seq}/replay`);
    expect(res.status).toBe(200);
    expect(((await res.json()) as { status: string }).status).toBe('replayed');
    await sink.until(() => sink.about(id, BIG).length === 1, 'the replayed event at big');
    expect(logs.records().filter((r) => r.msg === 'dead_letter_replayed' && r.event_id === id)).toEqual([
      { level: 'info', msg: 'dead_letter_replayed', audit: true, seq: record?.seq, event_id: id, destination: 'big', status: 'replayed' },
    ]);
  });

  it('a record without a body cannot be replayed: 409 not_replayable, and it is kept', async () => {
    const id = sampleEvent().id as string;
    await deadLetterStub(env).add([deadLetterRecord({ event_id: id, event_type: 'user.created', destination: ROUTER_DESTINATION, reason: 'body_expired', body: '' })]);
    const [record] = await deadLettersFor(id);
    const res = await admin(`/dead-letters/${record?.seq}/replay`);
    expect(res.status).toBe(409);
    expect(((await res.json()) as { error: string }).error).toBe('not_replayable');
    expect((await deadLettersFor(id)).map((r) => r.seq)).toEqual([record?.seq]);
  });

  it('a record keeps the ledger shard that admitted its event, and its replay is traced there (where the body is), not under the current count', async () => {
    let event: Record<string, unknown>;
    do event = sampleEvent({ event: 'connection.activated', data: { id: `conn_${crypto.randomUUID()}`, object: 'connection' } });
    while (ledgerShardOf(event as unknown as UnknownEvent, 16) === 'ledger-5');
    const id = event.id as string;
    await env.EVENTS_DLQ.send(routerMessage(event, { ledger_shard: 'ledger-5', pending: { big: { attempts: 3, rules: ['connections'] } } }), { contentType: 'json' });
    const [record] = await waitForDeadLetters(id, 1);
    expect(record).toMatchObject({ destination: 'big', reason: 'consumer_retries_exhausted', ledger_shard: 'ledger-5' });
    expect((await admin(`/dead-letters/${record?.seq}/replay`)).status).toBe(200);
    await sink.until(() => sink.about(id, BIG).length === 1, 'the replayed event at big');
    const settings = { traceRetentionDays: 7, traceShards: 1 };
    // The dead-letter consumer traces the record after storing it; the replay is traced by its own batch.
    const both = async () => {
      const items = await lookupEvent(env, settings, id);
      return items.some((i) => i.source === 'webhook') && items.some((i) => i.source === 'replay' && i.deliveries.some((d) => d.state === 'delivered'));
    };
    await until(both, 'the dead letter and the replay traced');
    const items = await lookupEvent(env, settings, id);
    expect(items.map((i) => [i.source, i.body_shard])).toEqual([
      ['webhook', 'ledger-5'],
      ['replay', 'ledger-5'],
    ]);
  });

  it('one event of 1.8 MB (3.6 MB as the runtime sends it) owed to twenty destinations: its records share one body in the call, and are stored', async () => {
    const names = Array.from({ length: 20 }, (_, i) => `d${i + 1}`);
    const owed = Object.fromEntries(names.map((n) => [n, { attempts: 3, rules: ['all'] }]));
    // One character outside Latin-1, so the runtime serialises every character in two bytes: 3.6 MB a copy,
    // twenty copies 72 MB (its UTF-8 text, 1.8 MB, stays within what SQLite stores in one value).
    const event = sampleEvent({ event: 'connection.activated', data: { id: `conn_${crypto.randomUUID()}`, object: 'connection', blob: `${'x'.repeat(1_800_000)}€` } });
    const shard = 'ledger-3';
    await ledgerStubByName(env, shard).storeBody(event.id as string, JSON.stringify(event), Date.now() + 86_400_000);
    const message = routerMessage(event, { body_ref: { shard }, pending: owed });
    delete message.body;
    await env.EVENTS_DLQ.send(message, { contentType: 'json' });
    const records = await waitForDeadLetters(event.id as string, 20);
    expect(records.map((r) => r.destination).sort()).toEqual([...names].sort());
    const [first] = records;
    const taken = await deadLetterStub(env).take(first?.seq as number);
    expect(taken?.body === JSON.stringify(event)).toBe(true);
  });

  it('a batch the platform gave up on whose records are too large for one call (36 MB) is stored in several, every record kept', async () => {
    const owed = Object.fromEntries(['d1', 'd2', 'd3', 'd4', 'd5', 'd6'].map((n) => [n, { attempts: 3, rules: ['all'] }]));
    const events = Array.from({ length: 4 }, (_, i) =>
      sampleEvent({ event: 'connection.activated', data: { id: `conn_${crypto.randomUUID()}`, object: 'connection', blob: String(i).repeat(1_500_000) } }),
    );
    for (const event of events) {
      const shard = 'ledger-3';
      await ledgerStubByName(env, shard).storeBody(event.id as string, JSON.stringify(event), Date.now() + 86_400_000);
      const message = routerMessage(event, { body_ref: { shard }, pending: owed });
      delete message.body;
      await env.EVENTS_DLQ.send(message, { contentType: 'json' });
    }
    for (const event of events) {
      const records = await waitForDeadLetters(event.id as string, 6);
      expect(records.map((r) => [r.destination, r.reason]).sort()).toEqual(Object.keys(owed).map((n) => [n, 'consumer_retries_exhausted']));
    }
  });
});
