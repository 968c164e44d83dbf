/**
 * Operational alerts at their edges: a recovery the alerts outbox refuses is
 * kept and sent later (never before its outage), and an invalid ROUTER is
 * announced from the webhook side when no consumer batch is there to say it.
 * Only Slack (outbound fetch) is played; the registry, the notifier, the
 * outbox and the Worker are real.
 */
import { createExecutionContext, createScheduledController, runDurableObjectAlarm, runInDurableObject, waitOnExecutionContext } from 'cloudflare:test';
import { env } from 'cloudflare:workers';
import { type MockInstance, afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { alertsStub, notifyAlerts } from '../../src/alerts/notifier';
import { registryStub } from '../../src/destinations/registry';
import { outboxStub } from '../../src/destinations/slack/outbox';
import worker from '../../src/index';
import { testEnv } from '../helpers/consumer';
import { emptyFiller, fillOutbox } from '../helpers/outbox-fill';
import { Sink } from '../helpers/sink';
import { until } from '../helpers/until';
import { sampleEvent, webhookRequest } from '../helpers/webhook';
import { ALERTS } from './router';

const sink = new Sink();
beforeEach(() => sink.reset().install());
afterEach(async () => {
  vi.restoreAllMocks();
  // A test that failed with the alerts outbox full must not fail the ones after it.
  await emptyFiller(outboxStub(env, 'ops-alerts'));
});

/** Every alert the alerts channel received, in order (alerts that waited together share a message, one line each). */
const posted = () => sink.received.filter((r) => r.url === ALERTS).flatMap((r) => (JSON.parse(r.body) as { text: string }).text.split('\n'));
const about = (name: string) => posted().filter((t) => t.includes(`*${name}*`));

async function pendingFor(kind: string, subject: string): Promise<number> {
  return runInDurableObject(alertsStub(env), (_i, state) => state.storage.sql.exec<{ pending: number }>('SELECT pending FROM alerts WHERE kind = ? AND subject = ?', kind, subject).toArray()[0]?.pending ?? 0);
}

/**
 * Slack down, and the alerts outbox at max_pending (10,000 by default) with placeholder entries. Filled once what
 * earlier tests left in it has gone out: the outbox counts what waits by its first and last sequence numbers.
 */
async function fillAlertsOutbox(): Promise<void> {
  await until(async () => (await outboxStub(env, 'ops-alerts').pending()) === 0, 'the alerts outbox empty', 30_000);
  sink.on(ALERTS, () => new Response('down', { status: 503 }));
  await fillOutbox(outboxStub(env, 'ops-alerts'));
}

/** Room again in the alerts outbox, and Slack back. */
async function makeRoom(): Promise<void> {
  await emptyFiller(outboxStub(env, 'ops-alerts'));
  sink.on(ALERTS, () => new Response('ok'));
}

const refusals = (errors: MockInstance) => errors.mock.calls.map((c) => String(c[0])).filter((l) => l.includes('"msg":"alert_refused_backlog_full"'));

/**
 * A later alert through the same outbox (which posts in order): once it has reached Slack, any second copy of
 * what came before it would have too.
 */
async function sentinelAlert(): Promise<void> {
  const sentinel = `sentinel-${crypto.randomUUID().slice(0, 8)}`;
  await registryStub(env).pause(sentinel);
  await sink.until(() => about(sentinel).length > 0, "the sentinel's alert", 60_000);
  await registryStub(env).resume(sentinel);
  await sink.until(() => about(sentinel).some((t) => t.includes('resumed')), "the sentinel's recovery", 60_000);
}

/** After a further alarm run (which has nothing more of it to send) and a later alert: its outage, then its recovery, each once. */
async function expectPausedThenResumedOnce(name: string): Promise<void> {
  await runDurableObjectAlarm(alertsStub(env));
  await sentinelAlert();
  const mine = about(name);
  expect(mine).toHaveLength(2);
  expect(mine[0]).toContain('was paused');
  expect(mine[1]).toMatch(/resumed after \d+ s/);
}

describe('alerts: recoveries the alerts outbox refuses', () => {
  it('a recovery refused (outbox full) is kept and sent by the alarm once there is room — once', async () => {
    const name = `rec-${crypto.randomUUID().slice(0, 8)}`;
    await registryStub(env).pause(name);
    await sink.until(() => about(name).some((t) => t.includes('was paused')), 'the outage alert');

    await fillAlertsOutbox();
    const errors = vi.spyOn(console, 'error');
    await registryStub(env).resume(name);
    // The notifier has been told (resume awaits it): the recovery was refused.
    expect(refusals(errors)).toHaveLength(1);
    expect(about(name).some((t) => t.includes('resumed'))).toBe(false);

    await makeRoom();
    await runDurableObjectAlarm(alertsStub(env));
    await sink.until(() => about(name).some((t) => t.includes('resumed')), 'the recovery, once there was room', 60_000);
    await expectPausedThenResumedOnce(name);
  }, 150_000);

  it('an outage and its recovery both refused: both kept, then sent outage first, each once', async () => {
    const name = `ord-${crypto.randomUUID().slice(0, 8)}`;
    await fillAlertsOutbox();
    const errors = vi.spyOn(console, 'error');
    await registryStub(env).pause(name);
    // The notifier posts after it answered: its refusal comes just after.
    await until(() => refusals(errors).length === 1, 'the outage refused');
    expect(await pendingFor('paused', name)).toBe(1);
    // The recovery must not go before its outage's message, which is still unsent: only that one is tried again.
    await registryStub(env).resume(name);
    await until(() => refusals(errors).length === 2, 'the outage refused again, not the recovery');
    expect(refusals(errors)).toHaveLength(2);
    expect(await pendingFor('paused', name)).toBe(1);

    await makeRoom();
    await runDurableObjectAlarm(alertsStub(env));
    await sink.until(() => about(name).some((t) => t.includes('resumed')), 'the recovery, after its outage', 60_000);
    await until(async () => (await pendingFor('paused', name)) === 0, 'the outage message cleared');
    await expectPausedThenResumedOnce(name);
  }, 150_000);
});

describe('alerts: an invalid ROUTER seen by the webhook endpoint', () => {
  const router = () => posted().filter((t) => t.includes('configuration'));

  beforeEach(async () => {
    await runInDurableObject(alertsStub(env), (_i, state) => {
      state.storage.sql.exec("DELETE FROM alerts WHERE subject = '(router)'");
    });
  });

  it('config_invalid: webhooks answered 500 with the queue empty are announced once (a signal a minute at most, only for requests WorkOS signed), and the fix follows', async () => {
    // A valid period first: the notifier runs under the valid configuration and keeps its alerts settings.
    await sentinelAlert();
    expect(await runInDurableObject(alertsStub(env), (_i, state) => state.storage.kv.get('config') !== undefined)).toBe(true);

    const broken = testEnv('{ "destinations": [');
    // Requests WorkOS did not sign get the same answer and reach no one: no alert row, nothing counted.
    const unsigned = createExecutionContext();
    const forged = [
      await webhookRequest(sampleEvent(), { signature: null }),
      await webhookRequest(sampleEvent(), { secret: 'whsec_not_ours' }),
      await webhookRequest(sampleEvent(), { signature: 't=1, v1=00' }),
    ];
    for (const req of forged) {
      const res = await worker.fetch(req, broken, unsigned);
      expect(res.status).toBe(500);
      expect(((await res.json()) as { error: string }).error).toBe('config_invalid');
    }
    // Their background work is done (the positive signal) and stored nothing.
    await waitOnExecutionContext(unsigned);
    expect(await runInDurableObject(alertsStub(env), (_i, state) => state.storage.sql.exec("SELECT 1 FROM alerts WHERE subject = '(router)'").toArray())).toEqual([]);

    const ctx = createExecutionContext();
    for (let i = 0; i < 3; i++) {
      const res = await worker.fetch(await webhookRequest(sampleEvent()), broken, ctx);
      expect(res.status).toBe(500);
      expect(((await res.json()) as { error: string }).error).toBe('config_invalid');
    }
    // Every signal the requests made has been handled once their background work is done.
    await waitOnExecutionContext(ctx);
    await sink.until(() => router().some((t) => t.includes('configuration is *invalid*')), 'the invalid-config alert');
    // One signal for the three requests: nothing counted for a next message.
    expect(await pendingFor('config_invalid', '(router)')).toBe(0);
    expect(router().filter((t) => t.includes('*invalid*'))).toHaveLength(1);

    // The notifier's own configuration is valid: its alarm sees the fix and says so.
    await runDurableObjectAlarm(alertsStub(env));
    await sink.until(() => router().some((t) => t.includes('valid again')), 'the recovery');
    const mine = router();
    expect(mine).toHaveLength(2);
    expect(mine[0]).toContain('events are held until it is fixed');
    expect(mine[1]).toMatch(/configuration is valid again after \d+ s/);
  }, 120_000);
});

describe('alerts: the settings an invalid ROUTER is announced with', () => {
  it('the cron tells the notifier the alerts settings of a valid configuration, before any alert was ever sent (else a broken ROUTER could not be announced)', async () => {
    await runInDurableObject(alertsStub(env), (_i, state) => state.storage.kv.delete('config'));
    // A fresh deploy's env (reconciliation off, so the cron reads nothing from WorkOS).
    const deployEnv = { ...env, WORKOS_API_KEY: '' } as Env;
    const ctx = createExecutionContext();
    await worker.scheduled(createScheduledController(), deployEnv, ctx);
    await waitOnExecutionContext(ctx);
    const kept = await runInDurableObject(alertsStub(env), (_i, state) => state.storage.kv.get<{ targets: { name: string }[] }>('config'));
    expect(kept?.targets.map((t) => t.name)).toEqual(['ops-alerts']);
  });
});

describe('a notify call that fails on its way', () => {
  /** An ALERTS namespace whose notifier is the real one, each call going through `around` (which makes it, or not). */
  function alertsThrough(around: (call: () => Promise<void>, n: number) => Promise<void>): Env {
    let n = 0;
    const ns = {
      idFromName: (name: string) => env.ALERTS.idFromName(name),
      get: (id: DurableObjectId) => {
        const real = env.ALERTS.get(id) as unknown as { notify: (s: unknown, c?: string) => Promise<void> };
        return { notify: (signals: unknown, callId?: string) => around(() => real.notify(signals, callId), ++n) };
      },
    };
    return { ...env, ALERTS: ns } as unknown as Env;
  }
  const retryable = (message: string) => Object.assign(new Error(message), { retryable: true });

  it('is made again when the runtime says it may be, and signals the notifier already took are not counted twice', async () => {
    const name = `lost-answer-${crypto.randomUUID().slice(0, 8)}`;
    // The first call reaches the notifier, then its answer is lost (the object was reset).
    let calls = 0;
    const e = alertsThrough(async (call, n) => {
      calls = n;
      await call();
      if (n === 1) throw retryable('Durable Object reset because its code was updated.');
    });
    await notifyAlerts(e, [{ kind: 'dead_letter', destination: name, count: 3 }]);
    expect(calls).toBe(2);
    await sink.until(() => about(name).length > 0, 'the alert posted');
    expect(about(name)).toHaveLength(1);
    expect(about(name)[0]).toContain(`*3* new dead letters for *${name}*`);
    // Taken once: nothing more waits for the next interval (taken twice, three more would, and this would time out).
    await until(async () => (await pendingFor('dead_letter', name)) === 0, 'nothing left waiting');
  });

  it('a retryable failure before the notifier got it: the retry delivers the alert; a failure the runtime does not call retryable is not retried, and logged', async () => {
    const name = `retried-${crypto.randomUUID().slice(0, 8)}`;
    let calls = 0;
    await notifyAlerts(
      alertsThrough(async (call, n) => {
        calls = n;
        if (n === 1) throw retryable('Network connection lost.');
        await call();
      }),
      [{ kind: 'paused', destination: name }],
    );
    expect(calls).toBe(2);
    await sink.until(() => about(name).length > 0, 'the retried alert posted');

    const warnings = vi.spyOn(console, 'warn');
    let tries = 0;
    await notifyAlerts(
      alertsThrough(async () => {
        tries++;
        throw new Error('not retryable');
      }),
      [{ kind: 'paused', destination: `never-${name}` }],
    );
    expect(tries).toBe(1);
    const line = warnings.mock.calls.map((c) => String(c[0])).find((l) => l.includes('"msg":"alert_notify_failed"'));
    expect(JSON.parse(line ?? '{}')).toMatchObject({ level: 'warn', error: 'Error: not retryable', attempts: 1 });
  });
});

describe('alerts never hold up what they report on', () => {
  it('a pause is answered while Slack has not yet answered its alert; the alert is posted once Slack answers', async () => {
    const name = `slow-${crypto.randomUUID().slice(0, 8)}`;
    await until(async () => (await outboxStub(env, 'ops-alerts').pending()) === 0, 'the alerts outbox empty', 30_000);
    // Its one-message-per-second slot free, so the outbox posts the alert as soon as it is handed over.
    await runInDurableObject(outboxStub(env, 'ops-alerts'), (_i, state) => state.storage.sql.exec("UPDATE meta SET value = 0 WHERE key IN ('last_sent_at', 'blocked_until')"));
    let release = () => {};
    const slackAnswers = new Promise<void>((r) => (release = r));
    sink.on(ALERTS, async () => {
      await slackAnswers;
      return new Response('ok');
    });
    let answered = false;
    const pausing = registryStub(env)
      .pause(name)
      .then(() => {
        answered = true;
      });
    // The alert reached Slack, which is not answering: the pause must answer all the same.
    await sink.until(() => about(name).some((t) => t.includes('was paused')), 'the outage alert asked of Slack');
    await until(() => answered, 'the pause answered while Slack has not');
    release();
    await pausing;
    await until(async () => (await outboxStub(env, 'ops-alerts').pending()) === 0, 'the alert sent', 30_000);
    await until(async () => (await pendingFor('paused', name)) === 0, 'the notifier told it went');
    expect(about(name)).toHaveLength(1);
    await registryStub(env).resume(name);
  });
});
