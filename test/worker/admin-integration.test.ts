/**
 * The admin API end to end: bearer auth, status, dead-letter listing,
 * deletion and replay. Replays go through the real local queue: the router's
 * own consumer picks the message up (about a second later, in this isolate)
 * and delivers it to the `audit` queue destination of the default config,
 * whose queue the audit-sink Worker consumes (test/helpers/audit-sentinel.ts):
 * what it received shows the delivery; the delivery trace and the dead
 * letters a failed delivery leaves show the rest. The router queue's
 * `send` is stubbed only to make it fail (or, once, to look at the store
 * while it is called).
 */
import { runInDurableObject } from 'cloudflare:test';
import { env, exports } from 'cloudflare:workers';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { app } from '../../src/app';
import { loadConfig } from '../../src/config/load';
import { type DeadLetterSummary, deadLetterRecord, deadLetterStub } from '../../src/deadletters/store';
import { ledgerShardOf, ledgerStubByName } from '../../src/dedup/shard';
import type { RouterMessage } from '../../src/queue/message';
import { makeEvent } from '../fixtures/events';
import { deliverSentinel, observeAudit, traceOf } from '../helpers/audit-sentinel';

const AUTH = { Authorization: 'Bearer test-admin-token' };
const admin = (path: string, init: RequestInit = {}) =>
  exports.default.fetch(new Request(`https://router.test/admin${path}`, { ...init, headers: { ...AUTH, ...(init.headers ?? {}) } }));
const adminWith = (authorization: string | null, path = '/status') =>
  exports.default.fetch(new Request(`https://router.test/admin${path}`, { headers: authorization === null ? {} : { Authorization: authorization } }));

/** Waits for the consumer: about 1 s batch timeout, plus slack. */
const DELIVERY = { timeout: 10_000, interval: 50 };

afterEach(() => vi.restoreAllMocks());

async function deadLetter(destination = 'audit', extra: { stale?: boolean; source?: RouterMessage['source'] } = {}) {
  const e = makeEvent('user.created');
  await deadLetterStub(env).add([
    deadLetterRecord({ event_id: e.id, event_type: e.event, destination, rules: ['everything-to-audit'], reason: 'http_404', last_status: 404, attempts: 1, body: JSON.stringify(e), ...extra }),
  ]);
  return { event: e, seq: await seqOf(e.id) };
}

async function seqOf(id: string): Promise<number> {
  const items = await deadLetterStub(env).list(500, 0);
  return items.find((i) => i.event_id === id)!.seq;
}

async function listedIds(): Promise<string[]> {
  return (await deadLetterStub(env).list(500, 0)).map((i) => i.event_id);
}

/**
 * Replays a dead letter too large for the audit queue, carrying `extra`: the
 * consumer dead-letters it again (message_too_large) with the marks its
 * router message carried, which a delivery does not show (the source).
 */
async function replayedTooLarge(extra: { stale?: boolean; source?: RouterMessage['source'] }): Promise<DeadLetterSummary> {
  const e = makeEvent('user.created');
  (e.data as unknown as Record<string, unknown>).notes = 'n'.repeat(200 * 1024);
  await deadLetterStub(env).add([
    deadLetterRecord({ event_id: e.id, event_type: e.event, destination: 'audit', rules: ['everything-to-audit'], reason: 'http_500', body: JSON.stringify(e), ...extra }),
  ]);
  expect((await admin(`/dead-letters/${await seqOf(e.id)}/replay`, { method: 'POST' })).status).toBe(200);
  let again: DeadLetterSummary | undefined;
  await vi.waitFor(async () => {
    again = (await deadLetterStub(env).list(500, 0)).find((i) => i.event_id === e.id);
    expect(again).toMatchObject({ destination: 'audit', reason: 'message_too_large', rules: ['everything-to-audit'] });
  }, DELIVERY);
  return again!;
}

async function expectError(res: Response, status: number, error: string) {
  expect(res.status).toBe(status);
  const body = (await res.json()) as { error: string; message: string };
  expect(body.error).toBe(error);
  expect(typeof body.message).toBe('string');
}

describe('admin API: authorization', () => {
  it('refuses without ADMIN_TOKEN configured (403 admin_disabled) and with a wrong token (401)', async () => {
    const { default: worker } = await import('../../src/index');
    const { createExecutionContext } = await import('cloudflare:test');
    const res = await worker.fetch(new Request('https://router.test/admin/status', { headers: AUTH }), { ...env, ADMIN_TOKEN: '' }, createExecutionContext());
    await expectError(res, 403, 'admin_disabled');
    await expectError(await adminWith('Bearer x', '/dead-letters'), 401, 'unauthorized');
  });

  it('matches the Bearer scheme case-insensitively and tolerates extra blanks before the token', async () => {
    for (const header of ['Bearer test-admin-token', 'bearer test-admin-token', 'BEARER test-admin-token', 'BeArEr test-admin-token', 'Bearer    test-admin-token', 'bearer \t test-admin-token']) {
      const res = await adminWith(header);
      expect(res.status, header).toBe(200);
      expect(((await res.json()) as { status: string }).status).toBe('ok');
    }
  });

  it('401 unauthorized (with WWW-Authenticate: Bearer) for a wrong token, another scheme, or no header', async () => {
    for (const header of ['Bearer wrong-token', 'bearer test-admin-token-and-more', 'Basic test-admin-token', `Basic ${btoa('admin:test-admin-token')}`, 'Bearertest-admin-token', 'test-admin-token', 'Bearer ', null]) {
      const res = await adminWith(header);
      expect(res.headers.get('www-authenticate'), String(header)).toBe('Bearer');
      await expectError(res, 401, 'unauthorized');
    }
  });
});

describe('admin API', () => {
  it('GET /admin/status reports config, dead letters and reconciliation, revealing no secret', async () => {
    const res = await admin('/status');
    expect(res.status).toBe(200);
    const body = (await res.json()) as { config: { valid: boolean; rules: number }; dead_letters: number };
    expect(body.config).toMatchObject({ valid: true, source: 'ROUTER', rules: 1, destinations: 1 });
    expect(typeof body.dead_letters).toBe('number');
    const text = JSON.stringify(body);
    for (const secret of ['whsec_test_primary', 'test-admin-token', 'sk_test_reconcile']) expect(text).not.toContain(secret);
  });

  it('lists dead letters without payloads, with their stale and source marks', async () => {
    const { event, seq } = await deadLetter('audit', { stale: true, source: 'reconcile' });
    const res = await admin('/dead-letters?limit=500');
    const body = (await res.json()) as { items: { event_id: string }[] };
    expect(body.items.find((i) => i.event_id === event.id)).toMatchObject({ seq, destination: 'audit', stale: true, source: 'reconcile', reason: 'http_404' });
    expect(JSON.stringify(body)).not.toContain((event.data as { email: string }).email);
  });

  it('gives at most 500 a page whatever limit asks; next_after continues where it stopped', async () => {
    const { seq: start } = await deadLetter();
    const records = Array.from({ length: 500 }, () => {
      const e = makeEvent('user.created');
      return deadLetterRecord({ event_id: e.id, event_type: e.event, destination: 'audit', reason: 'http_404', body: JSON.stringify(e) });
    });
    await deadLetterStub(env).add(records);
    const page = (await (await admin(`/dead-letters?limit=1000&after=${start - 1}`)).json()) as { items: { seq: number }[]; next_after: number | null };
    expect(page.items).toHaveLength(500);
    expect(page.next_after).toBe(page.items[499]?.seq);
    const rest = (await (await admin(`/dead-letters?limit=1000&after=${page.next_after}`)).json()) as { items: { event_id: string }[] };
    expect(rest.items.map((i) => i.event_id)).toEqual([records[499]?.event_id]);
    // A limit of any size is capped, not refused; an after beyond every seq finds nothing.
    const huge = (await admin(`/dead-letters?limit=1000000&after=${start - 1}`)) as Response;
    expect(huge.status).toBe(200);
    expect(((await huge.json()) as { items: unknown[] }).items).toHaveLength(500);
    const beyond = await admin('/dead-letters?after=100000000000000000000');
    expect(beyond.status).toBe(200);
    expect(await beyond.json()).toEqual({ items: [], next_after: null });
    // Out of the way of the other tests, which look their records up in the first 500.
    await runInDurableObject(deadLetterStub(env), (_i, state) => void state.storage.sql.exec('DELETE FROM dead_letters WHERE seq >= ?', start));
  });

  it('rejects bad paging with 400 invalid_request', async () => {
    // Digits only: Number() would take an exponent, hex, a sign and an empty value.
    for (const qs of ['limit=0', 'limit=abc', 'limit=1.5', 'after=-1', 'after=x', 'after=2.5', 'limit=1e2', 'limit=0x64', 'limit=+5', 'limit=', 'after=', 'after=1e3', 'limit=%2010']) {
      await expectError(await admin(`/dead-letters?${qs}`), 400, 'invalid_request');
    }
  });
});

describe('DELETE /admin/dead-letters/<seq>', () => {
  it('deletes one dead letter (200), which leaves the list and the status count; then 404 not_found', async () => {
    const { event, seq } = await deadLetter();
    const other = await deadLetter();
    const before = ((await (await admin('/status')).json()) as { dead_letters: number }).dead_letters;
    // Leading zeros are the same seq.
    const res = await admin(`/dead-letters/${String(seq).padStart(20, '0')}`, { method: 'DELETE' });
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ status: 'deleted', seq });
    expect(await listedIds()).not.toContain(event.id);
    expect(await listedIds()).toContain(other.event.id);
    const after = ((await (await admin('/status')).json()) as { dead_letters: number }).dead_letters;
    expect(after).toBe(before - 1);
    await expectError(await admin(`/dead-letters/${seq}`, { method: 'DELETE' }), 404, 'not_found');
    await expectError(await admin(`/dead-letters/${seq}/replay`, { method: 'POST' }), 404, 'not_found');
  });

  it('404 not_found for a seq that never existed', async () => {
    await expectError(await admin('/dead-letters/999999999', { method: 'DELETE' }), 404, 'not_found');
  });

  it('400 invalid_request for a seq that is not a positive whole number (nothing deleted)', async () => {
    const { event } = await deadLetter();
    for (const bad of ['abc', '-1', '0', '1.5', '1e3', '0x10', '%201', '99999999999999999999']) {
      await expectError(await admin(`/dead-letters/${bad}`, { method: 'DELETE' }), 400, 'invalid_request');
    }
    expect(await listedIds()).toContain(event.id);
  });

  it('requires the admin token', async () => {
    const { seq } = await deadLetter();
    const res = await exports.default.fetch(new Request(`https://router.test/admin/dead-letters/${seq}`, { method: 'DELETE', headers: { Authorization: 'Basic test-admin-token' } }));
    await expectError(res, 401, 'unauthorized');
    expect((await deadLetterStub(env).list(500, 0)).some((i) => i.seq === seq)).toBe(true);
  });
});

describe('POST /admin/dead-letters/<seq>/replay', () => {
  it('delivers the event again to its destination only (through the real queue), and removes it', async () => {
    const fetchSpy = vi.spyOn(globalThis, 'fetch');
    const audit = observeAudit();
    const { event, seq } = await deadLetter('audit');
    const res = await admin(`/dead-letters/${seq}/replay`, { method: 'POST' });
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ status: 'replayed', event_id: event.id, destination: 'audit' });
    expect(await listedIds()).not.toContain(event.id);
    // The consumer delivers the WorkOS envelope, unmarked (the record was not stale).
    await vi.waitFor(async () => expect(await audit.deliveriesOf(event.id)).toHaveLength(1), DELIVERY);
    expect((await audit.deliveriesOf(event.id))[0]).toEqual(event);
    // A sentinel, sent after the replay through the same queue to the same
    // destination: once its trace shows it delivered, whatever was enqueued
    // before it (the replay, and any copy a regression would add) has been
    // consumed and its batch has finished (a batch writes its dead letters,
    // then its traces); once the audit sink has drained, it holds all of it.
    await deliverSentinel(audit.deliveredFor, DELIVERY);
    // Delivered once, to the queue destination only: no HTTP request, no new dead letter.
    expect(await audit.deliveriesOf(event.id)).toHaveLength(1);
    expect(fetchSpy).not.toHaveBeenCalled();
    expect(await listedIds()).not.toContain(event.id);
    await expectError(await admin(`/dead-letters/${seq}/replay`, { method: 'POST' }), 404, 'not_found');
  }, 3 * DELIVERY.timeout); // two trips through the consumer (the replay, then the sentinel)

  it('keeps the stale mark and the source: the destination sees stale: true, the trace its rules, a failed delivery the source', async () => {
    const audit = observeAudit();
    const { event, seq } = await deadLetter('audit', { stale: true, source: 'reconcile' });
    const res = await admin(`/dead-letters/${seq}/replay`, { method: 'POST' });
    expect(res.status).toBe(200);
    await vi.waitFor(async () => expect(await audit.deliveriesOf(event.id)).toHaveLength(1), DELIVERY);
    expect((await audit.deliveriesOf(event.id))[0]).toEqual({ ...event, stale: true });
    // Traced as a replay, stale, delivered to its destination only, for the record's rules, at a first attempt.
    await vi.waitFor(async () => {
      expect(await traceOf(event.id)).toMatchObject({
        source: 'replay',
        stale: true,
        deliveries: [{ destination: 'audit', state: 'delivered', rules: ['everything-to-audit'], attempts: [{ status: 200, error: null }] }],
      });
    }, DELIVERY);
    // The source travels too: a replayed delivery that fails again leaves a dead letter with both marks.
    expect(await replayedTooLarge({ stale: true, source: 'reconcile' })).toMatchObject({ stale: true, source: 'reconcile' });
  }, 3 * DELIVERY.timeout);

  it('replays an old record (no stale or source recorded) as a fresh webhook event', async () => {
    const audit = observeAudit();
    const { event, seq } = await deadLetter('audit');
    expect((await admin(`/dead-letters/${seq}/replay`, { method: 'POST' })).status).toBe(200);
    await vi.waitFor(async () => expect(await audit.deliveriesOf(event.id)).toHaveLength(1), DELIVERY);
    expect((await audit.deliveriesOf(event.id))[0]).not.toHaveProperty('stale');
    await vi.waitFor(async () => expect(await traceOf(event.id)).toMatchObject({ stale: false, deliveries: [{ destination: 'audit', state: 'delivered' }] }), DELIVERY);
    // A replayed delivery that fails again leaves a dead letter marked as a webhook event's, not stale.
    const again = await replayedTooLarge({});
    expect(again.source).toBe('webhook');
    expect(again).not.toHaveProperty('stale');
  }, 3 * DELIVERY.timeout);

  it('replays an event larger than a queue message through a stored body', async () => {
    const e = makeEvent('dsync.group.user_added');
    (e.data.user as unknown as Record<string, unknown>).custom_attributes = { notes: 'n'.repeat(200 * 1024) };
    const body = JSON.stringify(e);
    await deadLetterStub(env).add([deadLetterRecord({ event_id: e.id, event_type: e.event, destination: 'audit', rules: ['everything-to-audit'], reason: 'http_500', last_status: 500, attempts: 10, body })]);
    const seq = await seqOf(e.id);
    const loaded = loadConfig(env);
    if (!loaded.ok) throw new Error('config invalid');
    const ledger = ledgerStubByName(env, ledgerShardOf(e, loaded.config.settings.dedupShards)) as unknown as { getBody(id: string): Promise<string | null> };
    expect(await ledger.getBody(e.id)).toBeNull();
    const res = await admin(`/dead-letters/${seq}/replay`, { method: 'POST' });
    expect(res.status).toBe(200);
    expect(await listedIds()).not.toContain(e.id);
    // Enqueued (200) although a queue message cannot carry 200 KB (the local queue refuses one over 128,000
    // bytes, as the platform does): the body went to the event's ledger shard.
    expect(await ledger.getBody(e.id)).toBe(body);
    // The consumer really fetches the stored body and attempts the delivery: a
    // queue destination cannot carry 200 KB, so it comes back as a dead letter
    // (message_too_large) holding the full original body.
    await vi.waitFor(async () => expect(await listedIds()).toContain(e.id), DELIVERY);
    const again = (await deadLetterStub(env).list(500, 0)).find((i) => i.event_id === e.id)!;
    expect(again).toMatchObject({ destination: 'audit', reason: 'message_too_large' });
    const taken = await deadLetterStub(env).take(again.seq);
    expect(taken?.body).toBe(body);
  });

  it('keeps the dead letter, under the same seq, when the replay cannot be enqueued (503)', async () => {
    const { event, seq } = await deadLetter();
    vi.spyOn(env.EVENTS_QUEUE, 'send').mockRejectedValue(new Error('down'));
    const res = await admin(`/dead-letters/${seq}/replay`, { method: 'POST' });
    await expectError(res, 503, 'temporarily_unavailable');
    const items = await deadLetterStub(env).list(500, 0);
    expect(items.find((i) => i.event_id === event.id)?.seq).toBe(seq);
  });

  it('a dead letter stays in the store while its replay is enqueued, and leaves only after (a crash in between cannot lose it)', async () => {
    const { event, seq } = await deadLetter();
    const real = env.EVENTS_QUEUE.send.bind(env.EVENTS_QUEUE);
    let listedDuringSend: boolean | undefined;
    vi.spyOn(env.EVENTS_QUEUE, 'send').mockImplementationOnce(async (body, options) => {
      listedDuringSend = (await deadLetterStub(env).list(500, 0)).some((i) => i.seq === seq);
      return real(body, options);
    });
    const res = await admin(`/dead-letters/${seq}/replay`, { method: 'POST' });
    expect(res.status).toBe(200);
    expect(listedDuringSend).toBe(true);
    expect((await deadLetterStub(env).list(500, 0)).some((i) => i.event_id === event.id && i.seq === seq)).toBe(false);
  });

  it('400 invalid_request for a seq that is not a positive whole number', async () => {
    for (const bad of ['abc', '-1', '0', '2.5', '1e2']) {
      await expectError(await admin(`/dead-letters/${bad}/replay`, { method: 'POST' }), 400, 'invalid_request');
    }
  });
});

describe('admin API while ROUTER is invalid', () => {
  const broken = (): Env => ({ ...env, ROUTER: { destinations: [{ name: 'x', type: 'carrier-pigeon' }], rules: [] } }) as unknown as Env;
  const call = (path: string, init: RequestInit = {}) =>
    app.request(`https://router.test/admin${path}`, { ...init, headers: { ...AUTH, 'Content-Type': 'application/json', ...(init.headers ?? {}) } }, broken());

  it('500 config_invalid from a single replay (the record is kept), the destinations and the events routes', async () => {
    const { event, seq } = await deadLetter();
    // The store replays from inside, by its own config: it is made invalid there too, then restored.
    let original!: Env;
    await runInDurableObject(deadLetterStub(env), (instance) => {
      const holder = instance as unknown as { env: Env };
      original = holder.env;
      holder.env = broken();
    });
    try {
      await expectError(await call(`/dead-letters/${seq}/replay`, { method: 'POST' }), 500, 'config_invalid');
    } finally {
      await runInDurableObject(deadLetterStub(env), (instance) => void ((instance as unknown as { env: Env }).env = original));
    }
    expect(await listedIds()).toContain(event.id);
    await expectError(await call('/destinations'), 500, 'config_invalid');
    await expectError(await call('/destinations/audit/pause', { method: 'POST' }), 500, 'config_invalid');
    await expectError(await call('/destinations/audit/resume', { method: 'POST' }), 500, 'config_invalid');
    await expectError(await call('/events'), 500, 'config_invalid');
    await expectError(await call(`/events/${event.id}`), 500, 'config_invalid');
    await expectError(await call('/events/replay', { method: 'POST', body: JSON.stringify({ filter: {}, to: 'audit' }) }), 500, 'config_invalid');
    // A malformed request is still 400, whatever ROUTER holds: the cursor too.
    await expectError(await call('/events?cursor=not-a-cursor'), 400, 'invalid_request');
    await expectError(await call('/events/replay', { method: 'POST', body: JSON.stringify({ filter: {}, to: 'audit', cursor: 'x' }) }), 400, 'invalid_request');
  });
});
