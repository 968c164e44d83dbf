import { env } from 'cloudflare:workers';
import { WorkOS } from '@workos-inc/node';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { deadLetterStub } from '../../src/deadletters/store';
import { registryStub } from '../../src/destinations/registry';
import type { RouterMessage } from '../../src/queue/message';
import { auditDrained, observeAudit } from '../helpers/audit-sentinel';
import { routerMessage, runBatch, testEnv } from '../helpers/consumer';
import { deadLettersFor, watchLogs } from '../helpers/observe';
import { sentinelConsumed } from '../helpers/queue-sentinel';
import { sampleEvent as baseSample } from '../helpers/webhook';
import { CRM, DELIVERY_ROUTER, OPS, SLACK } from './router';

/**
 * The consumer as it runs: batches are handed to the real queue handler, and
 * the follow-ups and dead letters it writes go to the real local queue and
 * store. This project's consumer then really consumes the follow-ups, under
 * this project's ROUTER: a follow-up is seen where it is delivered (or, for
 * a destination only a test's own ROUTER has, where it is dead-lettered as
 * `destination_removed`); that none was written, once a later message was
 * consumed (`sentinelConsumed`). `sendBatch` is stubbed only where a test
 * simulates its failure.
 */
const runEnv = () => env;
/** The audit sink consumes the audit queue 50 ms after a send (batch timeout), plus slack. */
const AUDIT_WAIT = { timeout: 10_000, interval: 50 };

/** This project's ROUTER with crm and ops retried after a second (not 10): a follow-up is consumed within the test. */
const QUICK = {
  ...DELIVERY_ROUTER,
  destinations: DELIVERY_ROUTER.destinations.map((d) => (d.name === 'crm' || d.name === 'ops' ? { ...d, retry_delay_seconds: 1 } : d)),
};
const quickEnv = () => testEnv(QUICK);

/** Ids of the events the current test made: `seen` records only requests about them. */
let mine = new Set<string>();
function sampleEvent(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  const e = baseSample(overrides);
  mine.add(e.id as string);
  return e;
}

type Handler = (req: Request) => Response | Promise<Response>;
/** What a destination received, as plain data (requests made inside a Durable Object cannot be read from the test's context). */
interface Seen {
  url: string;
  method: string;
  headers: Headers;
  body: string;
  /** ms since epoch when the request was made. */
  at: number;
  text(): Promise<string>;
  json(): Promise<unknown>;
}
let routes: Map<string, Handler>;
let seen: Seen[];

beforeEach(() => {
  routes = new Map();
  seen = [];
  mine = new Set();
  vi.spyOn(globalThis, 'fetch').mockImplementation(async (input, init) => {
    const req = new Request(input as RequestInfo, init);
    const body = await req.clone().text();
    const id = req.headers.get('x-workos-event-id');
    const ours = id !== null ? mine.has(id) : [...mine].some((m) => body.includes(m));
    // Requests about other tests' events (follow-ups still in the queue) are answered and ignored.
    if (!ours) return new Response('ok');
    seen.push({ url: req.url, method: req.method, headers: new Headers(req.headers), body, at: Date.now(), text: async () => body, json: async () => JSON.parse(body) });
    const handler = routes.get(req.url);
    if (handler === undefined) throw new Error(`unexpected fetch ${req.url}`);
    return handler(req);
  });
});

afterEach(() => vi.restoreAllMocks());

/** The URLs that received one event, in order. */
const urlsOf = (id: unknown) => seen.filter((r) => r.headers.get('x-workos-event-id') === id).map((r) => r.url);

/** The dead letters of these events (those a follow-up left, once this project's consumer took it), as [event id, destination, reason]. */
async function deadLettersOf(ids: unknown[]): Promise<string[][]> {
  const all = await Promise.all(ids.map((id) => deadLettersFor(id as string)));
  return all.flat().map((d) => [d.event_id, d.destination, d.reason]);
}

describe('queue consumer', () => {
  it('delivers to every destination of every matching rule, once each, and acks', async () => {
    routes.set(CRM, () => new Response('ok'));
    routes.set(OPS, () => new Response('ok'));
    const event = sampleEvent({ event: 'user.created' });
    const { result } = await runBatch([routerMessage(event)], quickEnv());
    expect(result.explicitAcks).toHaveLength(1);
    expect(result.retryMessages).toEqual([]);
    expect(seen.map((r) => r.url).sort()).toEqual([CRM, OPS].sort());
    // No follow-up: once a later message was consumed, neither had the event again.
    await sentinelConsumed(1);
    expect(seen.map((r) => r.url).sort()).toEqual([CRM, OPS].sort());
  });

  it("an HTTP destination's 202 is logged as delivered (handed_to_outbox is Slack's hand-off only)", async () => {
    routes.set(CRM, () => new Response(null, { status: 202 }));
    routes.set(OPS, () => new Response('ok'));
    const logs = vi.spyOn(console, 'log');
    const event = sampleEvent({ event: 'user.created' });
    await runBatch([routerMessage(event)], runEnv());
    const lines = logs.mock.calls.map((c) => JSON.parse(String(c[0])) as Record<string, unknown>).filter((l) => l.event_id === event.id);
    expect(lines.find((l) => l.destination === 'crm')).toMatchObject({ msg: 'delivered', status: 202 });
    expect(lines.filter((l) => l.msg === 'handed_to_outbox')).toEqual([]);
  });

  it('forwards the exact bytes, re-signed so the WorkOS SDK verifies them with the destination secret', async () => {
    routes.set(CRM, () => new Response(null, { status: 204 }));
    routes.set(OPS, () => new Response('ok'));
    const event = sampleEvent({ event: 'user.updated' });
    const raw = JSON.stringify(event);
    await runBatch([routerMessage(event)], runEnv());
    const req = seen.find((r) => r.url === CRM) as Seen;
    expect(req.method).toBe('POST');
    expect(await req.text()).toBe(raw);
    expect(req.headers.get('content-type')).toBe('application/json');
    expect(req.headers.get('x-workos-event-id')).toBe(event.id);
    expect(req.headers.get('x-workos-event')).toBe('user.updated');
    expect(req.headers.get('idempotency-key')).toBe(event.id);
    expect(req.headers.get('x-team')).toBe('growth');
    expect(req.headers.get('x-workos-replay')).toBeNull(); // a first delivery, not an operator's replay
    const sig = req.headers.get('workos-signature') as string;
    const workos = new WorkOS('sk_test_dummy');
    const verified = await workos.webhooks.constructEvent({ payload: JSON.parse(raw), sigHeader: sig, secret: 'crm-secret' });
    expect(verified.id).toBe(event.id);
    await expect(workos.webhooks.constructEvent({ payload: JSON.parse(raw), sigHeader: sig, secret: 'wrong' })).rejects.toThrow();
    // No signing secret configured for "ops": no signature header.
    expect(seen.find((r) => r.url === OPS)?.headers.get('workos-signature')).toBeNull();
  });

  it('500 then success: only the failed destination is retried, with backoff', async () => {
    let crmCalls = 0;
    routes.set(CRM, () => new Response('boom', { status: crmCalls++ === 0 ? 500 : 200 }));
    routes.set(OPS, () => new Response('ok'));
    const logs = watchLogs();
    const event = sampleEvent({ event: 'user.deleted' });
    const first = await runBatch([routerMessage(event)], runEnv());
    expect(first.result.explicitAcks).toHaveLength(1);

    // A retry handed over before its time (as a redelivery could be) is not attempted but deferred again,
    // its attempts kept: consumed when due, it is crm's second attempt.
    const other = sampleEvent({ event: 'user.deleted' });
    const notBefore = Date.now() + 3_000;
    const early = await runBatch([routerMessage(other, { pending: { crm: { attempts: 1, rules: ['users'], not_before: notBefore } } })], runEnv());
    expect(early.result.explicitAcks).toHaveLength(1);
    expect(urlsOf(other.id)).toEqual([]);
    const crmDelivered = (id: unknown) => logs.about(id as string, 'delivered').filter((l) => l.destination === 'crm');
    await vi.waitFor(() => expect(crmDelivered(other.id)).not.toEqual([]), { timeout: 15_000, interval: 100 });
    expect(crmDelivered(other.id)).toMatchObject([{ attempt: 2 }]);
    expect(seen.find((r) => r.headers.get('x-workos-event-id') === other.id)?.at).toBeGreaterThanOrEqual(notBefore - 1_000);

    // The follow-up, as the queue hands it over once its delay has passed (crm: retry_delay_seconds = 10, so
    // 5 to 10 s): crm only (ops, which succeeded, is not called again), its second attempt.
    await vi.waitFor(() => expect(crmDelivered(event.id)).not.toEqual([]), { timeout: 20_000, interval: 100 });
    expect(crmDelivered(event.id)).toMatchObject([{ attempt: 2 }]);
    expect(urlsOf(event.id).sort()).toEqual([CRM, CRM, OPS].sort());
    const [failed, retried] = seen.filter((r) => r.url === CRM && r.headers.get('x-workos-event-id') === event.id);
    expect((retried?.at ?? 0) - (failed?.at ?? 0)).toBeGreaterThanOrEqual(4_000);
    // Delivered: nothing more follows.
    await sentinelConsumed(1);
    expect(urlsOf(event.id).sort()).toEqual([CRM, CRM, OPS].sort());
  });

  it('404 goes to dead letters at once (no retry storm)', async () => {
    routes.set(CRM, () => new Response('nope', { status: 404 }));
    routes.set(OPS, () => new Response('ok'));
    const event = sampleEvent({ event: 'user.created' });
    const { result } = await runBatch([routerMessage(event)], quickEnv());
    expect(result.explicitAcks).toHaveLength(1);
    // By event id: the real queue's consumer may add other tests' records meanwhile.
    const items = (await deadLetterStub(env).list(500, 0)).filter((d) => d.event_id === event.id);
    expect(items).toHaveLength(1);
    expect(items[0]).toMatchObject({ event_id: event.id, destination: 'crm', reason: 'http_404', last_status: 404, attempts: 1, rules: ['users'] });
    // No retry: once a later message was consumed, crm had it once.
    await sentinelConsumed(1);
    expect(urlsOf(event.id).filter((u) => u === CRM)).toHaveLength(1);
  });

  it('a timeout is retried', async () => {
    routes.set(CRM, (req) => new Promise<Response>((_resolve, reject) => req.signal.addEventListener('abort', () => reject(req.signal.reason))));
    routes.set(OPS, () => new Response('ok'));
    const logs = watchLogs();
    const event = sampleEvent({ event: 'user.created' });
    await runBatch([routerMessage(event)], quickEnv());
    // Its follow-up, consumed a second later, tries crm again (its second attempt), not ops.
    routes.set(CRM, () => new Response('ok'));
    await vi.waitFor(() => expect(logs.about(event.id as string, 'delivered').filter((l) => l.destination === 'crm')).toMatchObject([{ attempt: 2 }]), { timeout: 15_000, interval: 100 });
    expect(urlsOf(event.id).sort()).toEqual([CRM, CRM, OPS].sort());
  });

  it('429 honours Retry-After', async () => {
    // Retry-After 4 s, past the 1 s crm would otherwise wait here.
    let calls = 0;
    routes.set(CRM, () => (calls++ === 0 ? new Response('slow down', { status: 429, headers: { 'Retry-After': '4' } }) : new Response('ok')));
    routes.set(OPS, () => new Response('ok'));
    const event = sampleEvent({ event: 'user.created' });
    await runBatch([routerMessage(event)], quickEnv());
    // Its follow-up is consumed once the 4 s have passed.
    await vi.waitFor(() => expect(urlsOf(event.id).filter((u) => u === CRM)).toHaveLength(2), { timeout: 20_000, interval: 100 });
    const [limited, retried] = seen.filter((r) => r.url === CRM);
    expect((retried?.at ?? 0) - (limited?.at ?? 0)).toBeGreaterThanOrEqual(3_500);
  });

  it('after max_attempts the delivery is dead-lettered with the last status', async () => {
    routes.set(CRM, () => new Response('boom', { status: 503 }));
    const event = sampleEvent({ event: 'user.created' });
    const msg = routerMessage(event, { pending: { crm: { attempts: 2, rules: ['users'] } } });
    await runBatch([msg], quickEnv());
    // No retry after the third attempt (it would have waited 2 to 4 s): once a later message was consumed, crm had it once.
    await sentinelConsumed(4);
    expect(urlsOf(event.id)).toEqual([CRM]);
    const items = (await deadLetterStub(env).list(500, 0)).filter((d) => d.event_id === event.id);
    expect(items).toHaveLength(1);
    expect(items[0]).toMatchObject({ event_id: event.id, destination: 'crm', reason: 'attempts_exhausted: http_503', last_status: 503, attempts: 3 });
  });

  it('an event no rule matches reaches nobody and is acked', async () => {
    const logs = watchLogs();
    const event = sampleEvent({ event: 'session.created' });
    const { result } = await runBatch([routerMessage(event)], runEnv());
    expect(result.explicitAcks).toHaveLength(1);
    expect(seen).toHaveLength(0);
    // Nothing follows: once a later message was consumed, the consumer had met it once.
    await sentinelConsumed(1);
    expect(logs.about(event.id as string, 'unrouted')).toHaveLength(1);
  });

  it('sends to a queue destination (the envelope as JSON)', async () => {
    routes.set(CRM, () => new Response('ok'));
    // Observed where it arrives: the audit-sink Worker consumes the audit queue (workos-audit) and keeps what it is handed.
    const audit = observeAudit();
    const event = sampleEvent({ event: 'dsync.user.created' });
    await runBatch([routerMessage(event)], runEnv());
    await vi.waitFor(async () => expect(await audit.deliveriesOf(event.id as string)).toHaveLength(1), AUDIT_WAIT);
    // Excluded by "!dsync.group.updated": nothing sent.
    seen = [];
    const excluded = sampleEvent({ event: 'dsync.group.updated' });
    await runBatch([routerMessage(excluded)], runEnv());
    // Once a marker sent to the audit queue after both batches is consumed, whatever they sent to it was too:
    // the envelope once, the excluded event not at all.
    await auditDrained(AUDIT_WAIT);
    expect(await audit.deliveriesOf(event.id as string)).toEqual([event]);
    expect(await audit.deliveriesOf(excluded.id as string)).toEqual([]);
    expect(seen).toHaveLength(0);
  });

  it('hands Slack deliveries to the outbox, which posts a Block Kit message at once when quiet', async () => {
    routes.set(SLACK, () => new Response('ok'));
    const event = sampleEvent({ event: 'authentication.password_failed', data: { type: 'password', status: 'failed', email: 'ada@example.com', ip_address: '203.0.113.9', user_agent: 'curl/8', user_id: null, error: { code: 'invalid_credentials', message: 'Invalid credentials' } } });
    const { result } = await runBatch([routerMessage(event)], runEnv());
    expect(result.explicitAcks).toHaveLength(1);
    const posted = (await seen[0]?.json()) as { text: string; blocks: unknown[] };
    expect(posted.text).toContain('authentication.password_failed');
    expect(posted.text).toContain(event.id);
    expect(posted.blocks.length).toBeGreaterThan(1);
  });

  it("a circuit's probe is an HTTP delivery in the budget too (it was counted as a hand-off: one request past the budget)", async () => {
    const probed = `probed-${crypto.randomUUID().slice(0, 8)}`;
    const router = {
      consumer_subrequest_budget: 8,
      destinations: [
        { name: probed, type: 'http', url: 'https://probed.example.test/' },
        { name: 'h', type: 'http', url: 'https://h.example.test/' },
      ],
      rules: [{ name: 'users', events: ['user.created'], to: ['h'] }],
    };
    routes.set('https://probed.example.test/', () => new Response('ok'));
    routes.set('https://h.example.test/', () => new Response('ok'));
    // Its circuit is open (one failure opens it here).
    await registryStub(env).report({ [probed]: { delivered: 0, failed: 1, retryable_failures: 1, trailing_failures: 1 } }, { [probed]: { failures: 1, cooldownSeconds: 60 } });
    expect((await registryStub(env).health([probed]))[0]).toMatchObject({ circuit: 'open' });
    const probe = routerMessage(sampleEvent({ event: 'user.created' }), { probe: probed, pending: { [probed]: { attempts: 1, rules: ['users'] } } });
    const others = Array.from({ length: 8 }, () => routerMessage(sampleEvent({ event: 'user.created' })));
    await runBatch([probe, ...others], testEnv(router));
    expect(seen.filter((r) => r.url === 'https://probed.example.test/')).toHaveLength(1);
    expect(seen).toHaveLength(8); // the probe and 7 others; the 8th is deferred
  });

  it('stays within the subrequest budget for HTTP deliveries: deliveries beyond it are deferred, not attempted', async () => {
    const many = {
      consumer_subrequest_budget: 8,
      destinations: Array.from({ length: 10 }, (_, i) => ({ name: `d${i}`, type: 'http', url: `https://d${i}.example.test/` })),
      rules: [{ name: 'all', events: ['*'], to: Array.from({ length: 10 }, (_, i) => `d${i}`) }],
    };
    for (let i = 0; i < 10; i++) routes.set(`https://d${i}.example.test/`, () => new Response('ok'));
    const event = sampleEvent();
    await runBatch([routerMessage(event)], testEnv(many));
    // 8 requests to the Internet; the registry, the flush and the trace write are calls to Cloudflare services, budgeted apart.
    expect(seen).toHaveLength(8);
    // The other two follow at once: this project's consumer takes their follow-up within seconds (and, its
    // ROUTER having neither, dead-letters them).
    await vi.waitFor(async () => expect((await deadLettersOf([event.id])).length).toBeGreaterThanOrEqual(2), { timeout: 8_000, interval: 200 });
    expect((await deadLettersOf([event.id])).sort()).toEqual([
      [event.id, 'd8', 'destination_removed'],
      [event.id, 'd9', 'destination_removed'],
    ]);
  });

  it('queue deliveries are calls to Cloudflare services: they do not use the HTTP budget, and stay within 900 a batch', async () => {
    // Workers Free allows 50 requests to the Internet and 1,000 to Cloudflare services per invocation.
    const queues = {
      consumer_subrequest_budget: 8,
      destinations: Array.from({ length: 10 }, (_, i) => ({ name: `q${i}`, type: 'queue', queue: 'AUDIT_QUEUE' })),
      rules: [{ name: 'all', events: ['*'], to: Array.from({ length: 10 }, (_, i) => `q${i}`) }],
    };
    const messages = Array.from({ length: 90 }, () => routerMessage(sampleEvent()));
    const { result } = await runBatch(messages, testEnv(queues));
    // 90 × 10 queue sends = 900 calls, plus the batch's own (registry, flush, trace): they cannot all fit in 900.
    const redelivered = result.retryMessages.length;
    // Nearly every message was delivered in this batch (a budget counting them against the 8 would take 2 or 3);
    // the last ones, which the 900 no longer covered, come back whole (each would fit a batch of its own).
    expect(result.explicitAcks.length).toBeGreaterThanOrEqual(85);
    expect(redelivered).toBeGreaterThan(0);
    expect(result.explicitAcks.length + redelivered).toBe(90);
    // No follow-up: once a later message was consumed, none had left a dead letter (this project's ROUTER has no q0…q9).
    await sentinelConsumed(1);
    expect(await deadLettersOf(messages.map((m) => m.id))).toEqual([]);
  });

  it('a message that could never fit is split, not redelivered for ever: alone in a batch at the minimum budget', async () => {
    const router = {
      consumer_subrequest_budget: 8,
      destinations: Array.from({ length: 10 }, (_, i) => ({ name: `e${i}`, type: 'http', url: `https://e${i}.example.test/` })),
      rules: [{ name: 'all', events: ['*'], to: Array.from({ length: 10 }, (_, i) => `e${i}`) }],
    };
    for (let i = 0; i < 10; i++) routes.set(`https://e${i}.example.test/`, () => new Response('ok'));
    const event = sampleEvent();
    const { result } = await runBatch([routerMessage(event)], testEnv(router));
    // Not redelivered: acked, never retried whole.
    expect(result.retryMessages).toEqual([]);
    expect(result.explicitAcks).toHaveLength(1);
    // Split: what the budget covered was delivered now, and one follow-up carries exactly the rest.
    expect(seen.map((r) => r.url).sort()).toEqual(Array.from({ length: 8 }, (_, i) => `https://e${i}.example.test/`));
    // This project's consumer takes the follow-up (and, its ROUTER having neither, dead-letters e8 and e9),
    // and once a later message was consumed, nothing more: one follow-up.
    await vi.waitFor(async () => expect((await deadLettersOf([event.id])).length).toBeGreaterThanOrEqual(2), { timeout: 8_000, interval: 200 });
    await sentinelConsumed(0);
    expect((await deadLettersOf([event.id])).sort()).toEqual([
      [event.id, 'e8', 'destination_removed'],
      [event.id, 'e9', 'destination_removed'],
    ]);
  });

  it('a large event alone in a batch at the minimum budget has its body read and is delivered (never redelivered for ever)', async () => {
    const router = {
      consumer_subrequest_budget: 8,
      destinations: [{ name: 'solo', type: 'http', url: 'https://solo.example.test/' }],
      rules: [{ name: 'all', events: ['*'], to: ['solo'] }],
    };
    routes.set('https://solo.example.test/', () => new Response('ok'));
    const e = sampleEvent();
    await env.DEDUP_LEDGER.get(env.DEDUP_LEDGER.idFromName('ledger-7')).storeBody(e.id as string, JSON.stringify(e), Date.now() + 3_600_000);
    const msg = routerMessage(e, { body_ref: { shard: 'ledger-7' } });
    delete msg.body;
    const { result } = await runBatch([msg], testEnv(router));
    expect(result.retryMessages).toEqual([]);
    expect(result.explicitAcks).toHaveLength(1);
    expect(seen.map((r) => r.url)).toEqual(['https://solo.example.test/']);
  });

  it('redelivers a whole message that does not fit the budget left, without writing a new one', async () => {
    const two = {
      consumer_subrequest_budget: 8,
      destinations: [
        { name: 'a', type: 'http', url: 'https://a.example.test/' },
        { name: 'b', type: 'http', url: 'https://b.example.test/' },
        { name: 'c', type: 'http', url: 'https://c.example.test/' },
      ],
      rules: [{ name: 'all', events: ['*'], to: ['a', 'b', 'c'] }],
    };
    routes.set('https://a.example.test/', () => new Response('ok'));
    routes.set('https://b.example.test/', () => new Response('ok'));
    routes.set('https://c.example.test/', () => new Response('ok'));
    const messages = [routerMessage(sampleEvent()), routerMessage(sampleEvent()), routerMessage(sampleEvent())];
    const { result } = await runBatch(messages, testEnv(two));
    expect(seen).toHaveLength(6); // the first two messages' three deliveries each: 8 - 6 = 2 left, too few for the third
    expect(result.explicitAcks).toHaveLength(2);
    expect(result.retryMessages).toHaveLength(1);
    expect(result.retryMessages[0]?.delaySeconds ?? 0).toBe(0);
    // No follow-up: once a later message was consumed, none had left a dead letter (this project's ROUTER has no a, b or c).
    await sentinelConsumed(1);
    expect(await deadLettersOf(messages.map((m) => m.id))).toEqual([]);
  });

  it('dead-letters a message whose body is not JSON instead of failing the batch', async () => {
    routes.set(CRM, () => new Response('ok'));
    routes.set(OPS, () => new Response('ok'));
    const good = routerMessage(sampleEvent());
    const bad = { ...routerMessage(sampleEvent()), body: '{not json' };
    const { result } = await runBatch([bad, good], runEnv());
    expect(result.explicitAcks).toHaveLength(2);
    expect(seen).toHaveLength(2); // the good one was still delivered to crm and ops
    const items = await deadLetterStub(env).list(500, 0);
    expect(items.find((d) => d.event_id === bad.id)).toMatchObject({ reason: 'malformed_body', destination: '(router)' });
  });

  it('delivers the messages of a batch concurrently: a slow destination holds up only its own requests', async () => {
    const router = {
      destinations: [
        // (Retried after a second: a follow-up would be consumed within the test.)
        { name: 'slow', type: 'http', url: 'https://slow.example.test/', timeout_ms: 5000, retry_delay_seconds: 1 },
        { name: 'fast', type: 'http', url: 'https://fast.example.test/', retry_delay_seconds: 1 },
      ],
      rules: [
        { name: 'users', events: ['user.created'], to: ['slow'] },
        { name: 'orgs', events: ['organization.created'], to: ['fast'] },
      ],
    };
    let fastSeen!: () => void;
    const gate = new Promise<void>((r) => (fastSeen = r));
    // The slow destination answers only once the fast one has been called: with
    // messages handled one after another it would time out instead.
    routes.set('https://slow.example.test/', async () => {
      await gate;
      return new Response('ok');
    });
    routes.set('https://fast.example.test/', () => {
      fastSeen();
      return new Response('ok');
    });
    const messages = [routerMessage(sampleEvent({ event: 'user.created' })), routerMessage(sampleEvent({ event: 'organization.created' }))];
    const { result } = await runBatch(messages, testEnv(router));
    expect(result.explicitAcks).toHaveLength(2);
    // Neither timed out: once a later message was consumed, no follow-up had left a dead letter (this project's ROUTER has no slow or fast).
    await sentinelConsumed(1);
    expect(await deadLettersOf(messages.map((m) => m.id))).toEqual([]);
  });

  describe('dead-letter reasons', () => {
    async function lastDeadLetterFor(id: string) {
      return (await deadLetterStub(env).list(500, 0)).find((d) => d.event_id === id);
    }

    it('destination_removed: a retry names a destination the config no longer has', async () => {
      const e = sampleEvent();
      await runBatch([routerMessage(e, { pending: { gone: { attempts: 1, rules: ['old'] } } })], runEnv());
      expect(await lastDeadLetterFor(e.id as string)).toMatchObject({ destination: 'gone', reason: 'destination_removed', rules: ['old'] });
    });

    it('body_expired: a large event whose stored body is gone', async () => {
      const e = sampleEvent();
      const msg = routerMessage(e, { body_ref: { shard: 'ledger-0' } });
      delete msg.body;
      const { result } = await runBatch([msg], runEnv());
      expect(result.explicitAcks).toHaveLength(1);
      expect(await lastDeadLetterFor(e.id as string)).toMatchObject({ reason: 'body_expired', destination: '(router)' });
    });

    it('malformed_queue_message: something that is not a router message', async () => {
      const { batch, result } = await runBatch([{ hello: 'world' } as unknown as RouterMessage], runEnv());
      expect(result.explicitAcks).toHaveLength(1);
      // Found by the message's id: the real queue's consumer may add other tests' records after it.
      expect(await lastDeadLetterFor(`queue-message:${batch.messages[0]!.id}`)).toMatchObject({
        reason: 'malformed_queue_message',
        event_type: 'unknown',
        destination: '(router)',
      });
    });

    it('redirect_not_followed: a 3xx is permanent', async () => {
      routes.set(CRM, () => new Response(null, { status: 302, headers: { Location: 'https://elsewhere.example/' } }));
      routes.set(OPS, () => new Response('ok'));
      const e = sampleEvent();
      await runBatch([routerMessage(e)], quickEnv());
      expect(seen.map((r) => r.url).sort()).toEqual([CRM, OPS].sort()); // never followed to elsewhere.example
      expect(await lastDeadLetterFor(e.id as string)).toMatchObject({ destination: 'crm', reason: 'redirect_not_followed', last_status: 302 });
      // Not retried: once a later message was consumed, crm had it once.
      await sentinelConsumed(1);
      expect(seen.map((r) => r.url).sort()).toEqual([CRM, OPS].sort());
    });

    it('message_too_large: an event over 128 KB cannot go to a queue destination', async () => {
      routes.set(CRM, () => new Response('ok'));
      const e = sampleEvent({ event: 'dsync.user.created', data: { id: 'directory_user_big', blob: 'x'.repeat(130 * 1024) } });
      await runBatch([routerMessage(e)], runEnv());
      expect(await lastDeadLetterFor(e.id as string)).toMatchObject({ destination: 'audit', reason: 'message_too_large' });
      expect(seen.map((r) => r.url)).toEqual([CRM]); // the HTTP destination still got it
    });

    it('consumer_retries_exhausted: messages the platform moved to the DLQ are kept', async () => {
      const e = sampleEvent();
      const { batch, result } = await runBatch([routerMessage(e)], runEnv(), 'workos-router-events-dlq');
      // Each message acked once its records are stored.
      expect(result.explicitAcks).toEqual(batch.messages.map((m) => m.id));
      expect(result.retryMessages).toEqual([]);
      // One record per destination still owed, each replayable.
      const records = (await deadLetterStub(env).list(500, 0)).filter((d) => d.event_id === e.id);
      expect(records.map((r) => r.destination).sort()).toEqual(['crm', 'ops']);
      for (const r of records) expect(r).toMatchObject({ reason: 'consumer_retries_exhausted', rules: ['users'], source: 'webhook' });
    });
  });

  it('does not ack when follow-ups cannot be enqueued', async () => {
    routes.set(CRM, () => new Response('boom', { status: 500 }));
    routes.set(OPS, () => new Response('ok'));
    vi.spyOn(env.EVENTS_QUEUE, 'sendBatch').mockRejectedValue(new Error('queue down'));
    const { result } = await runBatch([routerMessage(sampleEvent())], runEnv());
    expect(result.explicitAcks).toEqual([]);
    expect(result.retryMessages).toHaveLength(1);
  });
});

describe('dead letters of a batch of large events', () => {
  it('are stored in calls of bounded size: 4 events of 1.5 MB dead-lettered at 6 destinations each (36 MB of records) are all stored, and the batch acked', async () => {
    const names = ['d1', 'd2', 'd3', 'd4', 'd5', 'd6'];
    const router = {
      destinations: names.map((n) => ({ name: n, type: 'http', url: `https://${n}.example.test/` })),
      rules: [{ name: 'all', events: ['connection.activated'], to: names }],
    };
    for (const n of names) routes.set(`https://${n}.example.test/`, () => new Response('gone', { status: 404 }));
    const events = Array.from({ length: 4 }, (_, i) =>
      sampleEvent({ event: 'connection.activated', data: { id: `conn_big_${crypto.randomUUID()}`, object: 'connection', blob: String(i).repeat(1_500_000) } }),
    );
    const { result } = await runBatch(events.map((e) => routerMessage(e)), testEnv(router));
    expect(result.retryMessages).toEqual([]);
    expect(result.explicitAcks).toHaveLength(4);
    const stored = await deadLetterStub(env).list(500, 0);
    for (const e of events) {
      expect(stored.filter((d) => d.event_id === e.id).map((d) => [d.destination, d.reason]).sort()).toEqual(names.map((n) => [n, 'http_404']));
    }
  });
});
