/**
 * A Slack outbox whose destination was removed from a valid config: nothing
 * resumes it (the admin API needs the destination), so its own alarms must
 * move the whole buffer to dead letters (`destination_removed`), one bounded
 * run at a time, each scheduling the next while entries remain, none left
 * once the buffer is empty. Before, one run (at most 5,000 entries, or only
 * the leading alerts) was dead-lettered and the rest stayed for ever.
 * Outbound fetch to Slack is mocked at the edge; the outbox Durable Object,
 * its alarm and the dead-letter store are real.
 */
import { runDurableObjectAlarm, runInDurableObject } from 'cloudflare:test';
import { env } from 'cloudflare:workers';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { SlackDestination } from '../../src/config/router-config';
import { type DeadLetterSummary, deadLetterStub } from '../../src/deadletters/store';
import { type OutboxItem, type SlackOutbox, outboxStub } from '../../src/destinations/slack/outbox';
import { ALERT_EVENT_TYPE, MAX_ALERTS_PER_MESSAGE } from '../../src/destinations/slack/render';
import { makeEvent } from '../fixtures/events';

const SLACK = 'https://hooks.slack.test/services/T1/B1/removed';

/** Requests that reached Slack (always down here: the buffer only grows). */
let calls: string[];

beforeEach(() => {
  calls = [];
  vi.spyOn(globalThis, 'fetch').mockImplementation(async (input, init) => {
    const req = new Request(input as RequestInfo, init);
    if (req.url !== SLACK) throw new Error(`unexpected fetch ${req.url}`);
    calls.push(((await req.json()) as { text: string }).text);
    return new Response('down', { status: 503 });
  });
});
afterEach(() => vi.restoreAllMocks());

/** A Slack destination the worker's own ROUTER (wrangler.toml) does not have. */
function destination(): SlackDestination {
  return {
    name: `slack-removed-${crypto.randomUUID().slice(0, 8)}`,
    type: 'slack',
    url: SLACK,
    digestWindowSeconds: 1,
    maxPending: 20_000,
    timeoutMs: 1000,
    circuit: null,
    maxPerSecond: null,
    // The failed first try blocks the destination for 10 minutes: no alarm of its own runs during the test.
    retry: { maxAttempts: 5, retryDelaySeconds: 600 },
  };
}

function event(i: number): OutboxItem {
  const e = makeEvent('authentication.password_failed');
  (e.data as { ip_address: string | null }).ip_address = `203.0.113.${i % 11}`;
  return { event_id: e.id, event_type: e.event, rules: ['failed-logins'], raw: JSON.stringify(e) };
}

function alert(dest: SlackDestination, i: number): OutboxItem {
  const id = `alert_${crypto.randomUUID()}`;
  const text = `Alert ${i}: dead letters at *audit*`;
  const raw = JSON.stringify({ id, event: ALERT_EVENT_TYPE, created_at: new Date().toISOString(), data: { text } });
  return { event_id: `${id}:${dest.name}`, event_type: ALERT_EVENT_TYPE, rules: [], raw, alert: text };
}

type Stub = DurableObjectStub<SlackOutbox>;

/**
 * Buffers `items` while Slack is down (the first is tried at once and fails),
 * then the config no longer has the destination: the object is met afresh
 * (no destination remembered), as after a deploy of the new ROUTER.
 */
async function fillThenRemove(dest: SlackDestination, items: OutboxItem[]): Promise<Stub> {
  const stub = outboxStub(env, dest.name);
  expect(await stub.submit(dest, items[0] as OutboxItem)).toBe('accepted');
  expect(calls).toHaveLength(1);
  const outcomes = await stub.submitMany(dest, items.slice(1));
  expect(outcomes.every((o) => o === 'accepted')).toBe(true);
  expect(await stub.pending()).toBe(items.length);
  await runInDurableObject(stub, (instance) => {
    (instance as unknown as { lastDest: unknown }).lastDest = undefined;
  });
  return stub;
}

/** Runs the outbox's alarms until none is scheduled; after each run that leaves entries, the next alarm is at most a second away. */
async function runAlarmsUntilNone(stub: Stub, maxRuns = 20): Promise<number> {
  let runs = 0;
  for (;;) {
    const before = Date.now();
    if (!(await runDurableObjectAlarm(stub))) return runs;
    runs += 1;
    if (runs > maxRuns) throw new Error(`still alarms after ${maxRuns} runs`);
    const [left, alarmAt] = await runInDurableObject(stub, async (_i, state) => [
      state.storage.sql.exec<{ n: number }>('SELECT COUNT(*) AS n FROM entries').one().n,
      await state.storage.getAlarm(),
    ]);
    if (left > 0) {
      expect(alarmAt, `the next alarm after run ${runs} (${left} entries left)`).not.toBeNull();
      expect(alarmAt as number).toBeGreaterThanOrEqual(before);
      expect((alarmAt as number) - Date.now()).toBeLessThanOrEqual(1000);
    }
  }
}

async function deadLettersOf(destination: string): Promise<DeadLetterSummary[]> {
  const found: DeadLetterSummary[] = [];
  let after = 0;
  for (;;) {
    const page = await deadLetterStub(env).list(500, after, { destination });
    found.push(...page);
    if (page.length < 500) return found;
    after = page[page.length - 1]?.seq ?? after;
  }
}

/** Every item dead-lettered exactly once, in order, as `destination_removed`; the outbox empty, with no alarm left. */
async function expectAllDeadLettered(stub: Stub, dest: SlackDestination, items: OutboxItem[]): Promise<void> {
  const dead = await deadLettersOf(dest.name);
  expect(dead.map((d) => d.event_id)).toEqual(items.map((i) => i.event_id));
  expect((await deadLetterStub(env).countsByDestination())[dest.name]).toBe(items.length);
  dead.forEach((d, k) => {
    const item = items[k] as OutboxItem;
    expect(d).toMatchObject({ destination: dest.name, event_type: item.event_type, rules: item.rules, reason: 'destination_removed', last_status: null });
  });
  // The first entry was tried once (Slack answered 503) before the destination was removed.
  expect(dead[0]?.attempts).toBe(1);
  expect(await stub.pending()).toBe(0);
  const [rows, alarmAt] = await runInDurableObject(stub, async (_i, state) => [
    state.storage.sql.exec<{ n: number }>('SELECT COUNT(*) AS n FROM entries').one().n,
    await state.storage.getAlarm(),
  ]);
  expect(rows).toBe(0);
  expect(alarmAt).toBeNull();
  // Nothing more went to Slack: only the failed first try.
  expect(calls).toHaveLength(1);
}

describe('a Slack outbox whose destination was removed from a valid config', () => {
  it('8,001 buffered events (more than one 5,000-entry run): all dead-lettered once as destination_removed, run after run, then no alarm', { timeout: 120_000 }, async () => {
    const dest = destination();
    const items = Array.from({ length: 8001 }, (_, i) => event(i));
    const stub = await fillThenRemove(dest, items);
    const runs = await runAlarmsUntilNone(stub);
    expect(runs).toBe(2); // 5,000 then 3,001
    await expectAllDeadLettered(stub, dest, items);
  });

  it('a paused outbox whose destination is then removed: kept while configured, then dead-lettered as destination_removed by its own alarm (nothing could resume it)', async () => {
    const dest = destination();
    const items = Array.from({ length: 3 }, (_, i) => event(i));
    const stub = outboxStub(env, dest.name);
    await stub.pause();
    expect((await stub.submitMany(dest, items)).every((o) => o === 'accepted')).toBe(true);
    // Paused, and still the consumer's destination: an alarm keeps the buffer, sends nothing, and looks again hours later.
    expect(await runDurableObjectAlarm(stub)).toBe(true);
    expect(calls).toEqual([]);
    expect(await stub.pending()).toBe(3);
    const next = await runInDurableObject(stub, (_i, state) => state.storage.getAlarm());
    expect((next as number) - Date.now()).toBeGreaterThan(60 * 60 * 1000);
    // A deploy without the destination: the object is met afresh, and the valid config no longer has it.
    await runInDurableObject(stub, (instance) => {
      (instance as unknown as { lastDest: unknown }).lastDest = undefined;
    });
    await runAlarmsUntilNone(stub);
    const dead = await deadLettersOf(dest.name);
    expect(dead.map((d) => d.event_id)).toEqual(items.map((i) => i.event_id));
    for (const d of dead) expect(d).toMatchObject({ reason: 'destination_removed', attempts: 0 });
    expect(calls).toEqual([]);
    expect(await stub.pending()).toBe(0);
  });

  it('alerts (more than one alerts message) followed by events: alerts and events all dead-lettered once as destination_removed, then no alarm', async () => {
    const dest = destination();
    const alerts = Array.from({ length: MAX_ALERTS_PER_MESSAGE + 5 }, (_, i) => alert(dest, i));
    const items = [...alerts, ...Array.from({ length: 30 }, (_, i) => event(i))];
    const stub = await fillThenRemove(dest, items);
    const runs = await runAlarmsUntilNone(stub);
    expect(runs).toBe(3); // 20 alerts, 5 alerts, 30 events
    await expectAllDeadLettered(stub, dest, items);
  });
});
