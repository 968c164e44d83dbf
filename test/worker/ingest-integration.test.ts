import { createExecutionContext, runInDurableObject, runDurableObjectAlarm } from 'cloudflare:test';
import { env, exports } from 'cloudflare:workers';
import { WorkOS } from '@workos-inc/node';
import { afterEach, describe, expect, it, vi } from 'vitest';
import worker from '../../src/index';
import { DedupLedger } from '../../src/dedup/ledger';
import { shardKeyOf, shardName, shardOf } from '../../src/dedup/shard';
import type { RouterMessage } from '../../src/queue/message';
import { asOlderRelease } from '../helpers/older-release';
import { type PostOptions, SECRET, URL_BASE, postWebhook, sampleEvent as baseSample, signatureHeader, webhookRequest } from '../helpers/webhook';

afterEach(() => {
  vi.restoreAllMocks();
});

/** The ledger shard of a sample event (its object key: `user:<data.id>`). */
function ledgerFor(id: string): DurableObjectStub<DedupLedger> {
  const event = sampled.get(id);
  const key = event !== undefined ? shardKeyOf(event as never) : id;
  return env.DEDUP_LEDGER.get(env.DEDUP_LEDGER.idFromName(shardName(shardOf(key, 16)))) as DurableObjectStub<DedupLedger>;
}
const sampled = new Map<string, Record<string, unknown>>();
function sampleEvent(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  const e = baseSample({ data: { id: `user_${crypto.randomUUID()}`, email: 'ada@example.com', object: 'user' }, ...overrides });
  sampled.set(e.id as string, e);
  return e;
}

async function expectError(res: Response, status: number, code: string): Promise<void> {
  expect(res.status).toBe(status);
  expect(res.headers.get('content-type')).toMatch(/application\/json/);
  const body = (await res.json()) as { error: string; message: string };
  expect(body.error).toBe(code);
  expect(typeof body.message).toBe('string');
  expect(body.message.length).toBeGreaterThan(10);
}

/** Spies on the router queue as the ledger sees it (the binding, not our code). */
async function spyQueueSend(id: string) {
  return runInDurableObject(ledgerFor(id), (instance) => {
    const queue = (instance as unknown as { env: Env }).env.EVENTS_QUEUE;
    return vi.spyOn(queue, 'send');
  });
}

describe('POST /webhooks/workos', () => {
  it('accepts a signed event and enqueues it once', async () => {
    const event = sampleEvent();
    const send = await spyQueueSend(event.id as string);
    const res = await postWebhook(event);
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ status: 'accepted', id: event.id });
    expect(send).toHaveBeenCalledTimes(1);
    const message = send.mock.calls[0]?.[0] as RouterMessage;
    expect(message).toMatchObject({ v: 1, id: event.id, type: 'user.created', source: 'webhook' });
    expect(message.body).toBe(JSON.stringify(event));
  });

  it('answers a repeat of a committed id as a duplicate without enqueueing again', async () => {
    const event = sampleEvent();
    expect((await postWebhook(event)).status).toBe(200);
    const send = await spyQueueSend(event.id as string);
    const res = await postWebhook(event);
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ status: 'duplicate', id: event.id });
    expect(send).not.toHaveBeenCalled();
  });

  it('50 simultaneous deliveries of one id: exactly one queued message', async () => {
    const event = sampleEvent();
    const send = await spyQueueSend(event.id as string);
    const responses = await Promise.all(Array.from({ length: 50 }, () => postWebhook(event)));
    const bodies = (await Promise.all(responses.map((r) => r.json()))) as { status: string }[];
    expect(responses.every((r) => r.status === 200)).toBe(true);
    expect(bodies.filter((b) => b.status === 'accepted')).toHaveLength(1);
    expect(bodies.filter((b) => b.status === 'duplicate')).toHaveLength(49);
    expect(send).toHaveBeenCalledTimes(1);
  });

  it('accepts an event type outside the catalog', async () => {
    const res = await postWebhook(sampleEvent({ event: 'future.thing_happened' }));
    expect(res.status).toBe(200);
    expect(((await res.json()) as { status: string }).status).toBe('accepted');
  });

  describe('signature failures answer 401 and change nothing', () => {
    /**
     * Each refusal answers 401 with its code, and changes nothing: no queue
     * send (everything a webhook request does happens before its answer), the
     * id not committed, and a correctly signed retry of the same event is
     * accepted and enqueued once (which also shows the spy sees the sends).
     */
    async function refusedWithoutChange(refusals: Array<[PostOptions, string]>): Promise<void> {
      const event = sampleEvent();
      const id = event.id as string;
      const send = await spyQueueSend(id);
      for (const [opts, code] of refusals) await expectError(await postWebhook(event, opts), 401, code);
      expect(send).not.toHaveBeenCalled();
      expect(await ledgerFor(id).isCommitted(id)).toBe(false);
      expect(await (await postWebhook(event)).json()).toEqual({ status: 'accepted', id });
      expect(send).toHaveBeenCalledTimes(1);
    }
    it('missing_signature', async () => {
      await refusedWithoutChange([[{ signature: null }, 'missing_signature']]);
    });
    it('malformed_signature', async () => {
      await refusedWithoutChange([[{ signature: 't=now, v1=xyz' }, 'malformed_signature']]);
    });
    it('timestamp_out_of_tolerance (old and future)', async () => {
      await refusedWithoutChange([
        [{ t: Date.now() - 181_000 }, 'timestamp_out_of_tolerance'],
        [{ t: Date.now() + 181_000 }, 'timestamp_out_of_tolerance'],
      ]);
    });
    it('signature_mismatch, and the id stays unclaimed', async () => {
      await refusedWithoutChange([[{ secret: 'not-the-secret' }, 'signature_mismatch']]);
    });
    it('a secret list verifies with any of its secrets (rotation)', async () => {
      const rotated = { ...env, WORKOS_WEBHOOK_SECRET: 'whsec_new, whsec_test_primary' };
      const ctx = createExecutionContext();
      const oldSig = await worker.fetch(await webhookRequest(sampleEvent()), rotated, ctx);
      expect(oldSig.status).toBe(200);
      const newSig = await worker.fetch(await webhookRequest(sampleEvent(), { secret: 'whsec_new' }), rotated, ctx);
      expect(newSig.status).toBe(200);
    });
  });

  it('verifies a signature computed by @workos-inc/node (cross-implementation check)', async () => {
    const workos = new WorkOS('sk_test_dummy');
    const event = sampleEvent();
    const t = Date.now();
    const digest = await workos.webhooks.computeSignature(t, event, SECRET);
    const res = await postWebhook(JSON.stringify(event), { signature: `t=${t}, v1=${digest}` });
    expect(res.status).toBe(200);
  });

  describe('envelope checks (after the signature)', () => {
    it('invalid_json', async () => {
      await expectError(await postWebhook('{"id": "event_1",'), 400, 'invalid_json');
    });
    it('invalid_json for bytes that are not UTF-8', async () => {
      const bytes = new Uint8Array([0x7b, 0xff, 0xfe, 0x7d]);
      const t = Date.now();
      // Sign the exact bytes with the independent HMAC.
      const key = await crypto.subtle.importKey('raw', new TextEncoder().encode(SECRET), { name: 'HMAC', hash: 'SHA-256' }, false, ['sign']);
      const prefix = new TextEncoder().encode(`${t}.`);
      const msg = new Uint8Array(prefix.length + bytes.length);
      msg.set(prefix);
      msg.set(bytes, prefix.length);
      const mac = [...new Uint8Array(await crypto.subtle.sign('HMAC', key, msg))].map((b) => b.toString(16).padStart(2, '0')).join('');
      const req = new Request(`${URL_BASE}/webhooks/workos`, { method: 'POST', headers: { 'WorkOS-Signature': `t=${t}, v1=${mac}` }, body: bytes });
      await expectError(await exports.default.fetch(req), 400, 'invalid_json');
    });
    it.each([
      ['an array', []],
      ['missing id', { event: 'user.created', data: {}, created_at: 'x' }],
      ['numeric id', { id: 1, event: 'user.created', data: {}, created_at: 'x' }],
      ['missing event', { id: 'e', data: {}, created_at: 'x' }],
      ['data not an object', { id: 'e', event: 'user.created', data: 'x', created_at: 'x' }],
      ['missing created_at', { id: 'e', event: 'user.created', data: {} }],
      ['context not an object', { id: 'e', event: 'user.created', data: {}, created_at: 'x', context: 5 }],
    ])('invalid_event: %s', async (_name, body) => {
      await expectError(await postWebhook(body), 400, 'invalid_event');
    });
  });

  describe('body cap (1 MiB)', () => {
    it('refuses from Content-Length before reading', async () => {
      const req = await webhookRequest(sampleEvent(), { headers: { 'Content-Length': String(2 * 1024 * 1024) } });
      await expectError(await exports.default.fetch(req), 413, 'payload_too_large');
    });
    /** A webhook request whose body streams `chunks` × 64 KB, counting how many the router pulled. */
    async function streamedRequest(chunks: number, headers: Record<string, string>) {
      const chunk = new Uint8Array(64 * 1024).fill(0x20);
      const pulled = { count: 0 };
      const stream = new ReadableStream<Uint8Array>({
        pull(controller) {
          if (pulled.count >= chunks) controller.close();
          else {
            pulled.count++;
            controller.enqueue(chunk);
          }
        },
      });
      const req = new Request(`${URL_BASE}/webhooks/workos`, {
        method: 'POST',
        headers,
        body: stream,
        // @ts-expect-error duplex is required for streaming bodies in some runtimes
        duplex: 'half',
      });
      return { req, pulled };
    }
    it('refuses a streamed body by counting', async () => {
      const { req, pulled } = await streamedRequest(20, { 'WorkOS-Signature': await signatureHeader('x') });
      await expectError(await exports.default.fetch(req), 413, 'payload_too_large');
      expect(pulled.count).toBeLessThan(20);
    });
    it('refuses a streamed body longer than its Content-Length says, without reading it all', async () => {
      const { req, pulled } = await streamedRequest(40, { 'Content-Type': 'application/json', 'Content-Length': '1000', 'WorkOS-Signature': await signatureHeader('{}') });
      // Over HTTP the runtime ends a body at its Content-Length; a caller in the same process can lie, so the cap counts.
      await expectError(await exports.default.fetch(req), 413, 'payload_too_large');
      expect(pulled.count).toBeLessThan(40);
    });
  });

  it('405 for other methods on the webhook path', async () => {
    for (const method of ['GET', 'PUT', 'DELETE', 'PATCH']) {
      const res = await exports.default.fetch(new Request(`${URL_BASE}/webhooks/workos`, { method }));
      await expectError(res, 405, 'method_not_allowed');
      expect(res.headers.get('allow')).toBe('POST');
    }
  });

  it('GET /health reveals nothing', async () => {
    const res = await exports.default.fetch(`${URL_BASE}/health`);
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ status: 'ok' });
  });

  it('404 not_found elsewhere', async () => {
    await expectError(await exports.default.fetch(`${URL_BASE}/nope`), 404, 'not_found');
  });

  it('500 not_configured without a secret: never accepts unsigned input; one notice', async () => {
    // The notice is written once per isolate (logOnce). Each test file runs
    // in a fresh runtime, and no other test here runs without a secret: this
    // test's first request is the isolate's first without one.
    const ctx = createExecutionContext();
    const noSecret = { ...env, WORKOS_WEBHOOK_SECRET: '' };
    const log = vi.spyOn(console, 'error');
    await expectError(await worker.fetch(await webhookRequest(sampleEvent()), noSecret, ctx), 500, 'not_configured');
    await expectError(await worker.fetch(await webhookRequest(sampleEvent(), { signature: null }), noSecret, ctx), 500, 'not_configured');
    const notices = log.mock.calls.filter((c) => String(c[0]).includes('"msg":"not_configured"'));
    expect(notices).toHaveLength(1);
  });

  it('500 config_invalid when ROUTER is broken', async () => {
    const ctx = createExecutionContext();
    const broken = { ...env, ROUTER: '{"rules":[{"name":"r","events":["*"],"to":["nowhere"]}]}' } as unknown as Env;
    await expectError(await worker.fetch(await webhookRequest(sampleEvent()), broken, ctx), 500, 'config_invalid');
  });
});

describe('dedup ledger', () => {
  it('queue send failure: 503, the id is released, and the retry is accepted', async () => {
    const event = sampleEvent();
    const send = await spyQueueSend(event.id as string);
    send.mockRejectedValueOnce(new Error('queue down'));
    await expectError(await postWebhook(event), 503, 'temporarily_unavailable');
    expect(await ledgerFor(event.id as string).isCommitted(event.id as string)).toBe(false);
    const retry = await postWebhook(event);
    expect(await retry.json()).toEqual({ status: 'accepted', id: event.id });
  });

  it('a live uncommitted claim answers 409 in_progress; after its lease it can be taken over', async () => {
    const event = sampleEvent();
    const id = event.id as string;
    await asOlderRelease(ledgerFor(id), (sql) => {
      sql.exec("INSERT INTO ledger (id, state, lease_until, expires_at, source) VALUES (?, 'pending', ?, ?, 'webhook')", id, Date.now() + 60_000, Date.now() + 60_000);
    });
    await expectError(await postWebhook(event), 409, 'in_progress');
    await runInDurableObject(ledgerFor(id), (_i, state) => {
      state.storage.sql.exec('UPDATE ledger SET lease_until = ? WHERE id = ?', Date.now() - 1, id);
    });
    expect(await (await postWebhook(event)).json()).toEqual({ status: 'accepted', id });
  });

  it('keeps ids for the retention window after their created_at, then the alarm drops their day whole', async () => {
    const event = sampleEvent();
    const id = event.id as string;
    expect((await postWebhook(event)).status).toBe(200);
    const stub = ledgerFor(id);
    const day = DedupLedger.dayTable(event.created_at as string, Date.now());
    const dropAt = await runInDurableObject(stub, (_i, state) =>
      state.storage.sql.exec<{ drop_at: number }>('SELECT drop_at FROM ledger_days WHERE name = ?', day).one().drop_at,
    );
    // At least the retention (dedup_retention_days, 30 by default) after created_at, at most a day more.
    const created = Date.parse(event.created_at as string);
    expect(dropAt).toBeGreaterThanOrEqual(created + 30 * 86_400_000);
    expect(dropAt).toBeLessThanOrEqual(created + 31 * 86_400_000);
    // The alarm before then keeps the id.
    expect(await runDurableObjectAlarm(stub)).toBe(true);
    expect(await stub.isCommitted(id)).toBe(true);
    // The day is past retention: the next sweep drops its table (no row deleted one by one) and the id is accepted afresh.
    await runInDurableObject(stub, (_i, state) => {
      state.storage.sql.exec('UPDATE ledger_days SET drop_at = ? WHERE name = ?', Date.now() - 1, day);
    });
    expect(await runDurableObjectAlarm(stub)).toBe(true);
    expect(await stub.isCommitted(id)).toBe(false);
    const tables = await runInDurableObject(stub, (_i, state) => state.storage.sql.exec("SELECT 1 FROM sqlite_master WHERE name = ?", day).toArray().length);
    expect(tables).toBe(0);
    expect(await (await postWebhook(event)).json()).toEqual({ status: 'accepted', id });
  });
});

describe('events larger than a queue message', () => {
  it('a 600 KB dsync.group.user_added round-trips to the consumer intact', async () => {
    const { makeEvent } = await import('../fixtures/events');
    const { runBatch, testEnv } = await import('../helpers/consumer');
    const e = makeEvent('dsync.group.user_added');
    const user = e.data.user as unknown as Record<string, unknown>;
    user.custom_attributes = { notes: 'n'.repeat(600 * 1024) };
    const body = JSON.stringify(e);
    expect(body.length).toBeGreaterThan(600 * 1024);
    const key = shardKeyOf(e as never);
    const stub = env.DEDUP_LEDGER.get(env.DEDUP_LEDGER.idFromName(shardName(shardOf(key, 16)))) as DurableObjectStub<DedupLedger>;
    const send = await runInDurableObject(stub, (instance) => vi.spyOn((instance as unknown as { env: Env }).env.EVENTS_QUEUE, 'send'));
    const res = await postWebhook(body);
    expect(await res.json()).toEqual({ status: 'accepted', id: e.id });
    const message = send.mock.calls[0]?.[0] as RouterMessage;
    expect(message.body).toBeUndefined();
    expect(message.body_ref).toEqual({ shard: shardName(shardOf(key, 16)), until: expect.any(Number) });
    expect(JSON.stringify(message).length).toBeLessThan(1024);

    let received = '';
    vi.spyOn(globalThis, 'fetch').mockImplementation(async (input, init) => {
      received = await new Request(input as RequestInfo, init).text();
      return new Response('ok');
    });
    const router = { destinations: [{ name: 'big', type: 'http', url: 'https://big.example.test/' }], rules: [{ name: 'all', events: ['*'], to: ['big'] }] };
    const { result } = await runBatch([message], testEnv(router));
    expect(result.explicitAcks).toHaveLength(1);
    expect(received).toBe(body);
  });
});
