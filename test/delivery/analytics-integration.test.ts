/**
 * Optional Analytics Engine output: one data point per (destination, type,
 * result) per consumer batch when an ANALYTICS binding exists; nothing without.
 * The dataset is the network edge here (a recording stand-in for the binding).
 */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { routerMessage, runBatch, testEnv } from '../helpers/consumer';
import { Sink } from '../helpers/sink';
import { sampleEvent } from '../helpers/webhook';
import { DELIVERY_ROUTER, WAREHOUSE } from './router';

const sink = new Sink();
beforeEach(() => sink.reset().install());
afterEach(() => vi.restoreAllMocks());

describe('Analytics Engine data points', () => {
  it('one point per destination, type and result in a batch, with counts and latency', async () => {
    const points: AnalyticsEngineDataPoint[] = [];
    const dataset = { writeDataPoint: (p: AnalyticsEngineDataPoint) => points.push(p) };
    sink.on(WAREHOUSE, (req) => new Response(null, { status: req.headers.get('x-workos-event-id')?.endsWith('F') ? 503 : 204 }));
    const domain = (id: string) => sampleEvent({ id, event: 'organization_domain.verified', data: { id: `org_domain_${crypto.randomUUID()}`, object: 'organization_domain' } });
    const ok1 = domain(`event_${crypto.randomUUID().slice(0, 8)}A`);
    const ok2 = domain(`event_${crypto.randomUUID().slice(0, 8)}B`);
    const bad = domain(`event_${crypto.randomUUID().slice(0, 8)}F`);
    const { result } = await runBatch([routerMessage(ok1), routerMessage(ok2), routerMessage(bad)], testEnv(DELIVERY_ROUTER, { ANALYTICS: dataset }));
    expect(result.explicitAcks).toHaveLength(3);
    const sorted = points.map((p) => ({ blobs: p.blobs, count: p.doubles?.[0], indexes: p.indexes })).sort((a, b) => String(a.blobs?.[2]).localeCompare(String(b.blobs?.[2])));
    expect(sorted).toEqual([
      { blobs: ['warehouse', 'organization_domain.verified', 'delivered'], count: 2, indexes: ['warehouse'] },
      { blobs: ['warehouse', 'organization_domain.verified', 'failed'], count: 1, indexes: ['warehouse'] },
    ]);
    for (const p of points) expect(p.doubles?.[1]).toBeGreaterThanOrEqual(0);
  });

  it('without the binding, a batch is delivered and acked as usual (the missing dataset is no error)', async () => {
    sink.on(WAREHOUSE, () => new Response(null, { status: 204 }));
    const e = sampleEvent({ event: 'organization_domain.verified', data: { id: 'org_domain_x', object: 'organization_domain' } });
    const runEnv = testEnv(DELIVERY_ROUTER);
    expect((runEnv as unknown as Record<string, unknown>).ANALYTICS).toBeUndefined();
    const { result } = await runBatch([routerMessage(e)], runEnv);
    expect(result.retryMessages).toEqual([]);
    expect(result.explicitAcks).toHaveLength(1);
    expect(sink.about(e.id as string, WAREHOUSE)).toHaveLength(1);
  });
});
