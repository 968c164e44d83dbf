/**
 * `GET /admin/metrics`: Prometheus text that a Prometheus text-format parser
 * reads, with counters that match what the test sent, kept in Durable Object
 * storage (so they survive isolate restarts).
 */
import { runInDurableObject } from 'cloudflare:test';
import { env, exports } from 'cloudflare:workers';
import parsePrometheusTextFormat, { type PromFamily } from 'parse-prometheus-text-format';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { registryStub } from '../../src/destinations/registry';
import { escapeLabelValue } from '../../src/admin/metrics';
import { deadLettersFor } from '../helpers/observe';
import { Sink } from '../helpers/sink';
import { until } from '../helpers/until';
import { URL_BASE, postWebhook, sampleEvent } from '../helpers/webhook';
import { WAREHOUSE } from './router';

const sink = new Sink();
beforeEach(() => sink.reset().install());
afterEach(() => vi.restoreAllMocks());

async function scrape(token = 'test-admin-token'): Promise<Response> {
  return exports.default.fetch(new Request(`${URL_BASE}/admin/metrics`, { headers: { Authorization: `Bearer ${token}` } }));
}

async function metrics(): Promise<PromFamily[]> {
  const res = await scrape();
  expect(res.status).toBe(200);
  expect(res.headers.get('content-type')).toContain('text/plain; version=0.0.4');
  return parsePrometheusTextFormat(await res.text());
}

function value(families: PromFamily[], name: string, labels: Record<string, string>): number {
  const f = families.find((x) => x.name === `workos_router_${name}`);
  const m = f?.metrics.find((s) => Object.entries(labels).every(([k, v]) => s.labels?.[k] === v));
  return m === undefined ? 0 : Number(m.value);
}

describe('GET /admin/metrics', () => {
  it('counts webhook outcomes, delivery results and failure classes as sent; parses as Prometheus text', async () => {
    const before = await metrics();
    sink.on(WAREHOUSE, () => new Response('down', { status: 503 }));
    const events = [sampleEvent(), sampleEvent(), sampleEvent()];
    for (const e of events) expect((await postWebhook(e)).status).toBe(200);
    expect((await postWebhook(events[0] as object)).status).toBe(200); // duplicate
    expect((await postWebhook(sampleEvent(), { secret: 'whsec_wrong' })).status).toBe(401);
    expect((await postWebhook(sampleEvent(), { secret: 'whsec_wrong' })).status).toBe(401);
    expect((await postWebhook(sampleEvent(), { signature: null })).status).toBe(401);
    const domain = sampleEvent({ event: 'organization_domain.verified', data: { id: `org_domain_${crypto.randomUUID()}`, object: 'organization_domain' } });
    expect((await postWebhook(domain)).status).toBe(200);
    await until(async () => (await deadLettersFor(domain.id as string)).length === 1, 'the warehouse dead letter', 20_000);
    // A batch writes its dead letters before it reports its outcomes to the registry: wait for the report too
    // (at least the expected counts; the exact checks below catch any extra).
    const since = (m: Awaited<ReturnType<typeof metrics>>, name: string, labels: Record<string, string>) => value(m, name, labels) - value(before, name, labels);
    await until(
      async () => {
        const m = await metrics();
        return since(m, 'delivery_failures_total', { destination: 'warehouse', class: 'http_5xx' }) >= 3 && since(m, 'deliveries_total', { destination: 'warehouse', result: 'failed' }) >= 3;
      },
      "the failing batches' reports",
      20_000,
    );

    const after = await metrics();
    const delta = (name: string, labels: Record<string, string>) => since(after, name, labels);
    expect(delta('webhook_requests_total', { outcome: 'accepted' })).toBe(4);
    expect(delta('webhook_requests_total', { outcome: 'duplicate' })).toBe(1);
    expect(delta('webhook_requests_total', { outcome: 'signature_mismatch' })).toBe(2);
    expect(delta('webhook_requests_total', { outcome: 'missing_signature' })).toBe(1);
    expect(delta('delivery_failures_total', { destination: 'warehouse', class: 'http_5xx' })).toBe(3);
    expect(delta('deliveries_total', { destination: 'warehouse', result: 'failed' })).toBe(3);
    expect(delta('dead_letters', { destination: 'warehouse' })).toBe(1);
    const types = Object.fromEntries(after.map((f) => [f.name, f.type]));
    expect(types).toMatchObject({
      workos_router_webhook_requests_total: 'COUNTER',
      workos_router_deliveries_total: 'COUNTER',
      workos_router_held: 'GAUGE',
      workos_router_circuit_open: 'GAUGE',
      workos_router_reconcile_lag_seconds: 'GAUGE',
      workos_router_reconcile_recovered_total: 'COUNTER',
    });
    // Kept in the registry's storage, not only in this isolate's memory.
    const stored = await runInDurableObject(registryStub(env), (_i, state) =>
      state.storage.sql.exec<{ value: number }>('SELECT value FROM counters WHERE key = ?', JSON.stringify(['webhook_requests_total', { outcome: 'duplicate' }])).one().value,
    );
    expect(stored).toBe(value(after, 'webhook_requests_total', { outcome: 'duplicate' }));
  });

  it('needs the bearer token (401 unauthorized)', async () => {
    const res = await scrape('wrong');
    expect(res.status).toBe(401);
    expect(((await res.json()) as { error: string }).error).toBe('unauthorized');
  });

  it('escapes label values as the format requires', () => {
    expect(escapeLabelValue('a"b\\c\nd')).toBe('a\\"b\\\\c\\nd');
  });
});
