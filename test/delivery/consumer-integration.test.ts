import { env } from 'cloudflare:workers';
import { WorkOS } from '@workos-inc/node';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { deadLetterStub } from '../../src/deadletters/store';
import { registryStub } from '../../src/destinations/registry';
import type { RouterMessage } from '../../src/queue/message';
import { routerMessage, runBatch, testEnv } from '../helpers/consumer';
import { sampleEvent as baseSample } from '../helpers/webhook';
import { CRM, OPS, SLACK } from './router';

/**
 * The consumer as it runs: batches are handed to the real queue handler, and
 * the follow-ups and dead letters it writes go to the real local queue and
 * store (this project's consumer then really consumes the follow-ups, under
 * the same ROUTER). `sendBatch` is only spied on, except where a test
 * simulates its failure.
 */
const runEnv = () => env;

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
    seen.push({ url: req.url, method: req.method, headers: new Headers(req.headers), body, text: async () => body, json: async () => JSON.parse(body) });
    const handler = routes.get(req.url);
    if (handler === undefined) throw new Error(`unexpected fetch ${req.url}`);
    return handler(req);
  });
});

afterEach(() => vi.restoreAllMocks());

/** Observes (does not replace) the follow-ups sent to the real queue. */
function captureFollowUps() {
  return vi.spyOn(env.EVENTS_QUEUE, 'sendBatch');
}

function followUpBodies(spy: ReturnType<typeof captureFollowUps>): { body: RouterMessage; delaySeconds?: number }[] {
  return spy.mock.calls.flatMap((c) => c[0] as { body: RouterMessage; delaySeconds?: number }[]);
}

describe('queue consumer', () => {
  it('delivers to every destination of every matching rule, once each, and acks', async () => {
    routes.set(CRM, () => new Response('ok'));
    routes.set(OPS, () => new Response('ok'));
    const followUps = captureFollowUps();
    const event = sampleEvent({ event: 'user.created' });
    const { result } = await runBatch([routerMessage(event)], runEnv());
    expect(result.explicitAcks).toHaveLength(1);
    expect(result.retryMessages).toEqual([]);
    expect(seen.map((r) => r.url).sort()).toEqual([CRM, OPS].sort());
    expect(followUps).not.toHaveBeenCalled();
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
    const followUps = captureFollowUps();
    const event = sampleEvent({ event: 'user.deleted' });
    const first = await runBatch([routerMessage(event)], runEnv());
    expect(first.result.explicitAcks).toHaveLength(1);
    const [retry] = followUpBodies(followUps);
    expect(retry?.body.pending).toEqual({ crm: { attempts: 1, rules: ['users'], not_before: expect.any(Number) } });
    expect(retry?.delaySeconds).toBeGreaterThanOrEqual(5);
    expect(retry?.delaySeconds).toBeLessThanOrEqual(10);

    // Handed over before its time (as a redelivery could be), it is not attempted but deferred again.
    seen = [];
    followUps.mockClear();
    const early = await runBatch([retry?.body as RouterMessage], runEnv());
    expect(early.result.explicitAcks).toHaveLength(1);
    expect(seen).toEqual([]);
    const [again] = followUpBodies(followUps);
    expect(again?.body.pending).toEqual(retry?.body.pending);
    expect(again?.delaySeconds).toBeGreaterThan(0);

    // As the queue hands it over once its delay has passed.
    seen = [];
    followUps.mockClear();
    const due = retry?.body as RouterMessage;
    const second = await runBatch([{ ...due, pending: { crm: { attempts: 1, rules: ['users'], not_before: Date.now() } } }], runEnv());
    expect(second.result.explicitAcks).toHaveLength(1);
    expect(seen.map((r) => r.url)).toEqual([CRM]); // ops, which succeeded, is not called again
    expect(followUps).not.toHaveBeenCalled();
  });

  it('404 goes to dead letters at once (no retry storm)', async () => {
    routes.set(CRM, () => new Response('nope', { status: 404 }));
    routes.set(OPS, () => new Response('ok'));
    const followUps = captureFollowUps();
    const event = sampleEvent({ event: 'user.created' });
    const { result } = await runBatch([routerMessage(event)], runEnv());
    expect(result.explicitAcks).toHaveLength(1);
    expect(followUps).not.toHaveBeenCalled();
    // By event id: the real queue's consumer may add other tests' records meanwhile.
    const items = (await deadLetterStub(env).list(500, 0)).filter((d) => d.event_id === event.id);
    expect(items).toHaveLength(1);
    expect(items[0]).toMatchObject({ event_id: event.id, destination: 'crm', reason: 'http_404', last_status: 404, attempts: 1, rules: ['users'] });
  });

  it('a timeout is retried', async () => {
    routes.set(CRM, (req) => new Promise<Response>((_resolve, reject) => req.signal.addEventListener('abort', () => reject(req.signal.reason))));
    routes.set(OPS, () => new Response('ok'));
    const followUps = captureFollowUps();
    await runBatch([routerMessage(sampleEvent({ event: 'user.created' }))], runEnv());
    const [retry] = followUpBodies(followUps);
    expect(retry?.body.pending).toEqual({ crm: { attempts: 1, rules: ['users'], not_before: expect.any(Number) } });
  });

  it('429 honours Retry-After', async () => {
    routes.set(CRM, () => new Response('slow down', { status: 429, headers: { 'Retry-After': '120' } }));
    routes.set(OPS, () => new Response('ok'));
    const followUps = captureFollowUps();
    await runBatch([routerMessage(sampleEvent({ event: 'user.created' }))], runEnv());
    expect(followUpBodies(followUps)[0]?.delaySeconds).toBe(120);
  });

  it('after max_attempts the delivery is dead-lettered with the last status', async () => {
    routes.set(CRM, () => new Response('boom', { status: 503 }));
    const followUps = captureFollowUps();
    const event = sampleEvent({ event: 'user.created' });
    const msg = routerMessage(event, { pending: { crm: { attempts: 2, rules: ['users'] } } });
    await runBatch([msg], runEnv());
    expect(followUps).not.toHaveBeenCalled();
    const items = (await deadLetterStub(env).list(500, 0)).filter((d) => d.event_id === event.id);
    expect(items).toHaveLength(1);
    expect(items[0]).toMatchObject({ event_id: event.id, destination: 'crm', reason: 'attempts_exhausted: http_503', last_status: 503, attempts: 3 });
  });

  it('an event no rule matches reaches nobody and is acked', async () => {
    const followUps = captureFollowUps();
    const { result } = await runBatch([routerMessage(sampleEvent({ event: 'session.created' }))], runEnv());
    expect(result.explicitAcks).toHaveLength(1);
    expect(seen).toHaveLength(0);
    expect(followUps).not.toHaveBeenCalled();
  });

  it('sends to a queue destination (the envelope as JSON)', async () => {
    routes.set(CRM, () => new Response('ok'));
    const send = vi.spyOn(env.AUDIT_QUEUE, 'send');
    const event = sampleEvent({ event: 'dsync.user.created' });
    await runBatch([routerMessage(event)], runEnv());
    expect(send).toHaveBeenCalledTimes(1);
    expect(send.mock.calls[0]?.[0]).toEqual(event);
    // Excluded by "!dsync.group.updated": nothing sent.
    send.mockClear();
    seen = [];
    await runBatch([routerMessage(sampleEvent({ event: 'dsync.group.updated' }))], runEnv());
    expect(send).not.toHaveBeenCalled();
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
    captureFollowUps();
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
    const followUps = captureFollowUps();
    await runBatch([routerMessage(sampleEvent())], testEnv(many));
    // 8 requests to the Internet; the registry, the flush and the trace write are calls to Cloudflare services, budgeted apart.
    expect(seen).toHaveLength(8);
    const [deferred] = followUpBodies(followUps);
    expect(Object.keys(deferred?.body.pending ?? {})).toEqual(['d8', 'd9']);
    expect(deferred?.delaySeconds).toBe(0);
  });

  it('queue deliveries are calls to Cloudflare services: they do not use the HTTP budget, and stay within 900 a batch', async () => {
    // Workers Free allows 50 requests to the Internet and 1,000 to Cloudflare services per invocation.
    const queues = {
      consumer_subrequest_budget: 8,
      destinations: Array.from({ length: 10 }, (_, i) => ({ name: `q${i}`, type: 'queue', queue: 'AUDIT_QUEUE' })),
      rules: [{ name: 'all', events: ['*'], to: Array.from({ length: 10 }, (_, i) => `q${i}`) }],
    };
    const followUps = captureFollowUps();
    const messages = Array.from({ length: 90 }, () => routerMessage(sampleEvent()));
    const { result } = await runBatch(messages, testEnv(queues));
    // 90 × 10 queue sends = 900 calls, plus the batch's own (registry, flush, trace): they cannot all fit in 900.
    const redelivered = result.retryMessages.length;
    // Nearly every message was delivered in this batch (a budget counting them against the 8 would take 2 or 3);
    // the last ones, which the 900 no longer covered, come back whole (each would fit a batch of its own).
    expect(result.explicitAcks.length).toBeGreaterThanOrEqual(85);
    expect(redelivered).toBeGreaterThan(0);
    expect(followUpBodies(followUps)).toEqual([]);
    expect(result.explicitAcks.length + redelivered).toBe(90);
  });

  it('a message that could never fit is split, not redelivered for ever: alone in a batch at the minimum budget', async () => {
    const router = {
      consumer_subrequest_budget: 8,
      destinations: Array.from({ length: 10 }, (_, i) => ({ name: `e${i}`, type: 'http', url: `https://e${i}.example.test/` })),
      rules: [{ name: 'all', events: ['*'], to: Array.from({ length: 10 }, (_, i) => `e${i}`) }],
    };
    for (let i = 0; i < 10; i++) routes.set(`https://e${i}.example.test/`, () => new Response('ok'));
    const followUps = captureFollowUps();
    const { result } = await runBatch([routerMessage(sampleEvent())], testEnv(router));
    // Not redelivered: acked, never retried whole.
    expect(result.retryMessages).toEqual([]);
    expect(result.explicitAcks).toHaveLength(1);
    // Split: what the budget covered was delivered now, and one follow-up carries exactly the rest.
    expect(seen.map((r) => r.url).sort()).toEqual(Array.from({ length: 8 }, (_, i) => `https://e${i}.example.test/`));
    const rest = followUpBodies(followUps);
    expect(rest).toHaveLength(1);
    expect(Object.keys(rest[0]?.body.pending ?? {}).sort()).toEqual(['e8', 'e9']);
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
    const followUps = captureFollowUps();
    const { result } = await runBatch([routerMessage(sampleEvent()), routerMessage(sampleEvent()), routerMessage(sampleEvent())], testEnv(two));
    expect(seen).toHaveLength(6); // the first two messages' three deliveries each: 8 - 6 = 2 left, too few for the third
    expect(result.explicitAcks).toHaveLength(2);
    expect(result.retryMessages).toHaveLength(1);
    expect(result.retryMessages[0]?.delaySeconds ?? 0).toBe(0);
    expect(followUps).not.toHaveBeenCalled();
  });

  it('dead-letters a message whose body is not JSON instead of failing the batch', async () => {
    routes.set(CRM, () => new Response('ok'));
    routes.set(OPS, () => new Response('ok'));
    captureFollowUps();
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
        { name: 'slow', type: 'http', url: 'https://slow.example.test/', timeout_ms: 5000 },
        { name: 'fast', type: 'http', url: 'https://fast.example.test/' },
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
    const followUps = captureFollowUps();
    const { result } = await runBatch(
      [routerMessage(sampleEvent({ event: 'user.created' })), routerMessage(sampleEvent({ event: 'organization.created' }))],
      testEnv(router),
    );
    expect(result.explicitAcks).toHaveLength(2);
    expect(followUps).not.toHaveBeenCalled();
  });

  describe('dead-letter reasons', () => {
    async function lastDeadLetterFor(id: string) {
      return (await deadLetterStub(env).list(500, 0)).find((d) => d.event_id === id);
    }

    it('destination_removed: a retry names a destination the config no longer has', async () => {
      captureFollowUps();
      const e = sampleEvent();
      await runBatch([routerMessage(e, { pending: { gone: { attempts: 1, rules: ['old'] } } })], runEnv());
      expect(await lastDeadLetterFor(e.id as string)).toMatchObject({ destination: 'gone', reason: 'destination_removed', rules: ['old'] });
    });

    it('body_expired: a large event whose stored body is gone', async () => {
      captureFollowUps();
      const e = sampleEvent();
      const msg = routerMessage(e, { body_ref: { shard: 'ledger-0' } });
      delete msg.body;
      const { result } = await runBatch([msg], runEnv());
      expect(result.explicitAcks).toHaveLength(1);
      expect(await lastDeadLetterFor(e.id as string)).toMatchObject({ reason: 'body_expired', destination: '(router)' });
    });

    it('malformed_queue_message: something that is not a router message', async () => {
      captureFollowUps();
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
      const followUps = captureFollowUps();
      const e = sampleEvent();
      await runBatch([routerMessage(e)], runEnv());
      expect(followUps).not.toHaveBeenCalled();
      expect(seen.map((r) => r.url).sort()).toEqual([CRM, OPS].sort()); // never followed to elsewhere.example
      expect(await lastDeadLetterFor(e.id as string)).toMatchObject({ destination: 'crm', reason: 'redirect_not_followed', last_status: 302 });
    });

    it('message_too_large: an event over 128 KB cannot go to a queue destination', async () => {
      routes.set(CRM, () => new Response('ok'));
      captureFollowUps();
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
    captureFollowUps();
    const { result } = await runBatch(events.map((e) => routerMessage(e)), testEnv(router));
    expect(result.retryMessages).toEqual([]);
    expect(result.explicitAcks).toHaveLength(4);
    const stored = await deadLetterStub(env).list(500, 0);
    for (const e of events) {
      expect(stored.filter((d) => d.event_id === e.id).map((d) => [d.destination, d.reason]).sort()).toEqual(names.map((n) => [n, 'http_404']));
    }
  });
});
