/**
 * The delivery trace is observability, never a reason to redeliver: when its
 * write fails, the batch's deliveries still count once, each message is acked
 * once, and the failure is logged (README, Delivery trace).
 */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { env } from 'cloudflare:workers';
import { loadConfig } from '../../src/config/load';
import { routerMessage, runBatch, testEnv } from '../helpers/consumer';
import { Sink } from '../helpers/sink';
import { sampleEvent } from '../helpers/webhook';

const CRM = 'https://crm.trace-failure.test/hooks';
const ROUTER = {
  destinations: [{ name: 'crm', type: 'http', url: CRM, max_attempts: 3 }],
  rules: [{ name: 'everything', events: ['*'], to: ['crm'] }],
};

describe('a failed trace write', () => {
  const sink = new Sink();
  beforeEach(() => sink.install());
  afterEach(() => {
    vi.restoreAllMocks();
    sink.reset();
    loadConfig(env);
  });

  it('is logged, and every message of the batch is still acked once, its event delivered once', async () => {
    // The trace's Durable Object is unreachable: only its write is made to fail.
    const trace = env.DELIVERY_TRACE;
    const failing = {
      idFromName: (name: string) => trace.idFromName(name),
      get: () => ({ record: () => Promise.reject(new Error('trace store unavailable')) }),
    };
    const runEnv = testEnv(ROUTER, { DELIVERY_TRACE: failing });
    const events = [sampleEvent(), sampleEvent()];
    const warn = vi.spyOn(console, 'warn');
    const { batch, result } = await runBatch(events.map((e) => routerMessage(e)), runEnv);

    expect(result.explicitAcks.sort()).toEqual(batch.messages.map((m) => m.id).sort());
    expect(result.retryMessages).toEqual([]);
    expect(result.retryBatch.retry).toBe(false);
    for (const e of events) expect(sink.about(e.id as string, CRM)).toHaveLength(1);
    const lines = warn.mock.calls.map((c) => JSON.parse(String(c[0])) as { msg: string; writes?: number; error?: string });
    expect(lines.find((l) => l.msg === 'trace_write_failed')).toMatchObject({ writes: 2, error: 'Error: trace store unavailable' });
  });
});
