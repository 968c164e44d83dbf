/**
 * The log lines README "## Logs" (and "Delivery, retries and dead letters")
 * tells users to filter on, read as a user reads them: an event's path by its
 * `event_id` (`webhook` accepted → `delivered` / `delivery_failed` /
 * `delivery_held` per destination; for Slack `handed_to_outbox`, then the
 * outbox's `delivered` for a one-event message or `slack_digest_delivered`
 * with a count and no event ids), the held store's `deliveries_held`, and a
 * batch held while ROUTER is invalid (`held_config_invalid`). Only the network
 * edge (the sink) is played; the queue, consumer and objects are real.
 */
import { runDurableObjectAlarm } from 'cloudflare:test';
import { env, exports } from 'cloudflare:workers';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { heldStub } from '../../src/destinations/held';
import { outboxStub } from '../../src/destinations/slack/outbox';
import { routerMessage, runBatch, testEnv } from '../helpers/consumer';
import { watchLogs } from '../helpers/observe';
import { Sink } from '../helpers/sink';
import { until } from '../helpers/until';
import { URL_BASE, postWebhook, sampleEvent } from '../helpers/webhook';
import { CRM, OPS, SLACK, WAREHOUSE } from './router';

const sink = new Sink();
beforeEach(() => sink.reset().install());
afterEach(() => vi.restoreAllMocks());

const EMAIL = 'log-lines-person@example.test';

function admin(path: string): Promise<Response> {
  return exports.default.fetch(new Request(`${URL_BASE}/admin${path}`, { method: 'POST', headers: { Authorization: 'Bearer test-admin-token' } }));
}

describe('an event\'s path in the logs, by its event_id', () => {
  it('accepted, delivered to one destination and failed at the other: webhook, delivered (status), delivery_failed (status, reason, retry_in_s); no payload in any line', async () => {
    const logs = watchLogs();
    sink.on(CRM, () => new Response(null, { status: 204 }));
    sink.on(OPS, () => new Response('busy', { status: 503 }));
    const e = sampleEvent({ event: 'user.created', data: { id: `user_${crypto.randomUUID()}`, object: 'user', email: EMAIL } });
    const id = e.id as string;
    expect((await postWebhook(e)).status).toBe(200);
    await until(() => logs.about(id, 'delivered').length === 1 && logs.about(id, 'delivery_failed').length === 1, 'both outcomes logged', 15_000);
    expect(logs.about(id, 'webhook')).toEqual([expect.objectContaining({ level: 'info', outcome: 'accepted', status: 200, event_type: 'user.created' })]);
    expect(logs.about(id, 'delivered')).toEqual([expect.objectContaining({ level: 'info', destination: 'crm', status: 204, attempt: 1, event_type: 'user.created' })]);
    expect(logs.about(id, 'delivery_failed')).toEqual([
      expect.objectContaining({ level: 'warn', destination: 'ops', status: 503, reason: 'http_503', attempt: 1, retry_in_s: expect.any(Number) }),
    ]);
    const line = JSON.stringify(logs.about(id));
    expect(line).not.toContain(EMAIL);
  });

  it('a paused destination: delivery_held for the event, and the held store\'s deliveries_held with a count', async () => {
    const logs = watchLogs();
    expect((await admin('/destinations/warehouse/pause')).status).toBe(200);
    try {
      const e = sampleEvent({ event: 'organization_domain.verified', data: { id: `org_domain_${crypto.randomUUID()}`, object: 'organization_domain', domain: 'log-lines.test' } });
      const id = e.id as string;
      const { result } = await runBatch([routerMessage(e)], env);
      expect(result.explicitAcks).toHaveLength(1);
      expect(logs.about(id, 'delivery_held')).toEqual([expect.objectContaining({ level: 'info', destination: 'warehouse', event_type: 'organization_domain.verified' })]);
      expect(logs.records().filter((r) => r.msg === 'deliveries_held' && r.destination === 'warehouse')).toEqual([expect.objectContaining({ level: 'info', count: 1 })]);
      expect(sink.about(id, WAREHOUSE)).toEqual([]);
    } finally {
      expect((await admin('/destinations/warehouse/resume')).status).toBe(200);
      await until(async () => (await heldStub(env, 'warehouse').count()) === 0, 'the held delivery drained', 15_000);
    }
  });
});

describe('Slack in the logs', () => {
  it('handed_to_outbox per event; the outbox logs delivered with the event_id for a one-event message, and slack_digest_delivered with a count and no event ids for a digest', async () => {
    const logs = watchLogs();
    sink.on(SLACK, () => new Response('ok'));
    const outbox = outboxStub(env, 'security');
    await until(async () => (await outbox.pending()) === 0, 'the security outbox empty', 15_000);
    const failed = () => sampleEvent({ event: 'authentication.password_failed', data: { type: 'password', status: 'failed', email: EMAIL, user_id: null } });
    // One event in a quiet period: posted at once, as a one-event message.
    const single = failed();
    await runBatch([routerMessage(single)], env);
    await until(() => logs.about(single.id as string, 'delivered').length === 1, "the outbox's delivered line");
    expect(logs.about(single.id as string, 'handed_to_outbox')).toEqual([expect.objectContaining({ destination: 'security', status: 202 })]);
    expect(logs.about(single.id as string, 'delivered')).toEqual([expect.objectContaining({ level: 'info', destination: 'security', events: 1 })]);
    // Three within the window: one digest, its line without event ids.
    const three = [failed(), failed(), failed()];
    await runBatch(three.map((e) => routerMessage(e)), env);
    for (const e of three) expect(logs.about(e.id as string, 'handed_to_outbox')).toHaveLength(1);
    const digests = () => logs.records().filter((r) => r.msg === 'slack_digest_delivered' && r.destination === 'security');
    await until(async () => {
      await runDurableObjectAlarm(outbox);
      return digests().length === 1;
    }, 'the digest line', 15_000, 200);
    expect(digests()[0]).toMatchObject({ level: 'info', events: 3 });
    expect(digests()[0]).not.toHaveProperty('event_id');
    for (const e of three) expect(logs.about(e.id as string, 'delivered')).toEqual([]);
    expect(JSON.stringify(logs.records())).not.toContain(EMAIL);
  });
});

describe('a batch held while ROUTER is invalid', () => {
  it('held_config_invalid with its count and retry_in_s; the message is held (sent again as a fresh one, this one acked), nothing delivered', async () => {
    const logs = watchLogs();
    const e = sampleEvent({ event: 'user.created', data: { id: `user_${crypto.randomUUID()}`, object: 'user', email: EMAIL } });
    const { result } = await runBatch([routerMessage(e)], testEnv({ destinations: 'not a list' }));
    expect(result.explicitAcks).toHaveLength(1);
    expect(result.retryMessages).toEqual([]);
    expect(logs.records().filter((r) => r.msg === 'held_config_invalid')).toEqual([expect.objectContaining({ level: 'warn', count: 1, retry_in_s: expect.any(Number) })]);
    expect(sink.about(e.id as string)).toEqual([]);
  });
});
