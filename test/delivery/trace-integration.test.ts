/**
 * The delivery trace (console issue): every accepted event's deliveries and
 * attempts, as the real consumer records them, over `GET /admin/events…`;
 * replays of delivered events to a named destination.
 */
import { DedupLedger } from '../../src/dedup/ledger';
import { runInDurableObject } from 'cloudflare:test';
import { SignJWT, exportJWK, generateKeyPair } from 'jose';
import { env, exports } from 'cloudflare:workers';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { ledgerShardOf, ledgerStubByName } from '../../src/dedup/shard';
import type { EventView } from '../../src/admin/events';
import type { UnknownEvent } from '../../src/events/catalog';
import { watchLogs } from '../helpers/observe';
import { Sink } from '../helpers/sink';
import { until } from '../helpers/until';
import { URL_BASE, postWebhook, sampleEvent } from '../helpers/webhook';
import { app } from '../../src/app';
import { createSession } from '../../src/console/session';
import { routerMessage, runBatch, testEnv } from '../helpers/consumer';
import { lookupEvent } from '../../src/trace/client';
import { deadLetterRecord, deadLetterStub } from '../../src/deadletters/store';
import { CRM, DELIVERY_ROUTER, OPS, WAREHOUSE } from './router';

const sink = new Sink();
beforeEach(() => sink.reset().install());
afterEach(() => vi.restoreAllMocks());

function admin(path: string, init: { method?: string; body?: unknown } = {}): Promise<Response> {
  return exports.default.fetch(
    new Request(`${URL_BASE}/admin${path}`, {
      method: init.method ?? 'GET',
      headers: { Authorization: 'Bearer test-admin-token', 'Content-Type': 'application/json' },
      ...(init.body !== undefined ? { body: typeof init.body === 'string' ? init.body : JSON.stringify(init.body) } : {}),
    }),
  );
}

async function trace(id: string): Promise<EventView | null> {
  const res = await admin(`/events/${encodeURIComponent(id)}`);
  if (res.status === 404) return null;
  expect(res.status).toBe(200);
  return (await res.json()) as EventView;
}

async function traceWhen(id: string, ok: (v: EventView) => boolean, what: string): Promise<EventView> {
  let last: EventView | null = null;
  await until(async () => {
    last = await trace(id);
    return last !== null && ok(last);
  }, what);
  return last as unknown as EventView;
}

function userEvent(): Record<string, unknown> {
  return sampleEvent({ event: 'user.created', data: { id: `user_${crypto.randomUUID()}`, object: 'user', email: 'pat@example.test' } });
}

function domainEvent(): Record<string, unknown> {
  return sampleEvent({ event: 'organization_domain.verified', data: { id: `org_domain_${crypto.randomUUID()}`, object: 'organization_domain', domain: 'acme.test' } });
}

async function errorOf(res: Response): Promise<string> {
  return ((await res.json()) as { error: string }).error;
}

describe('delivery trace', () => {
  it('records each destination, its attempts and its state; the body never appears', async () => {
    const e = userEvent();
    const acceptedBefore = Date.now();
    expect((await postWebhook(e)).status).toBe(200);
    const view = await traceWhen(e.id as string, (v) => v.deliveries.length === 2 && v.deliveries.every((d) => d.state === 'delivered'), 'both deliveries traced');
    expect(view).toMatchObject({ id: e.id, type: 'user.created', source: 'webhook', stale: false, rules: ['users'] });
    expect(Date.parse(view.accepted_at)).toBeGreaterThanOrEqual(acceptedBefore - 1000);
    expect(view.deliveries.map((d) => d.destination).sort()).toEqual(['crm', 'ops']);
    for (const d of view.deliveries) {
      expect(d.attempts).toHaveLength(1);
      expect(d.attempts[0]).toMatchObject({ status: 200, error: null });
      expect(d.attempts[0]?.duration_ms).toBeGreaterThanOrEqual(0);
      expect(d.next_attempt_at).toBeUndefined();
    }
    expect(JSON.stringify(view)).not.toContain('pat@example.test');
  });

  it('a failing destination: retrying with its next attempt time, then dead-lettered, then discarded', async () => {
    sink.on(WAREHOUSE, () => new Response('down', { status: 503 }));
    const e = domainEvent();
    expect((await postWebhook(e)).status).toBe(200);
    const retrying = await traceWhen(e.id as string, (v) => v.deliveries[0]?.state === 'retrying', 'the retry traced');
    const d = retrying.deliveries[0];
    expect(d).toMatchObject({ destination: 'warehouse', state: 'retrying', rules: ['domains'] });
    expect(d?.attempts[0]).toMatchObject({ status: 503, error: 'http_503' });
    expect(Date.parse(d?.next_attempt_at as string)).toBeGreaterThan(Date.parse(d?.attempts[0]?.at as string));

    const dead = await traceWhen(e.id as string, (v) => v.deliveries[0]?.state === 'dead_lettered', 'the dead letter traced');
    expect(dead.deliveries[0]?.attempts.map((a) => a.status)).toEqual([503, 503, 503]);

    // Listed by destination and state.
    const listed = await admin(`/events?destination=warehouse&state=dead_lettered&limit=500`);
    expect(listed.status).toBe(200);
    const page = (await listed.json()) as { items: EventView[] };
    expect(page.items.map((i) => i.id)).toContain(e.id);

    // A second dead letter of the same delivery (the event dead-lettered there again, after a replay).
    await deadLetterStub(env).add([deadLetterRecord({ event_id: e.id as string, event_type: e.event as string, destination: 'warehouse', reason: 'http_400', body: JSON.stringify(e) })]);
    const dl = (await (await admin('/dead-letters?limit=1000')).json()) as { items: Array<{ seq: number; event_id: string }> };
    const seqs = dl.items.filter((i) => i.event_id === e.id).map((i) => i.seq);
    expect(seqs).toHaveLength(2);
    // Deleting one while the other remains: the delivery is still dead-lettered (the answer comes once the trace was told).
    expect((await admin(`/dead-letters/${seqs[0]}`, { method: 'DELETE' })).status).toBe(200);
    expect((await trace(e.id as string))?.deliveries[0]?.state).toBe('dead_lettered');
    // A bulk discard whose filter selects one of them while the other remains: still dead-lettered (it used to mark
    // every pair it deleted). The answer comes once the job's slice has told the trace.
    await deadLetterStub(env).add([deadLetterRecord({ event_id: e.id as string, event_type: e.event as string, destination: 'warehouse', reason: 'http_418', body: JSON.stringify(e) })]);
    const bulk = await admin('/dead-letters/discard', { method: 'POST', body: { filter: { destination: 'warehouse', reason: 'http_418' } } });
    expect(bulk.status).toBe(200);
    expect(await bulk.json()).toMatchObject({ action: 'discard', matched: 1, discarded: 1 });
    expect((await trace(e.id as string))?.deliveries[0]?.state).toBe('dead_lettered');
    // Discarding the last one marks it discarded.
    expect((await admin(`/dead-letters/${seqs[1]}`, { method: 'DELETE' })).status).toBe(200);
    expect((await trace(e.id as string))?.deliveries[0]?.state).toBe('discarded');
  });

  it('an event no rule routes is traced with no deliveries', async () => {
    const e = sampleEvent({ event: 'session.created', data: { id: `session_${crypto.randomUUID()}`, object: 'session' } });
    expect((await postWebhook(e)).status).toBe(200);
    const view = await traceWhen(e.id as string, () => true, 'the unrouted event traced');
    expect(view).toMatchObject({ id: e.id, rules: [], deliveries: [] });
    const unrouted = (await (await admin('/events?state=unrouted&type=session.*')).json()) as { items: EventView[] };
    expect(unrouted.items.map((i) => i.id)).toContain(e.id);
  });

  it('lists newest first, filters by type, pages with a cursor to the end', async () => {
    const since = new Date(Date.now() - 1000).toISOString();
    const events = [userEvent(), userEvent(), userEvent()];
    for (const e of events) {
      expect((await postWebhook(e)).status).toBe(200);
      await new Promise((r) => setTimeout(r, 5));
    }
    for (const e of events) await traceWhen(e.id as string, (v) => v.deliveries.length === 2, `${e.id} traced`);
    const seen: string[] = [];
    let cursor: string | null = null;
    let acceptedAt = Number.POSITIVE_INFINITY;
    do {
      const qs: string = `/events?type=user.*&since=${encodeURIComponent(since)}&limit=1${cursor !== null ? `&cursor=${cursor}` : ''}`;
      const res = await admin(qs);
      expect(res.status).toBe(200);
      const page = (await res.json()) as { items: EventView[]; next_cursor: string | null };
      expect(page.items.length).toBeLessThanOrEqual(1);
      for (const i of page.items) {
        expect(i.type).toBe('user.created');
        expect(Date.parse(i.accepted_at)).toBeLessThanOrEqual(acceptedAt);
        acceptedAt = Date.parse(i.accepted_at);
        seen.push(i.id);
      }
      cursor = page.next_cursor;
    } while (cursor !== null);
    for (const e of events) expect(seen.filter((id) => id === e.id)).toHaveLength(1);
    // The newest of these three comes before the others.
    expect(seen.indexOf(events[2]?.id as string)).toBeLessThan(seen.indexOf(events[0]?.id as string));
    // A type filter that excludes them.
    const none = (await (await admin(`/events?type=dsync.*&since=${encodeURIComponent(since)}`)).json()) as { items: EventView[] };
    expect(none.items.filter((i) => events.some((e) => e.id === i.id))).toEqual([]);
  });

  it('a state filter pages by event, not by delivery: events dead-lettered at two destinations each, a page of 3 then the rest', async () => {
    const A = 'https://two-a.example.test/';
    const B = 'https://two-b.example.test/';
    sink.on(A, () => new Response('gone', { status: 404 }));
    sink.on(B, () => new Response('gone', { status: 404 }));
    const router = {
      destinations: [
        { name: 'two-a', type: 'http', url: A },
        { name: 'two-b', type: 'http', url: B },
      ],
      rules: [{ name: 'keys', events: ['vault.byok_key.deleted'], to: ['two-a', 'two-b'] }],
    };
    const since = new Date(Date.now() - 1000).toISOString();
    const events = Array.from({ length: 4 }, () => sampleEvent({ event: 'vault.byok_key.deleted', data: { id: `byok_${crypto.randomUUID()}`, object: 'byok_key' } }));
    for (const e of events) {
      await runBatch([routerMessage(e)], testEnv(router));
      await new Promise((r) => setTimeout(r, 2));
    }
    const seen: string[] = [];
    const sizes: number[] = [];
    let cursor: string | null = null;
    do {
      const qs: string = `/events?state=dead_lettered&type=vault.byok_key.deleted&since=${encodeURIComponent(since)}&limit=3${cursor !== null ? `&cursor=${cursor}` : ''}`;
      const res = await admin(qs);
      expect(res.status).toBe(200);
      const page = (await res.json()) as { items: EventView[]; next_cursor: string | null };
      sizes.push(page.items.length);
      for (const i of page.items) {
        expect(i.deliveries.map((d) => [d.destination, d.state])).toEqual([
          ['two-a', 'dead_lettered'],
          ['two-b', 'dead_lettered'],
        ]);
        seen.push(i.id);
      }
      cursor = page.next_cursor;
    } while (cursor !== null);
    expect(sizes[0]).toBe(3);
    expect(seen.sort()).toEqual(events.map((e) => e.id as string).sort());
  });

  it('error paths: unknown id 404, bad parameters 400, no token 401', async () => {
    const unknown = await admin('/events/event_never_seen');
    expect(unknown.status).toBe(404);
    expect(await errorOf(unknown)).toBe('not_found');
    // The longest id a webhook may carry (256) is looked up; a longer one is not an id.
    const longest = await admin(`/events/${'e'.repeat(256)}`);
    expect(longest.status).toBe(404);
    expect(await errorOf(longest)).toBe('not_found');
    const tooLong = await admin(`/events/${'e'.repeat(257)}`);
    expect(tooLong.status).toBe(400);
    expect(await errorOf(tooLong)).toBe('invalid_request');
    for (const qs of ['state=bogus', 'since=yesterday', 'until=2026-13-01', 'limit=0', 'limit=501', 'limit=ten', 'cursor=not-a-cursor', 'type=!', 'type=user%20created']) {
      const res = await admin(`/events?${qs}`);
      expect(res.status, qs).toBe(400);
      expect(await errorOf(res), qs).toBe('invalid_request');
    }
    const anon = await exports.default.fetch(new Request(`${URL_BASE}/admin/events/event_x`));
    expect(anon.status).toBe(401);
    expect(await errorOf(anon)).toBe('unauthorized');
  });
});

describe('trace_retention_days = 0', () => {
  it('turns the trace off: a batch consumed without a trace write, while the same batch with the default writes one', async () => {
    const router = (days: number) => ({ ...DELIVERY_ROUTER, trace_retention_days: days });
    const off = userEvent();
    const on = userEvent();
    const offRun = await runBatch([routerMessage(off)], testEnv(router(0)));
    const onRun = await runBatch([routerMessage(on)], testEnv(router(7)));
    // Both batches finished (acked) and delivered: the positive signal.
    expect(offRun.result.explicitAcks).toHaveLength(1);
    expect(onRun.result.explicitAcks).toHaveLength(1);
    expect(sink.about(off.id as string, CRM)).toHaveLength(1);
    const settings = { traceRetentionDays: 7, traceShards: 1 };
    expect(await lookupEvent(env, settings, on.id as string)).toHaveLength(1);
    expect(await lookupEvent(env, settings, off.id as string)).toEqual([]);
  });
});

describe('event replay', () => {
  it('dry run counts and sends nothing; the replay reaches the destination once more, traced as a replay', async () => {
    const e = userEvent();
    const since = new Date(Date.now() - 1000).toISOString();
    expect((await postWebhook(e)).status).toBe(200);
    await traceWhen(e.id as string, (v) => v.deliveries.every((d) => d.state === 'delivered') && v.deliveries.length === 2, 'delivered');
    expect(sink.about(e.id as string, OPS)).toHaveLength(1);
    const filter = { event_type: 'user.created', since, destination: 'ops', state: 'delivered' };

    const dry = await admin('/events/replay', { method: 'POST', body: { filter, to: 'ops', dry_run: true, limit: 500 } });
    expect(dry.status).toBe(200);
    const dryBody = (await dry.json()) as { replayed: number; replayable: number; matched: number; not_replayable: unknown[] };
    expect(dryBody.replayed).toBe(0);
    expect(dryBody.replayable).toBeGreaterThanOrEqual(1);

    const res = await admin('/events/replay', { method: 'POST', body: { filter, to: 'ops', limit: 500 } });
    expect(res.status).toBe(200);
    const body = (await res.json()) as { replayed: number; not_replayable: Array<{ id: string }> };
    expect(body.replayed).toBeGreaterThanOrEqual(1);
    expect(body.not_replayable.map((n) => n.id)).not.toContain(e.id);
    // The replay's arrival is the positive signal: the dry run had sent nothing.
    await sink.until(() => sink.about(e.id as string, OPS).length >= 2, 'the replay at ops');
    const view = await traceWhen(e.id as string, (v) => (v.acceptances?.length ?? 0) === 2 && v.deliveries.find((d) => d.destination === 'ops')?.attempts.length === 2, 'the replay traced');
    expect(view.acceptances?.map((a) => a.source)).toEqual(['webhook', 'replay']);
    expect(sink.about(e.id as string, OPS)).toHaveLength(2);
    expect(sink.about(e.id as string, CRM)).toHaveLength(1);
    const [first, again] = sink.about(e.id as string, OPS);
    expect(again?.body).toBe(first?.body);
  });

  it('an event whose body is no longer kept is reported as not replayable', async () => {
    const e = userEvent();
    const since = new Date(Date.now() - 1000).toISOString();
    expect((await postWebhook(e)).status).toBe(200);
    await traceWhen(e.id as string, (v) => v.deliveries.length === 2 && v.deliveries.every((d) => d.state === 'delivered'), 'delivered');
    const shard = ledgerShardOf(e as unknown as UnknownEvent, 16);
    await runInDurableObject(ledgerStubByName(env, shard), (_i, state) => {
      // Its day of the ledger has been dropped (retention passed).
      state.storage.sql.exec(`DELETE FROM ${DedupLedger.dayTable(e.created_at as string, Date.now())} WHERE id = ?`, e.id as string);
    });
    const res = await admin('/events/replay', { method: 'POST', body: { filter: { event_type: 'user.created', since, destination: 'crm' }, to: 'crm', dry_run: true, limit: 500 } });
    expect(res.status).toBe(200);
    const body = (await res.json()) as { not_replayable: Array<{ id: string; reason: string }> };
    expect(body.not_replayable).toContainEqual({ id: e.id, reason: 'body_expired' });
  });

  it('an event only the platform dead-letter queue traced is still replayable: its body is read from its ledger shard', async () => {
    const e = userEvent();
    const since = new Date(Date.now() - 1000).toISOString();
    const raw = JSON.stringify(e);
    // Accepted (its body kept in its ledger shard), then never handled by the main consumer: the platform gave up on it.
    await ledgerStubByName(env, ledgerShardOf(e as unknown as UnknownEvent, 16)).storeBody(e.id as string, raw, Date.now() + 86_400_000);
    await runBatch([routerMessage(e)], env, 'workos-router-events-dlq', 100);
    await traceWhen(e.id as string, (v) => v.deliveries.length === 2 && v.deliveries.every((d) => d.state === 'dead_lettered'), 'dead-lettered by the DLQ consumer');
    expect(sink.about(e.id as string, CRM)).toEqual([]);
    // Replayed for real (other user.created events dead-lettered meanwhile may be replayed with it: crm answers 200).
    const res = await admin('/events/replay', { method: 'POST', body: { filter: { event_type: 'user.created', since, state: 'dead_lettered' }, to: 'crm', limit: 500 } });
    expect(res.status).toBe(200);
    const body = (await res.json()) as { replayed: number; not_replayable: Array<{ id: string; reason: string }> };
    expect(body.not_replayable.map((n) => n.id)).not.toContain(e.id);
    expect(body.replayed).toBeGreaterThanOrEqual(1);
    // This event reaches crm, as a replay, with the body its ledger shard kept.
    await sink.until(() => sink.about(e.id as string, CRM).some((r) => r.headers.get('x-workos-replay') === 'true'), 'the replay of this event at crm');
    const [got] = sink.about(e.id as string, CRM);
    expect(got?.body).toBe(raw);
  });

  it('error paths: unknown destination 404, bad requests 400', async () => {
    const unknown = await admin('/events/replay', { method: 'POST', body: { filter: {}, to: 'nope' } });
    expect(unknown.status).toBe(404);
    expect(await errorOf(unknown)).toBe('not_found');
    for (const body of ['not json', '[]', '{}', '{"filter":{},"to":""}', '{"filter":{"colour":"red"},"to":"ops"}', '{"filter":{},"to":"ops","limit":1000}', '{"filter":{"state":"lost"},"to":"ops"}', '{"filter":{},"to":"ops","dry_run":"yes"}', '{"filter":{},"to":"ops","extra":1}']) {
      const res = await admin('/events/replay', { method: 'POST', body });
      expect(res.status, body).toBe(400);
      expect(await errorOf(res), body).toBe('invalid_request');
    }
  });

  it('error path: a ledger shard that cannot give the bodies back answers 503 temporarily_unavailable, and nothing is sent', async () => {
    const e = userEvent();
    const since = new Date(Date.now() - 1000).toISOString();
    expect((await postWebhook(e)).status).toBe(200);
    await traceWhen(e.id as string, (v) => v.deliveries.length === 2 && v.deliveries.every((d) => d.state === 'delivered'), 'delivered');
    const before = sink.about(e.id as string, OPS).length;
    const down = vi.spyOn(env.DEDUP_LEDGER, 'get').mockReturnValue({ getBodies: () => Promise.reject(new Error('ledger down')) } as never);
    const res = await admin('/events/replay', { method: 'POST', body: { filter: { event_type: 'user.created', since }, to: 'ops', limit: 500 } });
    down.mockRestore();
    expect(res.status).toBe(503);
    expect(await errorOf(res)).toBe('temporarily_unavailable');
    // A later event reached ops: anything the failed request had enqueued would have been delivered before it.
    const sentinel = userEvent();
    expect((await postWebhook(sentinel)).status).toBe(200);
    await sink.until(() => sink.about(sentinel.id as string, OPS).length === 1, 'the sentinel at ops');
    expect(sink.about(e.id as string, OPS)).toHaveLength(before);
  });

  it('error path: a queue that refuses the replay answers 503 temporarily_unavailable (a simulated failure)', async () => {
    const e = userEvent();
    const since = new Date(Date.now() - 1000).toISOString();
    expect((await postWebhook(e)).status).toBe(200);
    await traceWhen(e.id as string, (v) => v.deliveries.length === 2 && v.deliveries.every((d) => d.state === 'delivered'), 'delivered');
    const refuse = vi.spyOn(env.EVENTS_QUEUE, 'sendBatch').mockRejectedValue(new Error('queue down'));
    const res = await admin('/events/replay', { method: 'POST', body: { filter: { event_type: 'user.created', since }, to: 'ops', limit: 500 } });
    refuse.mockRestore();
    expect(res.status).toBe(503);
    expect(await errorOf(res)).toBe('temporarily_unavailable');
  });
});

describe('event replay the queue refuses part-way', () => {
  it('answers 503 with what was sent and a resume_cursor; continuing from it sends the rest, so each event is replayed once (repeating the request would have sent the first chunk twice)', { timeout: 90_000 }, async () => {
    const since = new Date(Date.now() - 1000).toISOString();
    const events = Array.from({ length: 130 }, domainEvent);
    for (const e of events) expect((await postWebhook(e)).status).toBe(200);
    await sink.until(() => events.every((e) => sink.about(e.id as string, WAREHOUSE).length === 1), 'every event at warehouse', 60_000);
    for (const e of events) await traceWhen(e.id as string, (v) => v.deliveries.some((d) => d.destination === 'warehouse' && d.state === 'delivered'), 'traced delivered');
    const filter = { event_type: 'organization_domain.verified', since, destination: 'warehouse', state: 'delivered' };
    // The first sendBatch (100 messages) goes through to the real queue; the queue then refuses (a simulated failure).
    const real = env.EVENTS_QUEUE.sendBatch.bind(env.EVENTS_QUEUE);
    let calls = 0;
    const refuse = vi.spyOn(env.EVENTS_QUEUE, 'sendBatch').mockImplementation(async (messages, options) => {
      if (++calls === 1) return real(messages, options);
      throw new Error('queue down');
    });
    const first = await admin('/events/replay', { method: 'POST', body: { filter, to: 'warehouse', limit: 500 } });
    refuse.mockRestore();
    expect(first.status).toBe(503);
    const refused = (await first.json()) as { error: string; message: string; replayed: number; resume_cursor: string | null };
    expect(refused).toMatchObject({ error: 'temporarily_unavailable', replayed: 100 });
    expect(refused.message).toContain('after 100 of 130 events');
    expect(refused.resume_cursor).not.toBeNull();
    const rest = await admin('/events/replay', { method: 'POST', body: { filter, to: 'warehouse', limit: 500, cursor: refused.resume_cursor } });
    expect(rest.status).toBe(200);
    expect(((await rest.json()) as { replayed: number }).replayed).toBe(30);
    await sink.until(() => events.every((e) => sink.about(e.id as string, WAREHOUSE).length >= 2), 'every replay at warehouse', 60_000);
    const sentinel = domainEvent();
    expect((await postWebhook(sentinel)).status).toBe(200);
    await sink.until(() => sink.about(sentinel.id as string, WAREHOUSE).length === 1, 'the sentinel at warehouse');
    for (const e of events) expect(sink.about(e.id as string, WAREHOUSE), e.id as string).toHaveLength(2);
  });
});

describe('the console shows the trace; payloads only when allowed and asked for', () => {
  async function consolePage(path: string, showPayloads: boolean): Promise<Response> {
    const { value } = await createSession('test-admin-token', Date.now());
    return app.request(`${URL_BASE}${path}`, { headers: { Cookie: `router_console=${value}` } }, testEnv({ ...DELIVERY_ROUTER, console_show_payloads: showPayloads }));
  }

  it('hidden by default (no button; asking answers 403); with console_show_payloads the body appears after the click only', async () => {
    const e = userEvent();
    expect((await postWebhook(e)).status).toBe(200);
    await traceWhen(e.id as string, (v) => v.deliveries.length === 2 && v.deliveries.every((d) => d.state === 'delivered'), 'delivered');
    const path = `/console/events/${e.id as string}`;

    const hidden = await consolePage(path, false);
    expect(hidden.status).toBe(200);
    const hiddenText = await hidden.text();
    expect(hiddenText).toContain('crm');
    expect(hiddenText).toContain('console_show_payloads = false');
    expect(hiddenText).not.toContain('Show payload');
    expect(hiddenText).not.toContain('pat@example.test');
    const refused = await consolePage(`${path}?payload=1`, false);
    expect(refused.status).toBe(403);
    expect(await refused.text()).not.toContain('pat@example.test');

    const offered = await (await consolePage(path, true)).text();
    expect(offered).toContain('Show payload');
    expect(offered).not.toContain('pat@example.test');
    const shown = await consolePage(`${path}?payload=1`, true);
    expect(shown.status).toBe(200);
    expect(await shown.text()).toContain('pat@example.test');
  });

  it('each payload shown is logged: console_payload_viewed (audit: true) with the event id and who (the admin token, or whom Access names); pages without it log none', async () => {
    const e = userEvent();
    const id = e.id as string;
    expect((await postWebhook(e)).status).toBe(200);
    await traceWhen(id, (v) => v.deliveries.length === 2 && v.deliveries.every((d) => d.state === 'delivered'), 'delivered');
    const path = `/console/events/${id}`;
    const viewed = (logs: ReturnType<typeof watchLogs>) => logs.records().filter((r) => r.msg === 'console_payload_viewed');

    const logs = watchLogs();
    // The page without the click, and the click when payloads are hidden: shown nothing, logged nothing.
    expect((await consolePage(path, true)).status).toBe(200);
    expect((await consolePage(`${path}?payload=1`, false)).status).toBe(403);
    expect(viewed(logs)).toEqual([]);
    const shown = await consolePage(`${path}?payload=1`, true);
    expect(shown.status).toBe(200);
    expect(await shown.text()).toContain('pat@example.test');
    expect(viewed(logs)).toEqual([{ level: 'info', msg: 'console_payload_viewed', audit: true, event_id: id, who: 'admin-token' }]);

    // Behind Cloudflare Access, the line names the person Access signed in.
    const team = 'payload-view.cloudflareaccess.com';
    const aud = 'aud-payload-view';
    const pair = await generateKeyPair('RS256', { extractable: true });
    const jwk = { ...(await exportJWK(pair.publicKey)), kid: 'k1', alg: 'RS256', use: 'sig' };
    sink.on(`https://${team}/cdn-cgi/access/certs`, () => Response.json({ keys: [jwk] }));
    const assertion = await new SignJWT({ email: 'ops@example.test' })
      .setProtectedHeader({ alg: 'RS256', kid: 'k1' })
      .setIssuer(`https://${team}`)
      .setAudience(aud)
      .setSubject('user-1')
      .setIssuedAt()
      .setExpirationTime(Math.floor(Date.now() / 1000) + 600)
      .sign(pair.privateKey);
    const viaAccess = await app.request(
      `${URL_BASE}${path}?payload=1`,
      { headers: { 'Cf-Access-Jwt-Assertion': assertion } },
      testEnv({ ...DELIVERY_ROUTER, console_show_payloads: true }, { ACCESS_TEAM_DOMAIN: team, ACCESS_AUD: aud }),
    );
    expect(viaAccess.status).toBe(200);
    expect(await viaAccess.text()).toContain('pat@example.test');
    expect(viewed(logs)).toEqual([
      { level: 'info', msg: 'console_payload_viewed', audit: true, event_id: id, who: 'admin-token' },
      { level: 'info', msg: 'console_payload_viewed', audit: true, event_id: id, who: 'ops@example.test' },
    ]);
    // The line says that the payload was seen, not what it holds.
    expect(JSON.stringify(viewed(logs))).not.toContain('pat@example.test');
  });
});
