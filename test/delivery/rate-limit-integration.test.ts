/**
 * `max_per_second` (destination health issue): a burst far above the limit
 * reaches the destination at no more than the limit in any one-second window
 * (measured where the requests arrive), nothing is dropped, the backlog drains.
 */
import { runInDurableObject } from 'cloudflare:test';
import { env } from 'cloudflare:workers';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { routerMessage, runBatch } from '../helpers/consumer';
import { deadLettersFor } from '../helpers/observe';
import { Sink } from '../helpers/sink';
import { postWebhook, sampleEvent } from '../helpers/webhook';
import { METERED } from './router';

const sink = new Sink();
beforeEach(() => sink.reset().install());
afterEach(() => vi.restoreAllMocks());

/** The most arrivals inside any window of `ms` (sliding: each arrival starts a window). */
function maxInWindow(times: number[], ms: number): number {
  const t = [...times].sort((a, b) => a - b);
  let best = 0;
  let j = 0;
  for (let i = 0; i < t.length; i++) {
    while ((t[i] as number) - (t[j] as number) >= ms) j++;
    best = Math.max(best, i - j + 1);
  }
  return best;
}

describe('max_per_second', () => {
  it('a burst of 120 events at max_per_second = 20: at most 20 in any second at the receiver, each delivered once, none dead-lettered', async () => {
    sink.on(METERED, () => new Response(null, { status: 204 }));
    const events = Array.from({ length: 120 }, () =>
      sampleEvent({ event: 'magic_auth.created', data: { id: `magic_auth_${crypto.randomUUID()}`, object: 'magic_auth', email: 'm@example.test' } }),
    );
    const started = Date.now();
    await Promise.all(events.map(async (e) => expect((await postWebhook(e)).status).toBe(200)));
    await sink.until(() => events.every((e) => sink.about(e.id as string, METERED).length >= 1), 'every event at the metered destination', 60_000);
    const arrivals = sink.received.filter((r) => r.url === METERED).map((r) => r.at);
    expect(arrivals).toHaveLength(120);
    for (const e of events) expect(sink.about(e.id as string, METERED)).toHaveLength(1);
    expect(maxInWindow(arrivals, 1000)).toBeLessThanOrEqual(20);
    // The limit is a limit, not a stall: 120 at 20/s takes about 6 s.
    expect(Math.max(...arrivals) - started).toBeGreaterThan(5_000);
    for (const e of events.slice(0, 10)) expect(await deadLettersFor(e.id as string)).toEqual([]);
  });

  it('the sliding-window counter itself', () => {
    expect(maxInWindow([0, 100, 200, 999, 1000, 1500], 1000)).toBe(4);
    expect(maxInWindow([], 1000)).toBe(0);
  });
});

describe('max_per_second with a registry far from the consumer', () => {
  it('a slot is counted from when the answer arrives: a slow trip back does not make it late (it used to defer the delivery, again and again)', async () => {
    sink.on(METERED, () => new Response(null, { status: 204 }));
    // A registry of its own, whose answers take 60 ms to come back (more than the 40 ms a slot may be missed by).
    const name = `registry-far-${crypto.randomUUID()}`;
    const far = {
      idFromName: () => env.DESTINATIONS.idFromName(name),
      get: (id: DurableObjectId) => {
        const stub = env.DESTINATIONS.get(id);
        return {
          blocked: () => stub.blocked(),
          report: (...args: Parameters<typeof stub.report>) => stub.report(...args),
          reserve: async (...args: Parameters<typeof stub.reserve>) => {
            const answer = await stub.reserve(...args);
            await new Promise((r) => setTimeout(r, 60));
            return answer;
          },
        };
      },
    };
    const runEnv = { ...env, DESTINATIONS: far } as unknown as Env;
    // A destination idle for a while: its next slot is "now" when the registry answers.
    await runInDurableObject(env.DESTINATIONS.get(env.DESTINATIONS.idFromName(name)), (instance) => {
      (instance as unknown as { nextSlot: Map<string, number> }).nextSlot.set('metered', 0);
    });
    const e = sampleEvent({ event: 'magic_auth.created', data: { id: `magic_auth_${crypto.randomUUID()}`, object: 'magic_auth', email: 'far@example.test' } });
    const { result } = await runBatch([routerMessage(e)], runEnv);
    expect(sink.about(e.id as string, METERED)).toHaveLength(1);
    expect(result.retryMessages).toEqual([]);
  });
});

