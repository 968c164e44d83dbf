/**
 * The circuit breaker (destination health issue): consecutive retryable
 * failures open a destination's circuit; its deliveries are then held (no
 * request, attempts untouched, nothing dead-lettered); a probe after the
 * cooldown closes it, or doubles the cooldown and goes back on hold (never
 * retried past the open circuit); then every held delivery
 * arrives once. 4xx never open it.
 */
import { runInDurableObject } from 'cloudflare:test';
import { env, exports } from 'cloudflare:workers';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { routerMessage } from '../helpers/consumer';
import { deadLettersFor, watchLogs } from '../helpers/observe';
import { Sink } from '../helpers/sink';
import { until } from '../helpers/until';
import { URL_BASE, postWebhook, sampleEvent } from '../helpers/webhook';
import { heldStub } from '../../src/destinations/held';
import { registryStub } from '../../src/destinations/registry';
import { FLAKY, FRAGILE } from './router';

const sink = new Sink();
beforeEach(() => sink.reset().install());
afterEach(() => vi.restoreAllMocks());

interface Item {
  name: string;
  state: string;
  circuit: 'open' | 'closed';
  circuit_opened_at: string | null;
  next_probe_at: string | null;
  consecutive_failures: number;
  failed: number;
  held: number;
  dead_letters: number;
}

async function destination(name: string): Promise<Item> {
  const res = await exports.default.fetch(new Request(`${URL_BASE}/admin/destinations`, { headers: { Authorization: 'Bearer test-admin-token' } }));
  expect(res.status).toBe(200);
  return ((await res.json()) as { items: Item[] }).items.find((i) => i.name === name) as Item;
}
const flaky = () => destination('flaky');

function invitation(): Record<string, unknown> {
  return sampleEvent({ event: 'invitation.created', data: { id: `invitation_${crypto.randomUUID()}`, object: 'invitation', email: 'new@example.test' } });
}

const ok = (r: { url: string }) => r.url === FLAKY;

describe('circuit breaker', () => {
  it('4xx answers dead-letter as before and never open the circuit', async () => {
    sink.on(FLAKY, () => new Response('bad', { status: 422 }));
    const failedBefore = (await flaky()).failed;
    const events = Array.from({ length: 25 }, invitation);
    for (const e of events) expect((await postWebhook(e)).status).toBe(200);
    await until(async () => (await Promise.all(events.map((e) => deadLettersFor(e.id as string)))).every((d) => d.length === 1), 'all 25 dead-lettered', 20_000);
    // The batches report after writing their dead letters: the 25 failures counted is the sign they all have.
    await until(async () => (await flaky()).failed - failedBefore >= 25, 'the 25 failures reported', 20_000);
    const item = await flaky();
    expect(item).toMatchObject({ circuit: 'closed', consecutive_failures: 0 });
  });

  it('20 consecutive 5xx open it: no request during the cooldown; a failed probe doubles it; a good one closes it and every held event arrives once', async () => {
    const logs = watchLogs();
    sink.on(FLAKY, () => new Response('down', { status: 503 }));
    const events = Array.from({ length: 20 }, invitation);
    for (const e of events) expect((await postWebhook(e)).status).toBe(200);
    await until(async () => (await flaky()).circuit === 'open', 'the circuit open', 20_000);
    // Every delivery comes back (its retry) and is held: nothing in flight any more.
    await until(async () => (await flaky()).held === 20, 'all 20 deliveries held', 20_000);
    const opened = await flaky();
    const openedAt = Date.parse(opened.circuit_opened_at as string);
    const firstProbeAt = Date.parse(opened.next_probe_at as string);
    expect(firstProbeAt - openedAt).toBe(2_000);
    const requestsWhenHeld = sink.received.filter(ok).length;

    // The first probe fails (still 503): the cooldown doubles.
    await until(() => sink.received.filter(ok).length === requestsWhenHeld + 1, 'the first probe', 10_000);
    const probe = sink.received.filter(ok)[requestsWhenHeld];
    expect(probe?.at).toBeGreaterThanOrEqual(firstProbeAt - 50);
    // Nothing reached it between the circuit opening (plus the requests already in flight then) and the probe.
    expect(sink.received.filter((r) => ok(r) && r.at > openedAt + 500 && r.at < firstProbeAt - 50)).toEqual([]);
    await until(async () => {
      const i = await flaky();
      // The probe's report sets it (until then the registry waits up to 10 minutes for that report).
      const wait = i.next_probe_at === null ? 0 : Date.parse(i.next_probe_at) - (probe?.at ?? 0);
      return wait >= 3_500 && wait < 60_000;
    }, 'the doubled cooldown');
    expect((await flaky()).circuit).toBe('open');
    // The failed probe's delivery is held again, its attempts untouched, not retried past the open circuit.
    await until(async () => (await flaky()).held === 20, 'the probed delivery held again', 10_000);
    const secondProbeAt = Date.parse((await flaky()).next_probe_at as string);

    // The service is back: the next probe closes the circuit; everything held drains, once each.
    sink.on(FLAKY, () => new Response(null, { status: 204 }));
    await until(async () => (await flaky()).circuit === 'closed', 'the circuit closed', 15_000);
    await sink.until(() => events.every((e) => sink.about(e.id as string, FLAKY).some((r) => r.at > (probe?.at ?? 0) + 1000)), 'every held event delivered', 20_000);
    await until(async () => (await flaky()).held === 0, 'nothing held');
    const after = (id: string) => sink.about(id, FLAKY).filter((r) => r.at > (probe?.at ?? 0) + 1000);
    for (const e of events) expect(after(e.id as string), e.id as string).toHaveLength(1);
    for (const e of events) expect(await deadLettersFor(e.id as string)).toEqual([]);
    // Between the two probes nothing reached it.
    expect(sink.received.filter((r) => ok(r) && r.at > (probe?.at ?? 0) + 500 && r.at < secondProbeAt - 50)).toEqual([]);
    expect(logs.records().filter((r) => r.msg === 'circuit_open')).toHaveLength(1);
    expect(logs.records().find((r) => r.msg === 'circuit_closed')).toMatchObject({ destination: 'flaky' });
  });

  it('a delivery the destination always fails cannot keep the circuit open: each failed probe is an attempt, at max_attempts it is dead-lettered, and the next probe closes it', async () => {
    // fragile: circuit after 3 failures, cooldown 3 s (doubling), max_attempts 3.
    const events = Array.from({ length: 3 }, () =>
      sampleEvent({ event: 'email_verification.created', data: { id: `email_verification_${crypto.randomUUID()}`, object: 'email_verification', email: 'v@example.test' } }),
    );
    const poison = events[0]?.id as string;
    sink.on(FRAGILE, () => new Response('down', { status: 503 }));
    for (const e of events) expect((await postWebhook(e)).status).toBe(200);
    await until(async () => (await destination('fragile')).circuit === 'open', 'the circuit open', 20_000);
    await until(async () => (await destination('fragile')).held === 3, 'all 3 held', 20_000);
    // The service is back, except for the oldest held event (the first probe), which it always fails.
    sink.on(FRAGILE, (req) => (req.headers.get('x-workos-event-id') === poison ? new Response('still no', { status: 503 }) : new Response(null, { status: 204 })));
    await until(async () => (await destination('fragile')).circuit === 'closed', 'the circuit closed', 40_000);
    // Dead-lettered by an earlier batch than the one that closed the circuit: wait for the record itself.
    await until(async () => (await deadLettersFor(poison)).length > 0, 'the poison event dead-lettered', 20_000);
    const [dead] = await deadLettersFor(poison);
    expect(dead).toMatchObject({ destination: 'fragile', attempts: 3, last_status: 503 });
    expect(dead?.reason).toMatch(/^attempts_exhausted/);
    for (const e of events.slice(1)) {
      await sink.until(() => sink.about(e.id as string, FRAGILE).some((r) => r.headers.get('x-workos-event-id') === e.id && r.at > 0), `${e.id} delivered`, 15_000);
      expect(await deadLettersFor(e.id as string)).toEqual([]);
    }
    await until(async () => (await destination('fragile')).held === 0, 'nothing held');
  }, 70_000);

  it('a probe that arrives after a later one was sent is held again, unused: only the latest probe reaches the destination', async () => {
    sink.on(FRAGILE, () => new Response(null, { status: 204 }));
    const reg = registryStub(env);
    await reg.report({ fragile: { delivered: 0, failed: 3, retryable_failures: 3, trailing_failures: 3 } }, { fragile: { failures: 3, cooldownSeconds: 3 } });
    expect((await destination('fragile')).circuit).toBe('open');
    // The registry has since sent probe 2 (its alarm left for later); probe 1, sent before it, is still in the queue.
    await runInDurableObject(reg, (_i, state) => {
      state.storage.sql.exec('UPDATE destinations SET next_probe_at = ? WHERE name = ?', Date.now() + 3_600_000, 'fragile');
      state.storage.kv.put('probe_token:fragile', 2);
    });
    const probe = (token: number) => {
      const e = sampleEvent({ event: 'email_verification.created', data: { id: `email_verification_${crypto.randomUUID()}`, object: 'email_verification', email: 'p@example.test' } });
      const message = routerMessage(e, { pending: { fragile: { attempts: 1, rules: ['verifications'] } }, probe: 'fragile', probe_token: token });
      return { id: e.id as string, send: () => env.EVENTS_QUEUE.send(message, { contentType: 'json' }) };
    };
    const late = probe(1);
    const latest = probe(2);
    const heldIds = () =>
      runInDurableObject(heldStub(env, 'fragile'), (_i, state) => state.storage.sql.exec<{ event_id: string }>('SELECT event_id FROM held').toArray().map((r) => r.event_id));
    await late.send();
    // The late probe is held again (the positive signal that the consumer has seen it) and reached nobody.
    await until(async () => (await heldIds()).includes(late.id), 'the late probe held again', 20_000);
    expect(sink.about(late.id, FRAGILE)).toEqual([]);
    // The latest probe is tried: it succeeds, the circuit closes, and the late one drains, delivered once.
    await latest.send();
    await until(async () => (await destination('fragile')).circuit === 'closed', 'the circuit closed', 20_000);
    await sink.until(() => sink.about(late.id, FRAGILE).length === 1, 'the late probe delivered after the close', 20_000);
    expect(sink.about(latest.id, FRAGILE)).toHaveLength(1);
    expect(sink.about(late.id, FRAGILE)[0]!.at).toBeGreaterThan(sink.about(latest.id, FRAGILE)[0]!.at);
    await until(async () => (await destination('fragile')).held === 0, 'nothing held');
  }, 70_000);

  it('the streak counts retryable failures after the last success only; circuit = false never opens', async () => {
    const reg = registryStub(env);
    const name = `streak-${crypto.randomUUID()}`;
    const policy = { [name]: { failures: 5, cooldownSeconds: 60 } };
    await reg.report({ [name]: { delivered: 0, failed: 4, retryable_failures: 4, trailing_failures: 4 } }, policy);
    await reg.report({ [name]: { delivered: 1, failed: 2, retryable_failures: 2, trailing_failures: 1 } }, policy);
    expect((await reg.health([name]))[0]).toMatchObject({ circuit: 'closed', consecutive_failures: 1 });
    await reg.report({ [name]: { delivered: 0, failed: 4, retryable_failures: 4, trailing_failures: 4 } }, policy);
    expect((await reg.health([name]))[0]).toMatchObject({ circuit: 'open', consecutive_failures: 5 });
    expect((await reg.blocked()).open).toContain(name);
    const off = `off-${crypto.randomUUID()}`;
    await reg.report({ [off]: { delivered: 0, failed: 50, retryable_failures: 50, trailing_failures: 50 } }, { [off]: null });
    expect((await reg.health([off]))[0]).toMatchObject({ circuit: 'closed', consecutive_failures: 50 });
  });
});
