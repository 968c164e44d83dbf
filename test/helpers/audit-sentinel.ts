/**
 * Observing what the Worker's own queue consumer delivered, instead of
 * spying on the router queue: the `audit` queue destination of the default
 * config (wrangler.toml) is where deliveries leave the router, and the
 * delivery trace (GET /admin/events/<id>) records each one.
 *
 * `deliverSentinel` is the positive signal a check that something was NOT
 * delivered waits for first: a webhook event posted after the requests under
 * test goes through the same router queue to the same destination; once its
 * trace shows it delivered, whatever was enqueued before it has been consumed
 * and its batch has finished (a batch delivers, writes its dead letters, then
 * its traces).
 */
import { env, exports } from 'cloudflare:workers';
import { expect, vi } from 'vitest';
import type { EventView } from '../../src/admin/events';
import { makeEvent } from '../fixtures/events';
import { postWebhook } from './webhook';

type Wait = { timeout: number; interval: number };

/** Pass-through spy on the audit destination's queue (the edge a queue destination delivers to): what the consumer delivered, by event id. */
export function observeAudit() {
  const send = vi.spyOn(env.AUDIT_QUEUE, 'send');
  const deliveriesOf = (id: string) => send.mock.calls.filter((c) => (c[0] as { id?: unknown }).id === id).map((c) => c[0] as Record<string, unknown>);
  return { send, deliveriesOf, deliveredFor: (id: string) => deliveriesOf(id).length };
}

/** The delivery trace of one event (GET /admin/events/<id>), or null while it has none. */
export async function traceOf(id: string): Promise<EventView | null> {
  const res = await exports.default.fetch(new Request(`https://router.test/admin/events/${id}`, { headers: { Authorization: 'Bearer test-admin-token' } }));
  if (res.status === 404) return null;
  expect(res.status).toBe(200);
  return (await res.json()) as EventView;
}

/**
 * Posts a sentinel webhook event and waits until its trace shows it delivered
 * to `audit`; `delivered` (the test's audit observer, installed before) saw it once.
 */
export async function deliverSentinel(delivered: (id: string) => number, wait: Wait): Promise<string> {
  const sentinel = makeEvent('user.created', { data: { id: `user_sentinel_${crypto.randomUUID().replace(/-/g, '')}` } });
  expect((await postWebhook(sentinel)).status).toBe(200);
  await vi.waitFor(async () => {
    expect((await traceOf(sentinel.id))?.deliveries).toContainEqual(expect.objectContaining({ destination: 'audit', state: 'delivered' }));
  }, wait);
  expect(delivered(sentinel.id)).toBe(1);
  return sentinel.id;
}
