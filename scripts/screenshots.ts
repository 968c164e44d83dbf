/**
 * `npx tsx scripts/screenshots.ts`: the console screenshots in the README.
 *
 * Starts a loopback sink (a CRM that answers 200, a warehouse that answers
 * 503) and the router (a real `wrangler dev`); sends a few signed events so
 * the pages show realistic data (delivered events, one dead letter, one paused
 * destination holding a delivery); waits until the router has processed all
 * of it; then takes 1280×800 screenshots with the system's Chromium:
 *
 *   docs/console-overview.png       /console
 *   docs/console-event.png          /console/events/<id>?payload=1
 *   docs/console-dead-letters.png   /console/dead-letters
 *   docs/console-destinations.png   /console/destinations
 *
 * Stops everything it started, also on errors and Ctrl-C. Chromium:
 * /usr/bin/chromium, or CHROMIUM_PATH (see test/e2e/lib/browser.ts).
 */
import { mkdirSync } from 'node:fs';
import { resolve } from 'node:path';
import type { Browser, BrowserContext } from 'playwright-core';
import type { EventType } from '../src/events/catalog';
import { makeEvent } from '../test/fixtures/events';
import { launchBrowser } from '../test/e2e/lib/browser';
import { type RouterProcess, startRouter } from './lib/dev-server';
import { postSigned } from './lib/sign';
import { type Sink, startSink } from './lib/sink';
import { devEnv } from './lib/dev-env';

const ROOT = resolve(new URL('..', import.meta.url).pathname);
const OUT = resolve(ROOT, 'docs');
const VIEWPORT = { width: 1280, height: 800 };
const TIMEOUT_MS = 60_000;


const ADMIN_TOKEN = devEnv('ADMIN_TOKEN');
const WEBHOOK_SECRET = devEnv('WORKOS_WEBHOOK_SECRET');

let sink: Sink | undefined;
let router: RouterProcess | undefined;
let browser: Browser | undefined;
let stopping: Promise<void> | undefined;

function stopAll(): Promise<void> {
  stopping ??= Promise.allSettled([browser?.close(), router?.stop(), sink?.close()]).then(() => undefined);
  return stopping;
}

for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    console.error(`\n${signal}: stopping…`);
    void stopAll().then(() => process.exit(130));
  });
}

async function until(check: () => Promise<boolean>, what: string): Promise<void> {
  const deadline = Date.now() + TIMEOUT_MS;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

async function admin<T>(path: string, method = 'GET'): Promise<{ status: number; body: T }> {
  const res = await fetch(`${router?.url}/admin${path}`, { method, headers: { Authorization: `Bearer ${ADMIN_TOKEN}` } });
  return { status: res.status, body: (await res.json()) as T };
}

interface Trace {
  deliveries: Array<{ destination: string; state: string }>;
}

async function stateOf(id: string, destination: string): Promise<string | undefined> {
  const { status, body } = await admin<Trace>(`/events/${encodeURIComponent(id)}`);
  return status === 200 ? body.deliveries.find((d) => d.destination === destination)?.state : undefined;
}

async function send(type: EventType): Promise<string> {
  const e = makeEvent(type);
  const res = await postSigned(`${router?.url}/webhooks/workos`, JSON.stringify(e), WEBHOOK_SECRET);
  if (res.status !== 200) throw new Error(`${type}: the router answered ${res.status} ${await res.text()}`);
  return e.id;
}

/** A signed-in browser context: the session is obtained over HTTP, as the sign-in form would. */
async function signedInContext(b: Browser, url: string): Promise<BrowserContext> {
  const res = await fetch(`${url}/console/login`, {
    method: 'POST',
    redirect: 'manual',
    headers: { 'Content-Type': 'application/x-www-form-urlencoded', Origin: url },
    body: new URLSearchParams({ token: ADMIN_TOKEN }).toString(),
  });
  if (res.status !== 303) throw new Error(`console sign-in answered ${res.status}`);
  const host = new URL(url).hostname;
  const cookies = res.headers.getSetCookie().map((line) => {
    const pair = line.split(';')[0] ?? '';
    const eq = pair.indexOf('=');
    return { name: pair.slice(0, eq), value: pair.slice(eq + 1), domain: host, path: '/console', httpOnly: true, secure: true, sameSite: 'Strict' as const };
  });
  if (!cookies.some((c) => c.name === 'router_console')) throw new Error('console sign-in set no session cookie');
  const context = await b.newContext({ viewport: VIEWPORT, colorScheme: 'light', deviceScaleFactor: 1 });
  await context.addCookies(cookies);
  return context;
}

async function main(): Promise<void> {
  mkdirSync(OUT, { recursive: true });
  sink = await startSink();
  sink.respond('/warehouse', () => ({ status: 503, body: 'warehouse is down for maintenance' }));
  console.log('starting wrangler dev…');
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
            { name: 'audit', type: 'queue', queue: 'AUDIT_QUEUE' },
          ],
          rules: [
            { name: 'users', events: ['user.*', 'organization_membership.*'], to: ['crm'] },
            { name: 'domains', events: ['organization_domain.*'], to: ['warehouse'] },
            { name: 'everything-to-audit', events: ['*'], to: ['audit'] },
          ],
        },
      },
    }),
    launchBrowser(),
  ]);
  const url = router.url;
  console.log(`router at ${url}; sending events…`);

  // Delivered: to crm and audit.
  const created = await send('user.created');
  const delivered = [created];
  for (const type of ['organization_membership.created', 'user.updated', 'organization_membership.updated'] as const) delivered.push(await send(type));
  // Dead-lettered at the warehouse (503 twice).
  const domain = await send('organization_domain.verified');
  for (const id of delivered) await until(async () => (await stateOf(id, 'crm')) === 'delivered', `crm to deliver ${id}`);
  await until(async () => (await admin<{ items: Array<{ event_id: string }> }>('/dead-letters')).body.items.some((d) => d.event_id === domain), 'the warehouse dead letter');
  await until(async () => (await stateOf(domain, 'audit')) === 'delivered', 'audit to receive the domain event');

  // crm paused, one delivery held for it.
  const paused = await admin('/destinations/crm/pause', 'POST');
  if (paused.status !== 200) throw new Error(`pause crm answered ${paused.status}`);
  const held = await send('user.deleted');
  await until(async () => (await stateOf(held, 'crm')) === 'held', 'the delivery held for crm');
  await until(async () => (await stateOf(held, 'audit')) === 'delivered', 'audit to receive the held event');

  const context = await signedInContext(browser, url);
  const page = await context.newPage();
  const shots: Array<[string, string]> = [
    ['console-overview.png', '/console'],
    ['console-event.png', `/console/events/${encodeURIComponent(created)}?payload=1`],
    ['console-dead-letters.png', '/console/dead-letters'],
    ['console-destinations.png', '/console/destinations'],
  ];
  for (const [file, path] of shots) {
    const res = await page.goto(`${url}${path}`);
    if (res?.status() !== 200) throw new Error(`${path} answered ${res?.status()}`);
    await page.screenshot({ path: resolve(OUT, file) });
    console.log(`docs/${file}  ←  ${path}`);
  }
}

try {
  await main();
} catch (err) {
  console.error(err instanceof Error ? (err.stack ?? err.message) : err);
  if (router !== undefined) console.error(`--- wrangler output (last 3000 chars) ---\n${router.output().slice(-3000)}`);
  process.exitCode = 1;
} finally {
  await stopAll();
}
