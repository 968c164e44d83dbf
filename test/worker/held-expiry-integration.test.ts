/**
 * The held store's expiry when the dead-letter store fails (README, Pause and
 * resume: held deliveries of a removed destination go "within 6 hours", those
 * held too long "between 14 days and 14 days and 6 hours"): a failed call is
 * tried again a minute later, not at the next 6-hourly check, and nothing is
 * lost meanwhile. The dead-letter store's failure is simulated on the held
 * store's own binding; everything else is real.
 */
import { runDurableObjectAlarm, runInDurableObject } from 'cloudflare:test';
import { env } from 'cloudflare:workers';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { deadLetterStub } from '../../src/deadletters/store';
import { type HeldDelivery, heldStub } from '../../src/destinations/held';
import { until } from '../helpers/until';
import { sampleEvent } from '../helpers/webhook';

afterEach(() => vi.restoreAllMocks());

function heldDelivery(): HeldDelivery {
  const e = sampleEvent();
  return {
    event_id: e.id as string,
    event_type: e.event as string,
    created_at: e.created_at as string,
    source: 'webhook',
    stale: false,
    accepted_at: Date.now(),
    attempts: 0,
    rules: ['everything'],
    body: JSON.stringify(e),
  };
}

describe('held deliveries of a removed destination, with the dead-letter store down', () => {
  it('the failed call is tried again a minute later (not in 6 hours); once the store is back, they are dead-lettered as destination_removed', async () => {
    // A destination the project's ROUTER (wrangler.toml) does not have: removed, as far as the held store can tell.
    const name = `removed-held-${crypto.randomUUID().slice(0, 8)}`;
    const held = heldStub(env, name);
    const items = [heldDelivery(), heldDelivery()];
    await held.hold(name, items);
    await held.pause(name);

    // The dead-letter store refuses (simulated on the held store's binding).
    await runInDurableObject(held, (instance) => {
      const binding = (instance as unknown as { env: Env }).env.DEAD_LETTERS;
      vi.spyOn(binding, 'get').mockImplementation(() => {
        throw new Error('dead-letter store unavailable');
      });
    });
    const before = Date.now();
    expect(await runDurableObjectAlarm(held)).toBe(true);
    expect(await held.count()).toBe(2);
    const next = (await runInDurableObject(held, (_i, state) => state.storage.getAlarm())) as number;
    expect(next).toBeGreaterThanOrEqual(before + 30_000);
    expect(next).toBeLessThanOrEqual(Date.now() + 60_000);

    // Back: the next alarm moves them.
    vi.restoreAllMocks();
    expect(await runDurableObjectAlarm(held)).toBe(true);
    expect(await held.count()).toBe(0);
    const dead = await deadLetterStub(env).list(500, 0, { destination: name });
    expect(dead.map((d) => d.event_id).sort()).toEqual(items.map((i) => i.event_id).sort());
    for (const d of dead) expect(d).toMatchObject({ reason: 'destination_removed' });
  });
});

describe('a delivery already held is not held again', () => {
  it('the same event held twice (a hold whose answer was lost, made again by the retry) is kept once', async () => {
    const name = `held-twice-${crypto.randomUUID().slice(0, 8)}`;
    const held = heldStub(env, name);
    const [a, b] = [heldDelivery(), heldDelivery()];
    const logs = vi.spyOn(console, 'log');
    await held.pause(name);
    await held.hold(name, [a as HeldDelivery]);
    // The retry holds it again (its attempts unchanged), together with another event, and once more within one call.
    await held.hold(name, [{ ...(a as HeldDelivery) }, b as HeldDelivery, { ...(b as HeldDelivery) }]);
    expect(await held.count()).toBe(2);
    const lines = logs.mock.calls.map((c) => String(c[0])).filter((l) => l.includes('"msg":"deliveries_held"')).map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(lines.map((l) => [l.count, l.already_held])).toEqual([
      [1, undefined],
      [1, 2],
    ]);
    const rows = await runInDurableObject(held, (_i, state) => state.storage.sql.exec<{ event_id: string }>('SELECT event_id FROM held ORDER BY seq').toArray().map((r) => r.event_id));
    expect(rows).toEqual([a?.event_id, b?.event_id]);
  });
});

describe('a probe and the expiry never take the same held delivery', () => {
  it('a delivery held too long, probed while the expiry runs: sent once, not also dead-lettered', async () => {
    // `audit` is a destination of the project's ROUTER (so the expiry is about time, not a removed destination).
    const name = 'audit';
    const held = heldStub(env, name);
    // Too large for a queue message: the probe first stores its body in the ledger.
    const e = sampleEvent({ data: { id: `user_${crypto.randomUUID()}`, object: 'user', blob: 'x'.repeat(150_000) } });
    const d: HeldDelivery = { ...heldDelivery(), event_id: e.id as string, body: JSON.stringify(e) };
    await held.hold(name, [d]);
    await held.pause(name);
    // The ledger answers the probe's call slowly (delayed, then made for real); the alarm's start is observed.
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const seen = await runInDurableObject(held, (instance, state) => {
      state.storage.sql.exec('UPDATE held SET held_at = held_at - ?', 15 * 86_400_000);
      const ledger = (instance as unknown as { env: Env }).env.DEDUP_LEDGER;
      const realGet = ledger.get.bind(ledger);
      let stores = 0;
      vi.spyOn(ledger, 'get').mockImplementation((id) => {
        const real = realGet(id) as unknown as { storeBody: (...a: unknown[]) => Promise<void> };
        return {
          storeBody: async (...args: unknown[]) => {
            stores++;
            await gate;
            return real.storeBody(...args);
          },
        } as never;
      });
      const reads = vi.spyOn(state.storage.kv, 'get');
      return { stores: () => stores, alarmStarted: () => reads.mock.calls.some((c) => c[0] === 'destination') };
    });
    const probing = held.probe(name, 1);
    await until(async () => seen.stores() === 1, 'the probe on its way');
    // The 6-hourly check comes meanwhile (the delivery is 15 days old): once it has started, the probe goes on.
    const checking = runDurableObjectAlarm(held);
    await until(async () => seen.alarmStarted(), 'the check started');
    release();
    expect(await probing).toBe('sent');
    expect(await checking).toBe(true);
    vi.restoreAllMocks();
    expect(await held.count()).toBe(0);
    // Sent as the probe; the expiry found nothing left to dead-letter.
    expect((await deadLetterStub(env).list(500, 0)).filter((r) => r.event_id === d.event_id)).toEqual([]);
  });
});
