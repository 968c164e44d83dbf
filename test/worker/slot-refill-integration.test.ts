/**
 * SlotRefill (src/queue/slot-refill.ts): fresh send slots for rate-limited
 * requests that missed theirs. Requests late at about the same moment share
 * one registry call, and a batch makes at most the calls it reserved in its
 * budget; past them a request gets no slot (and is deferred by the consumer).
 * The registry is the real Durable Object (a name of its own per test); the
 * wrapper only counts the calls that reach it.
 */
import { runInDurableObject } from 'cloudflare:test';
import { env } from 'cloudflare:workers';
import { describe, expect, it } from 'vitest';
import type { DestinationRegistry } from '../../src/destinations/registry';
import { SlotRefill } from '../../src/queue/slot-refill';

function countingRegistry(): { env: Env; calls: () => number; direct: () => DurableObjectStub<DestinationRegistry> } {
  const name = `refill-${crypto.randomUUID()}`;
  let calls = 0;
  const direct = () => env.DESTINATIONS.get(env.DESTINATIONS.idFromName(name)) as DurableObjectStub<DestinationRegistry>;
  const namespace = {
    idFromName: () => env.DESTINATIONS.idFromName(name),
    get: () => ({
      reserve: (...args: Parameters<DestinationRegistry['reserve']>) => {
        calls++;
        return direct().reserve(...args);
      },
    }),
  };
  return { env: { ...env, DESTINATIONS: namespace } as unknown as Env, calls: () => calls, direct };
}

describe('SlotRefill', () => {
  it('requests late at the same moment share one registry call and get consecutive slots', async () => {
    const reg = countingRegistry();
    const refill = new SlotRefill(reg.env, 4, 5_000);
    const before = Date.now();
    const slots = await Promise.all([refill.take('metered', 10), refill.take('metered', 10), refill.take('metered', 10)]);
    expect(reg.calls()).toBe(1);
    expect(slots.every((s) => typeof s === 'number' && s >= before)).toBe(true);
    const [a, b, c] = slots as number[];
    // 10 per second, spaced 5 % wider: 105 ms apart (the offsets are exact; the clock they are added to moves).
    expect(Math.round((b as number) - (a as number))).toBe(105);
    expect(Math.round((c as number) - (b as number))).toBe(105);
  });

  it('makes no more registry calls than it was given: past them a late request gets no slot, and no slot is taken for it', async () => {
    const reg = countingRegistry();
    const refill = new SlotRefill(reg.env, 2, 60_000);
    expect(await refill.take('metered', 10)).toEqual(expect.any(Number));
    expect(await refill.take('metered', 10)).toEqual(expect.any(Number));
    expect(reg.calls()).toBe(2);
    const nextSlots = () => runInDurableObject(reg.direct(), (instance) => new Map((instance as unknown as { nextSlot: Map<string, number> }).nextSlot));
    const granted = await nextSlots();
    expect(granted.get('metered')).toEqual(expect.any(Number));
    // The third round: the calls are spent.
    expect(await refill.take('metered', 10)).toBeNull();
    expect(await refill.take('other', 1)).toBeNull();
    expect(reg.calls()).toBe(2);
    // The registry gave out nothing more: 'metered' has the next slot it had after the two grants, 'other' none.
    const after = await nextSlots();
    expect(after.get('metered')).toBe(granted.get('metered'));
    expect(after.has('other')).toBe(false);
  });

  it('a round already collecting still takes requests after the last call is spent on it', async () => {
    const reg = countingRegistry();
    const refill = new SlotRefill(reg.env, 1, 5_000);
    // Both are asked before the round's call goes out (it waits a few ms for others to join).
    const first = refill.take('metered', 10);
    const second = refill.take('metered', 10);
    expect(await Promise.all([first, second])).toEqual([expect.any(Number), expect.any(Number)]);
    expect(reg.calls()).toBe(1);
    expect(await refill.take('metered', 10)).toBeNull();
    expect(reg.calls()).toBe(1);
  });
});

describe('send slots across a restart of the registry', () => {
  const fresh = () => env.DESTINATIONS.get(env.DESTINATIONS.idFromName(`restart-slots-${crypto.randomUUID()}`)) as DurableObjectStub<DestinationRegistry>;
  /** Restarts the object (as a deploy does); returns a new stub, the one given is broken by the restart. */
  const restart = async (stub: DurableObjectStub<DestinationRegistry>) => {
    await runInDurableObject(stub, (_i, state) => state.abort('simulated restart (a deploy)')).catch(() => undefined);
    return env.DESTINATIONS.get(stub.id) as DurableObjectStub<DestinationRegistry>;
  };
  const absolute = async (stub: DurableObjectStub<DestinationRegistry>, count: number) => {
    const answer = await stub.reserve({ metered: { count, perSecond: 10 } }, 5_000);
    const at = Date.now();
    return Object.assign((answer.metered?.slotsInMs ?? []).map((s) => at + s), { next: at + (answer.metered?.nextInMs ?? 0) });
  };

  it('the first slot after a restart comes after every slot granted before it (a deploy during a backlog cannot double the rate)', async () => {
    const stub = fresh();
    const before = await absolute(stub, 50); // 5 s of slots at 10/s, held by batches still waiting for them
    expect(before).toHaveLength(48); // as many as fit the 5 s horizon, 105 ms apart
    const after = await absolute(await restart(stub), 5);
    // None within this batch's horizon: the consumer defers these requests to the first slot free, after the old ones.
    expect([...after]).toEqual([]);
    expect(after.next).toBeGreaterThan(before.at(-1) as number);
  });

  it('after a quiet spell the bound has passed: the first slot is at once', async () => {
    const stub = fresh();
    await absolute(stub, 1);
    await runInDurableObject(stub, (_i, state) => state.storage.kv.put('slots_until:metered', Date.now() - 1));
    const restarted = await restart(stub);
    const asked = Date.now();
    const [first] = await absolute(restarted, 1);
    expect(first).toBeLessThan(asked + 500);
  });
});
