/**
 * Error paths no other test pins down (audit: every error path has a test
 * asserting its status and error code). Each test triggers one error site
 * of src/, named by its condition in the title, through the real app, asserts the HTTP status
 * and the `error` code (the console answers HTML: its status and page text),
 * and, where the README or SECURITY.md promises it, that nothing changed.
 */
import { createExecutionContext, runInDurableObject } from 'cloudflare:test';
import { env, exports } from 'cloudflare:workers';
import { afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { app } from '../../src/app';
import { createSession } from '../../src/console/session';
import { deadLetterRecord, deadLetterStub } from '../../src/deadletters/store';
import worker from '../../src/index';
import { reconcilerStub } from '../../src/reconcile/reconciler';
import { makeEvent } from '../fixtures/events';
import { testEnv } from '../helpers/consumer';
import { watchLogs } from '../helpers/observe';
import { deliverSentinel, observeAudit } from '../helpers/audit-sentinel';

const TOKEN = 'test-admin-token';
const AUTH = { Authorization: `Bearer ${TOKEN}` };
const ORIGIN = 'https://router.test';
/** Waits for the consumer: about 1 s batch timeout, plus slack. */
const DELIVERY = { timeout: 10_000, interval: 50 };

afterEach(() => vi.restoreAllMocks());

function admin(path: string, init: RequestInit = {}): Promise<Response> {
  return exports.default.fetch(new Request(`${ORIGIN}/admin${path}`, { ...init, headers: { ...AUTH, ...(init.headers ?? {}) } }));
}

async function expectError(res: Response, status: number, error: string, message?: RegExp): Promise<string> {
  expect(res.headers.get('content-type')).toMatch(/application\/json/);
  const body = (await res.json()) as { error: string; message: string };
  expect({ status: res.status, error: body.error }, body.message).toEqual({ status, error });
  expect(typeof body.message).toBe('string');
  if (message !== undefined) expect(body.message).toMatch(message);
  return body.message;
}

/** A reason no other test uses: filters name it so that only this test's records are selected. */
function newTag(): string {
  return `t${crypto.randomUUID().replace(/-/g, '').slice(0, 12)}`;
}

async function addDeadLetters(tag: string, n: number): Promise<string[]> {
  const events = Array.from({ length: n }, () => makeEvent('user.created'));
  await deadLetterStub(env).add(
    events.map((e) => deadLetterRecord({ event_id: e.id, event_type: e.event, destination: 'audit', rules: ['everything-to-audit'], reason: `${tag}_http_500`, body: JSON.stringify(e) })),
  );
  return events.map((e) => e.id);
}

async function taggedCount(tag: string): Promise<number> {
  return (await deadLetterStub(env).list(500, 0)).filter((r) => r.reason.startsWith(tag)).length;
}

/** A Durable Object namespace whose objects fail every call (an unexpected exception inside a route). */
function failingNamespace(real: Env['DEAD_LETTERS']): Env['DEAD_LETTERS'] {
  const stub = new Proxy({}, { get: () => () => Promise.reject(new Error('secret detail: storage exploded')) });
  return { idFromName: (n: string) => real.idFromName(n), get: () => stub } as unknown as Env['DEAD_LETTERS'];
}

describe('POST /admin/reconcile', () => {
  it('POST /admin/reconcile — 409 reconcile_disabled when the reconciler itself reports disabled; no run, no WorkOS request', async () => {
    const fetchSpy = vi.spyOn(globalThis, 'fetch');
    const stub = reconcilerStub(env);
    const before = await stub.status();
    // The Worker has the key (so the route's own check passes); the reconciler object runs without it.
    let original!: Env;
    await runInDurableObject(stub, (instance) => {
      const holder = instance as unknown as { env: Env };
      original = holder.env;
      holder.env = { ...original, WORKOS_API_KEY: '' } as Env;
    });
    try {
      await expectError(await admin('/reconcile', { method: 'POST' }), 409, 'reconcile_disabled', /WORKOS_API_KEY/);
    } finally {
      await runInDurableObject(stub, (instance) => void ((instance as unknown as { env: Env }).env = original));
    }
    expect(fetchSpy).not.toHaveBeenCalled();
    const after = await stub.status();
    expect(after.last_run_at).toBe(before.last_run_at);
    expect(after.last_run).toEqual(before.last_run);
  });
});

describe('POST /admin/dead-letters/replay and /discard: checks the validation table does not reach', () => {
  for (const action of ['replay', 'discard'] as const) {
    it(`${action}: a filter text over 256 characters, or over 100 event-type patterns — 400 invalid_request, nothing changed`, async () => {
      const tag = newTag();
      const ids = await addDeadLetters(tag, 2);
      const before = await deadLetterStub(env).count();
      const audit = observeAudit();
      const cases: [unknown, RegExp][] = [
        [{ filter: { destination: 'd'.repeat(257) } }, /^filter\.destination must be at most 256 characters long\.$/],
        [{ filter: { reason: `${tag}${'r'.repeat(257)}` } }, /^filter\.reason must be at most 256 characters long\.$/],
        [{ filter: { reason: `${tag}*`, event_type: Array.from({ length: 101 }, (_, i) => `user.t${i}`) } }, /^filter\.event_type takes at most 100 patterns\.$/],
      ];
      for (const [body, message] of cases) {
        await expectError(await admin(`/dead-letters/${action}`, { method: 'POST', body: JSON.stringify(body) }), 400, 'invalid_request', message);
      }
      // Exactly 256 characters and exactly 100 patterns are accepted (the limits are the sites above, not something else).
      const ok = await admin(`/dead-letters/${action}`, {
        method: 'POST',
        body: JSON.stringify({ dry_run: true, filter: { destination: 'd'.repeat(256), event_type: Array.from({ length: 100 }, (_, i) => `user.t${i}`) } }),
      });
      expect(ok.status).toBe(200);
      // Nothing was enqueued: a sentinel sent after these requests is delivered, and none of this test's dead letters before it.
      await deliverSentinel(audit.deliveredFor, DELIVERY);
      for (const id of ids) expect(await audit.deliveriesOf(id), id).toEqual([]);
      expect(await deadLetterStub(env).count()).toBe(before);
      expect(await taggedCount(tag)).toBe(2);
      expect((await deadLetterStub(env).jobs()).filter((j) => j.filter.reason?.startsWith(tag))).toEqual([]);
    }, 2 * DELIVERY.timeout);
  }

  it('discard: a malformed Idempotency-Key (tested elsewhere for replay only) — 400 invalid_request, nothing discarded', async () => {
    const tag = newTag();
    await addDeadLetters(tag, 1);
    for (const key of [' ', 'a b', 'a\tb', 'k'.repeat(256)]) {
      const res = await admin('/dead-letters/discard', { method: 'POST', headers: { 'Idempotency-Key': key }, body: JSON.stringify({ filter: { reason: `${tag}*` } }) });
      await expectError(res, 400, 'invalid_request', /Idempotency-Key/);
    }
    expect(await taggedCount(tag)).toBe(1);
  });
});

describe('GET /admin/events: query checks not reached elsewhere', () => {
  it('?destination= over 64 characters — 400 invalid_request', async () => {
    await expectError(await admin(`/events?destination=${'d'.repeat(65)}`), 400, 'invalid_request', /^destination must be a destination name\.$/);
    expect((await admin(`/events?destination=${'d'.repeat(64)}`)).status).toBe(200);
  });

  it('?type= with over 100 patterns — 400 invalid_request', async () => {
    const types = Array.from({ length: 101 }, (_, i) => `user.t${i}`);
    await expectError(await admin(`/events?type=${types.join(',')}`), 400, 'invalid_request', /^type takes at most 100 patterns\.$/);
    expect((await admin(`/events?type=${types.slice(1).join(',')}`)).status).toBe(200);
  });
});

describe('POST /admin/events/replay: body checks not reached elsewhere (nothing is sent)', () => {
  const replay = (body: unknown) => admin('/events/replay', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) });
  /** A traced event with its body kept, delivered once to audit: what a replay of `{}` (every traced event) to audit would send again. */
  let bait = '';
  const audit = observeAudit();
  beforeAll(async () => {
    bait = await deliverSentinel(audit.deliveredFor, DELIVERY);
  }, 2 * DELIVERY.timeout);
  /** Checks, after the requests under test, that the audit destination received nothing more. */
  const watch = () => async () => {
    // Nothing was sent: a sentinel sent after the refused requests is delivered, and the traced event was not sent
    // again before it (the audit sink holds its one delivery, from beforeAll).
    await deliverSentinel(audit.deliveredFor, DELIVERY);
    expect(await audit.deliveriesOf(bait)).toHaveLength(1);
  };

  it('no "to": 400 invalid_request', async () => {
    const nothingSent = watch();
    await expectError(await replay({ filter: {} }), 400, 'invalid_request', /^to is required/);
    await expectError(await replay({ filter: {}, dry_run: true }), 400, 'invalid_request', /^to is required/);
    await nothingSent();
  }, 2 * DELIVERY.timeout);

  it('a cursor that is not a string: 400 invalid_request', async () => {
    const nothingSent = watch();
    for (const cursor of [5, null, ['x'], { at: 1 }]) {
      await expectError(await replay({ filter: {}, to: 'audit', cursor }), 400, 'invalid_request', /^cursor must be a string/);
    }
    await nothingSent();
  }, 2 * DELIVERY.timeout);

  it('filter.destination and a "to" over 64 characters — 400 invalid_request', async () => {
    const nothingSent = watch();
    for (const destination of [5, '', 'd'.repeat(65), ['audit']]) {
      await expectError(await replay({ filter: { destination }, to: 'audit' }), 400, 'invalid_request', /^filter\.destination must be a destination name\.$/);
    }
    await expectError(await replay({ filter: {}, to: 't'.repeat(65) }), 400, 'invalid_request', /^to must be a destination name\.$/);
    await expectError(await replay({ filter: {}, to: 5 }), 400, 'invalid_request', /^to must be a destination name\.$/);
    await nothingSent();
  }, 2 * DELIVERY.timeout);

  it('filter.event_type not a pattern or a list of them, empty, over 100, or invalid — 400 invalid_request', async () => {
    const nothingSent = watch();
    const cases: [unknown, RegExp][] = [
      [[], /^filter\.event_type must be a pattern or a non-empty list/],
      [{ in: 'user.*' }, /^filter\.event_type must be a pattern or a non-empty list/],
      [Array.from({ length: 101 }, (_, i) => `user.t${i}`), /^filter\.event_type takes at most 100 patterns/],
      ['', /^filter\.event_type: empty pattern/],
      [['user.*', 5], /^filter\.event_type\[1\]: empty pattern/],
      ['user created', /^filter\.event_type: invalid pattern/],
    ];
    for (const [eventType, message] of cases) {
      await expectError(await replay({ filter: { event_type: eventType }, to: 'audit' }), 400, 'invalid_request', message);
    }
    await nothingSent();
  }, 2 * DELIVERY.timeout);

  it('filter.since / filter.until not a time — 400 invalid_request', async () => {
    const nothingSent = watch();
    await expectError(await replay({ filter: { since: 'yesterday' }, to: 'audit' }), 400, 'invalid_request', /^filter\.since must be an ISO 8601 time/);
    await expectError(await replay({ filter: { since: '2026-02-30' }, to: 'audit' }), 400, 'invalid_request', /^filter\.since must be an ISO 8601 time/);
    await expectError(await replay({ filter: { until: 1767225600000 }, to: 'audit' }), 400, 'invalid_request', /^filter\.until must be an ISO 8601 time/);
    await expectError(await replay({ filter: { until: '2026-01-01T00:00:00' }, to: 'audit' }), 400, 'invalid_request', /^filter\.until must be an ISO 8601 time/);
    await nothingSent();
  }, 2 * DELIVERY.timeout);

  it('filter.since not earlier than filter.until (an empty range, refused as the dead-letter filters refuse it) — 400 invalid_request', async () => {
    const nothingSent = watch();
    for (const [since, until] of [['2026-11-02', '2026-11-01'], ['2026-11-01T00:00:00Z', '2026-11-01']]) {
      await expectError(await replay({ filter: { since, until }, to: 'audit', dry_run: true }), 400, 'invalid_request', /^filter\.since must be earlier than filter\.until\.$/);
      await expectError(await admin(`/events?since=${since}&until=${until}`), 400, 'invalid_request', /^since must be earlier than until\.$/);
    }
    expect((await replay({ filter: { since: '2026-11-01', until: '2026-11-02' }, to: 'audit', dry_run: true })).status).toBe(200);
    expect((await admin('/events?since=2026-11-01&until=2026-11-02')).status).toBe(200);
    await nothingSent();
  }, 2 * DELIVERY.timeout);
});

describe("Hono's own paths under /admin", () => {
  it('an unknown admin path (or a known one with another method) is 404 not_found once authorized; 401 unauthorized before that', async () => {
    for (const [path, method] of [['/nope', 'GET'], ['/dead-letters/1/nope', 'POST'], ['/reconcile', 'GET'], ['/status', 'POST'], ['/metrics', 'DELETE']] as const) {
      await expectError(await admin(path, { method }), 404, 'not_found', /^No such route\.$/);
      const anon = await exports.default.fetch(new Request(`${ORIGIN}/admin${path}`, { method }));
      expect(anon.headers.get('www-authenticate')).toBe('Bearer');
      await expectError(anon, 401, 'unauthorized');
    }
  });
});

describe('500 internal_error through the real app', () => {
  it('an unexpected exception in an admin route: 500 internal_error, generic message, logged as unhandled_error', async () => {
    const logs = watchLogs();
    const broken = { ...env, DEAD_LETTERS: failingNamespace(env.DEAD_LETTERS) } as Env;
    const res = await worker.fetch(new Request(`${ORIGIN}/admin/status`, { headers: AUTH }), broken, createExecutionContext());
    const message = await expectError(res, 500, 'internal_error');
    expect(message).toBe('The router hit an unexpected error.');
    expect(logs.records().filter((r) => r.msg === 'unhandled_error')).toEqual([{ level: 'error', msg: 'unhandled_error', path: '/admin/status', error: expect.stringContaining('storage exploded') }]);
  });
});

describe('console error pages (HTML: the status and the page, no JSON code)', () => {
  const ROUTER = { destinations: [{ name: 'audit', type: 'queue', queue: 'AUDIT_QUEUE' }], rules: [{ name: 'all', events: ['*'], to: ['audit'] }] };
  const request = (path: string, init: RequestInit, e: Env) => app.request(`${ORIGIN}${path}`, { redirect: 'manual', ...init }, e);
  async function sessionCookie(): Promise<string> {
    const { value } = await createSession(TOKEN, Date.now());
    return `router_console=${value}`;
  }

  it('POST /console/login when the console is behind Access, or off: 403 "Not available", no session', async () => {
    const modes: [string, Env][] = [
      ['access', testEnv(ROUTER, { ACCESS_TEAM_DOMAIN: 'team.cloudflareaccess.com', ACCESS_AUD: 'aud' })],
      ['disabled', testEnv(ROUTER, { ADMIN_TOKEN: undefined })],
    ];
    for (const [mode, e] of modes) {
      const res = await request('/console/login', { method: 'POST', headers: { 'Content-Type': 'application/x-www-form-urlencoded', Origin: ORIGIN }, body: new URLSearchParams({ token: TOKEN }) }, e);
      expect(res.status, mode).toBe(403);
      expect(res.headers.get('content-type'), mode).toContain('text/html');
      expect(await res.text(), mode).toContain('<h1>Not available</h1>');
      expect(res.headers.getSetCookie(), mode).toEqual([]);
    }
  });

  it('GET /console/login when the console is off: 403 "Console disabled" like every other page (it redirected to /console); behind Access it redirects there', async () => {
    const off = await request('/console/login', {}, testEnv(ROUTER, { ADMIN_TOKEN: undefined }));
    expect(off.status).toBe(403);
    expect(await off.text()).toContain('<h1>Console disabled</h1>');
    const access = await request('/console/login', {}, testEnv(ROUTER, { ACCESS_TEAM_DOMAIN: 'team.cloudflareaccess.com', ACCESS_AUD: 'aud' }));
    expect(access.status).toBe(303);
    expect(access.headers.get('location')).toBe('/console');
  });

  it('a page needing ROUTER while it is invalid: 500 with the config_invalid message', async () => {
    const broken = testEnv('{not json');
    const cookie = await sessionCookie();
    for (const path of ['/console/events', '/console/events/event_x', '/console/destinations']) {
      const res = await request(path, { headers: { Cookie: cookie } }, broken);
      expect(res.status, path).toBe(500);
      expect(res.headers.get('content-type'), path).toContain('text/html');
      const text = await res.text();
      expect(text, path).toContain('Something went wrong');
      expect(text, path).toContain('The router configuration is invalid: see the overview.');
    }
  });

  it('an unexpected exception in a console page: 500 "Something went wrong", nothing leaked, logged as console_error', async () => {
    const logs = watchLogs();
    const e = { ...testEnv(ROUTER), DEAD_LETTERS: failingNamespace(env.DEAD_LETTERS) } as Env;
    const res = await request('/console/dead-letters', { headers: { Cookie: await sessionCookie() } }, e);
    expect(res.status).toBe(500);
    expect(res.headers.get('content-type')).toContain('text/html');
    expect(res.headers.get('content-security-policy')).toContain("default-src 'none'");
    const text = await res.text();
    expect(text).toContain('<h1>Something went wrong</h1>');
    expect(text).toContain('The router could not complete this page; see the Worker logs.');
    expect(text).not.toContain('storage exploded');
    expect(logs.records().filter((r) => r.msg === 'console_error')).toEqual([{ level: 'error', msg: 'console_error', path: '/console/dead-letters', error: expect.stringContaining('storage exploded') }]);
  });
});

describe('request bodies past the admin and console limits (64 KB): refused before they are read whole', () => {
  /** A body streamed in chunks with no Content-Length (the limit then counts what arrives). */
  function streamed(bytes: number): ReadableStream<Uint8Array> {
    let sent = 0;
    return new ReadableStream({
      pull(controller) {
        if (sent >= bytes) return controller.close();
        const n = Math.min(16 * 1024, bytes - sent);
        sent += n;
        controller.enqueue(new TextEncoder().encode('x'.repeat(n)));
      },
    });
  }

  it('admin: 413 payload_too_large with or without a Content-Length, nothing discarded; unauthorized first: 401', async () => {
    const tag = newTag();
    await addDeadLetters(tag, 2);
    const filter = JSON.stringify({ filter: { reason: `${tag}*` }, padding: 'x'.repeat(70 * 1024) });
    const sized = await admin('/dead-letters/discard', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: filter });
    await expectError(sized, 413, 'payload_too_large', /64 KB/);
    // Called in-process: through exports.default.fetch the unread rest of a streamed body breaks the test's loopback connection.
    const chunked = await app.request(
      `${ORIGIN}/admin/dead-letters/discard`,
      { method: 'POST', headers: { ...AUTH, 'Content-Type': 'application/json' }, body: streamed(70 * 1024), duplex: 'half' } as RequestInit,
      env,
    );
    await expectError(chunked, 413, 'payload_too_large');
    await expectError(await exports.default.fetch(new Request(`${ORIGIN}/admin/dead-letters/discard`, { method: 'POST', body: filter })), 401, 'unauthorized');
    expect(await taggedCount(tag)).toBe(2);
    // Under the limit, the same request goes through (the limit is what refused it).
    const ok = await admin('/dead-letters/discard', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ filter: { reason: `${tag}*` } }) });
    expect(ok.status).toBe(200);
    expect(await taggedCount(tag)).toBe(0);
  });

  it('console: the sign-in form past the limit is 413 before the token is read (no session, no failed sign-in logged)', async () => {
    const logs = watchLogs();
    const form = new URLSearchParams({ token: TOKEN, next: `/console?${'a'.repeat(70 * 1024)}` });
    for (const body of [form.toString(), streamed(70 * 1024)]) {
      const res = await app.request(
        `${ORIGIN}/console/login`,
        { method: 'POST', redirect: 'manual', headers: { 'Content-Type': 'application/x-www-form-urlencoded', Origin: ORIGIN }, body, duplex: 'half' } as RequestInit,
        env,
      );
      expect(res.status).toBe(413);
      expect(res.headers.get('content-type')).toContain('text/html');
      expect(await res.text()).toContain('<h1>Too large</h1>');
      expect(res.headers.getSetCookie()).toEqual([]);
    }
    expect(logs.records().filter((r) => r.msg === 'console_body_too_large')).toEqual([
      { level: 'warn', msg: 'console_body_too_large', path: '/console/login' },
      { level: 'warn', msg: 'console_body_too_large', path: '/console/login' },
    ]);
    expect(logs.records().filter((r) => r.msg === 'console_sign_in_failed' || r.msg === 'console_signed_in')).toEqual([]);
    // The same sign-in under the limit works.
    const ok = await exports.default.fetch(
      new Request(`${ORIGIN}/console/login`, { method: 'POST', redirect: 'manual', headers: { 'Content-Type': 'application/x-www-form-urlencoded', Origin: ORIGIN }, body: new URLSearchParams({ token: TOKEN }) }),
    );
    expect(ok.status).toBe(303);
    expect(ok.headers.getSetCookie().some((c) => c.startsWith('router_console='))).toBe(true);
  });
});
