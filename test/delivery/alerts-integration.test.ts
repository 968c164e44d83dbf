/**
 * Operational alerts in Slack (destination health issue): one message per
 * kind and destination per interval with the count of what happened in
 * between; a recovery follows its outage; when Slack is down, alerts wait in
 * the outbox and are sent later.
 */
import { runDurableObjectAlarm, runInDurableObject } from 'cloudflare:test';
import { env } from 'cloudflare:workers';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { alertsStub, outageText } from '../../src/alerts/notifier';
import { deadLetterRecord, deadLetterStub } from '../../src/deadletters/store';
import { registryStub } from '../../src/destinations/registry';
import { outboxStub } from '../../src/destinations/slack/outbox';
import { ALERT_EVENT_TYPE } from '../../src/destinations/slack/render';
import { reconcilerStub } from '../../src/reconcile/reconciler';
import { makeEvent } from '../fixtures/events';
import { routerMessage, runBatch, testEnv } from '../helpers/consumer';
import { deadLettersFor } from '../helpers/observe';
import { emptyFiller, fillOutbox } from '../helpers/outbox-fill';
import { Sink } from '../helpers/sink';
import { until } from '../helpers/until';
import { postWebhook, sampleEvent } from '../helpers/webhook';
import { ALERTS, BRITTLE, WAREHOUSE } from './router';

const sink = new Sink();
beforeEach(() => sink.reset().install());
afterEach(() => vi.restoreAllMocks());

/** Every alert the alerts channel received, in order (alerts that waited together share a message, one line each). */
const posted = () => sink.received.filter((r) => r.url === ALERTS).flatMap((r) => (JSON.parse(r.body) as { text: string }).text.split('\n'));

function reset(): Record<string, unknown> {
  return sampleEvent({ event: 'password_reset.created', data: { id: `password_reset_${crypto.randomUUID()}`, object: 'password_reset', email: 'r@example.test' } });
}

async function pendingFor(kind: string, subject: string): Promise<number> {
  return runInDurableObject(alertsStub(env), (_i, state) => state.storage.sql.exec<{ pending: number }>('SELECT pending FROM alerts WHERE kind = ? AND subject = ?', kind, subject).toArray()[0]?.pending ?? 0);
}

/**
 * Everything handed to the alerts outbox has been posted: an entry leaves it only once Slack took it (the sink
 * answers 200), so an alert handed over before this call has reached the sink by the time it returns.
 */
async function alertsOutboxDrained(): Promise<void> {
  await until(async () => (await outboxStub(env, 'ops-alerts').pending()) === 0, 'the alerts outbox drained', 30_000);
}

/** The notifier's row for a router-wide kind. */
async function routerRow(kind: string): Promise<{ pending: number; outage_open: number; recovery: string | null }> {
  return runInDurableObject(alertsStub(env), (_i, state) =>
    state.storage.sql.exec<{ pending: number; outage_open: number; recovery: string | null }>("SELECT pending, outage_open, recovery FROM alerts WHERE kind = ? AND subject = '(router)'", kind).one(),
  );
}

describe('alerts', () => {
  it('dead letters: one message at once, then what happens within the interval is counted into the next', async () => {
    sink.on(BRITTLE, () => new Response('down', { status: 500 }));
    const first = reset();
    expect((await postWebhook(first)).status).toBe(200);
    await until(async () => (await deadLettersFor(first.id as string)).length === 1, 'the first dead letter');
    await sink.until(() => posted().some((t) => t.includes('for *brittle*')), 'the first alert');
    expect(posted().filter((t) => t.includes('for *brittle*'))).toEqual([expect.stringContaining('*1* new dead letter for *brittle* (attempts_exhausted)')]);

    const more = [reset(), reset()];
    for (const e of more) expect((await postWebhook(e)).status).toBe(200);
    await until(async () => (await pendingFor('dead_letter', 'brittle')) === 2, 'two counted, waiting for the interval');
    expect(posted().filter((t) => t.includes('for *brittle*'))).toHaveLength(1);

    // The interval passes: the alarm sends one message with the count.
    await runInDurableObject(alertsStub(env), (_i, state) => {
      state.storage.sql.exec("UPDATE alerts SET last_sent_at = last_sent_at - 60000 WHERE kind = 'dead_letter' AND subject = 'brittle'");
    });
    await runDurableObjectAlarm(alertsStub(env));
    await sink.until(() => posted().filter((t) => t.includes('for *brittle*')).length === 2, 'the counted alert');
    expect(posted().filter((t) => t.includes('for *brittle*'))[1]).toContain('*2* new dead letters for *brittle*');
  });

  it('a circuit that opens is announced, and its recovery follows (with how long and how many were held)', async () => {
    const name = `cb-${crypto.randomUUID().slice(0, 8)}`;
    const reg = registryStub(env);
    await reg.report({ [name]: { delivered: 0, failed: 3, retryable_failures: 3, trailing_failures: 3 } }, { [name]: { failures: 3, cooldownSeconds: 60 } });
    await sink.until(() => posted().some((t) => t.includes(`Circuit *open* for *${name}*`)), 'the outage alert');
    await reg.report({ [name]: { delivered: 1, failed: 0, retryable_failures: 0, trailing_failures: 0 } }, { [name]: { failures: 3, cooldownSeconds: 60 } });
    await sink.until(() => posted().some((t) => t.includes(`*${name}* recovered`)), 'the recovery alert');
    const mine = posted().filter((t) => t.includes(name));
    expect(mine).toHaveLength(2);
    expect(mine[0]).toContain('Circuit *open*');
    expect(mine[1]).toMatch(/recovered after \d+ s: circuit closed \(0 held\)/);
  });

  it('a circuit dropped because its destination was removed ends its outage without a recovery message; one opened later is timed from its own opening', async () => {
    // A name the delivery ROUTER does not have: removed, as far as the registry can tell.
    const name = `gone-${crypto.randomUUID().slice(0, 8)}`;
    const reg = registryStub(env);
    await reg.report({ [name]: { delivered: 0, failed: 3, retryable_failures: 3, trailing_failures: 3 } }, { [name]: { failures: 3, cooldownSeconds: 60 } });
    await sink.until(() => posted().some((t) => t.includes(`Circuit *open* for *${name}*`)), 'the outage alert');
    const outage = () =>
      runInDurableObject(alertsStub(env), (_i, state) =>
        state.storage.sql.exec<{ outage_open: number; opened_at: number | null; recovery: string | null }>(
          "SELECT outage_open, opened_at, recovery FROM alerts WHERE kind = 'circuit_open' AND subject = ?",
          name,
        ).one(),
      );
    expect((await outage()).outage_open).toBe(1);
    // Its probe time finds nothing held, under a valid ROUTER without it: the circuit is dropped.
    await runInDurableObject(reg, (_i, state) => {
      state.storage.sql.exec('UPDATE destinations SET next_probe_at = ? WHERE name = ?', Date.now() - 1, name);
    });
    expect(await runDurableObjectAlarm(reg)).toBe(true);
    // Ended, with no recovery kept to send...
    expect(await outage()).toEqual({ outage_open: 0, opened_at: null, recovery: null });
    expect((await reg.health([name]))[0]).toMatchObject({ circuit: 'closed' });
    // ...and none handed to the alerts outbox (the alarm awaits the notifier), which may post only after its window.
    await alertsOutboxDrained();
    expect(posted().filter((t) => t.includes(name))).toEqual([expect.stringContaining('Circuit *open*')]);
  });

  it('Slack down: the alert waits in the outbox and is delivered once Slack is back', async () => {
    sink.on(ALERTS, () => new Response('down', { status: 503 }));
    const name = `pause-${crypto.randomUUID().slice(0, 8)}`;
    await registryStub(env).pause(name);
    await sink.until(() => posted().some((t) => t.includes(`*${name}* was paused`)), 'the first (failed) attempt');
    sink.on(ALERTS, () => new Response('ok'));
    await sink.until(() => posted().filter((t) => t.includes(`*${name}* was paused`)).length >= 2, 'the retry', 60_000);
    await registryStub(env).resume(name);
    await sink.until(() => posted().some((t) => t.includes(`*${name}* resumed`)), 'the recovery', 60_000);
  }, 150_000);

  it('a dead-lettered alert (router.alert) is never alerted on: no loop of alerts about alerts', async () => {
    const alertsDest = `alerts-${crypto.randomUUID().slice(0, 8)}`;
    const sentinel = `sentinel-${crypto.randomUUID().slice(0, 8)}`;
    const raw = JSON.stringify({ id: 'alert_x', event: ALERT_EVENT_TYPE, created_at: new Date().toISOString(), data: { text: 'an alert' } });
    // In one call: the store signals both records at once, so the sentinel's alert is the sign the other was seen.
    await deadLetterStub(env).add([
      deadLetterRecord({ event_id: 'alert_x:1', event_type: ALERT_EVENT_TYPE, destination: alertsDest, reason: 'attempts_exhausted: slack_http_503', body: raw }),
      deadLetterRecord({ event_id: `event_${crypto.randomUUID()}`, event_type: 'user.created', destination: sentinel, reason: 'http_404', body: '{}' }),
    ]);
    await sink.until(() => posted().some((t) => t.includes(`for *${sentinel}*`)), "the sentinel's alert");
    expect(posted().filter((t) => t.includes(alertsDest))).toEqual([]);
    expect(await pendingFor('dead_letter', alertsDest)).toBe(0);
  });

  it('an alert the alerts outbox refuses (full: Slack down for long) stays pending, is said in the log, and goes out once there is room', async () => {
    sink.on(ALERTS, () => new Response('down', { status: 503 }));
    const outbox = outboxStub(env, 'ops-alerts');
    // The outbox at max_pending (10,000 by default): placeholder entries, removed below.
    await fillOutbox(outbox);
    const errors = vi.spyOn(console, 'error');
    const name = `full-${crypto.randomUUID().slice(0, 8)}`;
    await registryStub(env).pause(name);
    const refused = () => errors.mock.calls.map((c) => String(c[0])).find((l) => l.includes('"msg":"alert_refused_backlog_full"'));
    await until(async () => refused() !== undefined, 'the refusal logged');
    expect(JSON.parse(refused() ?? '{}')).toMatchObject({ level: 'error', destinations: ['ops-alerts'], retried: true });
    expect(await pendingFor('paused', name)).toBe(1);
    // Room again, and Slack back: the alerts' next run sends it.
    await emptyFiller(outbox);
    sink.on(ALERTS, () => new Response('ok'));
    await runDurableObjectAlarm(alertsStub(env));
    await sink.until(() => posted().some((t) => t.includes(`*${name}* was paused`)), 'the alert, once there was room', 60_000);
    // The outbox may post while the notifier's submit is still open; the notifier clears its pending count after.
    await until(async () => (await pendingFor('paused', name)) === 0, 'the pending alert cleared');
    await registryStub(env).resume(name);
  }, 120_000);

  it('texts escape what they show and link to the console when console_url is set', () => {
    const text = outageText('dead_letter', 'crm', 3, ['<!channel> & *bold*'], 'https://router.example.com');
    expect(text).not.toContain('<!channel>');
    expect(text).toContain('&lt;!channel&gt;');
    expect(text).toContain('<https://router.example.com/console/dead-letters?destination=crm|Open dead letters>');
  });
});

/**
 * The router-wide kinds: reconciliation failing and working again, events it
 * recovered, reconciliation falling behind, and an invalid configuration.
 * The WorkOS Events API is played at the network edge; the reconciler, the
 * ledger, the queue and the notifier are real.
 */
describe('alerts about the router', () => {
  const API = 'https://api.workos.com/events';
  const router = () => posted().filter((t) => /Reconciliation|configuration/.test(t));

  function page(events: object[], after: string | null = null): Response {
    return Response.json({ object: 'list', data: events, list_metadata: { before: null, after } });
  }
  function apiEvent(type: 'user.created' | 'dsync.user.created', createdAt: string) {
    return { object: 'event', ...makeEvent(type), created_at: createdAt };
  }

  beforeEach(async () => {
    await runInDurableObject(reconcilerStub(env), (_i, state) => state.storage.deleteAll());
    await runInDurableObject(alertsStub(env), (_i, state) => {
      state.storage.sql.exec("DELETE FROM alerts WHERE subject = '(router)'");
    });
  });

  it('reconcile_error: announced once with the cause, a repeat within the interval counted, and recovery follows the outage', async () => {
    sink.onPrefix(API, () => new Response('no', { status: 401 }));
    expect((await reconcilerStub(env).run({ trigger: 'admin' })).status).toBe('failed');
    await sink.until(() => router().length === 1, 'the error alert');
    expect(router()[0]).toContain('Reconciliation from the WorkOS Events API failed (unauthorized (HTTP 401))');

    sink.onPrefix(API, () => new Response('down', { status: 503 }));
    expect((await reconcilerStub(env).run({ trigger: 'admin' })).status).toBe('failed');
    await until(async () => (await pendingFor('reconcile_error', '(router)')) === 1, 'the second failure counted');
    expect(router()).toHaveLength(1);

    sink.onPrefix(API, () => page([]));
    expect((await reconcilerStub(env).run({ trigger: 'admin' })).status).toBe('completed');
    // What waited is sent before the recovery, so the channel reads in order.
    await sink.until(() => router().length === 3, 'the counted failure, then the recovery');
    expect(router()[1]).toContain('failed (server_error (HTTP 503))');
    expect(router()[2]).toMatch(/Reconciliation works again after \d+ s/);
    // Alerts that waited together are listed one by one, never counted as "events" in a digest.
    const bodies = sink.received.filter((r) => r.url === ALERTS).map((r) => r.body);
    expect(bodies.some((b) => b.includes('router.alert') || b.includes('WorkOS event'))).toBe(false);

    // Working again, a run that succeeds says nothing more: no outage open, no recovery kept to send...
    expect((await reconcilerStub(env).run({ trigger: 'admin' })).status).toBe('completed');
    expect(await routerRow('reconcile_error')).toEqual({ pending: 0, outage_open: 0, recovery: null });
    // ...and nothing handed to the alerts outbox (run() awaits the hand-off), which posts only after its 1 s window:
    // once it has drained, a second "works again" would have reached Slack.
    await alertsOutboxDrained();
    expect(router()).toHaveLength(3);
  });

  it('reconcile_recovered: events the webhooks had missed are counted in one message', async () => {
    const now = Date.now();
    const missed = [0, 1, 2].map((i) => apiEvent('user.created', new Date(now - 60_000 + i * 1000).toISOString()));
    sink.onPrefix(API, () => page(missed));
    const report = await reconcilerStub(env).run({ trigger: 'admin', rangeStart: new Date(now - 120_000).toISOString() });
    expect(report).toMatchObject({ status: 'completed', recovered: 3 });
    await sink.until(() => router().some((t) => t.includes('recovered')), 'the recovered alert');
    expect(router()).toEqual([expect.stringContaining('Reconciliation recovered *3* events the webhooks had missed')]);
    // …and each of them reached its destinations.
    for (const e of missed) await sink.until(() => sink.about(e.id).length >= 2, `delivery of ${e.id}`);
  });

  it('reconcile_lag: a run that stops at its page limit more than an hour behind is announced with how far', async () => {
    const start = Date.now() - 3 * 3600_000;
    // Full pages (100 events, a page with fewer ends the run) of old events, always with more to read, so
    // the run reaches its page limit. The same 100 ids every page, later each time: past the first page
    // the ledger answers duplicates, so the test delivers 100 events, not thousands.
    const ids = Array.from({ length: 100 }, () => apiEvent('dsync.user.created', '').id);
    let n = 0;
    sink.onPrefix(API, () => {
      n += 1;
      const events = ids.map((id, i) => ({ ...apiEvent('dsync.user.created', new Date(start + (n * 100 + i) * 1000).toISOString()), id }));
      return page(events, `cursor_${n}`);
    });
    const report = await reconcilerStub(env).run({ trigger: 'admin', rangeStart: new Date(start).toISOString() });
    expect(report).toMatchObject({ status: 'completed', behind: true });
    await sink.until(() => router().some((t) => t.includes('behind')), 'the lag alert');
    const lag = router().filter((t) => t.includes('behind'));
    expect(lag).toHaveLength(1);
    const minutes = Number(/Reconciliation is behind \((\d+) min behind\)/.exec(lag[0] as string)?.[1]);
    // The newest event read is 3 h old less what the run read (100 s per page, at most 40 pages).
    expect(minutes).toBeGreaterThan(60);
    expect(minutes).toBeLessThanOrEqual(180);
  });

  it('config_invalid: a consumer batch under an invalid ROUTER is held and announced, and the fix is announced', async () => {
    const event = sampleEvent({ event: 'organization_domain.verified', data: { id: `org_domain_${crypto.randomUUID()}`, object: 'organization_domain', domain: 'example.test' } });
    const { result } = await runBatch([routerMessage(event)], testEnv('{ "destinations": ['));
    expect(result.explicitAcks).toHaveLength(1); // held: re-enqueued as a fresh message, not dead-lettered
    await sink.until(() => router().some((t) => t.includes('configuration is *invalid*')), 'the invalid-config alert');
    expect(await deadLettersFor(event.id as string)).toEqual([]);
    // The notifier's own configuration is valid: its alarm sees the fix and says so.
    await runDurableObjectAlarm(alertsStub(env));
    await sink.until(() => router().some((t) => t.includes('valid again')), 'the recovery');
    const mine = router().filter((t) => t.includes('configuration'));
    expect(mine).toHaveLength(2);
    expect(mine[0]).toContain('events are held until it is fixed');
    expect(mine[1]).toMatch(/configuration is valid again after \d+ s: held events flow/);
    // The held event is delivered once the configuration (the project's own, valid) is back.
    await sink.until(() => sink.about(event.id as string, WAREHOUSE).length === 1, 'the held event delivered', 60_000);
  }, 90_000);
});
