import { env, exports } from 'cloudflare:workers';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { deadLetterStub } from '../../src/deadletters/store';
import type { RouterMessage } from '../../src/queue/message';
import { makeEvent } from '../fixtures/events';

const AUTH = { Authorization: 'Bearer test-admin-token' };
const admin = (path: string, init: RequestInit = {}) =>
  exports.default.fetch(new Request(`https://router.test/admin${path}`, { ...init, headers: { ...AUTH, ...(init.headers ?? {}) } }));

afterEach(() => vi.restoreAllMocks());

async function deadLetter(destination = 'audit') {
  const e = makeEvent('user.created');
  await deadLetterStub(env).add([{ event_id: e.id, event_type: e.event, destination, rules: ['everything-to-audit'], reason: 'http_404', last_status: 404, attempts: 1, body: JSON.stringify(e) }]);
  const items = await deadLetterStub(env).list(500, 0);
  return { event: e, seq: items.find((i) => i.event_id === e.id)!.seq };
}

describe('admin API', () => {
  it('refuses without ADMIN_TOKEN configured (403 admin_disabled) and with a wrong token (401)', async () => {
    const { default: worker } = await import('../../src/index');
    const { createExecutionContext } = await import('cloudflare:test');
    const res = await worker.fetch(new Request('https://router.test/admin/status', { headers: AUTH }), { ...env, ADMIN_TOKEN: '' }, createExecutionContext());
    expect(res.status).toBe(403);
    expect(await res.json()).toMatchObject({ error: 'admin_disabled' });
    const wrong = await exports.default.fetch(new Request('https://router.test/admin/dead-letters', { headers: { Authorization: 'Bearer x' } }));
    expect(wrong.status).toBe(401);
    expect(await wrong.json()).toMatchObject({ error: 'unauthorized' });
  });

  it('GET /admin/status reports config, dead letters and reconciliation, revealing no secret', async () => {
    const res = await admin('/status');
    expect(res.status).toBe(200);
    const body = (await res.json()) as { config: { valid: boolean; rules: number }; dead_letters: number };
    expect(body.config).toMatchObject({ valid: true, rules: 1, destinations: 1 });
    expect(typeof body.dead_letters).toBe('number');
    const text = JSON.stringify(body);
    for (const secret of ['whsec_test_primary', 'test-admin-token', 'sk_test_reconcile']) expect(text).not.toContain(secret);
  });

  it('lists dead letters without payloads', async () => {
    const { event } = await deadLetter();
    const res = await admin('/dead-letters?limit=500');
    const body = (await res.json()) as { items: { event_id: string }[] };
    expect(body.items.some((i) => i.event_id === event.id)).toBe(true);
    expect(JSON.stringify(body)).not.toContain((event.data as { email: string }).email);
  });

  it('rejects bad paging with 400 invalid_request', async () => {
    const res = await admin('/dead-letters?limit=0');
    expect(res.status).toBe(400);
    expect(await res.json()).toMatchObject({ error: 'invalid_request' });
  });

  it('replays a dead letter to its destination only, and removes it', async () => {
    const { event, seq } = await deadLetter('audit');
    const send = vi.spyOn(env.EVENTS_QUEUE, 'send').mockResolvedValue(undefined as never);
    const res = await admin(`/dead-letters/${seq}/replay`, { method: 'POST' });
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ status: 'replayed', event_id: event.id, destination: 'audit' });
    const msg = send.mock.calls[0]?.[0] as RouterMessage;
    expect(msg.pending).toEqual({ audit: { attempts: 0, rules: ['everything-to-audit'] } });
    expect(msg.body).toBe(JSON.stringify(event));
    const again = await admin(`/dead-letters/${seq}/replay`, { method: 'POST' });
    expect(again.status).toBe(404);
    expect(await again.json()).toMatchObject({ error: 'not_found' });
  });

  it('replays an event larger than a queue message through a stored body', async () => {
    const e = makeEvent('dsync.group.user_added');
    (e.data.user as unknown as Record<string, unknown>).custom_attributes = { notes: 'n'.repeat(200 * 1024) };
    const body = JSON.stringify(e);
    await deadLetterStub(env).add([{ event_id: e.id, event_type: e.event, destination: 'audit', rules: ['everything-to-audit'], reason: 'http_500', last_status: 500, attempts: 10, body }]);
    const seq = (await deadLetterStub(env).list(500, 0)).find((i) => i.event_id === e.id)!.seq;
    const send = vi.spyOn(env.EVENTS_QUEUE, 'send').mockResolvedValue(undefined as never);
    const res = await admin(`/dead-letters/${seq}/replay`, { method: 'POST' });
    expect(res.status).toBe(200);
    const msg = send.mock.calls[0]?.[0] as RouterMessage;
    expect(msg.body).toBeUndefined();
    expect(msg.body_ref?.shard).toMatch(/^ledger-\d+$/);
    const stub = env.DEDUP_LEDGER.get(env.DEDUP_LEDGER.idFromName(msg.body_ref!.shard));
    expect(await (stub as unknown as { getBody(id: string): Promise<string | null> }).getBody(e.id)).toBe(body);
  });

  it('keeps the dead letter when the replay cannot be enqueued (503)', async () => {
    const { event, seq } = await deadLetter();
    vi.spyOn(env.EVENTS_QUEUE, 'send').mockRejectedValue(new Error('down'));
    const res = await admin(`/dead-letters/${seq}/replay`, { method: 'POST' });
    expect(res.status).toBe(503);
    expect(await res.json()).toMatchObject({ error: 'temporarily_unavailable' });
    const items = await deadLetterStub(env).list(500, 0);
    expect(items.some((i) => i.event_id === event.id)).toBe(true);
  });

  it('400 for a non-numeric seq', async () => {
    const res = await admin('/dead-letters/abc/replay', { method: 'POST' });
    expect(res.status).toBe(400);
    expect(await res.json()).toMatchObject({ error: 'invalid_request' });
  });
});
