/**
 * The console as a user meets it: a real browser (the system's Chromium,
 * driven by playwright-core) against a real `wrangler dev` process over HTTP,
 * with a loopback server playing the downstream services. State is checked
 * through the admin API; every check for absence waits for a positive signal.
 */
import type { Browser, Page, Response as PageResponse } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type RouterProcess, startRouter } from '../../scripts/lib/dev-server';
import { postSigned } from '../../scripts/lib/sign';
import { type Sink, type SinkRequest, startSink } from '../../scripts/lib/sink';
import { until } from '../helpers/until';
import { launchBrowser } from './lib/browser';
import { devEnv } from '../../scripts/lib/dev-env';



const ADMIN_TOKEN = devEnv('ADMIN_TOKEN');
const WEBHOOK_SECRET = devEnv('WORKOS_WEBHOOK_SECRET');

let router: RouterProcess | undefined;
let sink: Sink | undefined;
let browser: Browser | undefined;
/** What the warehouse answers (a failing service, until a test says otherwise). */
let warehouseStatus = 503;

const base = () => (router as RouterProcess).url;
const theSink = () => sink as Sink;

// ---------------------------------------------------------------------------
// Events and the admin API

interface DeliveryView {
  destination: string;
  state: string;
  attempts: Array<{ status: number | null; error: string | null }>;
}
interface EventView {
  id: string;
  deliveries: DeliveryView[];
}
interface DeadLetter {
  seq: number;
  event_id: string;
  destination: string;
  attempts: number;
  reason: string;
}
interface DestinationState {
  name: string;
  state: 'active' | 'paused';
  held: number;
}

const tag = () => `${Date.now().toString(36)}${Math.random().toString(36).slice(2, 8)}`.toUpperCase();

function userEvent(type = 'user.created') {
  const t = tag();
  return {
    id: `event_01CONSOLE${t}`,
    event: type,
    data: { object: 'user', id: `user_01CONSOLE${t}`, email: `ada.${t.toLowerCase()}@example.com`, first_name: 'Ada', last_name: 'Lovelace', email_verified: true },
    created_at: new Date().toISOString(),
  };
}

function domainEvent() {
  const t = tag();
  return {
    id: `event_01CONSOLE${t}`,
    event: 'organization_domain.verified',
    data: { object: 'organization_domain', id: `org_domain_01CONSOLE${t}`, organization_id: 'org_01CONSOLE', domain: `${t.toLowerCase()}.example.com`, state: 'verified' },
    created_at: new Date().toISOString(),
  };
}

async function send(e: { id: string }): Promise<void> {
  const res = await postSigned(`${base()}/webhooks/workos`, JSON.stringify(e), WEBHOOK_SECRET);
  expect(res.status).toBe(200);
  expect(await res.json()).toEqual({ status: 'accepted', id: e.id });
}

async function admin<T>(path: string): Promise<{ status: number; body: T }> {
  const res = await fetch(`${base()}/admin${path}`, { headers: { Authorization: `Bearer ${ADMIN_TOKEN}` } });
  return { status: res.status, body: (await res.json()) as T };
}

/** The event's trace (null until its first consumer batch wrote it). */
async function trace(id: string): Promise<EventView | null> {
  const { status, body } = await admin<EventView>(`/events/${encodeURIComponent(id)}`);
  if (status === 404) return null;
  expect(status).toBe(200);
  return body;
}

async function deliveryState(id: string, destination: string): Promise<string | undefined> {
  return (await trace(id))?.deliveries.find((d) => d.destination === destination)?.state;
}

async function waitForState(id: string, destination: string, state: string, timeoutMs = 30_000): Promise<void> {
  await until(async () => (await deliveryState(id, destination)) === state, `${destination} ${state} for ${id} in the trace`, timeoutMs, 200);
}

async function deadLetters(): Promise<DeadLetter[]> {
  const { status, body } = await admin<{ items: DeadLetter[] }>('/dead-letters?limit=500');
  expect(status).toBe(200);
  return body.items;
}

async function waitForDeadLetter(eventId: string): Promise<DeadLetter> {
  let found: DeadLetter | undefined;
  await until(
    async () => {
      found = (await deadLetters()).find((d) => d.event_id === eventId);
      return found !== undefined;
    },
    `the dead letter of ${eventId}`,
    45_000,
    200,
  );
  return found as DeadLetter;
}

async function destination(name: string): Promise<DestinationState> {
  const { status, body } = await admin<{ items: DestinationState[] }>('/destinations');
  expect(status).toBe(200);
  const d = body.items.find((x) => x.name === name);
  if (d === undefined) throw new Error(`no destination ${name} in the admin API`);
  return d;
}

const received = (id: string, path: string) => theSink().requests.filter((r: SinkRequest) => r.path === path && r.headers['x-workos-event-id'] === id);

/**
 * Sends a sentinel event that the destination behind `path` accepts, and waits
 * until it arrived: everything enqueued before it has been consumed.
 */
async function drained(path: '/crm' | '/warehouse'): Promise<void> {
  const s = path === '/crm' ? userEvent('user.updated') : domainEvent();
  await send(s);
  await theSink().waitFor((reqs) => reqs.some((r) => r.path === path && r.headers['x-workos-event-id'] === s.id && r.status === 200), 45_000);
}

// ---------------------------------------------------------------------------
// The browser

async function newPage(): Promise<Page> {
  const context = await (browser as Browser).newContext({ viewport: { width: 1280, height: 800 } });
  context.setDefaultTimeout(20_000);
  context.setDefaultNavigationTimeout(30_000);
  return context.newPage();
}

const isPost = (path: string) => (r: PageResponse) => r.request().method() === 'POST' && new URL(r.url()).pathname === path;
const onPath = (path: string) => (u: URL) => u.pathname === path;

/** A fresh browser context signed in through the form; lands on the overview. */
async function signedIn(): Promise<Page> {
  const page = await newPage();
  await page.goto(`${base()}/console/login`);
  await page.getByLabel('Admin token').fill(ADMIN_TOKEN);
  const [res] = await Promise.all([page.waitForResponse(isPost('/console/login')), page.getByRole('button', { name: 'Sign in' }).click()]);
  expect(res.status(), await postedFrom(res)).toBe(303);
  await page.waitForURL(onPath('/console'));
  await page.getByRole('heading', { name: 'Overview' }).waitFor();
  return page;
}

/** What a failed form post carried, for the failure message. */
async function postedFrom(res: PageResponse): Promise<string> {
  const req = res.request();
  return `POST ${new URL(req.url()).pathname} answered ${res.status()}; the browser sent Origin: ${(await req.headerValue('origin')) ?? '(none)'}, Sec-Fetch-Site: ${(await req.headerValue('sec-fetch-site')) ?? '(none)'}`;
}

async function notice(page: Page): Promise<string> {
  const el = page.locator('.notice[role=status]');
  await el.waitFor();
  return (await el.textContent()) ?? '';
}

// ---------------------------------------------------------------------------

beforeAll(async () => {
  sink = await startSink();
  sink.respond('/warehouse', () => ({ status: warehouseStatus, body: warehouseStatus === 200 ? 'ok' : 'unavailable' }));
  [router, browser] = await Promise.all([
    startRouter({
      vars: {
        WORKOS_WEBHOOK_SECRET: WEBHOOK_SECRET,
        ADMIN_TOKEN,
        ROUTER: {
          console_show_payloads: true,
          destinations: [
            { name: 'crm', type: 'http', url: `${sink.url}/crm` },
            { name: 'warehouse', type: 'http', url: `${sink.url}/warehouse`, max_attempts: 2, retry_delay_seconds: 1 },
          ],
          rules: [
            { name: 'users', events: ['user.*'], to: ['crm'] },
            { name: 'domains', events: ['organization_domain.*'], to: ['warehouse'] },
          ],
        },
      },
    }),
    launchBrowser(),
  ]);
}, 120_000);

afterAll(async () => {
  // Each one is stopped even when another fails to stop.
  const results = await Promise.allSettled([browser?.close(), router?.stop(), sink?.close()]);
  const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed !== undefined) throw failed.reason;
}, 60_000);

describe('console in a browser, against wrangler dev', () => {
  it('signs in with the admin token (HttpOnly, Secure, SameSite=Strict session) and out again', async () => {
    const page = await newPage();
    const context = page.context();

    const first = await page.goto(`${base()}/console`);
    expect(first?.status()).toBe(401);
    await page.getByRole('heading', { name: 'Sign in' }).waitFor();
    expect(await page.locator('input[name=token][type=password]').count()).toBe(1);

    await page.getByLabel('Admin token').fill(`${ADMIN_TOKEN}-wrong`);
    const [refused] = await Promise.all([page.waitForResponse(isPost('/console/login')), page.getByRole('button', { name: 'Sign in' }).click()]);
    expect(refused.status(), await postedFrom(refused)).toBe(401);
    await page.getByRole('alert').filter({ hasText: 'That token is not valid.' }).waitFor();
    expect((await context.cookies()).some((c) => c.name === 'router_console')).toBe(false);

    await page.getByLabel('Admin token').fill(ADMIN_TOKEN);
    const [accepted] = await Promise.all([page.waitForResponse(isPost('/console/login')), page.getByRole('button', { name: 'Sign in' }).click()]);
    expect(accepted.status(), await postedFrom(accepted)).toBe(303);
    await page.waitForURL(onPath('/console'));
    await page.getByRole('heading', { name: 'Overview' }).waitFor();
    expect(await page.locator('[data-count="delivered"]').count()).toBe(1);

    const cookies = await context.cookies();
    const session = cookies.find((c) => c.name === 'router_console');
    expect(session).toMatchObject({ httpOnly: true, secure: true, sameSite: 'Strict', path: '/console' });
    const csrf = cookies.find((c) => c.name === 'router_csrf');
    expect(csrf).toMatchObject({ httpOnly: true, secure: true, sameSite: 'Strict', path: '/console' });
    // The page cannot read the session (HttpOnly).
    expect(await page.evaluate(() => document.cookie)).not.toContain('router_console');

    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.waitForURL(onPath('/console/login'));
    await page.getByRole('heading', { name: 'Sign in' }).waitFor();
    expect((await context.cookies()).some((c) => c.name === 'router_console')).toBe(false);
    const after = await page.goto(`${base()}/console/destinations`);
    expect(after?.status()).toBe(401);
    await page.getByRole('heading', { name: 'Sign in' }).waitFor();
    await context.close();
  });

  it('looks an event up by id: crm delivered in one attempt; the payload only on request', async () => {
    const e = userEvent();
    await send(e);
    await theSink().waitFor((reqs) => reqs.some((r) => r.path === '/crm' && r.headers['x-workos-event-id'] === e.id));
    // The trace is written once the consumer's batch is done.
    await waitForState(e.id, 'crm', 'delivered');

    const page = await signedIn();
    await page.getByRole('link', { name: 'Events', exact: true }).click();
    await page.waitForURL(onPath('/console/events'));
    await page.getByLabel('Event id').fill(e.id);
    await page.getByRole('button', { name: 'Look up' }).click();
    await page.waitForURL(onPath(`/console/events/${e.id}`));
    await page.getByRole('heading', { name: `Event ${e.id}` }).waitFor();

    const crm = page.locator('section[data-delivery="crm"]');
    expect(await page.locator('section[data-delivery]').count()).toBe(1);
    expect((await crm.locator('.pill').textContent())?.trim()).toBe('delivered');
    const attempts = crm.locator('tbody tr');
    expect(await attempts.count()).toBe(1);
    expect((await attempts.locator('td').nth(2).textContent())?.trim()).toBe('200');

    // Not on the page until asked for.
    expect(await page.locator('[data-payload]').count()).toBe(0);
    expect(await page.content()).not.toContain(e.data.email);
    await page.getByRole('button', { name: 'Show payload' }).click();
    await page.waitForURL((u) => u.pathname === `/console/events/${e.id}` && u.searchParams.get('payload') === '1');
    const payload = page.locator('pre[data-payload]');
    await payload.waitFor();
    const shown = (await payload.textContent()) ?? '';
    expect(shown).toContain(e.data.email);
    expect(JSON.parse(shown)).toEqual(e);
    await page.context().close();
  });

  it('dead letters: replays all matching after showing the count; discards a selected one', async () => {
    warehouseStatus = 503;
    const e = domainEvent();
    await send(e);
    const dl = await waitForDeadLetter(e.id);
    expect(dl).toMatchObject({ destination: 'warehouse', attempts: 2 });
    const failedCalls = received(e.id, '/warehouse').length;
    expect(failedCalls).toBe(2);
    const matching = (await deadLetters()).filter((d) => d.destination === 'warehouse').length;

    const page = await signedIn();
    await page.getByRole('link', { name: 'Dead letters', exact: true }).click();
    await page.waitForURL(onPath('/console/dead-letters'));
    await page.getByLabel('Destination').fill('warehouse');
    await page.getByRole('button', { name: 'Filter' }).click();
    await page.waitForURL((u) => u.pathname === '/console/dead-letters' && u.searchParams.get('destination') === 'warehouse');
    await page.getByRole('link', { name: e.id }).waitFor();

    await page.getByRole('button', { name: 'Replay all matching…' }).click();
    await page.waitForURL(onPath('/console/dead-letters/bulk'));
    const count = page.locator('[data-matched]');
    await count.waitFor();
    expect(await count.getAttribute('data-matched')).toBe(String(matching));
    expect(await count.textContent()).toContain(`${matching} dead letter`);
    // Nothing happened yet: the count is a dry run.
    expect((await deadLetters()).some((d) => d.seq === dl.seq)).toBe(true);

    // The warehouse is back up before the confirmed replay reaches it.
    warehouseStatus = 200;
    await page.getByRole('button', { name: `Replay ${matching}`, exact: true }).click();
    await page.waitForURL((u) => u.pathname === '/console/dead-letters' && u.searchParams.get('destination') === 'warehouse');
    expect(await notice(page)).toContain(`${matching} matched`);

    await theSink().waitFor((reqs) => reqs.filter((r) => r.path === '/warehouse' && r.headers['x-workos-event-id'] === e.id).length > failedCalls, 45_000);
    await waitForState(e.id, 'warehouse', 'delivered', 45_000);
    await until(async () => !(await deadLetters()).some((d) => d.seq === dl.seq), `dead letter #${dl.seq} to be removed`, 30_000, 200);
    await drained('/warehouse');
    const calls = received(e.id, '/warehouse');
    expect(calls).toHaveLength(failedCalls + 1);
    expect(calls.at(-1)?.status).toBe(200);
    expect(calls.at(-1)?.body.toString('utf8')).toBe(JSON.stringify(e));

    // Discard one, selected by its checkbox.
    warehouseStatus = 503;
    const d = domainEvent();
    await send(d);
    const dl2 = await waitForDeadLetter(d.id);
    await page.goto(`${base()}/console/dead-letters?destination=warehouse`);
    await page.getByRole('link', { name: d.id }).waitFor();
    await page.getByRole('checkbox', { name: `select ${dl2.seq}`, exact: true }).check();
    await page.getByRole('button', { name: 'Discard selected' }).click();
    await page.waitForURL((u) => u.pathname === '/console/dead-letters' && u.searchParams.has('msg'));
    expect(await notice(page)).toContain('Discarded 1 of 1.');
    expect(await page.getByRole('link', { name: d.id }).count()).toBe(0);
    expect((await deadLetters()).some((x) => x.seq === dl2.seq || x.event_id === d.id)).toBe(false);
    warehouseStatus = 200;
    await page.context().close();
  });

  it('pauses crm: a new event is held (not sent); resuming delivers it once', async () => {
    const page = await signedIn();
    try {
      await page.getByRole('link', { name: 'Destinations', exact: true }).click();
      await page.waitForURL(onPath('/console/destinations'));
      const row = page.locator('tr[data-destination="crm"]');
      expect((await row.locator('[data-col="state"] .pill').textContent())?.trim()).toBe('active');
      await row.getByRole('button', { name: 'Pause' }).click();
      await page.waitForURL((u) => u.pathname === '/console/destinations' && u.searchParams.has('msg'));
      expect(await notice(page)).toContain('Paused crm');
      expect((await row.locator('[data-col="state"] .pill').textContent())?.trim()).toBe('paused');
      await row.getByRole('button', { name: 'Resume' }).waitFor();
      expect((await destination('crm')).state).toBe('paused');

      const e = userEvent();
      await send(e);
      // Positive signal first: the consumer handled the event and held it.
      await waitForState(e.id, 'crm', 'held');
      expect(received(e.id, '/crm')).toHaveLength(0);
      expect((await destination('crm')).held).toBe(1);

      await page.goto(`${base()}/console/events/${e.id}`);
      expect((await page.locator('section[data-delivery="crm"] .pill').textContent())?.trim()).toBe('held');

      await page.goto(`${base()}/console/destinations`);
      expect((await row.locator('[data-col="held"]').textContent())?.trim()).toBe('1');
      await row.getByRole('button', { name: 'Resume' }).click();
      await page.waitForURL((u) => u.pathname === '/console/destinations' && u.searchParams.has('msg'));
      expect(await notice(page)).toContain('Resumed crm: 1 held');
      expect((await row.locator('[data-col="state"] .pill').textContent())?.trim()).toBe('active');

      await theSink().waitFor((reqs) => reqs.some((r) => r.path === '/crm' && r.headers['x-workos-event-id'] === e.id), 45_000);
      await waitForState(e.id, 'crm', 'delivered', 45_000);
      await until(async () => (await destination('crm')).held === 0, 'no delivery held for crm', 30_000, 200);
      await drained('/crm');
      expect(received(e.id, '/crm')).toHaveLength(1);
    } finally {
      // Never leave crm paused for the tests after this one.
      if ((await destination('crm')).state === 'paused') {
        await fetch(`${base()}/admin/destinations/crm/resume`, { method: 'POST', headers: { Authorization: `Bearer ${ADMIN_TOKEN}` } });
      }
      await page.context().close();
    }
  });

  it('refuses (403) a form whose csrf field was altered, and changes nothing', async () => {
    const page = await signedIn();
    await page.goto(`${base()}/console/destinations`);
    const row = page.locator('tr[data-destination="warehouse"]');
    expect((await row.locator('[data-col="state"] .pill').textContent())?.trim()).toBe('active');
    const original = await row.locator('input[name=csrf]').inputValue();
    expect(original).toMatch(/^[A-Za-z0-9_-]{43}$/);
    const altered = await page.evaluate(() => {
      const input = document.querySelector<HTMLInputElement>('tr[data-destination="warehouse"] input[name=csrf]');
      if (input === null) throw new Error('no csrf field in the warehouse row');
      input.value = `${input.value.slice(0, -1)}${input.value.endsWith('A') ? 'B' : 'A'}`;
      return input.value;
    });
    expect(altered).not.toBe(original);

    const [res] = await Promise.all([page.waitForResponse(isPost('/console/destinations/warehouse/pause')), row.getByRole('button', { name: 'Pause' }).click()]);
    expect(res.status()).toBe(403);
    await page.getByRole('heading', { name: 'Refused' }).waitFor();
    // The pause is done within the request: after its 403, the state is final.
    expect((await destination('warehouse')).state).toBe('active');

    // Still signed in; the page, reloaded, shows warehouse active.
    await page.goto(`${base()}/console/destinations`);
    expect((await page.locator('tr[data-destination="warehouse"] [data-col="state"] .pill').textContent())?.trim()).toBe('active');
    await page.context().close();
  });
});
