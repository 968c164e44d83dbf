/**
 * examples/http-receiver end to end: the receiver runs in this process on a
 * free loopback port, the router under a real `wrangler dev` routes `user.*`
 * to it with a `signing_secret`, and the receiver verifies every request with
 * `@workos-inc/node`'s `constructEvent` and handles each Idempotency-Key once.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Receiver, createReceiver } from '../../examples/http-receiver/server';
import { type RouterProcess, freePort, startRouter } from '../../scripts/lib/dev-server';
import { postSigned, workosSignature } from '../../scripts/lib/sign';
import { makeEvent } from '../fixtures/events';

const WEBHOOK_SECRET = 'whsec_receiver_e2e';
const RECEIVER_SECRET = 'receiver_e2e_signing_secret';

let receiver: Receiver;
let router: RouterProcess;
const receiverLog: Record<string, unknown>[] = [];

beforeAll(async () => {
  receiver = await createReceiver({ secret: RECEIVER_SECRET, port: await freePort(), log: (l) => receiverLog.push(l) });
  router = await startRouter({
    vars: {
      WORKOS_WEBHOOK_SECRET: WEBHOOK_SECRET,
      RECEIVER_SIGNING_SECRET: RECEIVER_SECRET,
      ROUTER: {
        destinations: [
          { name: 'receiver', type: 'http', url: `${receiver.url}/workos`, signing_secret: 'RECEIVER_SIGNING_SECRET', retry_delay_seconds: 1 },
          // The same service behind a second destination: the router delivers the same event id twice.
          { name: 'receiver-again', type: 'http', url: `${receiver.url}/workos-again`, signing_secret: 'RECEIVER_SIGNING_SECRET', retry_delay_seconds: 1 },
        ],
        rules: [
          { name: 'users', events: ['user.*'], to: ['receiver'] },
          { name: 'memberships-twice', events: ['organization_membership.*'], to: ['receiver', 'receiver-again'] },
        ],
      },
    },
  });
}, 120_000);

afterAll(async () => {
  await router?.stop();
  await receiver?.close();
});

const handled = (id: string) => receiver.processed.filter((p) => p.id === id);

async function waitFor(what: string, check: () => boolean, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** POSTs `raw` to a receiver as the router does: signed with the destination's secret, with its Idempotency-Key. */
function deliverTo(url: string, raw: string, idempotencyKey: string, headers: Record<string, string> = {}): Promise<Response> {
  return fetch(`${url}/workos`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', 'WorkOS-Signature': workosSignature(raw, RECEIVER_SECRET), 'Idempotency-Key': idempotencyKey, ...headers },
    body: raw,
  });
}

/** Sends a webhook to the router as WorkOS does; returns the body sent. */
async function sendToRouter(event: unknown): Promise<string> {
  const body = JSON.stringify(event);
  const res = await postSigned(`${router.url}/webhooks/workos`, body, WEBHOOK_SECRET);
  expect(res.status).toBe(200);
  expect(((await res.json()) as { status: string }).status).toBe('accepted');
  return body;
}

/** A later event reaching the receiver: everything routed before it has been delivered (the check for absence needs it). */
async function drained(): Promise<void> {
  const sentinel = makeEvent('user.updated');
  await sendToRouter(sentinel);
  await waitFor('the sentinel', () => handled(sentinel.id).length === 1);
}

/** The router's structured log lines. */
function routerLogs(): Record<string, unknown>[] {
  return router
    .output()
    .split('\n')
    .flatMap((line) => {
      const at = line.indexOf('{"level"');
      if (at === -1) return [];
      try {
        return [JSON.parse(line.slice(at)) as Record<string, unknown>];
      } catch {
        return [];
      }
    });
}

describe('examples/http-receiver behind the router (wrangler dev)', () => {
  it('a routed user.* event is verified by the SDK and handled once', async () => {
    const e = makeEvent('user.created');
    const body = await sendToRouter(e);
    // WorkOS retrying the same webhook: the router deduplicates it.
    const again = await postSigned(`${router.url}/webhooks/workos`, body, WEBHOOK_SECRET);
    expect(((await again.json()) as { status: string }).status).toBe('duplicate');

    await waitFor('the event at the receiver', () => handled(e.id).length >= 1);
    await drained();
    const got = handled(e.id);
    expect(got).toHaveLength(1);
    const r = got[0]!;
    expect(r.raw).toBe(body); // the exact bytes sent to the router
    expect(r.idempotencyKey).toBe(e.id);
    expect(r.type).toBe('user.created');
    expect(r.stale).toBe(false);
    // constructEvent's result: the SDK's deserialised event (camelCase), returned only after its signature check passed.
    expect(r.event).toMatchObject({ id: e.id, event: 'user.created', createdAt: e.created_at });
    expect((r.event as unknown as { data: { email: string } }).data.email).toBe(e.data.email);
    expect(receiverLog.filter((l) => l.msg === 'rejected')).toEqual([]);
  });

  it('a second request with the same Idempotency-Key is answered 200 and not handled again', async () => {
    // Through the router: one event, two destinations at the same service → two requests with one key.
    const m = makeEvent('organization_membership.created');
    await sendToRouter(m);
    const delivered = () => routerLogs().filter((l) => l.msg === 'delivered' && l.event_id === m.id).map((l) => l.destination);
    await waitFor('both deliveries', () => delivered().length === 2);
    expect(delivered().sort()).toEqual(['receiver', 'receiver-again']); // both answered 2xx: nothing retried
    expect(handled(m.id)).toHaveLength(1);
    expect(receiverLog.filter((l) => l.msg === 'duplicate' && l.idempotency_key === m.id)).toHaveLength(1);

    // A router retry of an already handled delivery: same bytes and key, freshly signed.
    const first = receiver.processed[0]!;
    const duplicatesBefore = receiver.stats.duplicates;
    const res = await deliverTo(receiver.url, first.raw, first.idempotencyKey, { 'X-WorkOS-Event-Id': first.id, 'X-WorkOS-Event': first.type });
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ status: 'duplicate', id: first.id });
    expect(handled(first.id)).toHaveLength(1);
    expect(receiver.stats.duplicates).toBe(duplicatesBefore + 1);
  });

  it('an operator\'s replay (X-WorkOS-Replay: true) of a handled event is handled again, marked as a replay', async () => {
    const first = receiver.processed[0]!;
    const res = await deliverTo(receiver.url, first.raw, first.idempotencyKey, { 'X-WorkOS-Replay': 'true' });
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ status: 'processed', id: first.id });
    expect(handled(first.id).map((p) => p.replay)).toEqual([false, true]);
  });

  it('keeps only its last keepProcessed events in memory (each holds its body), while every one is handled and remembered', async () => {
    const small = await createReceiver({ secret: RECEIVER_SECRET, keepProcessed: 2, log: () => undefined });
    try {
      const events = [makeEvent('user.created'), makeEvent('user.updated'), makeEvent('user.deleted')];
      for (const e of events) {
        const res = await deliverTo(small.url, JSON.stringify(e), e.id);
        expect(await res.json()).toEqual({ status: 'processed', id: e.id });
      }
      expect(small.stats.processed).toBe(3);
      expect(small.processed.map((p) => p.id)).toEqual([events[1]?.id, events[2]?.id]);
      // The first is still remembered as handled.
      const again = await deliverTo(small.url, JSON.stringify(events[0]), events[0]?.id as string);
      expect(await again.json()).toEqual({ status: 'duplicate', id: events[0]?.id });
    } finally {
      await small.close();
    }
  });

  it('a wrong or missing signature gets 401 and is not handled', async () => {
    const e = makeEvent('user.deleted');
    const body = JSON.stringify(e);
    const headers = { 'Content-Type': 'application/json', 'Idempotency-Key': e.id, 'X-WorkOS-Event-Id': e.id };
    const rejectedBefore = receiver.stats.rejected;

    const wrong = await fetch(`${receiver.url}/workos`, {
      method: 'POST',
      headers: { ...headers, 'WorkOS-Signature': workosSignature(body, 'not_the_receiver_secret') },
      body,
    });
    expect(wrong.status).toBe(401);
    expect(await wrong.json()).toEqual({ error: 'invalid_signature' });
    // Signed with the WorkOS webhook secret instead of the destination's: also refused.
    const workosSigned = await fetch(`${receiver.url}/workos`, {
      method: 'POST',
      headers: { ...headers, 'WorkOS-Signature': workosSignature(body, WEBHOOK_SECRET) },
      body,
    });
    expect(workosSigned.status).toBe(401);
    const missing = await fetch(`${receiver.url}/workos`, { method: 'POST', headers, body });
    expect(missing.status).toBe(401);
    expect(await missing.json()).toEqual({ error: 'missing_signature' });

    expect(handled(e.id)).toHaveLength(0);
    expect(receiver.stats.rejected).toBe(rejectedBefore + 3);
    // Refused before deduplication: the genuine event, routed later, is still handled.
    await sendToRouter(e);
    await waitFor('the genuine event', () => handled(e.id).length === 1);
  });
});
