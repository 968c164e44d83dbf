/**
 * One circuit probe at a time: after sending a probe the registry waits for
 * its report (which sets the next probe), and sends another only if none
 * comes for PROBE_REPORT_WAIT_MS. Before, it sent one every cooldown whether
 * or not the last had reported, so during a queue backlog probes piled up and
 * reached the still-open destination together.
 */
import { runDurableObjectAlarm, runInDurableObject } from 'cloudflare:test';
import { env } from 'cloudflare:workers';
import { describe, expect, it, vi } from 'vitest';
import { heldStub } from '../../src/destinations/held';
import { HEALTH_FLUSH_MS, PROBE_REPORT_WAIT_MS, registryStub } from '../../src/destinations/registry';
import { until } from '../helpers/until';
import { sampleEvent } from '../helpers/webhook';

/** A destination whose circuit is open (1 failure, 60 s cooldown), with one delivery held. */
async function openWithOneHeld(name: string) {
  const reg = registryStub(env);
  const policy = { [name]: { failures: 1, cooldownSeconds: 60 } };
  await reg.report({ [name]: { delivered: 0, failed: 1, retryable_failures: 1, trailing_failures: 1 } }, policy);
  const held = heldStub(env, name);
  const e = sampleEvent();
  await held.hold(name, [{ event_id: e.id as string, event_type: e.event as string, created_at: e.created_at as string, source: 'webhook', stale: false, accepted_at: Date.now(), attempts: 1, rules: ['r'], body: JSON.stringify(e) }]);
  return { reg, policy, held };
}

/**
 * Every held store the registry (or anyone) asks for, its `resume` going
 * through `on.resume` (`go` makes the real call) and its `pause` telling
 * `on.pause` first; `count` goes straight through.
 */
function interceptHeld(on: { pause?: () => void; resume: (go: () => Promise<number>) => Promise<number> }) {
  const ns = env.HELD_DELIVERIES;
  const realGet = ns.get.bind(ns);
  return vi.spyOn(ns, 'get').mockImplementation((id) => {
    const stub = realGet(id);
    return {
      count: () => stub.count(),
      pause: (n: string) => {
        on.pause?.();
        return stub.pause(n);
      },
      resume: (n: string) => on.resume(() => stub.resume(n)),
    } as never;
  });
}

describe('circuit probes', () => {
  it('a probe that has not reported yet is not followed by another one a cooldown later', async () => {
    const name = `probe-${crypto.randomUUID()}`;
    const reg = registryStub(env);
    await reg.report({ [name]: { delivered: 0, failed: 1, retryable_failures: 1, trailing_failures: 1 } }, { [name]: { failures: 1, cooldownSeconds: 1 } });
    expect((await reg.health([name]))[0]).toMatchObject({ circuit: 'open' });
    const held = heldStub(env, name);
    const items = [0, 1].map(() => {
      const e = sampleEvent();
      return { event_id: e.id as string, event_type: e.event as string, created_at: e.created_at as string, source: 'webhook' as const, stale: false, accepted_at: Date.now(), attempts: 1, rules: ['r'], body: JSON.stringify(e) };
    });
    await held.hold(name, items);
    // The cooldown has passed: the alarm sends the first probe.
    await runInDurableObject(reg, (_i, state) => state.storage.sql.exec('UPDATE destinations SET next_probe_at = ? WHERE name = ?', Date.now() - 1, name));
    await runDurableObjectAlarm(reg);
    expect(await held.count()).toBe(1);
    const next = Date.parse((await reg.health([name]))[0]?.next_probe_at as string);
    expect(next - Date.now()).toBeGreaterThan(PROBE_REPORT_WAIT_MS - 5_000);
    // A cooldown (1 s) later, with no report: the alarm runs (the positive signal) and sends no second probe.
    await runInDurableObject(reg, (_i, state) => state.storage.sql.exec('UPDATE destinations SET next_probe_at = next_probe_at - 1000 WHERE name = ?', name));
    expect(await runDurableObjectAlarm(reg)).toBe(true); // the alarm it left for the next probe, run now
    expect(await held.count()).toBe(1);
  });

  it('a held store that cannot be told to drain when the circuit closes is told again by the alarm: nothing stays stranded', async () => {
    const name = `sync-${crypto.randomUUID()}`;
    const { reg, policy, held } = await openWithOneHeld(name);
    // The probe succeeded; telling the held store to drain fails once.
    let failed = 0;
    const spy = interceptHeld({ resume: (go) => (failed++ === 0 ? Promise.reject(new Error('held store reset')) : go()) });
    await reg.report({ [name]: { delivered: 1, failed: 0, probe: 'ok' } }, policy);
    expect((await reg.health([name]))[0]).toMatchObject({ circuit: 'closed' });
    expect(await runInDurableObject(reg, (_i, state) => state.storage.kv.get(`held_sync_owed:${name}`))).toBe(true);
    // The registry's alarm tells it again; the held store drains.
    await runDurableObjectAlarm(reg);
    spy.mockRestore();
    expect(failed).toBe(2);
    expect(await runInDurableObject(reg, (_i, state) => state.storage.kv.get(`held_sync_owed:${name}`))).toBeUndefined();
    // Its drain step is due now: run it (unless the runtime already has, or is running it), then see it done.
    await runDurableObjectAlarm(held);
    await until(async () => (await held.count()) === 0, 'the held store drained', 5_000);
    expect(await held.count()).toBe(0);
  });

  it('the sync is owed from before its call: a registry restarted while the drain call is on its way tells the held store again from its alarm (the deliveries stayed stranded until held_too_long)', async () => {
    const name = `restart-${crypto.randomUUID()}`;
    const { reg, policy, held } = await openWithOneHeld(name);
    let calls = 0;
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const spy = interceptHeld({ resume: (go) => (++calls === 1 ? gate.then(() => Promise.reject(new Error('never answered: the registry restarted'))) : go()) });
    const closing = reg.report({ [name]: { delivered: 1, failed: 0, probe: 'ok' } }, policy).catch((err: unknown) => err);
    await until(async () => calls === 1, 'the drain call on its way');
    // The registry restarts (a deploy) while its call to the held store is on its way.
    await runInDurableObject(reg, (_i, state) => state.abort('simulated restart during the held-store call')).catch(() => undefined);
    await closing;
    release();
    const again = registryStub(env);
    expect((await again.health([name]))[0]).toMatchObject({ circuit: 'closed' });
    expect(await runInDurableObject(again, (_i, state) => state.storage.kv.get(`held_sync_owed:${name}`))).toBe(true);
    // Its alarm tells the held store again; it drains.
    expect(await runDurableObjectAlarm(again)).toBe(true);
    spy.mockRestore();
    expect(calls).toBe(2);
    expect(await runInDurableObject(again, (_i, state) => state.storage.kv.get(`held_sync_owed:${name}`))).toBeUndefined();
    await runDurableObjectAlarm(held);
    await until(async () => (await held.count()) === 0, 'the held store drained', 5_000);
  });

  it('a pause that lands while the circuit-close drain call is on its way leaves the held store holding', async () => {
    const name = `race-${crypto.randomUUID()}`;
    const { reg, policy, held } = await openWithOneHeld(name);
    // The call telling the held store to drain is slow on its way: it reaches the store only after the pause.
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const calls: string[] = [];
    const spy = interceptHeld({
      pause: () => calls.push('pause'),
      resume: async (go) => {
        calls.push('resume');
        await gate;
        return go();
      },
    });
    const closing = reg.report({ [name]: { delivered: 1, failed: 0, probe: 'ok' } }, policy);
    await vi.waitFor(() => expect(calls).toEqual(['resume']));
    const pausing = reg.pause(name);
    // The pause has landed in the registry (the positive signal) while the drain call is still on its way.
    await vi.waitFor(async () => expect(await reg.paused()).toContain(name));
    release();
    await Promise.all([closing, pausing]);
    spy.mockRestore();
    expect(calls).toEqual(['resume', 'pause']);
    // (A slice it drained in between goes back to the queue, where the consumer holds it again: paused.)
    expect(await runInDurableObject(held, (_i, state) => state.storage.kv.get('active'))).toBe(false);
    // Resumed: the registry tells it to drain.
    expect((await reg.resume(name)).held).toMatchObject({ state: 'draining' });
    expect(await runInDurableObject(held, (_i, state) => state.storage.kv.get('active'))).toBe(true);
  });

  it('a probe the queue refused is tried again 30 s later, not after the wait for a probe\'s report (it counted as sent)', async () => {
    const name = `unsent-${crypto.randomUUID()}`;
    const { reg, held } = await openWithOneHeld(name);
    // The queue refuses the held store's send (simulated on its own binding).
    const refusal = await runInDurableObject(held, (instance) => vi.spyOn((instance as unknown as { env: Env }).env.EVENTS_QUEUE, 'sendBatch').mockRejectedValue(new Error('queue down')));
    await runInDurableObject(reg, (_i, state) => state.storage.sql.exec('UPDATE destinations SET next_probe_at = ? WHERE name = ?', Date.now() - 1, name));
    const before = Date.now();
    expect(await runDurableObjectAlarm(reg)).toBe(true);
    expect(refusal).toHaveBeenCalledTimes(1);
    refusal.mockRestore();
    expect(await held.count()).toBe(1);
    const next = Date.parse((await reg.health([name]))[0]?.next_probe_at as string);
    expect(next - before).toBeGreaterThanOrEqual(29_000);
    expect(next - before).toBeLessThan(PROBE_REPORT_WAIT_MS - 60_000);
    expect(next - Date.now()).toBeLessThanOrEqual(30_000);
  });

  it("the registry's alarm keeps a sooner time a report set while it awaited a held store (success counts waited a probe's cooldown)", async () => {
    const reg = registryStub(env);
    const suffix = crypto.randomUUID().slice(0, 8);
    const [owedName, openName, healthy] = [`owed-${suffix}`, `open-${suffix}`, `healthy-${suffix}`];
    // An open circuit whose next probe is a minute away.
    await reg.report({ [openName]: { delivered: 0, failed: 1, retryable_failures: 1, trailing_failures: 1 } }, { [openName]: { failures: 1, cooldownSeconds: 60 } });
    // A healthy destination the registry knows (its next success-only report waits in memory).
    await reg.report({ [healthy]: { delivered: 1, failed: 0, last_success_at: Date.now() } });
    // A held-store sync owed, whose call waits at a gate during the alarm.
    await runInDurableObject(reg, (_i, state) => state.storage.kv.put(`held_sync_owed:${owedName}`, true));
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    let calls = 0;
    const spy = interceptHeld({
      pause: () => undefined,
      resume: async (go) => {
        calls++;
        await gate;
        return go();
      },
    });
    const running = runDurableObjectAlarm(reg);
    await until(async () => calls === 1, "the alarm's held-store call on its way");
    // Meanwhile a batch reports successes only: written within HEALTH_FLUSH_MS, for which the alarm is set.
    await reg.report({ [healthy]: { delivered: 5, failed: 0, last_success_at: Date.now() } });
    release();
    expect(await running).toBe(true);
    spy.mockRestore();
    const at = (await runInDurableObject(reg, (_i, state) => state.storage.getAlarm())) as number;
    expect(at - Date.now()).toBeLessThanOrEqual(HEALTH_FLUSH_MS);
  });

  it('a held delivery keeps the ledger shard that admitted its event: the message it goes back as says it', async () => {
    const name = `probe-${crypto.randomUUID()}`;
    const held = heldStub(env, name);
    const e = sampleEvent();
    const item = { event_id: e.id as string, event_type: e.event as string, created_at: e.created_at as string, source: 'webhook' as const, stale: false, accepted_at: Date.now(), attempts: 1, rules: ['r'], body: JSON.stringify(e) };
    await held.hold(name, [{ ...item, ledger_shard: 'ledger-7' }]);
    // Observed on its way to the real queue, not replaced.
    const sent = await runInDurableObject(held, (instance) => vi.spyOn((instance as unknown as { env: Env }).env.EVENTS_QUEUE, 'sendBatch'));
    expect(await held.probe(name)).toBe('sent');
    const messages = sent.mock.calls.flatMap((c) => [...c[0]].map((m) => m.body as Record<string, unknown>));
    sent.mockRestore();
    expect(messages).toEqual([expect.objectContaining({ id: e.id, probe: name, ledger_shard: 'ledger-7', body: item.body })]);
  });
});
