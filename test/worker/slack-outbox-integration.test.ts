/**
 * The Slack outbox: rate limit (≤ 1 message per window, window ≥ 1 s), burst
 * digests with exact counts, Retry-After, permanent errors to dead letters.
 * Outbound fetch to Slack is mocked at the edge; the outbox Durable Object,
 * its alarm and the dead-letter store are real.
 */
import { runDurableObjectAlarm, runInDurableObject } from 'cloudflare:test';
import { env } from 'cloudflare:workers';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { SlackDestination } from '../../src/config/router-config';
import { deadLetterStub } from '../../src/deadletters/store';
import { NEXT_ALERT_SQL, NEXT_NOTABLE_SQL, outboxStub } from '../../src/destinations/slack/outbox';
import { ALERT_EVENT_TYPE } from '../../src/destinations/slack/render';
import { makeEvent } from '../fixtures/events';
import { emptyFiller, fillOutbox } from '../helpers/outbox-fill';

const SLACK = 'https://hooks.slack.test/services/T1/B1/secret';

let calls: { at: number; body: { text: string; blocks: { type: string }[] } }[];
let answer: () => Response;

beforeEach(() => {
  calls = [];
  answer = () => new Response('ok');
  vi.spyOn(globalThis, 'fetch').mockImplementation(async (input, init) => {
    const req = new Request(input as RequestInfo, init);
    if (req.url !== SLACK) throw new Error(`unexpected fetch ${req.url}`);
    calls.push({ at: Date.now(), body: (await req.json()) as never });
    return answer();
  });
});
afterEach(() => vi.restoreAllMocks());

let n = 0;
function destination(overrides: Partial<SlackDestination> = {}): SlackDestination {
  return {
    name: `slack-test-${++n}`,
    type: 'slack',
    url: SLACK,
    digestWindowSeconds: 1,
    maxPending: 10_000,
    timeoutMs: 1000,
    circuit: null,
    maxPerSecond: null,
    retry: { maxAttempts: 5, retryDelaySeconds: 1 },
    ...overrides,
  };
}

function item(type: 'authentication.password_failed' | 'user.created' = 'authentication.password_failed', i = 0) {
  const e = makeEvent(type);
  if (type === 'authentication.password_failed') {
    (e.data as { ip_address: string | null }).ip_address = `203.0.113.${i % 7}`;
  }
  return { event_id: e.id, event_type: e.event, rules: ['failed-logins'], raw: JSON.stringify(e) };
}

/** Events a message stands for: 1 for a single-event message, N for a digest. */
function countOf(message: { text: string }): number {
  const m = /([\d,]+) WorkOS events? in the last/.exec(message.text);
  return m ? Number((m[1] as string).replace(/,/g, '')) : 1;
}

/** Lets the outbox's wait (window or Retry-After) pass, as time would, then runs its alarm. */
async function elapseAndRunAlarm(stub: ReturnType<typeof outboxStub>): Promise<boolean> {
  await runInDurableObject(stub, (_i, state) => {
    state.storage.sql.exec("UPDATE meta SET value = 0 WHERE key IN ('last_sent_at', 'blocked_until')");
  });
  return runDurableObjectAlarm(stub);
}

async function drain(stub: ReturnType<typeof outboxStub>, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while ((await stub.pending()) > 0) {
    if (Date.now() > deadline) throw new Error('outbox did not drain');
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** A destination whose hour-long window runs (its first event went out at once), with two user.created waiting. */
async function windowRunning(): Promise<{ dest: SlackDestination; stub: ReturnType<typeof outboxStub> }> {
  const dest = destination({ digestWindowSeconds: 3600 });
  const stub = outboxStub(env, dest.name);
  await stub.submit(dest, item());
  expect(calls).toHaveLength(1); // quiet: at once; the window now runs
  await stub.submit(dest, item('user.created'));
  await stub.submit(dest, item('user.created'));
  return { dest, stub };
}

describe('Slack outbox', () => {
  it('an alert queued behind events is not counted in their digest: it goes out in its own message next', async () => {
    const { dest, stub } = await windowRunning();
    const raw = JSON.stringify({ id: 'alert_1', event: ALERT_EVENT_TYPE, created_at: new Date().toISOString(), data: { text: ':rotating_light: the alert' } });
    await stub.submit(dest, { event_id: 'alert_1:x', event_type: ALERT_EVENT_TYPE, rules: [], raw, alert: ':rotating_light: the alert' });
    await stub.submit(dest, item());
    await elapseAndRunAlarm(stub);
    expect(countOf(calls[1]!.body)).toBe(2);
    expect(JSON.stringify(calls[1]!.body)).not.toContain(ALERT_EVENT_TYPE);
    await elapseAndRunAlarm(stub);
    expect(calls[2]!.body.text).toContain('the alert');
    await elapseAndRunAlarm(stub);
    expect(countOf(calls[3]!.body)).toBe(1);
    expect(await stub.pending()).toBe(0);
  });

  it('an impersonated session in a burst is never folded into a digest: it goes out alone, with its warning, between the digests', async () => {
    const { dest, stub } = await windowRunning();
    const session = (impersonated: boolean) => {
      const e = makeEvent('session.created');
      const data = e.data as unknown as Record<string, unknown>;
      if (impersonated) data.impersonator = { email: 'admin@example.test', reason: 'support ticket 42' };
      else delete data.impersonator;
      return { event_id: e.id, event_type: e.event, rules: ['sessions'], raw: JSON.stringify(e) };
    };
    await stub.submit(dest, session(false));
    await stub.submit(dest, session(true));
    await stub.submit(dest, session(false));
    await elapseAndRunAlarm(stub);
    expect(countOf(calls[1]!.body)).toBe(3); // the two users and the plain session
    expect(JSON.stringify(calls[1]!.body)).not.toContain('Impersonated');
    await elapseAndRunAlarm(stub);
    expect(countOf(calls[2]!.body)).toBe(1);
    expect(JSON.stringify(calls[2]!.body.blocks)).toContain('*Impersonated session*: admin@example.test');
    await elapseAndRunAlarm(stub);
    expect(countOf(calls[3]!.body)).toBe(1);
    expect(JSON.stringify(calls[3]!.body)).not.toContain('Impersonated');
    expect(await stub.pending()).toBe(0);
    // Found through its own index: one row read, whatever waits in front of it.
    expect(await runInDurableObject(stub, (_i, state) => state.storage.sql.exec(NEXT_NOTABLE_SQL).rowsRead)).toBeLessThanOrEqual(1);
  });

  it('finding the next alert behind a backlog reads one row, not the backlog (rows read are billed)', async () => {
    const dest = destination({ digestWindowSeconds: 3600 });
    const stub = outboxStub(env, dest.name);
    await stub.submit(dest, item());
    expect(calls).toHaveLength(1);
    await fillOutbox(stub, 5_000);
    const rowsRead = () => runInDurableObject(stub, (_i, state) => state.storage.sql.exec(NEXT_ALERT_SQL).rowsRead);
    expect(await rowsRead()).toBeLessThanOrEqual(1); // no alert: not a scan either
    const raw = JSON.stringify({ id: 'alert_2', event: ALERT_EVENT_TYPE, created_at: new Date().toISOString(), data: { text: 'behind' } });
    await stub.submit(dest, { event_id: 'alert_2:x', event_type: ALERT_EVENT_TYPE, rules: [], raw, alert: 'behind' });
    expect(await stub.pending()).toBe(5_001);
    const found = await runInDurableObject(stub, (_i, state) => state.storage.sql.exec<{ seq: number }>(NEXT_ALERT_SQL).toArray());
    expect(found).toHaveLength(1);
    expect(await rowsRead()).toBeLessThanOrEqual(1);
    await emptyFiller(stub);
  });

  it('sends a single event in a quiet period at once', async () => {
    const dest = destination({ digestWindowSeconds: 60 });
    const stub = outboxStub(env, dest.name);
    await stub.submit(dest, item());
    expect(calls).toHaveLength(1);
    expect(calls[0]?.body.text).toContain('authentication.password_failed');
    expect(await stub.pending()).toBe(0);
  });

  it('500 failed logins in a few seconds: at most one message per second, digests add up to exactly 500', { timeout: 30_000 }, async () => {
    const dest = destination({ digestWindowSeconds: 1 });
    const stub = outboxStub(env, dest.name);
    for (let wave = 0; wave < 5; wave++) {
      await Promise.all(Array.from({ length: 100 }, (_, i) => stub.submit(dest, item('authentication.password_failed', wave * 100 + i))));
      await new Promise((r) => setTimeout(r, 500));
    }
    await drain(stub);
    expect(calls.length).toBeGreaterThanOrEqual(2);
    expect(calls.length).toBeLessThan(10);
    for (let i = 1; i < calls.length; i++) {
      expect(calls[i]!.at - calls[i - 1]!.at).toBeGreaterThanOrEqual(1000);
    }
    expect(calls.reduce((sum, c) => sum + countOf(c.body), 0)).toBe(500);
    const digest = calls.find((c) => countOf(c.body) > 1)!;
    expect(digest.body.text).toMatch(/× authentication\.password_failed/);
    expect(JSON.stringify(digest.body.blocks)).toContain('203.0.113.');
  });

  it('honours Retry-After on 429, keeps the events, and sends them when allowed', async () => {
    const dest = destination({ digestWindowSeconds: 1 });
    const stub = outboxStub(env, dest.name);
    answer = () => new Response('rate_limited', { status: 429, headers: { 'Retry-After': '30' } });
    await stub.submit(dest, item());
    expect(calls).toHaveLength(1);
    expect(await stub.pending()).toBe(1);
    const alarmAt = await runInDurableObject(stub, (_i, state) => state.storage.getAlarm());
    expect((alarmAt ?? 0) - Date.now()).toBeGreaterThan(25_000);
    answer = () => new Response('ok');
    await stub.submit(dest, item('user.created'));
    expect(calls).toHaveLength(1); // still blocked: the new event waits with the first
    // An alarm that fires early does not send before Retry-After has passed.
    expect(await runDurableObjectAlarm(stub)).toBe(true);
    expect(calls).toHaveLength(1);
    expect(await elapseAndRunAlarm(stub)).toBe(true);
    expect(calls).toHaveLength(2);
    expect(countOf(calls[1]!.body)).toBe(2);
    expect(await stub.pending()).toBe(0);
  });

  it('retries a 5xx, then sends', async () => {
    const dest = destination();
    const stub = outboxStub(env, dest.name);
    let first = true;
    answer = () => (first ? ((first = false), new Response('oops', { status: 503 })) : new Response('ok'));
    await stub.submit(dest, item());
    expect(await stub.pending()).toBe(1);
    expect(await elapseAndRunAlarm(stub)).toBe(true);
    expect(calls).toHaveLength(2);
    expect(await stub.pending()).toBe(0);
  });

  it.each(['invalid_payload', 'no_service', 'channel_is_archived'])('Slack %s goes to dead letters with the reason', async (reason) => {
    const dest = destination();
    const stub = outboxStub(env, dest.name);
    answer = () => new Response(reason, { status: reason === 'invalid_payload' ? 400 : reason === 'no_service' ? 404 : 410 });
    const it1 = item();
    await stub.submit(dest, it1);
    expect(await stub.pending()).toBe(0);
    const items = await deadLetterStub(env).list(500, 0);
    expect(items.find((d) => d.event_id === it1.event_id)).toMatchObject({ destination: dest.name, reason: `slack_${reason}`, attempts: 1 });
  });

  it('dead-letters after max attempts of 5xx', async () => {
    const dest = destination({ retry: { maxAttempts: 2, retryDelaySeconds: 1 } });
    const stub = outboxStub(env, dest.name);
    answer = () => new Response('oops', { status: 500 });
    const it1 = item();
    await stub.submit(dest, it1);
    expect(await elapseAndRunAlarm(stub)).toBe(true);
    expect(await stub.pending()).toBe(0);
    const items = await deadLetterStub(env).list(500, 0);
    expect(items.find((d) => d.event_id === it1.event_id)).toMatchObject({ reason: 'attempts_exhausted: slack_http_500', last_status: 500, attempts: 2 });
  });

  it('adds the configured mention only for chosen rules', async () => {
    const dest = destination({ digestWindowSeconds: 60, mention: { text: '<!here>', rules: ['failed-logins'], events: [] } });
    const stub = outboxStub(env, dest.name);
    await stub.submit(dest, item());
    expect(calls[0]?.body.text.startsWith('<!here> ')).toBe(true);
    const quiet = destination({ digestWindowSeconds: 60, mention: { text: '<!here>', rules: ['other'], events: [] } });
    await outboxStub(env, quiet.name).submit(quiet, item());
    expect(calls[1]?.body.text).not.toContain('<!here>');
  });

  it('adds the configured mention only for chosen event patterns, and always when none are listed', async () => {
    const byPattern = destination({ digestWindowSeconds: 60, mention: { text: '<@U0SECOPS>', rules: [], events: ['authentication.*_failed'] } });
    await outboxStub(env, byPattern.name).submit(byPattern, item('authentication.password_failed'));
    expect(calls[0]?.body.text.startsWith('<@U0SECOPS> ')).toBe(true);
    const other = destination({ digestWindowSeconds: 60, mention: { text: '<@U0SECOPS>', rules: [], events: ['authentication.*_failed'] } });
    await outboxStub(env, other.name).submit(other, item('user.created'));
    expect(calls[1]?.body.text).not.toContain('<@U0SECOPS>');
    const always = destination({ digestWindowSeconds: 60, mention: { text: '<!channel>', rules: [], events: [] } });
    await outboxStub(env, always.name).submit(always, item('user.created'));
    expect(calls[2]?.body.text.startsWith('<!channel> ')).toBe(true);
  });

  it('a mention\'s event patterns are read as a rule reads them: a ! pattern excludes', async () => {
    const dest = destination({ digestWindowSeconds: 60, mention: { text: '<!here>', rules: [], events: ['authentication.*', '!authentication.password_succeeded'] } });
    await outboxStub(env, dest.name).submit(dest, item('authentication.password_failed'));
    expect(calls[0]?.body.text.startsWith('<!here> ')).toBe(true);
    const other = destination({ digestWindowSeconds: 60, mention: { text: '<!here>', rules: [], events: ['authentication.*', '!authentication.password_succeeded'] } });
    const ok = makeEvent('authentication.password_succeeded');
    await outboxStub(env, other.name).submit(other, { event_id: ok.id, event_type: ok.event, rules: ['logins'], raw: JSON.stringify(ok) });
    expect(calls).toHaveLength(2);
    expect(JSON.stringify(calls[1]?.body)).not.toContain('<!here>');
  });

  it('operational alerts carry the mention too (as events of type router.alert no rule routed)', async () => {
    const raw = (id: string) => JSON.stringify({ id, event: ALERT_EVENT_TYPE, created_at: new Date().toISOString(), data: { text: 'down' } });
    const always = destination({ digestWindowSeconds: 60, mention: { text: '<!channel>', rules: [], events: [] } });
    await outboxStub(env, always.name).submit(always, { event_id: 'alert_m1:x', event_type: ALERT_EVENT_TYPE, rules: [], raw: raw('alert_m1'), alert: ':rotating_light: down' });
    expect(calls[0]?.body.text.startsWith('<!channel> ')).toBe(true);
    expect(JSON.stringify(calls[0]?.body.blocks)).toContain('<!channel> :rotating_light: down');
    // A mention kept for chosen rules is not added to alerts.
    const byRule = destination({ digestWindowSeconds: 60, mention: { text: '<!here>', rules: ['failed-logins'], events: [] } });
    await outboxStub(env, byRule.name).submit(byRule, { event_id: 'alert_m2:x', event_type: ALERT_EVENT_TYPE, rules: [], raw: raw('alert_m2'), alert: ':rotating_light: down' });
    expect(calls).toHaveLength(2);
    expect(JSON.stringify(calls[1]?.body)).not.toContain('<!here>');
  });

  it('uses the configured title as the header', async () => {
    const titled = destination({ digestWindowSeconds: 60, title: 'Acme security' });
    await outboxStub(env, titled.name).submit(titled, item());
    const header = (calls[0]?.body.blocks[0] as { type: string; text?: { text: string } }) ?? { type: '' };
    expect(header.type).toBe('header');
    expect(header.text?.text).toBe('Acme security');
  });
});
