/**
 * The circuit breaker and the rate limit as a user meets them: `wrangler dev`
 * over HTTP, a loopback service that goes down and comes back, and a Slack
 * stand-in receiving the operational alerts.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type RouterProcess, startRouter } from '../../scripts/lib/dev-server';
import { workosSignature } from '../../scripts/lib/sign';
import { type Sink, startSink } from '../../scripts/lib/sink';

const SECRET = 'whsec_e2e_circuit';
const TOKEN = 'e2e-admin-token';

let router: RouterProcess;
let sink: Sink;
let down = true;

function event(type: string) {
  const id = `event_01CB${Math.random().toString(36).slice(2, 12).toUpperCase()}${Date.now().toString(36).toUpperCase()}`;
  return { id, event: type, data: { id: `obj_${id}`, email: 'e2e@example.com' }, created_at: new Date().toISOString() };
}

async function post(e: object): Promise<void> {
  const body = JSON.stringify(e);
  const res = await fetch(`${router.url}/webhooks/workos`, { method: 'POST', headers: { 'Content-Type': 'application/json', 'WorkOS-Signature': workosSignature(body, SECRET) }, body });
  expect(res.status).toBe(200);
}

async function destination(name: string): Promise<{ circuit: string; held: number; dead_letters: number; circuit_opened_at: string | null; next_probe_at: string | null }> {
  const res = await fetch(`${router.url}/admin/destinations`, { headers: { Authorization: `Bearer ${TOKEN}` } });
  const { items } = (await res.json()) as { items: Array<{ name: string; circuit: string; held: number; dead_letters: number; circuit_opened_at: string | null; next_probe_at: string | null }> };
  return items.find((i) => i.name === name) as never;
}

async function until(check: () => Promise<boolean> | boolean, what: string, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/**
 * A sentinel routed to `service` (circuit closed by now), seen there: every message enqueued before it —
 * the held deliveries re-enqueued by the drain, and any wrong second copy — has been consumed.
 */
async function drained(): Promise<void> {
  const s = event('user.created');
  await post(s);
  await until(() => sink.requests.some((r) => r.path === '/service' && r.status === 204 && r.headers['x-workos-event-id'] === s.id), 'the sentinel at the service');
}

const alerts = () => sink.requests.filter((r) => r.path === '/slack-alerts').map((r) => (JSON.parse(r.body.toString()) as { text: string }).text);

beforeAll(async () => {
  sink = await startSink();
  sink.respond('/service', () => ({ status: down ? 503 : 204 }));
  router = await startRouter({
    vars: {
      WORKOS_WEBHOOK_SECRET: SECRET,
      ADMIN_TOKEN: TOKEN,
      ROUTER: {
        destinations: [
          { name: 'service', type: 'http', url: `${sink.url}/service`, max_attempts: 8, retry_delay_seconds: 1, circuit: { failures: 20, cooldown_seconds: 3 } },
          { name: 'metered', type: 'http', url: `${sink.url}/metered`, max_per_second: 10 },
          { name: 'alerts', type: 'slack', url: `${sink.url}/slack-alerts`, digest_window_seconds: 1 },
        ],
        rules: [
          { name: 'users', events: ['user.*'], to: ['service'] },
          { name: 'dsync', events: ['dsync.user.created'], to: ['metered'] },
        ],
        alerts: { to: ['alerts'], on: ['circuit_open', 'circuit_closed'], min_interval_seconds: 10 },
      },
    },
  });
}, 120_000);

afterAll(async () => {
  await router?.stop();
  await sink?.close();
});

describe('circuit breaker under wrangler dev', () => {
  it('20 consecutive 5xx open the circuit; nothing reaches the service during the cooldown; the probe closes it; every held event arrives once, none dead-lettered; alerts for both', async () => {
    const events = Array.from({ length: 20 }, () => event('user.created'));
    for (const e of events) await post(e);
    await until(async () => (await destination('service')).circuit === 'open', 'the circuit to open');
    await until(async () => (await destination('service')).held === 20, 'all 20 deliveries held');
    const opened = await destination('service');
    const probeAt = Date.parse(opened.next_probe_at as string);
    const quietFrom = Date.now();
    down = false;
    await until(async () => (await destination('service')).circuit === 'closed', 'the circuit to close');
    const service = sink.requests.filter((r) => r.path === '/service');
    // Between "all held" and the probe: no request at all.
    expect(service.filter((r) => r.at > quietFrom && r.at < probeAt - 100)).toEqual([]);
    await until(() => events.every((e) => sink.requests.some((r) => r.path === '/service' && r.status === 204 && r.headers['x-workos-event-id'] === e.id)), 'every held event delivered');
    await until(async () => (await destination('service')).held === 0, 'nothing held');
    await drained(); // a second copy, or a dead letter, from a later batch would come before the sentinel
    for (const e of events) expect(sink.requests.filter((r) => r.path === '/service' && r.status === 204 && r.headers['x-workos-event-id'] === e.id)).toHaveLength(1);
    expect((await destination('service')).dead_letters).toBe(0);
    await until(() => alerts().some((t) => t.includes('recovered')), 'the recovery alert');
    const texts = alerts();
    const open = texts.findIndex((t) => t.includes('Circuit *open* for *service*'));
    const recovered = texts.findIndex((t) => t.includes('*service* recovered'));
    expect(open, texts.join('\n')).toBeGreaterThanOrEqual(0);
    expect(recovered).toBeGreaterThanOrEqual(0);
    expect(open).toBeLessThan(recovered);
  });
});

describe('max_per_second under wrangler dev', () => {
  it('a burst of 200 events at max_per_second = 10: at most 10 (+1 receiver jitter) in any second at the receiver, all delivered once', async () => {
    const events = Array.from({ length: 200 }, () => event('dsync.user.created'));
    await Promise.all(events.map((e) => post(e)));
    await until(() => events.every((e) => sink.requests.some((r) => r.path === '/metered' && r.headers['x-workos-event-id'] === e.id)), 'every event at the metered service', 90_000);
    const at = sink.requests.filter((r) => r.path === '/metered').map((r) => r.at).sort((a, b) => a - b);
    expect(at).toHaveLength(200);
    let max = 0;
    for (let i = 0, j = 0; i < at.length; i++) {
      while ((at[i] as number) - (at[j] as number) >= 1000) j++;
      max = Math.max(max, i - j + 1);
    }
    // The router sends at most 10 per second (slots 105 ms apart, a late one deferred); the receiver here
    // shares two cores with the rest of the test run, and its own scheduling can bunch two arrivals:
    // one extra is tolerated here. The strict figure is the `burst` benchmark's, on a quiet machine.
    expect(max).toBeLessThanOrEqual(11);
  }, 150_000);
});
