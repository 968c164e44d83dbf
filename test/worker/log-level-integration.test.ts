/**
 * ROUTER `log_level`: "warn" drops the per-event `info` lines (accepted,
 * delivered) and keeps every warning and error, and the audit trail of
 * operator actions. Each "no line" check follows
 * a positive signal that the work it would have logged is done (the webhook
 * answered "accepted", the sink received the delivery), and the same steps
 * under the default level show the lines, so the checks can fail.
 */
import { createExecutionContext, runInDurableObject, waitOnExecutionContext } from 'cloudflare:test';
import { env } from 'cloudflare:workers';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import worker from '../../src/index';
import { loadConfig } from '../../src/config/load';
import { deadLetterRecord, deadLetterStub } from '../../src/deadletters/store';
import { HeldDeliveries } from '../../src/destinations/held';
import { DestinationRegistry } from '../../src/destinations/registry';
import { log, resetLogLevelForTests } from '../../src/log';
import { routerMessage, runBatch, testEnv } from '../helpers/consumer';
import { deadLettersFor } from '../helpers/observe';
import { Sink } from '../helpers/sink';
import { URL_BASE, sampleEvent, webhookRequest } from '../helpers/webhook';

const CRM = 'https://crm.log-level.test/hooks';
const routerWith = (level?: string) => ({
  ...(level === undefined ? {} : { log_level: level }),
  destinations: [{ name: 'crm', type: 'http', url: CRM, max_attempts: 3 }],
  rules: [{ name: 'everything', events: ['*'], to: ['crm'] }],
});

/** Every structured line written to the console while `fn` runs, parsed. */
async function linesDuring(fn: () => Promise<void>): Promise<Array<{ level: string; msg: string; event_id?: string }>> {
  const spies = (['log', 'warn', 'error'] as const).map((m) => vi.spyOn(console, m));
  try {
    await fn();
    return spies.flatMap((s) => s.mock.calls.map((c) => JSON.parse(String(c[0])) as { level: string; msg: string; event_id?: string }));
  } finally {
    for (const s of spies) s.mockRestore();
  }
}

async function post(event: Record<string, unknown>, runEnv: Env, opts: { secret?: string } = {}): Promise<Response> {
  const ctx = createExecutionContext();
  const res = await worker.fetch(await webhookRequest(event, opts), runEnv, ctx);
  await waitOnExecutionContext(ctx);
  return res;
}

describe('log_level', () => {
  const sink = new Sink();
  beforeEach(() => sink.install());
  afterEach(() => {
    vi.restoreAllMocks();
    sink.reset();
    loadConfig(env); // the suite's own config (and its level) again
  });

  it('"info" (the default): the accepted webhook and the delivery each write a line', async () => {
    const runEnv = testEnv(routerWith());
    const event = sampleEvent();
    const lines = await linesDuring(async () => {
      expect(await (await post(event, runEnv)).json()).toEqual({ status: 'accepted', id: event.id });
      await runBatch([routerMessage(event)], runEnv);
      expect(sink.about(event.id as string, CRM)).toHaveLength(1);
    });
    expect(lines.filter((l) => l.event_id === event.id).map((l) => `${l.level} ${l.msg}`)).toEqual(['info webhook', 'info delivered']);
  });

  it('"warn": neither writes a line, while a refused webhook and a failed delivery still do', async () => {
    const runEnv = testEnv(routerWith('warn'));
    const event = sampleEvent();
    const quiet = await linesDuring(async () => {
      expect(await (await post(event, runEnv)).json()).toEqual({ status: 'accepted', id: event.id });
      await runBatch([routerMessage(event)], runEnv);
      expect(sink.about(event.id as string, CRM)).toHaveLength(1);
    });
    expect(quiet).toEqual([]);

    const failing = sampleEvent();
    sink.on(CRM, () => new Response('down', { status: 503 }));
    const loud = await linesDuring(async () => {
      expect((await post(failing, runEnv, { secret: 'whsec_not_the_right_one' })).status).toBe(401);
      const { result } = await runBatch([routerMessage(failing)], runEnv);
      expect(result.retryMessages.length + result.explicitAcks.length).toBeGreaterThan(0);
      expect(sink.about(failing.id as string, CRM)).toHaveLength(1);
    });
    const msgs = loud.map((l) => `${l.level} ${l.msg}`);
    expect(msgs).toContain('warn webhook');
    expect(msgs).toContain('warn delivery_failed');
    expect(loud.every((l) => l.level !== 'info')).toBe(true);
  });

  it('"warn" keeps the audit trail: a deleted dead letter, a pause and a resume are logged, while an accepted webhook is not', async () => {
    const runEnv = testEnv(routerWith('warn'));
    const admin = async (path: string, method: string) => {
      const ctx = createExecutionContext();
      const res = await worker.fetch(new Request(`${URL_BASE}/admin${path}`, { method, headers: { Authorization: 'Bearer test-admin-token' } }), runEnv, ctx);
      await waitOnExecutionContext(ctx);
      return res;
    };
    const id = `event_audit_${crypto.randomUUID()}`;
    await deadLetterStub(env).add([deadLetterRecord({ event_id: id, event_type: 'user.created', destination: 'crm', reason: 'http_500', body: '{}' })]);
    const seq = (await deadLettersFor(id))[0]?.seq;
    const event = sampleEvent();
    const lines = await linesDuring(async () => {
      expect(await (await post(event, runEnv)).json()).toEqual({ status: 'accepted', id: event.id });
      expect((await admin(`/dead-letters/${seq}`, 'DELETE')).status).toBe(200);
      expect((await admin('/destinations/crm/pause', 'POST')).status).toBe(200);
      expect((await admin('/destinations/crm/resume', 'POST')).status).toBe(200);
    });
    const msgs = lines.map((l) => `${l.level} ${l.msg}`);
    expect(msgs).not.toContain('info webhook');
    expect(msgs).toEqual(expect.arrayContaining(['info dead_letter_deleted', 'warn destination_paused', 'info destination_resumed']));
    expect(lines.filter((l) => l.msg.startsWith('dead_letter') || l.msg.startsWith('destination_')).every((l) => (l as { audit?: boolean }).audit === true)).toBe(true);
  });
});

describe('log_level in a Durable Object whose isolate has not loaded the config', () => {
  afterEach(() => resetLogLevelForTests());

  it('the object takes the configured level when it starts (the registry and the held store log info lines before any config load)', async () => {
    const warnEnv = testEnv(routerWith('warn'));
    const objects = [
      (s: DurableObjectState) => new DestinationRegistry(s, warnEnv),
      (s: DurableObjectState) => new HeldDeliveries(s, warnEnv),
    ];
    for (const [i, start] of objects.entries()) {
      const stub = i === 0 ? env.DESTINATIONS.get(env.DESTINATIONS.newUniqueId()) : env.HELD_DELIVERIES.get(env.HELD_DELIVERIES.newUniqueId());
      await runInDurableObject(stub as DurableObjectStub, (_instance, state) => {
        resetLogLevelForTests(); // a fresh isolate: nothing applied yet
        start(state);
      });
      const lines = await linesDuring(async () => {
        log('info', 'probe_info_line');
        log('warn', 'probe_warn_line');
      });
      expect(lines.map((l) => `${l.level} ${l.msg}`)).toEqual(['warn probe_warn_line']);
    }
  });

  it('it never overrides a level a request in the same isolate applied', async () => {
    resetLogLevelForTests();
    loadConfig(testEnv(routerWith('info')));
    await runInDurableObject(env.DESTINATIONS.get(env.DESTINATIONS.newUniqueId()), (_instance, state) => {
      new DestinationRegistry(state, testEnv(routerWith('warn')));
    });
    const lines = await linesDuring(async () => log('info', 'probe_info_line'));
    expect(lines.map((l) => `${l.level} ${l.msg}`)).toEqual(['info probe_info_line']);
  });
});
