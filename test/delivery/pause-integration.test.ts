/**
 * Pause and resume (console issue): while a destination is paused nothing
 * reaches it, its deliveries are held in storage — attempts not consumed,
 * nothing dead-lettered — past the queue's 12-hour limit; on resume each is
 * delivered once.
 */
import { runDurableObjectAlarm, runInDurableObject } from 'cloudflare:test';
import { env, exports } from 'cloudflare:workers';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { deadLetterStub } from '../../src/deadletters/store';
import { ledgerShardOf } from '../../src/dedup/shard';
import type { UnknownEvent } from '../../src/events/catalog';
import { EXPIRE_SLICE_BYTES, type HeldDeliveries, heldStub } from '../../src/destinations/held';
import { routerMessage, runBatch } from '../helpers/consumer';
import { deadLettersFor } from '../helpers/observe';
import { Sink } from '../helpers/sink';
import { until } from '../helpers/until';
import { URL_BASE, postWebhook, sampleEvent } from '../helpers/webhook';
import { BIG, WAREHOUSE } from './router';

const sink = new Sink();
beforeEach(() => sink.reset().install());
afterEach(() => vi.restoreAllMocks());

const HOUR = 3_600_000;

function admin(path: string, method = 'POST', token = 'test-admin-token'): Promise<Response> {
  return exports.default.fetch(new Request(`${URL_BASE}/admin${path}`, { method, headers: { Authorization: `Bearer ${token}` } }));
}

interface DestinationItem {
  name: string;
  state: string;
  held: number;
  dead_letters: number;
  last_success_at: string | null;
}

async function destination(name: string): Promise<DestinationItem> {
  const res = await admin('/destinations', 'GET');
  expect(res.status).toBe(200);
  const { items } = (await res.json()) as { items: DestinationItem[] };
  return items.find((i) => i.name === name) as DestinationItem;
}

function domainEvent(): Record<string, unknown> {
  return sampleEvent({ event: 'organization_domain.verified', data: { id: `org_domain_${crypto.randomUUID()}`, object: 'organization_domain', domain: 'acme.test' } });
}

async function sentinel(): Promise<void> {
  const s = sampleEvent({ event: 'connection.activated', data: { id: `conn_${crypto.randomUUID()}`, object: 'connection' } });
  expect((await postWebhook(s)).status).toBe(200);
  await sink.until(() => sink.about(s.id as string, BIG).length === 1, 'the sentinel at big');
}

const held = () => heldStub(env, 'warehouse') as DurableObjectStub<HeldDeliveries>;

describe('pause and resume', () => {
  it('holds every delivery while paused (past 12 hours, attempts untouched) and delivers each once on resume', async () => {
    const paused = await admin('/destinations/warehouse/pause');
    expect(paused.status).toBe(200);
    expect(await paused.json()).toMatchObject({ name: 'warehouse', state: 'paused' });
    expect((await destination('warehouse')).state).toBe('paused');

    const before = await held().count();
    const events = Array.from({ length: 5 }, domainEvent);
    for (const e of events) expect((await postWebhook(e)).status).toBe(200);
    // A retry already made twice, arriving while paused.
    const retried = domainEvent();
    await runBatch([routerMessage(retried, { pending: { warehouse: { attempts: 2, rules: ['domains'] } } })], env);
    await until(async () => (await held().count()) >= before + 6, 'six deliveries held');
    expect(await held().count()).toBe(before + 6);
    await sentinel();
    expect(sink.received.filter((r) => r.url === WAREHOUSE)).toEqual([]);
    expect((await destination('warehouse')).held).toBe(before + 6);

    // 13 hours later (longer than any queue delay): still held, nothing dead-lettered.
    await runInDurableObject(held(), (_i, state) => {
      state.storage.sql.exec('UPDATE held SET held_at = held_at - ?, accepted_at = accepted_at - ?', 13 * HOUR, 13 * HOUR);
    });
    await runDurableObjectAlarm(held());
    expect(await held().count()).toBe(before + 6);
    for (const e of [...events, retried]) expect(await deadLettersFor(e.id as string)).toEqual([]);

    // The retried one fails once more after resume: with its attempts kept (2 of 3), that is its last.
    sink.on(WAREHOUSE, (req) => new Response(null, { status: req.headers.get('x-workos-event-id') === retried.id ? 500 : 204 }));
    const resumed = await admin('/destinations/warehouse/resume');
    expect(resumed.status).toBe(200);
    expect(await resumed.json()).toMatchObject({ name: 'warehouse', state: 'active', held: before + 6 });
    for (let i = 0; i < 5 && (await held().count()) > 0; i++) await runDurableObjectAlarm(held());
    await sink.until(() => events.every((e) => sink.about(e.id as string, WAREHOUSE).length === 1), 'the held events at warehouse');
    await sink.until(() => sink.about(retried.id as string, WAREHOUSE).length === 1, 'the retried event at warehouse');
    await sentinel();
    for (const e of events) expect(sink.about(e.id as string, WAREHOUSE)).toHaveLength(1);
    await until(async () => (await deadLettersFor(retried.id as string)).length > 0, 'the retried delivery dead-lettered');
    expect(await deadLettersFor(retried.id as string)).toMatchObject([{ destination: 'warehouse', attempts: 3, last_status: 500 }]);
    const after = await destination('warehouse');
    expect(after).toMatchObject({ state: 'active', held: 0 });
    expect(after.last_success_at).not.toBeNull();
  });

  it('deliveries held longer than 14 days go to dead letters (held_too_long), replayable', async () => {
    expect((await admin('/destinations/warehouse/pause')).status).toBe(200);
    const e = domainEvent();
    expect((await postWebhook(e)).status).toBe(200);
    const has = async () =>
      runInDurableObject(held(), (_i, state) => state.storage.sql.exec('SELECT 1 FROM held WHERE event_id = ?', e.id as string).toArray().length > 0);
    await until(has, 'the delivery held');
    // It keeps the ledger shard that admitted the event (where its body is), for when it goes back on the queue.
    const kept = await runInDurableObject(held(), (_i, state) =>
      state.storage.sql.exec<{ ledger_shard: string | null }>('SELECT ledger_shard FROM held WHERE event_id = ?', e.id as string).one(),
    );
    expect(kept.ledger_shard).toBe(ledgerShardOf(e as unknown as UnknownEvent, 16));
    await runInDurableObject(held(), (_i, state) => {
      state.storage.sql.exec('UPDATE held SET held_at = held_at - ? WHERE event_id = ?', 15 * 24 * HOUR, e.id as string);
    });
    await runDurableObjectAlarm(held());
    expect(await has()).toBe(false);
    expect(await deadLettersFor(e.id as string)).toMatchObject([{ destination: 'warehouse', reason: 'held_too_long', rules: ['domains'] }]);
    expect((await admin('/destinations/warehouse/resume')).status).toBe(200);
  });

  it("an operator's replay of an event already held is not absorbed: the held delivery becomes the replay (fresh attempts, X-WorkOS-Replay), delivered once on resume", async () => {
    expect((await admin('/destinations/warehouse/pause')).status).toBe(200);
    const e = domainEvent();
    // Already tried twice when it was held.
    await runBatch([routerMessage(e, { pending: { warehouse: { attempts: 2, rules: ['domains'] } } })], env);
    const row = async () =>
      runInDurableObject(held(), (_i, state) =>
        state.storage.sql.exec<{ attempts: number; replay: number | null }>('SELECT attempts, replay FROM held WHERE event_id = ?', e.id as string).toArray(),
      );
    expect(await row()).toEqual([{ attempts: 2, replay: null }]);
    // The operator replays it to warehouse (a dead-letter or event replay), still paused.
    await runBatch([routerMessage(e, { replay: true, pending: { warehouse: { attempts: 0, rules: ['domains'] } } })], env);
    expect(await row()).toEqual([{ attempts: 0, replay: 1 }]);
    sink.on(WAREHOUSE, () => new Response(null, { status: 204 }));
    expect((await admin('/destinations/warehouse/resume')).status).toBe(200);
    for (let i = 0; i < 5 && (await held().count()) > 0; i++) await runDurableObjectAlarm(held());
    await sink.until(() => sink.about(e.id as string, WAREHOUSE).length === 1, 'the replay at warehouse');
    await sentinel();
    const got = sink.about(e.id as string, WAREHOUSE);
    expect(got).toHaveLength(1);
    expect(got[0]?.headers.get('x-workos-replay')).toBe('true');
  });

  it('large held deliveries expire in slices the dead-letter store can take in one call each', async () => {
    const store = heldStub(env, `large-${crypto.randomUUID()}`);
    const big = (i: number) => {
      const e = sampleEvent({ event: 'organization_domain.verified', data: { id: `org_domain_${i}`, object: 'organization_domain', blob: 'x'.repeat(1_500_000) } });
      return { event_id: e.id as string, event_type: 'organization_domain.verified', created_at: e.created_at as string, source: 'webhook' as const, stale: false, accepted_at: Date.now(), attempts: 0, rules: ['domains'], body: JSON.stringify(e) };
    };
    const items = [0, 1, 2, 3, 4, 5, 6].map(big); // 7 × 1.5 MB (a row holds at most 2 MB)
    await store.hold('warehouse', items);
    await runInDurableObject(store, (_i, state) => {
      state.storage.sql.exec('UPDATE held SET held_at = held_at - ?', 15 * 24 * HOUR);
    });
    const dl = env.DEAD_LETTERS;
    const realGet = dl.get.bind(dl);
    const calls: number[] = [];
    const spy = vi.spyOn(dl, 'get').mockImplementation((id) => {
      const stub = realGet(id);
      return {
        add: (records: { body: string }[]) => {
          calls.push(records.reduce((n, r) => n + r.body.length, 0));
          return stub.add(records as never);
        },
      } as never;
    });
    await runDurableObjectAlarm(store);
    expect(await store.count()).toBe(0);
    expect(calls.length).toBeGreaterThan(1);
    for (const bytes of calls) expect(bytes).toBeLessThanOrEqual(EXPIRE_SLICE_BYTES);
    spy.mockRestore(); // (the sink's own fetch spy stays)
    for (const it of items) expect(await deadLettersFor(it.event_id)).toMatchObject([{ destination: 'warehouse', reason: 'held_too_long' }]);
    // Not left for the other tests' listings.
    for (const it of items) for (const r of await deadLettersFor(it.event_id)) await deadLetterStub(env).remove(r.seq);
  }, 60_000);

  it('a drain step of large held events stays within the subrequest budget: the rest go in the next step', async () => {
    const store = heldStub(env, `drain-${crypto.randomUUID()}`);
    const items = Array.from({ length: 50 }, (_, i) => {
      const e = sampleEvent({ event: 'organization_domain.verified', data: { id: `org_domain_drain_${i}`, object: 'organization_domain', blob: 'x'.repeat(150_000) } });
      return { event_id: e.id as string, event_type: 'organization_domain.verified', created_at: e.created_at as string, source: 'webhook' as const, stale: false, accepted_at: Date.now() + i, attempts: 0, rules: ['domains'], body: JSON.stringify(e) };
    });
    await store.hold('warehouse', items);
    const ledger = env.DEDUP_LEDGER;
    const realGet = ledger.get.bind(ledger);
    let stores = 0;
    const spy = vi.spyOn(ledger, 'get').mockImplementation((id) => {
      const stub = realGet(id);
      // Counts the body stores; everything else the ledger is asked meanwhile (the consumer reads those bodies) goes through.
      return {
        storeBody: (...args: Parameters<typeof stub.storeBody>) => ((stores += 1), stub.storeBody(...args)),
        getBody: (...args: Parameters<typeof stub.getBody>) => stub.getBody(...args),
        extendBody: (...args: Parameters<typeof stub.extendBody>) => stub.extendBody(...args),
        admit: (...args: Parameters<typeof stub.admit>) => stub.admit(...args),
      } as never;
    });
    await store.resume('warehouse'); // its alarm runs the first drain step now
    await until(async () => (await store.count()) < 50, 'the first drain step');
    // The default budget is 45 subrequests: at most 40 body stores, then the sendBatch chunk(s); the rest wait a step.
    const first = 50 - (await store.count());
    expect(first).toBeLessThanOrEqual(40);
    expect(stores).toBe(first);
    await until(async () => (await store.count()) === 0, 'the next steps', 20_000);
    expect(stores).toBe(50);
    spy.mockRestore(); // (the sink's own fetch spy stays)
    await sink.until(() => items.every((it) => sink.about(it.event_id, WAREHOUSE).length === 1), 'every drained event delivered', 30_000);
  }, 60_000);

  it('deliveries held for a destination ROUTER no longer has go to dead letters (destination_removed) at the next check, not after 14 days', async () => {
    const name = `removed-${crypto.randomUUID()}`;
    const store = heldStub(env, name);
    const events = [sampleEvent(), sampleEvent()];
    await store.hold(
      name,
      events.map((e) => ({ event_id: e.id as string, event_type: e.event as string, created_at: e.created_at as string, source: 'webhook' as const, stale: false, accepted_at: Date.now(), attempts: 2, rules: ['gone'], body: JSON.stringify(e) })),
    );
    await runDurableObjectAlarm(store);
    expect(await store.count()).toBe(0);
    for (const e of events) {
      expect(await deadLettersFor(e.id as string)).toMatchObject([{ destination: name, reason: 'destination_removed', attempts: 2, rules: ['gone'] }]);
      for (const r of await deadLettersFor(e.id as string)) await deadLetterStub(env).remove(r.seq);
    }
  });

  it('error paths: unknown destination 404, no token 401', async () => {
    for (const action of ['pause', 'resume']) {
      const res = await admin(`/destinations/nope/${action}`);
      expect(res.status).toBe(404);
      expect(((await res.json()) as { error: string }).error).toBe('not_found');
    }
    const anon = await exports.default.fetch(new Request(`${URL_BASE}/admin/destinations/warehouse/pause`, { method: 'POST' }));
    expect(anon.status).toBe(401);
    expect(((await anon.json()) as { error: string }).error).toBe('unauthorized');
    expect((await destination('warehouse')).state).toBe('active');
  });

  it('the drain keeps its pace, a slice a second: resuming again (a second click, a circuit closing) or a hold during the drain does not add a step', async () => {
    const store = heldStub(env, 'warehouse') as DurableObjectStub<HeldDeliveries>;
    expect((await admin('/destinations/warehouse/pause')).status).toBe(200);
    const item = () => {
      const e = domainEvent();
      return { event_id: e.id as string, event_type: e.event as string, created_at: e.created_at as string, source: 'webhook' as const, stale: false, accepted_at: Date.now(), attempts: 0, rules: ['domains'], body: JSON.stringify(e) };
    };
    const items = Array.from({ length: 120 }, item);
    await store.hold('warehouse', items);
    // Each drain step, as the store records it (the time it ran, read from its storage while it drains).
    const drainedAt = () => runInDurableObject(store, (_i, state) => state.storage.kv.get<number>('drained_at'));
    const before = await drainedAt();
    const steps: number[] = [];
    const watch = async () => {
      const at = await drainedAt();
      if (at !== undefined && at !== before && at !== steps.at(-1)) steps.push(at);
    };
    expect((await admin('/destinations/warehouse/resume')).status).toBe(200);
    await until(async () => (await watch(), steps.length >= 1), 'the first drain step', 10_000, 10);
    expect((await admin('/destinations/warehouse/resume')).status).toBe(200);
    const late = item();
    items.push(late);
    await store.hold('warehouse', [late]);
    await until(async () => (await watch(), (await store.count()) === 0), 'the held deliveries drained', 10_000, 10);
    await watch();
    await sink.until(() => items.every((i) => sink.about(i.event_id, WAREHOUSE).length === 1), 'every held delivery at warehouse');
    const gaps = steps.slice(1).map((t, i) => t - (steps[i] as number));
    expect(steps.length).toBe(3); // 121 deliveries: 50, 50, 21
    for (const g of gaps) expect(g).toBeGreaterThanOrEqual(950);
  });
});
