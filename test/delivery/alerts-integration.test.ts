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
import { registryStub } from '../../src/destinations/registry';
import { deadLettersFor } from '../helpers/observe';
import { Sink } from '../helpers/sink';
import { until } from '../helpers/until';
import { postWebhook, sampleEvent } from '../helpers/webhook';
import { ALERTS, BRITTLE } from './router';

const sink = new Sink();
beforeEach(() => sink.reset().install());
afterEach(() => vi.restoreAllMocks());

const posted = () => sink.received.filter((r) => r.url === ALERTS).map((r) => (JSON.parse(r.body) as { text: string }).text);

function reset(): Record<string, unknown> {
  return sampleEvent({ event: 'password_reset.created', data: { id: `password_reset_${crypto.randomUUID()}`, object: 'password_reset', email: 'r@example.test' } });
}

async function pendingFor(kind: string, subject: string): Promise<number> {
  return runInDurableObject(alertsStub(env), (_i, state) => state.storage.sql.exec<{ pending: number }>('SELECT pending FROM alerts WHERE kind = ? AND subject = ?', kind, subject).toArray()[0]?.pending ?? 0);
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

  it('texts escape what they show and link to the console when console_url is set', () => {
    const text = outageText('dead_letter', 'crm', 3, ['<!channel> & *bold*'], 'https://router.example.com');
    expect(text).not.toContain('<!channel>');
    expect(text).toContain('&lt;!channel&gt;');
    expect(text).toContain('<https://router.example.com/console/dead-letters?destination=crm|Open dead letters>');
  });
});
