/**
 * Bulk replay through the real queue: dead letters of several destinations,
 * `POST /admin/dead-letters/replay` by destination → router queue → the
 * Worker's own consumer → each destination (the fetch sink). Every replayed
 * event arrives once, only where its record says; the records not matched
 * stay; a retried request (same Idempotency-Key) delivers nothing again.
 * Absence is checked only after a later sentinel event has arrived.
 */
import { runDurableObjectAlarm } from 'cloudflare:test';
import { env, exports } from 'cloudflare:workers';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { DeadLetterJob } from '../../src/admin/bulk';
import { RECONCILE_ENQUEUE_FAILED, ROUTER_DESTINATION, deadLetterRecord, deadLetterStub } from '../../src/deadletters/store';
import { deadLettersFor } from '../helpers/observe';
import { Sink } from '../helpers/sink';
import { URL_BASE, postWebhook, sampleEvent } from '../helpers/webhook';
import { BIG, CRM, OPS, WAREHOUSE } from './router';

const sink = new Sink();
beforeEach(() => sink.reset().install());
afterEach(() => vi.restoreAllMocks());

const DESTINATION_URLS = [BIG, CRM, OPS, WAREHOUSE];

interface BulkResponse {
  matched: number;
  replayed: number;
  failed: number;
  repeated?: true;
  job: DeadLetterJob;
}

function bulk(action: 'replay' | 'discard', body: unknown, headers: Record<string, string> = {}): Promise<Response> {
  return exports.default.fetch(
    new Request(`${URL_BASE}/admin/dead-letters/${action}`, { method: 'POST', headers: { Authorization: 'Bearer test-admin-token', ...headers }, body: JSON.stringify(body) }),
  );
}

/** A reason of this test's own: the store is shared, so every filter names it. */
function newTag(): string {
  return `bulk_${crypto.randomUUID().replace(/-/g, '').slice(0, 12)}`;
}

/** An event of a type the delivery ROUTER sends to `destination`, dead-lettered for it with `reason`. */
function deadLetter(destination: 'big' | 'crm' | 'ops' | 'warehouse', reason: string) {
  const event =
    destination === 'big'
      ? sampleEvent({ event: 'connection.activated', data: { id: `conn_${crypto.randomUUID()}`, object: 'connection' } })
      : destination === 'warehouse'
        ? sampleEvent({ event: 'organization_domain.verified', data: { id: `org_domain_${crypto.randomUUID()}`, object: 'organization_domain' } })
        : sampleEvent({ event: 'user.created', data: { id: `user_${crypto.randomUUID()}`, object: 'user' } });
  const rules = { big: 'connections', warehouse: 'domains', crm: 'users', ops: 'users' }[destination];
  const record = deadLetterRecord({
    event_id: event.id as string,
    event_type: event.event as string,
    destination,
    rules: [rules],
    reason,
    last_status: 500,
    attempts: 3,
    body: JSON.stringify(event),
  });
  return { id: event.id as string, raw: JSON.stringify(event), record };
}

/** Every destination request about this event, by URL. */
function arrivals(id: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const url of DESTINATION_URLS) {
    const n = sink.about(id, url).length;
    if (n > 0) out[url] = n;
  }
  return out;
}

/** A later event reached `big`: everything enqueued before it has been consumed. */
async function drained(): Promise<void> {
  const sentinel = sampleEvent({ event: 'connection.activated', data: { id: `conn_${crypto.randomUUID()}`, object: 'connection' } });
  expect((await postWebhook(sentinel)).status).toBe(200);
  await sink.until(() => sink.about(sentinel.id as string, BIG).length === 1, 'the sentinel event', 20_000);
}

async function finished(id: string): Promise<DeadLetterJob> {
  const store = deadLetterStub(env);
  const deadline = Date.now() + 20_000;
  for (;;) {
    const job = await store.job(id);
    if (job !== null && job.state !== 'running') return job;
    if (Date.now() > deadline) throw new Error(`job ${id} still running`);
    await runDurableObjectAlarm(store);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('bulk replay through the real queue', () => {
  it('by destination: each matching dead letter reaches its destination once; the rest stay; the same Idempotency-Key delivers nothing again', async () => {
    const tag = newTag();
    const toBig = [deadLetter('big', tag), deadLetter('big', tag), deadLetter('big', tag)];
    const toCrm = [deadLetter('crm', tag), deadLetter('crm', tag)];
    const toOps = [deadLetter('ops', tag)];
    const toWarehouse = [deadLetter('warehouse', tag)];
    await deadLetterStub(env).add([...toBig, ...toCrm, ...toOps, ...toWarehouse].map((d) => d.record));

    const key = crypto.randomUUID();
    const res = await bulk('replay', { filter: { destination: 'big', reason: tag } }, { 'Idempotency-Key': key });
    expect(res.status).toBe(200);
    const first = (await res.json()) as BulkResponse;
    expect(first).toMatchObject({ matched: 3, replayed: 3, failed: 0, job: { state: 'done', done: 3 } });
    for (const d of toBig) expect(await deadLettersFor(d.id)).toEqual([]);

    await sink.until(() => toBig.every((d) => sink.about(d.id, BIG).length > 0), 'the replayed events at big');
    // Records of other destinations are not touched: still there, nothing delivered for them.
    for (const d of [...toCrm, ...toOps, ...toWarehouse]) expect((await deadLettersFor(d.id)).map((r) => r.destination)).toEqual([d.record.destination]);

    // The request is retried (same key), after one more dead letter for big appeared: same job, nothing new.
    const later = deadLetter('big', tag);
    await deadLetterStub(env).add([later.record]);
    const again = await bulk('replay', { filter: { destination: 'big', reason: tag } }, { 'Idempotency-Key': key });
    expect(again.status).toBe(200);
    expect(await again.json()).toEqual({ ...first, repeated: true });

    await drained();
    for (const d of toBig) {
      expect(arrivals(d.id)).toEqual({ [BIG]: 1 });
      expect(sink.about(d.id, BIG)[0]?.body === d.raw).toBe(true); // the original bytes
    }
    for (const d of [later, ...toCrm, ...toOps, ...toWarehouse]) expect(arrivals(d.id)).toEqual({});
    expect((await deadLettersFor(later.id)).map((r) => r.destination)).toEqual(['big']);

    // Another destination by its own filter: its events arrive there only (not at ops, which the rules also name for users).
    const crm = await bulk('replay', { filter: { destination: 'crm', reason: tag } });
    expect(await crm.json()).toMatchObject({ matched: 2, replayed: 2 });
    await sink.until(() => toCrm.every((d) => sink.about(d.id, CRM).length > 0), 'the replayed events at crm');
    await drained();
    for (const d of toCrm) expect(arrivals(d.id)).toEqual({ [CRM]: 1 });
    for (const d of [...toBig, ...toOps, ...toWarehouse]) expect(arrivals(d.id)).toEqual(d.record.destination === 'big' ? { [BIG]: 1 } : {});
    for (const d of [...toOps, ...toWarehouse, later]) expect(await deadLettersFor(d.id)).toHaveLength(1);

    await bulk('discard', { filter: { reason: tag } });
  });

  it('a set larger than a slice: 202, the store alarm replays the rest; every event arrives once', async () => {
    const tag = newTag();
    const records = Array.from({ length: 70 }, () => deadLetter('big', tag));
    const bystander = deadLetter('warehouse', tag);
    await deadLetterStub(env).add([...records, bystander].map((d) => d.record));
    const res = await bulk('replay', { filter: { destination: 'big', reason: tag } }, { 'Idempotency-Key': crypto.randomUUID() });
    expect(res.status).toBe(202);
    const body = (await res.json()) as BulkResponse;
    expect(body.job).toMatchObject({ state: 'running', matched: 70 });
    expect(body.replayed).toBeLessThan(70);
    expect(await finished(body.job.id)).toMatchObject({ state: 'done', matched: 70, done: 70, failed: 0 });
    await sink.until(() => records.every((d) => sink.about(d.id, BIG).length > 0), 'all 70 events at big', 25_000);
    await drained();
    for (const d of records) expect(arrivals(d.id), d.id).toEqual({ [BIG]: 1 });
    expect(arrivals(bystander.id)).toEqual({});
    expect((await deadLettersFor(bystander.id)).map((r) => r.destination)).toEqual(['warehouse']);
    await bulk('discard', { filter: { reason: tag } });
  });

  it('records the router could not route are routed by the rules now; events reconciliation could not enqueue are admitted once', async () => {
    const since = new Date(Date.now() - 1).toISOString();
    const routed = sampleEvent({ event: 'connection.deactivated', data: { id: `conn_${crypto.randomUUID()}`, object: 'connection' } });
    const fresh = sampleEvent({ event: 'connection.deleted', data: { id: `conn_${crypto.randomUUID()}`, object: 'connection' } });
    const arrived = sampleEvent({ event: 'connection.deleted', data: { id: `conn_${crypto.randomUUID()}`, object: 'connection' } });
    expect((await postWebhook(arrived)).status).toBe(200); // the webhook came after all
    await sink.until(() => sink.about(arrived.id as string, BIG).length === 1, 'the webhook at big');
    const tag = newTag();
    await deadLetterStub(env).add([
      deadLetterRecord({ event_id: routed.id as string, event_type: 'connection.deactivated', destination: ROUTER_DESTINATION, reason: `${tag}_body_expired`, body: JSON.stringify(routed) }),
      ...[fresh, arrived].map((e) =>
        deadLetterRecord({ event_id: e.id as string, event_type: 'connection.deleted', destination: ROUTER_DESTINATION, reason: RECONCILE_ENQUEUE_FAILED, body: JSON.stringify(e), source: 'reconcile' }),
      ),
    ]);
    const first = await bulk('replay', { filter: { destination: ROUTER_DESTINATION, reason: `${tag}_*` } });
    expect(await first.json()).toMatchObject({ matched: 1, replayed: 1 });
    const second = await bulk('replay', { filter: { destination: ROUTER_DESTINATION, reason: RECONCILE_ENQUEUE_FAILED, event_type: 'connection.deleted', since } });
    expect(await second.json()).toMatchObject({ replayed: 2, failed: 0 });
    await sink.until(() => sink.about(routed.id as string, BIG).length > 0 && sink.about(fresh.id as string, BIG).length > 0, 'the replays at big');
    await drained();
    expect(arrivals(routed.id as string)).toEqual({ [BIG]: 1 });
    expect(arrivals(fresh.id as string)).toEqual({ [BIG]: 1 });
    expect(arrivals(arrived.id as string)).toEqual({ [BIG]: 1 }); // the webhook's delivery only: the replay was a duplicate
    for (const e of [routed, fresh, arrived]) expect(await deadLettersFor(e.id as string)).toEqual([]);
  });
});
