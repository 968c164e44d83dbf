/**
 * Reconciliation end to end: `wrangler dev --test-scheduled` (GET /__scheduled
 * runs the cron handler), with a loopback server playing both the WorkOS
 * Events API and the downstream HTTP service.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { type RouterProcess, startRouter } from '../../scripts/lib/dev-server';
import { workosSignature } from '../../scripts/lib/sign';
import { type Sink, type SinkRequest, startSink } from '../../scripts/lib/sink';

const SECRET = 'whsec_e2e_reconcile';
const API_KEY = 'sk_test_e2e_reconcile';

let router: RouterProcess;
let sink: Sink;
let apiEvents: object[] = [];

function event(i: number) {
  return {
    object: 'event',
    id: `event_01RECON${String(i).padStart(4, '0')}${Date.now().toString(36).toUpperCase()}`,
    event: 'user.updated',
    data: { object: 'user', id: `user_01RECON${i}`, email: `u${i}@example.com` },
    created_at: new Date(Date.now() - 60_000 + i).toISOString(),
  };
}

/** Posts `e` as a signed webhook (the envelope, without the API's `object`). */
async function postWebhook(e: ReturnType<typeof event>): Promise<void> {
  const { object: _o, ...envelope } = e;
  const body = JSON.stringify(envelope);
  const res = await fetch(`${router.url}/webhooks/workos`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', 'WorkOS-Signature': workosSignature(body, SECRET) },
    body,
  });
  expect(res.status).toBe(200);
}

const eventsApiCalls = () => sink.requests.filter((r) => r.path.startsWith('/events'));
const deliveredIds = () => sink.requests.filter((r) => r.path === '/crm').map((r: SinkRequest) => r.headers['x-workos-event-id']);

beforeAll(async () => {
  sink = await startSink();
  sink.respond('/events', (req) => {
    const url = new URL(req.path, 'http://x');
    const after = url.searchParams.get('after');
    const rangeStart = url.searchParams.get('range_start');
    const list = apiEvents as { id: string; created_at: string }[];
    let start = 0;
    if (after !== null) start = list.findIndex((e) => e.id === after) + 1;
    else if (rangeStart !== null) {
      start = list.findIndex((e) => Date.parse(e.created_at) >= Date.parse(rangeStart));
      if (start < 0) start = list.length;
    }
    const data = list.slice(start, start + Number(url.searchParams.get('limit')));
    return { status: 200, body: JSON.stringify({ object: 'list', data, list_metadata: { before: null, after: null } }), headers: { 'Content-Type': 'application/json' } };
  });
  router = await startRouter({
    args: ['--test-scheduled'],
    vars: {
      WORKOS_WEBHOOK_SECRET: SECRET,
      WORKOS_API_KEY: API_KEY,
      ADMIN_TOKEN: 'e2e-admin',
      WORKOS_API_BASE_URL: sink.url,
      ROUTER: {
        reconcile_since: '2020-01-01T00:00:00Z',
        destinations: [{ name: 'crm', type: 'http', url: `${sink.url}/crm` }],
        rules: [{ name: 'users', events: ['user.*'], to: ['crm'] }],
      },
    },
  });
}, 120_000);

afterAll(async () => {
  await router?.stop();
  await sink?.close();
});

it('recovers events the webhooks missed, once, and skips those already received', async () => {
  const all = Array.from({ length: 5 }, (_, i) => event(i));
  // Events 0 and 1 arrive by webhook; 2–4 were "missed".
  for (const e of all.slice(0, 2)) await postWebhook(e);
  apiEvents = all;
  const trigger = await fetch(`${router.url}/__scheduled`);
  expect(trigger.status).toBe(200);
  await sink.waitFor(() => deliveredIds().length >= 5, 60_000);
  // A webhook sent now and seen at the sink: the queue has moved past every recovered event (a second copy would show).
  const sentinel = event(99);
  await postWebhook(sentinel);
  await sink.waitFor(() => deliveredIds().includes(sentinel.id), 60_000);
  const ids = deliveredIds().filter((id) => id !== sentinel.id);
  expect(ids.sort()).toEqual(all.map((e) => e.id).sort()); // each exactly once
  const call = eventsApiCalls()[0]!;
  expect(call.headers.authorization).toBe(`Bearer ${API_KEY}`);
  const q = new URL(call.path, 'http://x').searchParams;
  expect(q.getAll('events[]').sort()).toEqual(['user.created', 'user.deleted', 'user.updated']);
  // reconcile_since (2020) is older than the dedup retention (30 days): clamped to now − 30 days + 1 hour.
  const start = Date.parse(q.get('range_start')!);
  expect(Math.abs(start - (Date.now() - 30 * 86_400_000 + 3_600_000))).toBeLessThan(120_000);

  // The next run re-reads the overlap window (120 s before the last event read): duplicates only.
  await fetch(`${router.url}/__scheduled`);
  await sink.waitFor(() => eventsApiCalls().length >= 2);
  const next = new URL(eventsApiCalls()[1]!.path, 'http://x').searchParams;
  expect(next.get('after')).toBeNull();
  expect(next.get('range_start')).toBe(new Date(Date.parse(all[4]!.created_at) - 120_000).toISOString());

  type Status = {
    reconcile: { totals: Record<string, number>; last_error: unknown; clamped_since: { requested: string } | null; behind: boolean; lag_seconds: number };
  };
  // The second run has finished once its re-reads are counted.
  let body: Status | undefined;
  for (const deadline = Date.now() + 30_000; Date.now() < deadline; await new Promise((r) => setTimeout(r, 200))) {
    const status = await fetch(`${router.url}/admin/status`, { headers: { Authorization: 'Bearer e2e-admin' } });
    expect(status.status).toBe(200);
    body = (await status.json()) as Status;
    if ((body.reconcile.totals.reread ?? 0) >= 5) break;
  }
  if (body === undefined) throw new Error('no status');
  expect(body.reconcile.totals).toEqual({ read: 5, reread: 5, recovered: 3, skipped_expired: 0 });
  expect(body.reconcile.last_error).toBeNull();
  expect(body.reconcile.clamped_since).toMatchObject({ requested: '2020-01-01T00:00:00.000Z' });
  expect(body.reconcile.behind).toBe(false);
  expect(body.reconcile.lag_seconds).toBeGreaterThanOrEqual(55);
  expect(JSON.stringify(body)).not.toContain(API_KEY);
  // Still each event exactly once: a second sentinel, sent after the second run finished and seen at the sink,
  // comes after anything that run enqueued (a wrong re-send reaches /crm about a second after the run).
  const sentinel2 = event(100);
  await postWebhook(sentinel2);
  await sink.waitFor(() => deliveredIds().includes(sentinel2.id), 60_000);
  expect(deliveredIds().filter((id) => id !== sentinel.id && id !== sentinel2.id).sort()).toEqual(all.map((e) => e.id).sort());
});
