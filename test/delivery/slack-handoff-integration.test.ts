/**
 * The consumer hands a batch's events to each Slack outbox in one request,
 * and a redelivered batch is not counted twice (submission is idempotent per
 * event id); a replay is not a redelivery, and reaches Slack again.
 */
import { runDurableObjectAlarm, runInDurableObject } from 'cloudflare:test';
import { env, exports } from 'cloudflare:workers';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { loadConfig } from '../../src/config/load';
import type { SlackDestination } from '../../src/config/router-config';
import { registryStub } from '../../src/destinations/registry';
import { SlackOutbox, outboxStub } from '../../src/destinations/slack/outbox';
import { ledgerShardOf } from '../../src/dedup/shard';
import type { UnknownEvent } from '../../src/events/catalog';
import { lookupEvent } from '../../src/trace/client';
import { routerMessage, runBatch } from '../helpers/consumer';
import { deadLettersFor } from '../helpers/observe';
import { Sink } from '../helpers/sink';
import { until } from '../helpers/until';
import { URL_BASE, postWebhook, sampleEvent } from '../helpers/webhook';
import { ONCALL } from './router';

const sink = new Sink();
beforeEach(() => sink.reset().install());
afterEach(() => vi.restoreAllMocks());

function countOf(body: string): number {
  const text = (JSON.parse(body) as { text: string }).text;
  const m = /([\d,]+) WorkOS events? in the last/.exec(text);
  return m ? Number((m[1] as string).replace(/,/g, '')) : 1;
}

function admin(path: string, method = 'POST'): Promise<Response> {
  return exports.default.fetch(new Request(`${URL_BASE}/admin${path}`, { method, headers: { Authorization: 'Bearer test-admin-token' } }));
}

/** An mfa_failed event Slack refuses at `oncall` (404 no_service): waits for the outbox's dead letter. */
async function refusedAtOncall(email: string) {
  sink.on(ONCALL, () => new Response('no_service', { status: 404 }));
  const event = sampleEvent({ event: 'authentication.mfa_failed', data: { type: 'mfa', status: 'failed', email, user_id: null } });
  const id = event.id as string;
  expect((await postWebhook(event)).status).toBe(200);
  const oncall = async () => (await deadLettersFor(id)).filter((r) => r.destination === 'oncall');
  await until(async () => (await oncall()).length === 1, 'the oncall dead letter', 20_000, 200);
  const [record] = await oncall();
  return { id, record, oncall };
}

describe('Slack hand-offs per batch', () => {
  it('ten events of one batch reach the outbox together, and the same batch redelivered adds nothing', async () => {
    const events = Array.from({ length: 10 }, (_, i) =>
      sampleEvent({ event: 'authentication.mfa_failed', data: { type: 'mfa', status: 'failed', email: `u${i}@example.com`, user_id: null } }),
    );
    const messages = events.map((e) => routerMessage(e));
    const getStub = vi.spyOn(env.SLACK_OUTBOX, 'get');
    const first = await runBatch(messages, env);
    expect(first.result.explicitAcks).toHaveLength(10);
    // mfa_failed goes to two Slack destinations (failed-logins → security, mfa → oncall): one request each for the whole batch.
    expect(getStub).toHaveBeenCalledTimes(2);
    const again = await runBatch(messages, env); // the platform redelivers the batch
    expect(again.result.explicitAcks).toHaveLength(10);

    const outbox = outboxStub(env, 'oncall');
    await sink.until(() => sink.received.some((r) => r.url === ONCALL), 'a message at Slack');
    await until(async () => (await outbox.pending()) === 0, 'the oncall outbox drained');
    const posted = sink.received.filter((r) => r.url === ONCALL);
    // One digest of all ten (handed over one by one, the first would have gone out alone).
    expect(posted).toHaveLength(1);
    expect(countOf(posted[0]?.body ?? '')).toBe(10);
  });

  it('a dead letter the outbox wrote (Slack refused the message) is posted again when replayed, then leaves the store', async () => {
    const { id, record, oncall } = await refusedAtOncall('replay@example.com');
    expect(record).toMatchObject({ event_type: 'authentication.mfa_failed', last_status: 404, rules: ['mfa'] });
    expect(sink.about(id, ONCALL)).toHaveLength(1); // the refused POST

    // Slack is fixed; the operator replays the dead letter. The outbox has seen this id, but a replay is not a redelivery.
    sink.on(ONCALL, () => new Response('ok'));
    expect((await admin(`/dead-letters/${record?.seq}/replay`)).status).toBe(200);
    await sink.until(() => sink.about(id, ONCALL).length === 2, 'the replayed event at Slack', 20_000);
    await until(async () => (await outboxStub(env, 'oncall').pending()) === 0, 'the oncall outbox drained');
    expect(sink.about(id, ONCALL)).toHaveLength(2);
    expect(await oncall()).toEqual([]);
  });

  it('a dead letter the outbox wrote keeps the event\'s marks, as the consumer\'s own do: its source, stale, and the ledger shard that keeps its body (its replay is traced there)', async () => {
    sink.on(ONCALL, () => new Response('no_service', { status: 404 }));
    let event: Record<string, unknown>;
    do event = sampleEvent({ event: 'authentication.mfa_failed', data: { type: 'mfa', status: 'failed', email: 'marks@example.com', user_id: null } });
    while (ledgerShardOf(event as unknown as UnknownEvent, 16) === 'ledger-5'); // so the current count would point elsewhere
    const id = event.id as string;
    const { result } = await runBatch([routerMessage(event, { source: 'reconcile', stale: true, ledger_shard: 'ledger-5' })], env);
    expect(result.explicitAcks).toHaveLength(1);
    await until(async () => (await deadLettersFor(id)).some((r) => r.destination === 'oncall'), 'the oncall dead letter', 20_000, 200);
    const record = (await deadLettersFor(id)).find((r) => r.destination === 'oncall');
    expect(record).toMatchObject({ destination: 'oncall', last_status: 404, source: 'reconcile', stale: true, ledger_shard: 'ledger-5' });
    // Slack is fixed; the replay is traced in the shard that keeps the body, not the one the current count names.
    sink.on(ONCALL, () => new Response('ok'));
    expect((await admin(`/dead-letters/${record?.seq}/replay`)).status).toBe(200);
    await sink.until(() => sink.about(id, ONCALL).length === 2, 'the replayed event at Slack', 20_000);
    const settings = { traceRetentionDays: 7, traceShards: 1 };
    await until(async () => (await lookupEvent(env, settings, id)).some((i) => i.source === 'replay'), 'the replay traced');
    const replay = (await lookupEvent(env, settings, id)).find((i) => i.source === 'replay');
    expect(replay?.body_shard).toBe('ledger-5');
  });

  it('an outbox buffer from before entries kept their marks gains the column when the object starts', async () => {
    const stub = env.SLACK_OUTBOX.get(env.SLACK_OUTBOX.idFromName(`old-schema-${crypto.randomUUID()}`));
    await runInDurableObject(stub, (_instance, state) => {
      state.storage.sql.exec('ALTER TABLE entries DROP COLUMN marks');
      new SlackOutbox(state, env); // what the next start of the object does
      const columns = state.storage.sql.exec<{ name: string }>('PRAGMA table_info(entries)').toArray().map((c) => c.name);
      expect(columns).toContain('marks');
    });
  });

  it('a replay held because the destination is paused is still a replay when it resumes: Slack gets it again', async () => {
    const oncallHeld = async () => ((await (await admin('/destinations', 'GET')).json()) as { items: { name: string; held: number }[] }).items.find((i) => i.name === 'oncall')?.held;
    const { id, record, oncall } = await refusedAtOncall('paused-replay@example.com');

    // Paused while Slack is fixed; the replay is held, then drains on resume.
    expect((await admin('/destinations/oncall/pause')).status).toBe(200);
    sink.on(ONCALL, () => new Response('ok'));
    expect((await admin(`/dead-letters/${record?.seq}/replay`)).status).toBe(200);
    await until(async () => (await oncallHeld()) === 1, 'the replay held', 20_000);
    expect(sink.about(id, ONCALL)).toHaveLength(1); // only the refused POST so far
    expect((await admin('/destinations/oncall/resume')).status).toBe(200);
    await sink.until(() => sink.about(id, ONCALL).length === 2, 'the replayed event at Slack after the resume', 20_000);
    await until(async () => (await oncallHeld()) === 0, 'nothing held');
    expect(await oncall()).toEqual([]);
  });

  it('the registry keeps a Slack destination\'s outbox in step with the pause, in its own order: racing pauses and resumes leave them agreeing', async () => {
    const outbox = outboxStub(env, 'oncall');
    const outboxPaused = () => runInDurableObject(outbox, (_i, state) => state.storage.kv.get<boolean>('paused') === true);
    try {
      await registryStub(env).pause('oncall', { slack: true });
      expect(await outboxPaused()).toBe(true);
      await registryStub(env).resume('oncall', { slack: true });
      expect(await outboxPaused()).toBe(false);
      // Operators (or a script) pausing and resuming at once: whatever the registry ends with, the outbox agrees.
      for (let round = 0; round < 5; round++) {
        const calls = Array.from({ length: 6 }, (_, i) => admin(`/destinations/oncall/${(i + round) % 2 === 0 ? 'pause' : 'resume'}`));
        for (const res of await Promise.all(calls)) expect(res.status).toBe(200);
        const registryPaused = (await registryStub(env).paused()).includes('oncall');
        expect(await outboxPaused()).toBe(registryPaused);
      }
    } finally {
      await admin('/destinations/oncall/resume');
    }
    expect(await outboxPaused()).toBe(false);
  });

  it('a paused Slack destination\'s outbox posts nothing, retries nothing and dead-letters nothing until it is resumed', async () => {
    const outbox = outboxStub(env, 'oncall');
    const config = loadConfig(env);
    if (!config.ok) throw new Error('the delivery config is invalid');
    const dest = config.config.destinations.get('oncall') as SlackDestination;
    sink.on(ONCALL, () => new Response('ok'));
    expect((await admin('/destinations/oncall/pause')).status).toBe(200);
    try {
      // Handed to the outbox directly, as an alert is (the consumer holds events for a paused destination itself).
      const event = sampleEvent({ event: 'authentication.mfa_failed', data: { type: 'mfa', status: 'failed', email: 'paused-outbox@example.com', user_id: null } });
      const id = event.id as string;
      expect(await outbox.submit(dest, { event_id: id, event_type: 'authentication.mfa_failed', rules: ['mfa'], raw: JSON.stringify(event) })).toBe('accepted');
      for (let i = 0; i < 3; i++) await runDurableObjectAlarm(outbox);
      expect(await outbox.pending()).toBe(1);
      expect(sink.about(id, ONCALL)).toEqual([]);
      expect(await deadLettersFor(id)).toEqual([]);

      expect((await admin('/destinations/oncall/resume')).status).toBe(200);
      await sink.until(() => sink.about(id, ONCALL).length === 1, 'the buffered event at Slack after the resume');
      await until(async () => (await outbox.pending()) === 0, 'the outbox drained');
    } finally {
      await admin('/destinations/oncall/resume');
    }
  });
});

