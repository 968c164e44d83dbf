/**
 * The circuit breaker as the registry runs it (README, Circuit breaker):
 * only an answer from the service closes an open circuit. A probe time with
 * nothing held (the failed deliveries still on their way back as delayed
 * retries) used to close it — a "recovered" that nobody saw, and the circuit
 * flapped open again when those retries failed. Also: failed probes double the
 * cooldown up to MAX_CIRCUIT_COOLDOWN (15 minutes), a 4xx answer to a probe
 * closes it, and the log lines the README names.
 *
 * Deliveries go through the real queue consumer and the real registry and
 * held store; only outbound fetch is played (Sink). Alarms are driven with
 * runDurableObjectAlarm after moving the probe time to now.
 */
import { runDurableObjectAlarm, runInDurableObject } from 'cloudflare:test';
import { env } from 'cloudflare:workers';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { loadConfig } from '../../src/config/load';
import { MAX_CIRCUIT_COOLDOWN_SECONDS } from '../../src/config/router-config';
import { deadLetterStub } from '../../src/deadletters/store';
import { type HeldDeliveries, heldStub } from '../../src/destinations/held';
import { type DestinationHealth, type DestinationRegistry, registryStub } from '../../src/destinations/registry';
import type { RouterMessage } from '../../src/queue/message';
import { routerMessage, runBatch, testEnv } from '../helpers/consumer';
import { type LogRecord, watchLogs } from '../helpers/observe';
import { Sink } from '../helpers/sink';
import { until } from '../helpers/until';
import { sampleEvent } from '../helpers/webhook';

const URL = 'https://crm.circuit-registry.test/hooks';
const COOLDOWN_S = 60;
const FAILURES = 20;

const sink = new Sink();
/** The registry's own env, while a test runs it under the test's ROUTER. */
let registryEnv: Env | undefined;
beforeEach(() => sink.reset().install());
afterEach(async () => {
  vi.restoreAllMocks();
  loadConfig(env);
  if (registryEnv !== undefined) {
    const own = registryEnv;
    await runInDurableObject(registryStub(env), (instance) => {
      (instance as unknown as { env: Env }).env = own;
    });
    registryEnv = undefined;
  }
});

/**
 * Runs the registry under `runEnv`'s ROUTER, as in production, where the
 * Worker and its objects read one ROUTER: the registry then knows the test's
 * destination is configured (a probe time with nothing held drops the circuit
 * of a destination the config no longer has). Restored after the test.
 */
async function configureRegistry(reg: DurableObjectStub<DestinationRegistry>, runEnv: Env): Promise<void> {
  await runInDurableObject(reg, (instance) => {
    const o = instance as unknown as { env: Env };
    registryEnv ??= o.env;
    o.env = runEnv;
  });
}

/** The Worker's env with a ROUTER whose only destination is `name` (circuit: 20 failures, 60 s). */
function routerEnv(name: string, maxAttempts = 10): Env {
  return testEnv({
    destinations: [{ name, type: 'http', url: URL, max_attempts: maxAttempts, circuit: { failures: FAILURES, cooldown_seconds: COOLDOWN_S } }],
    rules: [{ name: 'everything', events: ['*'], to: [name] }],
  });
}

async function health(reg: DurableObjectStub<DestinationRegistry>, name: string): Promise<DestinationHealth> {
  const h = (await reg.health([name]))[0];
  if (h === undefined) throw new Error(`no health for ${name}`);
  return h;
}

/** Opens `name`'s circuit as the consumer would: 20 reports of one retryable failure each. */
async function openCircuit(name: string): Promise<DurableObjectStub<DestinationRegistry>> {
  const reg = registryStub(env);
  const policy = { [name]: { failures: FAILURES, cooldownSeconds: COOLDOWN_S } };
  for (let i = 1; i <= FAILURES; i++) {
    const at = Date.now();
    await reg.report({ [name]: { delivered: 0, failed: 1, retryable_failures: 1, trailing_failures: 1, last_failure_at: at, last_error: 'http_5xx (HTTP 503)', failure_classes: { http_5xx: 1 } } }, policy);
    if (i === FAILURES - 1) expect(await health(reg, name)).toMatchObject({ circuit: 'closed', consecutive_failures: FAILURES - 1 });
  }
  expect(await health(reg, name)).toMatchObject({ circuit: 'open', consecutive_failures: FAILURES });
  return reg;
}

/** The probe time of `name` has come. */
async function dueNow(reg: DurableObjectStub<DestinationRegistry>, name: string): Promise<void> {
  await runInDurableObject(reg, (_i, state) => {
    state.storage.sql.exec('UPDATE destinations SET next_probe_at = ? WHERE name = ?', Date.now() - 1, name);
  });
}

/** Runs the registry's alarm at `name`'s probe time; returns the probe messages its held store sent to the queue (observed, not replaced). */
async function probeNow(reg: DurableObjectStub<DestinationRegistry>, held: DurableObjectStub<HeldDeliveries>, name: string): Promise<RouterMessage[]> {
  await dueNow(reg, name);
  const sent = await runInDurableObject(held, (instance) => vi.spyOn((instance as unknown as { env: Env }).env.EVENTS_QUEUE, 'sendBatch'));
  expect(await runDurableObjectAlarm(reg)).toBe(true);
  const messages = sent.mock.calls.flatMap((c) => [...c[0]].map((m) => m.body as RouterMessage)).filter((m) => m.probe === name);
  sent.mockRestore();
  return messages;
}

/** An event arriving while the circuit is open, through the real consumer: held, no request. */
async function arrive(runEnv: Env, held: DurableObjectStub<HeldDeliveries>, acceptedAt = Date.now()): Promise<string> {
  const e = sampleEvent();
  const before = await held.count();
  await runBatch([routerMessage(e, { accepted_at: acceptedAt })], runEnv);
  expect(await held.count()).toBe(before + 1);
  expect(sink.about(e.id as string)).toHaveLength(0);
  return e.id as string;
}

const lines = (logs: { records(): LogRecord[] }, msg: string, name: string) => logs.records().filter((r) => r.msg === msg && r.destination === name);

describe('circuit breaker in the registry', () => {
  it('with nothing held at the probe time the circuit stays open and is tried again a cooldown later; an event held meanwhile is the next probe, and its success closes it', async () => {
    const logs = watchLogs();
    const name = `idle-${crypto.randomUUID()}`;
    const runEnv = routerEnv(name);
    const reg = await openCircuit(name);
    await configureRegistry(reg, runEnv);
    const held = heldStub(env, name);
    expect(await held.count()).toBe(0);

    // The probe time comes while every failed delivery is still on its way back (a delayed retry): nothing held.
    await dueNow(reg, name);
    const before = Date.now();
    expect(await runDurableObjectAlarm(reg)).toBe(true);
    // The alarm ran for it (the positive signal): the next probe is one cooldown on, not doubled.
    const after = await health(reg, name);
    expect(Date.parse(after.next_probe_at as string)).toBeGreaterThanOrEqual(before + COOLDOWN_S * 1000);
    expect(Date.parse(after.next_probe_at as string)).toBeLessThan(Date.now() + COOLDOWN_S * 1000 + 1000);
    expect(lines(logs, 'circuit_probe_skipped', name)).toEqual([expect.objectContaining({ held: 0, next_probe_in_s: COOLDOWN_S })]);
    // Still open, streak kept, no recovery announced (the alert goes out with this log line, in the same step).
    expect(after).toMatchObject({ circuit: 'open', consecutive_failures: FAILURES });
    expect(lines(logs, 'circuit_closed', name)).toEqual([]);

    // An event arriving meanwhile is held, and becomes the probe at the next probe time.
    const id = await arrive(runEnv, held);
    const probes = await probeNow(reg, held, name);
    expect(probes).toEqual([expect.objectContaining({ id, probe: name })]);
    expect(await held.count()).toBe(0);
    expect(lines(logs, 'circuit_probe_sent', name)).toEqual([expect.objectContaining({ count: 1 })]);

    // The service answers it: the circuit closes.
    await runBatch(probes, runEnv);
    expect(sink.about(id, URL)).toHaveLength(1);
    expect(await health(reg, name)).toMatchObject({ circuit: 'closed', consecutive_failures: 0, next_probe_at: null });
    expect(lines(logs, 'circuit_closed', name)).toEqual([expect.objectContaining({ held: 0 })]);
  });

  it('a destination removed from the config while its circuit is open: a probe time with nothing held drops the circuit, announcing no recovery, and releases its held store; an invalid ROUTER drops nothing', async () => {
    const logs = watchLogs();
    const name = `removed-${crypto.randomUUID()}`;
    const reg = await openCircuit(name);
    const held = heldStub(env, name);
    const holding = () => runInDurableObject(held, (_i, state) => state.storage.kv.get<boolean>('active'));
    expect(await holding()).toBe(false);

    // An invalid ROUTER says nothing about what was removed: the circuit stays open.
    await configureRegistry(reg, testEnv({ destinations: 'not a list' }));
    await dueNow(reg, name);
    expect(await runDurableObjectAlarm(reg)).toBe(true);
    expect(lines(logs, 'circuit_probe_skipped', name)).toHaveLength(1);
    expect(await health(reg, name)).toMatchObject({ circuit: 'open', consecutive_failures: FAILURES });

    // A valid ROUTER without it (the project's own): the next probe time drops the circuit.
    await configureRegistry(reg, registryEnv as Env);
    await dueNow(reg, name);
    expect(await runDurableObjectAlarm(reg)).toBe(true);
    expect(lines(logs, 'circuit_forgotten', name)).toEqual([expect.objectContaining({ reason: 'destination_removed' })]);
    expect(await health(reg, name)).toMatchObject({ circuit: 'closed', next_probe_at: null, consecutive_failures: 0 });
    // No probe time is left for it, no recovery was announced (the alert goes with this line), and its held store no longer holds.
    const row = await runInDurableObject(reg, (_i, state) =>
      state.storage.sql.exec<{ next_probe_at: number | null }>('SELECT next_probe_at FROM destinations WHERE name = ?', name).one(),
    );
    expect(row.next_probe_at).toBeNull();
    expect(lines(logs, 'circuit_closed', name)).toEqual([]);
    expect(lines(logs, 'circuit_probe_skipped', name)).toHaveLength(1);
    expect(await holding()).toBe(true);
  });

  it('a success reported while open with nothing held still closes the circuit', async () => {
    const logs = watchLogs();
    const name = `meanwhile-${crypto.randomUUID()}`;
    const reg = await openCircuit(name);
    await configureRegistry(reg, routerEnv(name));
    await dueNow(reg, name);
    expect(await runDurableObjectAlarm(reg)).toBe(true);
    expect(lines(logs, 'circuit_probe_skipped', name)).toHaveLength(1);
    expect(await health(reg, name)).toMatchObject({ circuit: 'open' });
    // A batch that read the circuit closed just before it opened reports a success.
    await reg.report({ [name]: { delivered: 1, failed: 0, last_success_at: Date.now() } }, { [name]: { failures: FAILURES, cooldownSeconds: COOLDOWN_S } });
    expect(await health(reg, name)).toMatchObject({ circuit: 'closed', consecutive_failures: 0 });
    expect(lines(logs, 'circuit_closed', name)).toHaveLength(1);
  });

  it('a probe still on its way when a later probe time finds nothing held stays the one tried', async () => {
    const logs = watchLogs();
    const name = `late-${crypto.randomUUID()}`;
    const runEnv = routerEnv(name);
    const reg = await openCircuit(name);
    await configureRegistry(reg, runEnv);
    const held = heldStub(env, name);
    const id = await arrive(runEnv, held);
    const probes = await probeNow(reg, held, name);
    expect(probes).toEqual([expect.objectContaining({ id, probe: name })]);
    // It has not reported yet (a queue backlog) when the next probe time comes, with nothing held.
    await dueNow(reg, name);
    expect(await runDurableObjectAlarm(reg)).toBe(true);
    expect(lines(logs, 'circuit_probe_skipped', name)).toHaveLength(1);
    expect(await health(reg, name)).toMatchObject({ circuit: 'open' });
    // It arrives now: tried (not held again), and the service's answer closes the circuit.
    await runBatch(probes, runEnv);
    expect(sink.about(id, URL)).toHaveLength(1);
    expect(await held.count()).toBe(0);
    expect(await health(reg, name)).toMatchObject({ circuit: 'closed', consecutive_failures: 0 });
  });

  it('a probe of an earlier opening, arriving after the circuit closed and opened again, is not taken for this opening\'s probe: held again, no request', async () => {
    const name = `reopened-${crypto.randomUUID()}`;
    const runEnv = routerEnv(name);
    const reg = await openCircuit(name);
    const held = heldStub(env, name);
    const id = await arrive(runEnv, held);
    const stale = await probeNow(reg, held, name);
    expect(stale).toEqual([expect.objectContaining({ id, probe: name })]);
    // Before it arrives (a queue backlog), a success closes the circuit and 20 failures open it again.
    await reg.report({ [name]: { delivered: 1, failed: 0, last_success_at: Date.now() } }, { [name]: { failures: FAILURES, cooldownSeconds: COOLDOWN_S } });
    expect(await health(reg, name)).toMatchObject({ circuit: 'closed' });
    await openCircuit(name);
    await runBatch(stale, runEnv);
    expect(sink.about(id)).toHaveLength(0);
    expect(await held.count()).toBe(1);
    expect(await health(reg, name)).toMatchObject({ circuit: 'open', consecutive_failures: FAILURES });
  });

  it('a probe refused before reaching the service (too large for a queue message) does not close the circuit: no recovery, the next probe a cooldown later', async () => {
    const logs = watchLogs();
    const name = `refused-${crypto.randomUUID()}`;
    const runEnv = testEnv({
      destinations: [{ name, type: 'queue', queue: 'AUDIT_QUEUE', max_attempts: 10, circuit: { failures: FAILURES, cooldown_seconds: COOLDOWN_S } }],
      rules: [{ name: 'everything', events: ['*'], to: [name] }],
    });
    const reg = await openCircuit(name);
    const held = heldStub(env, name);
    const big = sampleEvent({ data: { id: 'user_big', object: 'user', blob: 'x'.repeat(200_000) } });
    await runBatch([routerMessage(big)], runEnv);
    expect(await held.count()).toBe(1);
    const probes = await probeNow(reg, held, name);
    expect(probes).toEqual([expect.objectContaining({ id: big.id, probe: name })]);
    const sentAt = Date.now();
    await runBatch(probes, runEnv);
    // The probe itself is dead-lettered (it can never be sent); the circuit learnt nothing of the service.
    await until(async () => (await deadLetterStub(env).list(500, 0, { destination: name })).length === 1, 'the refused probe dead-lettered');
    expect((await deadLetterStub(env).list(500, 0, { destination: name }))[0]).toMatchObject({ reason: 'message_too_large' });
    const row = await runInDurableObject(reg, (_i, state) =>
      state.storage.sql.exec<{ cooldown_ms: number; next_probe_at: number }>('SELECT cooldown_ms, next_probe_at FROM destinations WHERE name = ?', name).one(),
    );
    expect(row.cooldown_ms).toBe(COOLDOWN_S * 1000);
    expect(row.next_probe_at).toBeGreaterThanOrEqual(sentAt + COOLDOWN_S * 1000);
    expect(await health(reg, name)).toMatchObject({ circuit: 'open' });
    expect(lines(logs, 'circuit_closed', name)).toEqual([]);
    expect(lines(logs, 'circuit_probe_unanswered', name)).toEqual([expect.objectContaining({ next_probe_in_s: COOLDOWN_S })]);
  });

  it('a failed probe whose delivery cannot be put back on hold still counts its attempt: the retry it becomes carries it', { timeout: 90_000 }, async () => {
    const name = `rehold-${crypto.randomUUID()}`;
    const runEnv = routerEnv(name);
    const reg = await openCircuit(name);
    const held = heldStub(env, name);
    sink.on(URL, () => new Response('down', { status: 503 }));
    const id = await arrive(runEnv, held);
    const probes = await probeNow(reg, held, name);
    // The held store is unavailable (simulated) when the failed probe goes back on hold.
    const unavailable = vi.spyOn(runEnv.HELD_DELIVERIES, 'get').mockImplementation(() => {
      throw new Error('held store unavailable');
    });
    await runBatch(probes, runEnv);
    unavailable.mockRestore();
    expect(sink.about(id, URL)).toHaveLength(1);
    // Both messages go through the real local queue to this project's own consumer, whose ROUTER lacks the test's
    // destination, so each is dead-lettered there, counting one more attempt: the probe message the held store sent
    // (0 attempts before it; also run above, as the test's own consumer) at once, and the retry it became (30 s
    // later), which carries the probe's attempt. One acceptance and destination keep one dead letter, so the first
    // is discarded once seen, leaving room for the retry's.
    const dead = async () => (await deadLetterStub(env).list(500, 0, { destination: name })).filter((d) => d.event_id === id);
    await until(async () => (await dead()).length === 1, 'the probe message, consumed', 30_000, 250);
    const [first] = await dead();
    expect([first?.reason, first?.attempts]).toEqual(['destination_removed', 1]);
    await deadLetterStub(env).remove(first?.seq as number);
    await until(async () => (await dead()).length === 1, 'its retry, consumed', 75_000, 250);
    expect((await dead()).map((d) => [d.reason, d.attempts])).toEqual([['destination_removed', 2]]);
  });

  it('failed probes double the cooldown up to 15 minutes (MAX_CIRCUIT_COOLDOWN); each probe logs circuit_probe_sent and circuit_probe_failed', async () => {
    expect(MAX_CIRCUIT_COOLDOWN_SECONDS).toBe(15 * 60);
    const logs = watchLogs();
    const name = `capped-${crypto.randomUUID()}`;
    const runEnv = routerEnv(name);
    const reg = await openCircuit(name);
    const held = heldStub(env, name);
    sink.on(URL, () => new Response('down', { status: 503 }));
    const id = await arrive(runEnv, held);

    const cooldowns: number[] = [];
    for (let i = 0; i < 6; i++) {
      const probes = await probeNow(reg, held, name);
      expect(probes).toEqual([expect.objectContaining({ id, probe: name })]);
      const sentAt = Date.now();
      await runBatch(probes, runEnv);
      // It failed (one request) and went back on hold: the circuit stays open, the next probe is this delivery again.
      expect(sink.about(id, URL)).toHaveLength(i + 1);
      expect(await held.count()).toBe(1);
      const row = await runInDurableObject(reg, (_i, state) =>
        state.storage.sql.exec<{ cooldown_ms: number; next_probe_at: number }>('SELECT cooldown_ms, next_probe_at FROM destinations WHERE name = ?', name).one(),
      );
      expect(row.next_probe_at - sentAt).toBeGreaterThanOrEqual(row.cooldown_ms);
      expect(row.next_probe_at - Date.now()).toBeLessThanOrEqual(row.cooldown_ms);
      cooldowns.push(row.cooldown_ms / 1000);
      expect(await health(reg, name)).toMatchObject({ circuit: 'open', next_probe_at: new Date(row.next_probe_at).toISOString() });
    }
    expect(cooldowns).toEqual([120, 240, 480, 900, 900, 900]);
    expect(lines(logs, 'circuit_probe_sent', name)).toEqual(Array.from({ length: 6 }, () => expect.objectContaining({ count: 1 })));
    expect(lines(logs, 'circuit_probe_failed', name).map((r) => r.next_probe_in_s)).toEqual([120, 240, 480, 900, 900, 900]);
    expect(lines(logs, 'circuit_closed', name)).toEqual([]);
  }, 30_000);

  it('a probe the service answers with a 4xx closes the circuit; circuit_closed carries open_for_s and held', async () => {
    const logs = watchLogs();
    const name = `answered-${crypto.randomUUID()}`;
    const runEnv = routerEnv(name);
    const reg = await openCircuit(name);
    const held = heldStub(env, name);
    // It opened two minutes ago.
    await runInDurableObject(reg, (_i, state) => {
      state.storage.sql.exec('UPDATE destinations SET circuit_open_at = circuit_open_at - 120000 WHERE name = ?', name);
    });
    sink.on(URL, () => new Response('unprocessable', { status: 422 }));
    const first = await arrive(runEnv, held, Date.now() - 1000);
    await arrive(runEnv, held);

    const probes = await probeNow(reg, held, name);
    expect(probes).toEqual([expect.objectContaining({ id: first, probe: name })]);
    await runBatch(probes, runEnv);
    expect(sink.about(first, URL)).toHaveLength(1);
    expect(await health(reg, name)).toMatchObject({ circuit: 'closed', consecutive_failures: 0, next_probe_at: null });
    const closed = lines(logs, 'circuit_closed', name);
    expect(closed).toEqual([expect.objectContaining({ held: 1 })]);
    expect(closed[0]?.open_for_s).toBeGreaterThanOrEqual(120);
    expect(closed[0]?.open_for_s).toBeLessThan(130);
    expect(lines(logs, 'circuit_probe_failed', name)).toEqual([]);
  });
});
