/**
 * The example consumer, run inside workerd with its own wrangler.toml: batches
 * built with `createMessageBatch` (bodies exactly as the router's queue
 * destination sends them: the envelope, plus `"stale": true` when stale) and
 * per-message outcomes read back with `getQueueResult`. Only the users API
 * (outbound `fetch`) is played by the test.
 */
import { createExecutionContext, createMessageBatch, getQueueResult } from 'cloudflare:test';
import { env } from 'cloudflare:workers';
import { afterEach, beforeEach, describe, expect, expectTypeOf, it, vi } from 'vitest';
import { EVENT_TYPES, type EventPayload, type RoutedEvent } from 'workos-event-router/events';
import { FIXTURES } from '../../../test/fixtures/events';
import worker, { type Env, actionFor } from '../src/index';

const API = 'https://users.example.com';

interface Call {
  method: string;
  url: string;
  headers: Headers;
  body: unknown;
}

let calls: Call[] = [];
let answer: (call: Call) => Response | Promise<Response> = () => new Response(null, { status: 204 });
let logs: Record<string, unknown>[] = [];

beforeEach(() => {
  calls = [];
  logs = [];
  answer = () => new Response(null, { status: 204 });
  vi.spyOn(globalThis, 'fetch').mockImplementation(async (input, init) => {
    const req = new Request(input as RequestInfo, init);
    const text = await req.text();
    const call: Call = { method: req.method, url: req.url, headers: req.headers, body: text === '' ? undefined : JSON.parse(text) };
    calls.push(call);
    return answer(call);
  });
  for (const level of ['log', 'warn', 'error'] as const) {
    vi.spyOn(console, level).mockImplementation((line: unknown) => {
      try {
        logs.push(JSON.parse(String(line)) as Record<string, unknown>);
      } catch {
        logs.push({ text: String(line) });
      }
    });
  }
});

afterEach(() => {
  vi.restoreAllMocks();
});

/** A body as the router's queue destination sends it (`{ ...event, stale: true }` when stale, JSON). */
function routed(event: object, stale = false): unknown {
  return JSON.parse(JSON.stringify(stale ? { ...event, stale: true } : event));
}

let seq = 0;

async function run(bodies: unknown[], attempts = 1, runEnv: Env = env as unknown as Env) {
  const batch = createMessageBatch<unknown>(
    'workos-audit',
    bodies.map((body) => ({ id: `msg-${++seq}`, timestamp: new Date(), attempts, body })),
  );
  // getQueueResult reports which messages were retried, not their delay: record it on the way.
  const delays = new Map<string, number | undefined>();
  for (const m of batch.messages) {
    const retry = m.retry.bind(m);
    vi.spyOn(m, 'retry').mockImplementation((options) => {
      delays.set(m.id, options?.delaySeconds);
      retry(options);
    });
  }
  const ctx = createExecutionContext();
  await worker.queue(batch as MessageBatch<unknown>, runEnv);
  const result = await getQueueResult(batch, ctx);
  const ids = batch.messages.map((m) => m.id);
  return { result, ids, delays };
}

describe('the wrangler.toml the example ships with', () => {
  it('binds USERS_API_URL', () => {
    expect((env as unknown as Env).USERS_API_URL).toBe(API);
  });
});

describe('handled events', () => {
  it('dsync.user.created: PUT of the directory user, narrowed fields, then ack', async () => {
    const e = FIXTURES['dsync.user.created'];
    const { result, ids } = await run([routed(e)]);
    expect(result.explicitAcks).toEqual(ids);
    expect(result.retryMessages).toEqual([]);
    expect(calls).toHaveLength(1);
    expect(calls[0]).toMatchObject({ method: 'PUT', url: `${API}/directory-users/${e.data.id}` });
    expect(calls[0]?.headers.get('idempotency-key')).toBe(e.id);
    expect(calls[0]?.body).toEqual({
      directory_id: e.data.directory_id,
      organization_id: e.data.organization_id,
      email: e.data.email,
      first_name: e.data.first_name,
      last_name: e.data.last_name,
      active: true,
      updated_at: e.data.updated_at,
    });
  });

  it('user.updated: PUT of the user', async () => {
    const e = FIXTURES['user.updated'];
    const { result } = await run([routed(e)]);
    expect(result.retryMessages).toEqual([]);
    expect(calls.map((c) => `${c.method} ${c.url}`)).toEqual([`PUT ${API}/users/${e.data.id}`]);
    expect(calls[0]?.body).toMatchObject({ email: e.data.email, email_verified: true });
  });

  it.each(['user.deleted', 'dsync.user.deleted'] as const)('%s: DELETE, acked on 2xx and on 404 (already gone)', async (type) => {
    const e = FIXTURES[type];
    const path = type === 'user.deleted' ? 'users' : 'directory-users';
    const first = await run([routed(e)]);
    expect(first.result.explicitAcks).toEqual(first.ids);
    answer = () => new Response('not found', { status: 404 });
    const again = await run([routed(e)]);
    expect(again.result.explicitAcks).toEqual(again.ids);
    expect(calls.map((c) => `${c.method} ${c.url}`)).toEqual([`DELETE ${API}/${path}/${e.data.id}`, `DELETE ${API}/${path}/${e.data.id}`]);
  });

  it('a stale update is acked without being applied (a newer one was already routed)', async () => {
    const { result, ids } = await run([routed(FIXTURES['dsync.user.updated'], true), routed(FIXTURES['user.created'], true)]);
    expect(result.explicitAcks).toEqual(ids);
    expect(calls).toEqual([]);
    expect(logs.filter((l) => l.msg === 'stale_skipped').map((l) => l.event_type)).toEqual(['dsync.user.updated', 'user.created']);
  });
});

describe('everything else is acked, never retried', () => {
  it('every catalog type, stale or not, is acked; only the six handled types call the API', async () => {
    const bodies = EVENT_TYPES.flatMap((type) => [routed(FIXTURES[type]), routed(FIXTURES[type], true)]);
    for (let i = 0; i < bodies.length; i += 100) {
      const { result, ids } = await run(bodies.slice(i, i + 100));
      expect(result.explicitAcks).toEqual(ids);
      expect(result.retryMessages).toEqual([]);
    }
    // Non-stale: 4 PUTs and 2 DELETEs; stale: the 2 DELETEs again (a deletion is never skipped).
    expect(calls.map((c) => c.method).sort()).toEqual(['DELETE', 'DELETE', 'DELETE', 'DELETE', 'PUT', 'PUT', 'PUT', 'PUT']);
  });

  it('an event type added after this catalog is acked and logged, not a crash', async () => {
    const future = { id: 'event_01NEWTYPE', event: 'widget.frobnicated', data: { id: 'widget_01' }, created_at: '2026-11-20T10:00:00.000Z' };
    const { result, ids } = await run([routed(future)]);
    expect(result.explicitAcks).toEqual(ids);
    expect(calls).toEqual([]);
    expect(logs).toContainEqual({ level: 'info', msg: 'unknown_event_type', event_id: 'event_01NEWTYPE', event_type: 'widget.frobnicated' });
  });

  it('a malformed body is acked (retrying cannot fix it) with an error line naming the reason', async () => {
    const { result, ids } = await run(['not json', { id: 'event_01', event: 'user.created', created_at: 'x' }]);
    expect(result.explicitAcks).toEqual(ids);
    expect(logs.filter((l) => l.level === 'error').map((l) => l.reason)).toEqual([
      'The message body is not a JSON object.',
      'The event has no object "data".',
    ]);
  });
});

describe('failures of the users API', () => {
  it.each([
    ['503', () => new Response('busy', { status: 503 })],
    ['429', () => new Response('slow down', { status: 429 })],
    ['a network error', () => Promise.reject(new TypeError('network'))],
  ])('%s: the message is retried with backoff, not acked', async (_label, failure) => {
    answer = failure as () => Response | Promise<Response>;
    const { result, ids, delays } = await run([routed(FIXTURES['dsync.user.created'])], 3);
    expect(result.explicitAcks).toEqual([]);
    expect(result.retryMessages).toEqual([{ msgId: ids[0] }]);
    expect([...delays]).toEqual([[ids[0], 40]]); // third attempt: 10 s × 2²
  });

  it('a 400 is permanent: acked with an error line', async () => {
    answer = () => new Response('bad', { status: 400 });
    const { result, ids } = await run([routed(FIXTURES['user.created'])]);
    expect(result.explicitAcks).toEqual(ids);
    expect(logs).toContainEqual(expect.objectContaining({ level: 'error', msg: 'rejected', status: 400 }));
  });

  it('each message gets its own outcome in a mixed batch', async () => {
    const ok = FIXTURES['user.created'];
    const failing = FIXTURES['dsync.user.created'];
    answer = (call) => (call.url.includes(failing.data.id) ? new Response('busy', { status: 503 }) : new Response(null, { status: 204 }));
    const { result, ids, delays } = await run([routed(ok), routed(failing), routed(FIXTURES['organization.created'])]);
    expect(result.explicitAcks.sort()).toEqual([ids[0], ids[2]].sort());
    expect(result.retryMessages).toEqual([{ msgId: ids[1] }]);
    expect([...delays]).toEqual([[ids[1], 10]]);
  });

  it('sends the bearer token when USERS_API_TOKEN is set', async () => {
    await run([routed(FIXTURES['user.deleted'])], 1, { USERS_API_URL: `${API}/`, USERS_API_TOKEN: 'tok_test' });
    expect(calls[0]?.url).toBe(`${API}/users/${FIXTURES['user.deleted'].data.id}`);
    expect(calls[0]?.headers.get('authorization')).toBe('Bearer tok_test');
  });
});

describe('typed narrowing', () => {
  it('actionFor reads each payload by its type (compile time and run time)', () => {
    // Compile time only (tsc checks it; never called): each case sees its own payload type.
    const _narrowed = (e: RoutedEvent) => {
      switch (e.event) {
        case 'dsync.user.created':
          expectTypeOf(e.data).toEqualTypeOf<EventPayload<'dsync.user.created'>>();
          return e.data.email;
        case 'user.deleted':
          expectTypeOf(e.data.email).toEqualTypeOf<string>();
          return e.data.email;
        default:
          return e.event;
      }
    };
    void _narrowed;
    // Run time: what the consumer's own actionFor decides from each payload.
    const created = FIXTURES['dsync.user.created'];
    expect(actionFor(created)).toEqual({
      kind: 'put',
      path: `/directory-users/${created.data.id}`,
      body: {
        directory_id: created.data.directory_id,
        organization_id: created.data.organization_id,
        email: 'lena.fischer@example.com',
        first_name: 'Lena',
        last_name: 'Fischer',
        active: true,
        updated_at: '2026-11-20T12:50:33.380Z',
      },
    });
    expect(actionFor(FIXTURES['user.deleted'])).toEqual({ kind: 'delete', path: `/users/${FIXTURES['user.deleted'].data.id}` });
    expect(actionFor(FIXTURES['role.created'])).toEqual({ kind: 'skip', why: 'not_handled' });
    expect(actionFor({ ...FIXTURES['dsync.user.updated'], stale: true })).toEqual({ kind: 'skip', why: 'stale' });
    expect(actionFor({ ...FIXTURES['dsync.user.deleted'], stale: true })).toMatchObject({ kind: 'delete' });
    expect(actionFor(FIXTURES['connection.activated'])).toEqual({ kind: 'skip', why: 'not_handled' });
  });
});
