/**
 * The console over HTTP inside workerd: sign-in (token → session cookie,
 * Cloudflare Access), refusals that reveal nothing, CSRF and origin checks on
 * every action, payload visibility. The browser tests (test/e2e/console-*)
 * drive the same pages in Chromium.
 */
import { runInDurableObject } from 'cloudflare:test';
import { env } from 'cloudflare:workers';
import { SignJWT, exportJWK, generateKeyPair } from 'jose';
import { afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { app } from '../../src/app';
import { loadConfig } from '../../src/config/load';
import { createSession } from '../../src/console/session';
import { deadLetterRecord, deadLetterStub } from '../../src/deadletters/store';
import { ledgerStubByName } from '../../src/dedup/shard';
import { registryStub } from '../../src/destinations/registry';
import { TraceWriter } from '../../src/trace/client';
import { testEnv } from '../helpers/consumer';
import { watchLogs } from '../helpers/observe';
import { deliverSentinel, observeAudit } from '../helpers/audit-sentinel';

const TOKEN = 'test-admin-token';
const ORIGIN = 'https://router.test';
const ROUTER = {
  destinations: [{ name: 'audit', type: 'queue', queue: 'AUDIT_QUEUE' }],
  rules: [{ name: 'all', events: ['*'], to: ['audit'] }],
};

afterEach(() => vi.restoreAllMocks());

async function request(path: string, init: RequestInit = {}, e: Env = testEnv(ROUTER)): Promise<Response> {
  return app.request(`${ORIGIN}${path}`, { redirect: 'manual', ...init }, e);
}

function cookiesOf(res: Response): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of res.headers.getSetCookie()) {
    const [pair] = line.split(';');
    const i = pair?.indexOf('=') ?? -1;
    if (pair !== undefined && i > 0) out[pair.slice(0, i)] = pair.slice(i + 1);
  }
  return out;
}

async function signIn(): Promise<{ cookie: string; csrf: string }> {
  const res = await request('/console/login', {
    method: 'POST',
    headers: { 'Content-Type': 'application/x-www-form-urlencoded', Origin: ORIGIN },
    body: new URLSearchParams({ token: TOKEN }),
  });
  expect(res.status).toBe(303);
  const c = cookiesOf(res);
  return { cookie: `router_console=${c.router_console}; router_csrf=${c.router_csrf}`, csrf: c.router_csrf as string };
}

function post(path: string, s: { cookie: string }, fields: Record<string, string>, headers: Record<string, string> = { Origin: ORIGIN }, e?: Env) {
  return request(
    path,
    { method: 'POST', headers: { 'Content-Type': 'application/x-www-form-urlencoded', Cookie: s.cookie, ...headers }, body: new URLSearchParams(fields) },
    e,
  );
}

describe('console sign-in with the admin token', () => {
  it('without a session every page answers 401 with the sign-in form and nothing else', async () => {
    for (const path of ['/console', '/console/events', '/console/events/event_x', '/console/dead-letters', '/console/destinations']) {
      const res = await request(path);
      expect(res.status, path).toBe(401);
      const text = await res.text();
      expect(text, path).toContain('name="token"');
      // The token is not offered to the browser's password manager to keep (SECURITY.md).
      expect(text, path).toContain('name="token" autocomplete="off"');
      expect(text, path).not.toContain('audit');
      expect(text, path).not.toContain('Dead letters');
      expect(res.headers.get('content-security-policy')).toContain("default-src 'none'");
      expect(res.headers.get('cache-control')).toBe('no-store');
      expect(res.headers.get('x-frame-options')).toBe('DENY');
    }
    const action = await request('/console/destinations/audit/pause', { method: 'POST', headers: { Origin: ORIGIN } });
    expect(action.status).toBe(401);
  });

  it('an unknown console page, signed in: 404 as a console page, with the security headers (it was the JSON 404 without them)', async () => {
    const s = await signIn();
    for (const path of ['/console/nope', '/console/events/a/b', '/console/destinations/audit/nope']) {
      const res = await request(path, { headers: { Cookie: s.cookie } });
      expect(res.status, path).toBe(404);
      expect(res.headers.get('content-type'), path).toContain('text/html');
      expect(res.headers.get('content-security-policy'), path).toContain("default-src 'none'");
      expect(res.headers.get('x-frame-options'), path).toBe('DENY');
      expect(res.headers.get('cache-control'), path).toBe('no-store');
      expect(await res.text(), path).toContain('No such console page.');
    }
  });

  it('every console answer (sign-in form, pages, redirects, refusals, 404) sends Referrer-Policy: same-origin and X-Content-Type-Options: nosniff', async () => {
    const s = await signIn();
    const answers: Array<[string, Response]> = [
      ['401 sign-in form', await request('/console/events')],
      ['200 sign-in page', await request('/console/login')],
      ['401 wrong token', await request('/console/login', { method: 'POST', headers: { 'Content-Type': 'application/x-www-form-urlencoded', Origin: ORIGIN }, body: new URLSearchParams({ token: 'nope' }) })],
      ['403 console off', await request('/console', {}, testEnv(ROUTER, { ADMIN_TOKEN: undefined }))],
      ['404 unknown page', await request('/console/nope', { headers: { Cookie: s.cookie } })],
      ['403 CSRF refused', await post('/console/destinations/audit/pause', s, {})],
    ];
    for (const path of ['/console', '/console/events', '/console/dead-letters', '/console/destinations']) {
      answers.push([`200 ${path}`, await request(path, { headers: { Cookie: s.cookie } })]);
    }
    answers.push(['303 after an action', await post('/console/destinations/audit/resume', s, { csrf: s.csrf })]);
    expect(answers.map(([what, res]) => `${what}: ${res.status}`)).toEqual([
      '401 sign-in form: 401',
      '200 sign-in page: 200',
      '401 wrong token: 401',
      '403 console off: 403',
      '404 unknown page: 404',
      '403 CSRF refused: 403',
      '200 /console: 200',
      '200 /console/events: 200',
      '200 /console/dead-letters: 200',
      '200 /console/destinations: 200',
      '303 after an action: 303',
    ]);
    for (const [what, res] of answers) {
      expect(res.headers.get('referrer-policy'), what).toBe('same-origin');
      expect(res.headers.get('x-content-type-options'), what).toBe('nosniff');
    }
  });

  it('signing in logs console_signed_in (audit: true); a failed sign-in logs console_sign_in_failed without the attempted token', async () => {
    const logs = watchLogs();
    const attempt = `attempted-${crypto.randomUUID()}`;
    const wrong = await request('/console/login', {
      method: 'POST',
      headers: { 'Content-Type': 'application/x-www-form-urlencoded', Origin: ORIGIN },
      body: new URLSearchParams({ token: attempt }),
    });
    expect(wrong.status).toBe(401);
    expect(logs.records().filter((r) => r.msg === 'console_sign_in_failed')).toEqual([{ level: 'warn', msg: 'console_sign_in_failed' }]);
    expect(logs.records().filter((r) => r.msg === 'console_signed_in')).toEqual([]);
    await signIn();
    expect(logs.records().filter((r) => r.msg === 'console_signed_in')).toEqual([{ level: 'info', msg: 'console_signed_in', audit: true }]);
    expect(logs.records().filter((r) => r.msg === 'console_sign_in_failed')).toHaveLength(1);
    // Neither the attempt nor the real token is in any line written meanwhile.
    const all = JSON.stringify(logs.records());
    expect(all).not.toContain(attempt);
    expect(all).not.toContain(attempt.slice('attempted-'.length));
    expect(all).not.toContain(TOKEN);
  });

  it('sign-in from another origin: 403, no session', async () => {
    const res = await request('/console/login', {
      method: 'POST',
      headers: { 'Content-Type': 'application/x-www-form-urlencoded', Origin: 'https://evil.test' },
      body: new URLSearchParams({ token: TOKEN }),
    });
    expect(res.status).toBe(403);
    expect(res.headers.getSetCookie().filter((c) => c.startsWith('router_console='))).toEqual([]);
  });

  it('the right token gives a signed, expiring HttpOnly; Secure; SameSite=Strict cookie; a wrong one gives 401', async () => {
    const wrong = await request('/console/login', {
      method: 'POST',
      headers: { 'Content-Type': 'application/x-www-form-urlencoded', Origin: ORIGIN },
      body: new URLSearchParams({ token: 'nope' }),
    });
    expect(wrong.status).toBe(401);
    expect(wrong.headers.getSetCookie()).toEqual([]);
    expect(await wrong.text()).toContain('That token is not valid.');

    const ok = await request('/console/login', {
      method: 'POST',
      headers: { 'Content-Type': 'application/x-www-form-urlencoded', Origin: ORIGIN },
      body: new URLSearchParams({ token: TOKEN }),
    });
    expect(ok.status).toBe(303);
    expect(ok.headers.get('location')).toBe('/console');
    const lines = ok.headers.getSetCookie();
    expect(lines).toHaveLength(2);
    for (const line of lines) {
      expect(line).toMatch(/; HttpOnly/);
      expect(line).toMatch(/; Secure/);
      expect(line).toMatch(/; SameSite=Strict/);
      expect(line).toMatch(/; Max-Age=28800/);
      expect(line).not.toContain(TOKEN);
    }
    const s = await signIn();
    const page = await request('/console', { headers: { Cookie: s.cookie } });
    expect(page.status).toBe(200);
    expect(await page.text()).toContain('Overview');
  });

  it('after signing in from a deep link, lands on it; never redirects off the console', async () => {
    const deep = await request('/console/events?state=retrying');
    expect(deep.status).toBe(401);
    expect(await deep.text()).toContain('name="next" value="/console/events?state=retrying"');
    for (const [next, expected] of [
      ['/console/events?state=retrying', '/console/events?state=retrying'],
      ['https://evil.test/console', '/console'],
      ['//evil.test/console', '/console'],
      ['/console//evil.test', '/console'],
      ['/admin/status', '/console'],
    ]) {
      const res = await request('/console/login', {
        method: 'POST',
        headers: { 'Content-Type': 'application/x-www-form-urlencoded', Origin: ORIGIN },
        body: new URLSearchParams({ token: TOKEN, next: next as string }),
      });
      expect(res.status, next).toBe(303);
      expect(res.headers.get('location'), next).toBe(expected);
    }
  });

  it('a tampered, expired or foreign session is refused', async () => {
    const { value } = await createSession(TOKEN, Date.now());
    const tampered = `${value.slice(0, -2)}${value.endsWith('A') ? 'BB' : 'AA'}`;
    const { value: old } = await createSession(TOKEN, Date.now() - 9 * 3600_000);
    const { value: foreign } = await createSession('another-token', Date.now());
    for (const v of [tampered, old, foreign, 'garbage']) {
      const res = await request('/console', { headers: { Cookie: `router_console=${v}` } });
      expect(res.status, v).toBe(401);
    }
  });

  it('the console is off (403) without ADMIN_TOKEN or Access', async () => {
    const res = await request('/console', {}, testEnv(ROUTER, { ADMIN_TOKEN: undefined }));
    expect(res.status).toBe(403);
    expect(await res.text()).toContain('Console disabled');
  });

  it('signing out clears both cookies', async () => {
    const s = await signIn();
    const res = await post('/console/logout', s, { csrf: s.csrf });
    expect(res.status).toBe(303);
    const lines = res.headers.getSetCookie();
    // Both cookies, each exactly once: the loop below then cannot run empty.
    expect(lines.map((l) => l.split('=')[0]).sort()).toEqual(['router_console', 'router_csrf']);
    for (const line of lines) expect(line).toMatch(/^[a-z_]+=;.*Max-Age=0$/);
  });
});

describe('console actions need the page token and the console origin', () => {
  it('pause without the CSRF token, with another token, or from another origin: 403 and nothing changes', async () => {
    const s = await signIn();
    const before = await registryStub(env).paused();
    const cases: Array<[Record<string, string>, Record<string, string>]> = [
      [{}, { Origin: ORIGIN }],
      [{ csrf: 'A'.repeat(43) }, { Origin: ORIGIN }],
      [{ csrf: s.csrf }, { Origin: 'https://evil.test' }],
      [{ csrf: s.csrf }, {}],
      [{ csrf: s.csrf }, { 'Sec-Fetch-Site': 'cross-site' }],
    ];
    for (const [fields, headers] of cases) {
      const res = await post('/console/destinations/audit/pause', s, fields, headers);
      expect(res.status, JSON.stringify([fields, headers])).toBe(403);
    }
    expect(await registryStub(env).paused()).toEqual(before);
  });

  it('pause and resume with the token from the page', async () => {
    const s = await signIn();
    const page = await (await request('/console/destinations', { headers: { Cookie: s.cookie } })).text();
    expect(page).toContain(`name="csrf" value="${s.csrf}"`);
    const paused = await post('/console/destinations/audit/pause', s, { csrf: s.csrf });
    expect(paused.status).toBe(303);
    expect(await registryStub(env).paused()).toContain('audit');
    const resumed = await post('/console/destinations/audit/resume', s, { csrf: s.csrf }, { 'Sec-Fetch-Site': 'same-origin' });
    expect(resumed.status).toBe(303);
    expect(await registryStub(env).paused()).not.toContain('audit');
  });

  it('discarding and replaying selected dead letters logs an audit line naming the seqs acted on', async () => {
    const logs = watchLogs();
    const s = await signIn();
    const store = deadLetterStub(env);
    const ids = [`event_sel_${crypto.randomUUID()}`, `event_sel_${crypto.randomUUID()}`];
    await store.add(ids.map((id) => deadLetterRecord({ event_id: id, event_type: 'user.created', destination: 'gone-destination', reason: 'http_400', body: JSON.stringify({ id }) })));
    const seqOf = async (id: string) => (await store.list(500, 0, { destination: 'gone-destination' })).find((r) => r.event_id === id)?.seq as number;
    const [first, second] = [await seqOf(ids[0] as string), await seqOf(ids[1] as string)];

    const discarded = await post('/console/dead-letters/selected', s, { csrf: s.csrf, action: 'discard', seq: String(first) });
    expect(discarded.status).toBe(303);
    expect(logs.records().filter((r) => r.msg === 'dead_letters_discarded')).toEqual([
      expect.objectContaining({ audit: true, selected: 1, done: 1, seqs: [first], source: 'console' }),
    ]);
    // A replay the router cannot make (the destination is not in the config) is kept, and not named as done.
    const replayed = await post('/console/dead-letters/selected', s, { csrf: s.csrf, action: 'replay', seq: String(second) });
    expect(replayed.status).toBe(303);
    expect(logs.records().filter((r) => r.msg === 'dead_letters_replayed')).toEqual([
      expect.objectContaining({ audit: true, selected: 1, done: 0, seqs: [], source: 'console' }),
    ]);
    const unknown = await post('/console/dead-letters/selected', s, { csrf: s.csrf, action: 'burn', seq: String(second) });
    expect(unknown.status).toBe(303);
    expect((await store.list(500, 0, { destination: 'gone-destination' })).map((r) => r.seq)).toContain(second);
    await store.remove(second);
  });

  it('a bulk discard confirmed from the count page acts on what was counted: a dead letter added since is kept', async () => {
    const s = await signIn();
    const store = deadLetterStub(env);
    const destination = `bulk-confirm-${crypto.randomUUID().slice(0, 8)}`;
    const record = (id: string) => deadLetterRecord({ event_id: id, event_type: 'user.created', destination, reason: 'http_400', body: JSON.stringify({ id }) });
    await store.add([record(`event_counted_${crypto.randomUUID()}`)]);
    const page = await post('/console/dead-letters/bulk', s, { csrf: s.csrf, action: 'discard', destination });
    expect(page.status).toBe(200);
    const html = await page.text();
    expect(html).toContain('1 dead letter match this filter.');
    const field = (name: string) => new RegExp(`name="${name}" value="([^"]*)"`).exec(html)?.[1] as string;
    // Another arrives while the operator reads the count.
    const late = `event_late_${crypto.randomUUID()}`;
    await store.add([record(late)]);
    const done = await post('/console/dead-letters/bulk', s, { csrf: s.csrf, action: 'discard', destination, key: field('key'), up_to: field('up_to'), confirm: '1' });
    expect(done.status).toBe(303);
    expect((await store.list(500, 0, { destination })).map((r) => r.event_id)).toEqual([late]);
    // A confirmation without the counted range is refused, changing nothing.
    const incomplete = await post('/console/dead-letters/bulk', s, { csrf: s.csrf, action: 'discard', destination, key: crypto.randomUUID(), confirm: '1' });
    expect(incomplete.status).toBe(303);
    expect((await store.list(500, 0, { destination })).map((r) => r.event_id)).toEqual([late]);
  });

  it('an unknown destination or a bad filter gives an error page with the status, changing nothing', async () => {
    const s = await signIn();
    const unknown = await post('/console/destinations/nope/pause', s, { csrf: s.csrf });
    expect(unknown.status).toBe(404);
    const badFilter = await request('/console/dead-letters?since=yesterday', { headers: { Cookie: s.cookie } });
    expect(badFilter.status).toBe(400);
    expect(await badFilter.text()).toContain('filter.since');
    const badEvents = await request('/console/events?state=lost', { headers: { Cookie: s.cookie } });
    expect(badEvents.status).toBe(400);
    const missing = await request('/console/events/event_never_seen', { headers: { Cookie: s.cookie } });
    expect(missing.status).toBe(404);
  });
});

describe('console behind Cloudflare Access', () => {
  const TEAM = 'console-test.cloudflareaccess.com';
  const AUD = 'aud-console-test';
  let sign: (claims: { aud?: string; exp?: number }) => Promise<string>;

  beforeAll(async () => {
    const pair = await generateKeyPair('RS256', { extractable: true });
    const jwk = { ...(await exportJWK(pair.publicKey)), kid: 'k1', alg: 'RS256', use: 'sig' };
    sign = (claims) =>
      new SignJWT({ email: 'ops@example.test' })
        .setProtectedHeader({ alg: 'RS256', kid: 'k1' })
        .setIssuer(`https://${TEAM}`)
        .setAudience(claims.aud ?? AUD)
        .setSubject('user-1')
        .setIssuedAt()
        .setExpirationTime(claims.exp ?? Math.floor(Date.now() / 1000) + 600)
        .sign(pair.privateKey);
    (globalThis as { __certs?: unknown }).__certs = { keys: [jwk] };
  });

  function accessEnv(): Env {
    vi.spyOn(globalThis, 'fetch').mockImplementation(async (input) => {
      const url = new Request(input as RequestInfo).url;
      if (url === `https://${TEAM}/cdn-cgi/access/certs`) return Response.json((globalThis as { __certs?: unknown }).__certs);
      return new Response('unexpected', { status: 599 });
    });
    return testEnv(ROUTER, { ACCESS_TEAM_DOMAIN: TEAM, ACCESS_AUD: AUD });
  }

  it('a valid assertion opens the console (the admin token form is not offered)', async () => {
    const e = accessEnv();
    const res = await request('/console', { headers: { 'Cf-Access-Jwt-Assertion': await sign({}) } }, e);
    expect(res.status).toBe(200);
    const text = await res.text();
    expect(text).toContain('ops@example.test');
    expect(text).not.toContain('Sign out');
    expect((await request('/console/login', {}, e)).status).toBe(303);
  });

  it('missing → 401; expired, wrong audience or a forged signature → 403', async () => {
    const e = accessEnv();
    expect((await request('/console', {}, e)).status).toBe(401);
    const expired = await sign({ exp: Math.floor(Date.now() / 1000) - 60 });
    const wrongAud = await sign({ aud: 'someone-else' });
    const forged = `${(await sign({})).slice(0, -4)}AAAA`;
    for (const token of [expired, wrongAud, forged]) {
      const res = await request('/console', { headers: { 'Cf-Access-Jwt-Assertion': token } }, e);
      expect(res.status).toBe(403);
      expect(await res.text()).not.toContain('audit');
    }
    // A session cookie made with the admin token does not replace Access.
    const { value } = await createSession(TOKEN, Date.now());
    expect((await request('/console', { headers: { Cookie: `router_console=${value}` } }, e)).status).toBe(401);
  });
});

describe('console event replay beyond one page', () => {
  /** The Worker's own consumer delivers what the replay enqueues, 10 a batch. */
  const DELIVERY = { timeout: 30_000, interval: 100 };

  it('501 matching events: 500 sent, then the last one is offered on its own page (by cursor), not the newest 500 again', { timeout: 4 * DELIVERY.timeout }, async () => {
    const config = loadConfig(testEnv(ROUTER));
    if (!config.ok) throw new Error('config invalid');
    const type = 'vault.byok_key.deleted';
    const since = Date.now() - 60_000;
    const events = Array.from({ length: 501 }, (_, i) => ({
      id: `event_cr${String(i).padStart(4, '0')}_${crypto.randomUUID().slice(0, 8)}`,
      event: type,
      created_at: new Date(since + i).toISOString(),
      data: { id: `byok_${i}`, object: 'byok_key' },
    }));
    // Traced as delivered, their bodies kept in a ledger shard.
    const trace = new TraceWriter(env, config.config.settings);
    for (const [i, e] of events.entries()) {
      trace.add({ event_id: e.id, event_type: type, source: 'webhook', accepted_at: since + i, stale: false, body_shard: 'ledger-0', destination: 'audit', rules: ['all'], state: 'delivered' });
    }
    await trace.flush();
    await runInDurableObject(ledgerStubByName(env, 'ledger-0'), (_i, state) => {
      for (const e of events) state.storage.sql.exec('INSERT OR REPLACE INTO bodies (id, body, expires_at) VALUES (?, ?, ?)', e.id, JSON.stringify(e), Date.now() + 86_400_000);
    });
    const audit = observeAudit();
    const delivered = audit.deliveredFor;
    /** The events (by index) not delivered exactly once. */
    const notOnce = async () => (await audit.deliveredForEach(events.map((e) => e.id))).flatMap((n, i) => (n === 1 ? [] : [i]));
    const s = await signIn();
    const fields = { csrf: s.csrf, type, since: new Date(since - 1).toISOString(), to: 'audit' };
    const first = await post('/console/events/replay', s, fields);
    expect(first.status).toBe(200);
    expect(await first.text()).toContain('500 events would be sent again to audit; more match beyond these 500');
    const confirmed = await post('/console/events/replay', s, { ...fields, confirm: '1' });
    expect(confirmed.status).toBe(200);
    const next = await confirmed.text();
    expect(next).toContain('Sent 500 events to audit. Next: 1 event would be sent again to audit.');
    const cursor = /name="cursor" value="([^"]+)"/.exec(next)?.[1];
    expect(cursor).toBeDefined();
    // The newest 500 reach audit; the oldest is not among them (a sentinel sent after them is delivered, and it is not).
    await vi.waitFor(async () => expect(await notOnce()).toEqual([0]), DELIVERY);
    await deliverSentinel(delivered, DELIVERY);
    expect(await notOnce()).toEqual([0]);
    expect(await delivered(events[0]!.id)).toBe(0);
    const last = await post('/console/events/replay', s, { ...fields, cursor: cursor as string, confirm: '1' });
    expect(last.status).toBe(303);
    // Then the oldest, on its own: every one of the 501 delivered once (a later sentinel shows no second copy came).
    await vi.waitFor(async () => expect(await delivered(events[0]!.id)).toBe(1), DELIVERY);
    await deliverSentinel(delivered, DELIVERY);
    expect(await notOnce()).toEqual([]);
  });
});
