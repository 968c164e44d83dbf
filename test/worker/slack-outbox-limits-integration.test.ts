/**
 * The Slack outbox's promises at the edges (issue "Slack: a true
 * one-message-per-window limit, exact counts under redelivery, a bounded
 * outbox"): spacing measured at the receiving end with a slow, jittery Slack;
 * idempotent submission; a 24-hour outage with 50,000 events.
 */
import { runDurableObjectAlarm, runInDurableObject } from 'cloudflare:test';
import { env } from 'cloudflare:workers';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { SlackDestination } from '../../src/config/router-config';
import { deadLetterStub } from '../../src/deadletters/store';
import { deliverSlack } from '../../src/destinations/slack/adapter';
import { type OutboxItem, outboxStub } from '../../src/destinations/slack/outbox';
import { makeEvent } from '../fixtures/events';
import { until } from '../helpers/until';

const SLACK = 'https://hooks.slack.test/services/T1/B1/limits';

interface Arrival {
  url: string;
  at: number;
  text: string;
}
let arrivals: Arrival[];
let answer: () => Response;
/** Network latency before a request reaches Slack, per request. */
let latency: () => number;
/** Events counted in messages Slack accepted (2xx). */
let delivered: number;

beforeEach(() => {
  arrivals = [];
  answer = () => new Response('ok');
  latency = () => 0;
  delivered = 0;
  vi.spyOn(globalThis, 'fetch').mockImplementation(async (input, init) => {
    const req = new Request(input as RequestInfo, init);
    const body = (await req.json()) as { text: string };
    const wait = latency();
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    arrivals.push({ url: req.url, at: Date.now(), text: body.text });
    const res = answer();
    if (res.ok) delivered += countOf(body.text);
    return res;
  });
});
afterEach(() => vi.restoreAllMocks());

let n = 0;
function destination(overrides: Partial<SlackDestination> = {}): SlackDestination {
  return {
    name: `slack-limits-${++n}-${crypto.randomUUID().slice(0, 8)}`,
    type: 'slack',
    url: SLACK,
    digestWindowSeconds: 1,
    maxPending: 10_000,
    circuit: null,
    maxPerSecond: null,
    timeoutMs: 5000,
    retry: { maxAttempts: 5, retryDelaySeconds: 1 },
    ...overrides,
  };
}

function item(i: number): OutboxItem {
  const e = makeEvent('authentication.password_failed');
  (e.data as { ip_address: string | null }).ip_address = `203.0.113.${i % 11}`;
  return { event_id: e.id, event_type: e.event, rules: ['failed-logins'], raw: JSON.stringify(e) };
}

/** Events a message stands for: 1 for a single-event message, N for a digest. */
function countOf(text: string): number {
  const m = /([\d,]+) WorkOS events? in the last/.exec(text);
  return m ? Number((m[1] as string).replace(/,/g, '')) : 1;
}

async function forgetWaits(stub: ReturnType<typeof outboxStub>): Promise<void> {
  await runInDurableObject(stub, (_i, state) => {
    state.storage.sql.exec("UPDATE meta SET value = 0 WHERE key IN ('last_sent_at', 'blocked_until')");
  });
}

async function drain(stubs: ReturnType<typeof outboxStub>[], timeoutMs = 60_000): Promise<void> {
  for (const stub of stubs) await until(async () => (await stub.pending()) === 0, 'the outbox drained', timeoutMs, 100);
}

describe('one message per window, measured where Slack receives it', () => {
  it('three destinations under a burst, with a slow and jittery Slack: consecutive arrivals per destination are ≥ the window apart', { timeout: 30_000 }, async () => {
    // Every other request is slow to arrive: a window measured from the start
    // of the previous request lets the next (fast) one arrive early.
    let k = 0;
    latency = () => (k++ % 2 === 0 ? 400 : 0);
    const dests = [0, 1, 2].map(() => {
      const d = destination();
      return { ...d, url: `${SLACK}/${d.name}` };
    });
    const stubs = dests.map((d) => outboxStub(env, d.name));
    let submitted = 0;
    for (let wave = 0; wave < 4; wave++) {
      await Promise.all(
        dests.flatMap((d, j) =>
          Array.from({ length: 40 }, (_, i) => {
            submitted += 1;
            return (stubs[j] as ReturnType<typeof outboxStub>).submit(d, item(wave * 40 + i));
          }),
        ),
      );
      // The next wave 300 ms later (the shape of the burst, not a wait for a result).
      await new Promise((r) => setTimeout(r, 300));
    }
    await drain(stubs);
    let counted = 0;
    for (const d of dests) {
      const mine = arrivals.filter((a) => a.url === d.url);
      expect(mine.length).toBeGreaterThanOrEqual(2);
      for (let i = 1; i < mine.length; i++) {
        expect(mine[i]!.at - mine[i - 1]!.at, `gap ${i} at ${d.name}`).toBeGreaterThanOrEqual(1000);
      }
      counted += mine.reduce((sum, a) => sum + countOf(a.text), 0);
    }
    expect(counted).toBe(submitted);
  });
});

describe('a single event sent at once', () => {
  it('has an alarm set while its POST is in flight (a reset mid-POST still sends it), cleared once sent', async () => {
    const dest = destination({ digestWindowSeconds: 60 });
    const stub = outboxStub(env, dest.name);
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    let posting = false;
    let alarmDuringPost: number | null = null;
    vi.mocked(globalThis.fetch).mockImplementationOnce(async (input, init) => {
      const req = new Request(input as RequestInfo, init);
      const body = (await req.json()) as { text: string };
      posting = true;
      await gate;
      arrivals.push({ url: req.url, at: Date.now(), text: body.text });
      return new Response('ok');
    });
    const submitted = stub.submit(dest, item(1));
    await until(() => posting, 'the POST to Slack started');
    alarmDuringPost = await runInDurableObject(stub, (_i, state) => state.storage.getAlarm());
    release();
    expect(await submitted).toBe('accepted');
    expect(alarmDuringPost).not.toBeNull();
    expect(arrivals).toHaveLength(1);
    expect(await stub.pending()).toBe(0);
    expect(await runInDurableObject(stub, (_i, state) => state.storage.getAlarm())).toBeNull();
  });
});

describe('submission is idempotent per event id', () => {
  it('the same events submitted again (a consumer redelivery) are not counted twice', async () => {
    const dest = destination({ digestWindowSeconds: 60 });
    const stub = outboxStub(env, dest.name);
    const items = Array.from({ length: 20 }, (_, i) => item(i));
    const first = await stub.submitMany(dest, items);
    expect(first.filter((o) => o === 'accepted')).toHaveLength(20);
    const again = await stub.submitMany(dest, items);
    expect(again).toEqual(items.map(() => 'duplicate'));
    expect(await stub.submit(dest, items[3] as OutboxItem)).toBe('duplicate');
    // Within one call, too.
    const twice = item(99);
    expect(await stub.submitMany(dest, [twice, twice])).toEqual(['accepted', 'duplicate']);
    await forgetWaits(stub);
    await runDurableObjectAlarm(stub);
    // The outbox's own alarm may be sending already (the forced run then leaves it to that send): wait for the outcome.
    await until(async () => (await stub.pending()) === 0, 'the digest sent');
    // The first event went out alone at once; the other 20 in one digest.
    expect(arrivals.reduce((sum, a) => sum + countOf(a.text), 0)).toBe(21);
  });
});

describe('a bounded outbox', () => {
  it('a 24-hour Slack outage with 50,000 events: storage stays bounded, nothing is lost, counts are exact', async () => {
    const dest = destination({ maxPending: 10_000, retry: { maxAttempts: 10, retryDelaySeconds: 30 } });
    const stub = outboxStub(env, dest.name);
    answer = () => new Response('down', { status: 503 });
    const deadBefore = await deadLetterStub(env).count();
    const outcomes = { accepted: 0, refused: 0, duplicate: 0 };
    let maxWaiting = 0;
    // 50 waves of 1,000 events, about 29 minutes apart; one (failed) attempt per wave.
    for (let wave = 0; wave < 50; wave++) {
      const results = await stub.submitMany(dest, Array.from({ length: 1000 }, (_, i) => item(wave * 1000 + i)));
      for (const r of results) {
        if (r === 'accepted') outcomes.accepted += 1;
        else if (r === 'full') outcomes.refused += 1;
        else outcomes.duplicate += 1;
      }
      maxWaiting = Math.max(maxWaiting, await stub.pending());
      await forgetWaits(stub);
      await runDurableObjectAlarm(stub);
    }
    expect(outcomes.duplicate).toBe(0);
    expect(outcomes.accepted + outcomes.refused).toBe(50_000);
    expect(maxWaiting).toBeLessThanOrEqual(10_000);
    expect(outcomes.refused).toBeGreaterThan(0);
    // Slack is back.
    answer = () => new Response('ok');
    for (let i = 0; i < 10 && (await stub.pending()) > 0; i++) {
      await forgetWaits(stub);
      await runDurableObjectAlarm(stub);
    }
    expect(await stub.pending()).toBe(0);
    const deadLettered = (await deadLetterStub(env).count()) - deadBefore;
    // Every accepted event was either delivered (counted in a digest) or dead-lettered after the attempts ran out;
    // every refused one was returned to the caller (the consumer dead-letters it, see below).
    expect(delivered + deadLettered).toBe(outcomes.accepted);
    // The outbox's own storage held at most max_pending events' rows at any time.
    const rows = await runInDurableObject(stub, (_i, state) => state.storage.sql.exec<{ n: number }>('SELECT COUNT(*) AS n FROM entries').one().n);
    expect(rows).toBe(0);
  }, 120_000);

  it('a full outbox refuses the event, and the destination reports a permanent slack_backlog_full for the consumer to dead-letter', async () => {
    const dest = destination({ maxPending: 100, digestWindowSeconds: 3600 });
    answer = () => new Response('down', { status: 503 });
    const stub = outboxStub(env, dest.name);
    await stub.submitMany(dest, Array.from({ length: 100 }, (_, i) => item(i)));
    expect(await stub.pending()).toBe(100);
    const e = makeEvent('authentication.password_failed');
    const outcome = await deliverSlack(dest, { event: e as never, raw: JSON.stringify(e), rules: ['failed-logins'], attempts: 0 }, env);
    expect(outcome).toEqual({ ok: false, retryable: false, status: null, reason: 'slack_backlog_full' });
    expect(await stub.pending()).toBe(100);
  });
});
