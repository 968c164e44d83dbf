/**
 * Observing what the router delivered to its `audit` queue destination (the
 * AUDIT_QUEUE producer, queue `workos-audit`) where a downstream Worker would
 * see it: on the far side of the queue. In the `workers` and `delivery` test
 * projects the auxiliary Worker `audit-sink` (test/helpers/audit-sink-worker.mjs,
 * wired in vitest.config.ts; wrangler.toml declares no consumer for this
 * queue) consumes workos-audit, batches of up to 100 handed over 50 ms after
 * their first message, and keeps every body it is handed under its event id,
 * duplicates included; the tests read them through its service binding
 * AUDIT_SINK. Nothing is spied on: a delivery shows once it has really gone
 * through the local queue, which takes a moment after the router's `send`
 * resolved, so a test waits for what it expects to see (`vi.waitFor`).
 *
 * A check that something was NOT delivered, or delivered only once, first
 * waits for a positive signal that the sink has consumed everything sent
 * before: `auditDrained` (a marker sent straight to the queue, seen in the
 * sink) or `deliverSentinel` (an event through the whole router, then that).
 * Why a marker seen in the sink is such a signal — miniflare's queue broker
 * (node_modules/miniflare/dist/src/workers/queues/broker.worker.js, one
 * QueueBrokerObject per queue name):
 * - a send is answered only after `#enqueue` scheduled the push of its
 *   message (a `setTimeout` of its delay: 0 here, no delivery delay is set on
 *   either side); the pushes of messages accepted one after the other run in
 *   that order (workerd fires timers due together in the order they were
 *   set: 300 messages sent one after another were seen in order), onto one
 *   array (`#messages.push`);
 * - `#flush` takes batches from the front of that array (`splice(0, batchSize)`)
 *   and hands the next one over after the consumer answered for the previous
 *   one (`#pendingFlush` is cleared after the dispatch is awaited), or, when
 *   a full batch of 100 piles up meanwhile, at once: still taken later from
 *   the front, and dispatched after;
 * - the sink acks every batch, so nothing is retried (a retry would be pushed
 *   again at the back), and stores a whole batch as its handler starts (no
 *   await before), so a batch dispatched earlier is stored earlier.
 * So a message whose `send` had resolved before the marker's `send` was made
 * has been stored in the sink by the time the marker can be read there. Not
 * covered: a send with `delaySeconds` (pushed only when its delay ends);
 * the router sets none on its destination sends.
 *
 * What the router sent is a different question: its consumer delivers the
 * messages of one batch concurrently, so a send of an event posted before
 * the sentinel may reach the audit queue after the sentinel's own (same
 * router batch). Hence `deliverSentinel` waits for the sentinel's trace first
 * (a router batch delivers, writes its dead letters, then its traces: every
 * audit send of that batch and of earlier ones has resolved), and only then
 * drains the audit queue with a marker.
 */
import { env, exports } from 'cloudflare:workers';
import { expect, vi } from 'vitest';
import type { EventView } from '../../src/admin/events';
import { makeEvent } from '../fixtures/events';
import { postWebhook } from './webhook';

/** The test projects' service binding to the audit-sink Worker (vitest.config.ts): not the Worker's own, so not in its Env. */
const auditSink = (): Fetcher => (env as unknown as { AUDIT_SINK: Fetcher }).AUDIT_SINK;

type Wait = { timeout: number; interval: number };
type Body = Record<string, unknown>;

const SINK = 'https://audit-sink.test';

/** The bodies the audit sink consumed for one event id, in arrival order (duplicates kept). */
async function deliveriesOf(id: string): Promise<Body[]> {
  const res = await auditSink().fetch(`${SINK}/deliveries?id=${encodeURIComponent(id)}`);
  expect(res.status).toBe(200);
  return (await res.json()) as Body[];
}

/** How many bodies the audit sink consumed for each of `ids` (one request for many ids). */
async function deliveredForEach(ids: readonly string[]): Promise<number[]> {
  const res = await auditSink().fetch(`${SINK}/counts`, { method: 'POST', body: JSON.stringify({ ids }) });
  expect(res.status).toBe(200);
  return (await res.json()) as number[];
}

/**
 * What reached the consumer of the audit destination's queue, by event id:
 * every delivery of that id so far (event ids are fresh per test, so these
 * are the test's own).
 */
export function observeAudit() {
  return {
    deliveriesOf,
    deliveredFor: async (id: string): Promise<number> => (await deliveriesOf(id)).length,
    deliveredForEach,
  };
}

/**
 * Sends a marker straight to the audit queue and waits until the sink holds
 * it: every message the queue had accepted before (every `send` to it that
 * had resolved) has been consumed by then (see the file's comment).
 */
export async function auditDrained(wait: Wait): Promise<void> {
  const id = `audit_drain_${crypto.randomUUID().replace(/-/g, '')}`;
  await env.AUDIT_QUEUE.send({ id, drain: true }, { contentType: 'json' });
  await vi.waitFor(async () => expect(await deliveriesOf(id)).toHaveLength(1), wait);
}

/** The delivery trace of one event (GET /admin/events/<id>), or null while it has none. */
export async function traceOf(id: string): Promise<EventView | null> {
  const res = await exports.default.fetch(new Request(`https://router.test/admin/events/${id}`, { headers: { Authorization: 'Bearer test-admin-token' } }));
  if (res.status === 404) return null;
  expect(res.status).toBe(200);
  return (await res.json()) as EventView;
}

/**
 * Posts a sentinel webhook event (routed to `audit`) and waits until
 * everything enqueued to the router before it has been consumed and what its
 * consumer sent to the audit queue is in the sink: its trace shows it
 * delivered to `audit` (its router batch, and every earlier one, finished),
 * then the audit queue is drained (`auditDrained`), and the sink holds the
 * sentinel, once (`delivered`: the test's audit observer's count).
 * Returns the sentinel's id.
 */
export async function deliverSentinel(delivered: (id: string) => Promise<number>, wait: Wait): Promise<string> {
  const sentinel = makeEvent('user.created', { data: { id: `user_sentinel_${crypto.randomUUID().replace(/-/g, '')}` } });
  expect((await postWebhook(sentinel)).status).toBe(200);
  await vi.waitFor(async () => {
    expect((await traceOf(sentinel.id))?.deliveries).toContainEqual(expect.objectContaining({ destination: 'audit', state: 'delivered' }));
  }, wait);
  await auditDrained(wait);
  expect(await delivered(sentinel.id)).toBe(1);
  return sentinel.id;
}
