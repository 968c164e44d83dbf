/**
 * Changing `dedup_shards` with `dedup_shards_previous` set to the old count:
 * an event the new shard does not know is looked for in its previous shard,
 * so a copy accepted before the change is still a duplicate, and the
 * out-of-order record of its object still counts. The ledger shards are real
 * Durable Objects; admissions go through the same `admitEvent` as webhooks.
 *
 * One exception to "a queue send is stubbed only to simulate its failure":
 * `holdEnqueue` holds one event's send on its way and then really sends it
 * (it fails nothing, changes nothing it passes on). Two tests need an
 * admission in progress in a shard at a given moment, and that cannot be
 * made any other way: a shard's admission is only marked in memory (claims
 * are no longer persisted, so no stored row can stand for it), and when the
 * shard has no other shard to ask, the enqueue is the only await between
 * that mark and the commit (the commit is one synchronous SQL step), so the
 * only point where the admission can be caught "in progress" is the send.
 * Holding a Durable Object call instead would stub our own code's answer;
 * racing two real admissions would make the outcome a matter of timing.
 */
import { runInDurableObject } from 'cloudflare:test';
import { env } from 'cloudflare:workers';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { loadConfig } from '../../src/config/load';
import { type RouterSettings, parseRouterConfig } from '../../src/config/router-config';
import { ledgerShardOf, ledgerStubByName, shardName, shardOf } from '../../src/dedup/shard';
import type { UnknownEvent } from '../../src/events/catalog';
import { admitEvent } from '../../src/ingest/admit';
import { lookupEvent } from '../../src/trace/client';
import { sampleEvent } from '../helpers/webhook';
import { WORKERS_ROUTER } from './router';

const utf8 = new TextEncoder();

function settings(): RouterSettings {
  const loaded = loadConfig(env);
  if (!loaded.ok) throw new Error('config invalid');
  return loaded.config.settings;
}
const before = (): RouterSettings => ({ ...settings(), dedupShards: 16 });
const after = (): RouterSettings => ({ ...settings(), dedupShards: 32, dedupShardsPrevious: 16 });

/** A `user.*` event about `userId`, created at `ms`. */
function userEvent(type: string, userId: string, ms: number): UnknownEvent {
  return sampleEvent({ event: type, created_at: new Date(ms).toISOString(), data: { object: 'user', id: userId, email: 'u@example.test' } }) as unknown as UnknownEvent;
}

/** A user id whose events meet a different shard at `a` and at `b` shards (16 and 32 by default). */
function movingUser(a = 16, b = 32): string {
  for (;;) {
    const id = `user_${crypto.randomUUID()}`;
    const e = userEvent('user.updated', id, Date.now());
    if (ledgerShardOf(e, a) !== ledgerShardOf(e, b)) return id;
  }
}

/** A Worker still on 8 shards, while the ledger's config (this project's) says 16: a deploy's rollout. */
const oldWorker = (): RouterSettings => ({ ...settings(), dedupShards: 8 });

/** In shard `from`, calls to shard `to` fail (a simulated reset) for `method`; others go through. The spy, to restore. */
function unreachable(from: string, to: string, method: 'recall' | 'peek') {
  return runInDurableObject(ledgerStubByName(env, from), (instance) => {
    const ns = (instance as unknown as { env: Env }).env.DEDUP_LEDGER;
    const original = ns.get.bind(ns);
    return vi.spyOn(ns, 'get').mockImplementation((id, options) =>
      id.name === to ? ({ [method]: () => Promise.reject(new Error('shard reset')) } as never) : original(id, options),
    );
  });
}

/** Holds shard `name`'s enqueue of event `id` on its way (then really sends it): `reached` once it is held. */
async function holdEnqueue(name: string, id: string): Promise<{ reached: Promise<void>; release: () => void }> {
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  let reach!: () => void;
  const reached = new Promise<void>((r) => (reach = r));
  await runInDurableObject(ledgerStubByName(env, name), (instance) => {
    const queue = (instance as unknown as { env: Env }).env.EVENTS_QUEUE;
    const send = queue.send.bind(queue);
    vi.spyOn(queue, 'send').mockImplementation(async (message, options) => {
      if ((message as { id: string }).id === id) {
        reach();
        await gate;
      }
      return send(message, options);
    });
  });
  return { reached, release };
}

/** The log line `msg` written through console.error, parsed. */
function errorLine(errors: { mock: { calls: unknown[][] } }, msg: string): Record<string, unknown> {
  const line = errors.mock.calls.map((c) => String(c[0])).find((l) => l.includes(`"msg":"${msg}"`));
  return JSON.parse(line ?? '{}') as Record<string, unknown>;
}

const admit = (s: RouterSettings, e: UnknownEvent) => {
  const text = JSON.stringify(e);
  const loaded = loadConfig(env);
  if (!loaded.ok) throw new Error('config invalid');
  return admitEvent(env, { ...loaded.config, settings: s }, e, text, utf8.encode(text).byteLength, 'webhook');
};

afterEach(() => vi.restoreAllMocks());

describe('changing dedup_shards with dedup_shards_previous', () => {
  it('a copy of an event accepted before the change is a duplicate after it', async () => {
    const e = userEvent('user.updated', movingUser(), Date.now() - 60_000);
    expect(await admit(before(), e)).toEqual({ status: 'accepted' });
    expect(await admit(after(), e)).toEqual({ status: 'duplicate' });
    // Nothing was written in the new shard for it.
    expect(await ledgerStubByName(env, ledgerShardOf(e, 32)).isCommitted(e.id)).toBe(false);
  });

  it('an event new to both shards is accepted once, then a duplicate', async () => {
    const e = userEvent('user.updated', movingUser(), Date.now() - 60_000);
    expect(await admit(after(), e)).toEqual({ status: 'accepted' });
    expect(await admit(after(), e)).toEqual({ status: 'duplicate' });
    expect(await ledgerStubByName(env, ledgerShardOf(e, 32)).isCommitted(e.id)).toBe(true);
  });

  it("the object's ordering record moves with it: an older update, or one after a deletion, is stale", async () => {
    const t = Date.now() - 60_000;
    const user = movingUser();
    expect(await admit(before(), userEvent('user.updated', user, t + 2_000))).toEqual({ status: 'accepted' });
    expect(await admit(after(), userEvent('user.updated', user, t + 1_000))).toEqual({ status: 'accepted', stale: true });
    expect(await admit(after(), userEvent('user.updated', user, t + 3_000))).toEqual({ status: 'accepted' });

    const gone = movingUser();
    expect(await admit(before(), userEvent('user.deleted', gone, t))).toEqual({ status: 'accepted' });
    expect(await admit(after(), userEvent('user.updated', gone, t + 5_000))).toEqual({ status: 'accepted', stale: true });
  });

  it('when both shards know part of an object (Workers on both counts during the rollout), the two records are read together', async () => {
    const t = Date.now() - 60_000;
    const user = movingUser();
    // An update committed at its new shard, then the deletion committed at its old shard (a Worker not yet on the new count).
    expect(await admit(after(), userEvent('user.updated', user, t + 1_000))).toEqual({ status: 'accepted' });
    expect(await admit(before(), userEvent('user.deleted', user, t + 3_000))).toEqual({ status: 'accepted' });
    // A late update, older than the deletion: stale (the new shard's own record, which knew only the first update, hid it).
    expect(await admit(after(), userEvent('user.updated', user, t + 2_000))).toEqual({ status: 'accepted', stale: true });
  });

  it('without dedup_shards_previous the old shard is not asked (the documented limit)', async () => {
    const e = userEvent('user.updated', movingUser(), Date.now() - 60_000);
    expect(await admit(before(), e)).toEqual({ status: 'accepted' });
    const { dedupShardsPrevious: _p, ...plain } = after();
    expect(await admit(plain, e)).toEqual({ status: 'accepted' });
  });

  describe('a Worker still on the old count during the rollout', () => {
    /**
     * The ledger shards run the new deploy: 16 shards, previously 8 (this
     * project's config says 16; the shard an old Worker reaches is given the
     * deploy's `dedup_shards_previous`). Restored after each test.
     */
    let restore: Array<() => Promise<void>> = [];
    async function deployedWithPrevious(e: UnknownEvent): Promise<void> {
      const name = ledgerShardOf(e, 8);
      let original!: Env;
      await runInDurableObject(ledgerStubByName(env, name), (instance) => {
        const holder = instance as unknown as { env: Env };
        original = holder.env;
        holder.env = { ...original, ROUTER: { ...WORKERS_ROUTER, dedup_shards: 16, dedup_shards_previous: 8 } } as unknown as Env;
      });
      // A stub made when restoring: one made in another test's context may not be used there.
      restore.push(() => runInDurableObject(ledgerStubByName(env, name), (i) => void ((i as unknown as { env: Env }).env = original)));
    }
    afterEach(async () => {
      for (const r of restore) await r();
      restore = [];
    });

    it('its copy of an event the new count accepted is a duplicate: the shard it reaches asks the shard its config names', async () => {
      const e = userEvent('user.updated', movingUser(8, 16), Date.now() - 60_000);
      await deployedWithPrevious(e);
      expect(await admit(settings(), e)).toEqual({ status: 'accepted' });
      expect(await admit(oldWorker(), e)).toEqual({ status: 'duplicate' });
      expect(await ledgerStubByName(env, ledgerShardOf(e, 8)).isCommitted(e.id)).toBe(false);
    });

    it('an event whose created_at is not a time (filed by its ordering key all the same) is found too', async () => {
      let e: UnknownEvent;
      do e = { ...userEvent('user.updated', movingUser(8, 16), 0), created_at: 'not a time' };
      while (shardName(shardOf(e.id, 16)) === ledgerShardOf(e, 16));
      await deployedWithPrevious(e);
      expect(await admit(settings(), e)).toEqual({ status: 'accepted' });
      expect(await admit(oldWorker(), e)).toEqual({ status: 'duplicate' });
    });

    it("the object's ordering record counts too: its older update, or one after a deletion, is stale", async () => {
      const t = Date.now() - 60_000;
      const user = movingUser(8, 16);
      await deployedWithPrevious(userEvent('user.updated', user, t));
      expect(await admit(settings(), userEvent('user.updated', user, t + 2_000))).toEqual({ status: 'accepted' });
      expect(await admit(oldWorker(), userEvent('user.updated', user, t + 1_000))).toEqual({ status: 'accepted', stale: true });
      const gone = movingUser(8, 16);
      await deployedWithPrevious(userEvent('user.updated', gone, t));
      expect(await admit(settings(), userEvent('user.deleted', gone, t))).toEqual({ status: 'accepted' });
      expect(await admit(oldWorker(), userEvent('user.updated', gone, t + 5_000))).toEqual({ status: 'accepted', stale: true });
    });

    it('its copy of an event being admitted in the current shard at that moment answers in_progress; the retry is a duplicate', async () => {
      const e = userEvent('user.updated', movingUser(8, 16), Date.now() - 60_000);
      await deployedWithPrevious(e);
      // The new count's copy: its enqueue held on its way.
      const { reached, release } = await holdEnqueue(ledgerShardOf(e, 16), e.id);
      const first = admit(settings(), e);
      await reached;
      expect(await admit(oldWorker(), e)).toEqual({ status: 'in_progress' });
      release();
      expect(await first).toEqual({ status: 'accepted' });
      vi.restoreAllMocks();
      expect(await admit(oldWorker(), e)).toEqual({ status: 'duplicate' });
    });

    it('error path: the current shard cannot be reached: unavailable (WorkOS retries), nothing written, logged', async () => {
      const e = userEvent('user.updated', movingUser(8, 16), Date.now() - 60_000);
      await deployedWithPrevious(e);
      const current = ledgerShardOf(e, 16);
      const errors = vi.spyOn(console, 'error');
      const spy = await unreachable(ledgerShardOf(e, 8), current, 'peek');
      expect(await admit(oldWorker(), e)).toEqual({ status: 'unavailable' });
      spy.mockRestore();
      expect(errorLine(errors, 'ledger_current_unavailable')).toMatchObject({ level: 'error', event_id: e.id, shard: current, error: 'Error: shard reset' });
      expect(await ledgerStubByName(env, ledgerShardOf(e, 8)).isCommitted(e.id)).toBe(false);
      expect(await admit(oldWorker(), e)).toEqual({ status: 'accepted' });
    });
  });

  it('a previous shard that cannot be reached: unavailable (WorkOS retries), nothing written, logged', async () => {
    const e = userEvent('user.updated', movingUser(), Date.now() - 60_000);
    const previous = ledgerShardOf(e, 16);
    const errors = vi.spyOn(console, 'error');
    const spy = await unreachable(ledgerShardOf(e, 32), previous, 'recall');
    expect(await admit(after(), e)).toEqual({ status: 'unavailable' });
    spy.mockRestore();
    expect(errorLine(errors, 'ledger_previous_unavailable')).toMatchObject({ level: 'error', event_id: e.id, shard: previous, error: 'Error: shard reset' });
    expect(await ledgerStubByName(env, ledgerShardOf(e, 32)).isCommitted(e.id)).toBe(false);
    // Reachable again: the retry is accepted.
    expect(await admit(after(), e)).toEqual({ status: 'accepted' });
  });

  it("an admission waits for a copy that a Worker on the old count is admitting in the previous shard at that moment: a duplicate", async () => {
    const e = userEvent('user.updated', movingUser(), Date.now() - 60_000);
    // The old copy's enqueue is held on its way, so its admission is in progress.
    const { reached: sendReached, release } = await holdEnqueue(ledgerShardOf(e, 16), e.id);
    let recalled!: () => void;
    const recallReached = new Promise<void>((r) => (recalled = r));
    await runInDurableObject(ledgerStubByName(env, ledgerShardOf(e, 32)), (instance) => {
      // Observed, not replaced: the new shard asks the previous one.
      const ns = (instance as unknown as { env: Env }).env.DEDUP_LEDGER;
      const get = ns.get.bind(ns);
      vi.spyOn(ns, 'get').mockImplementation((id, options) => {
        if (id.name === ledgerShardOf(e, 16)) recalled();
        return get(id, options);
      });
    });
    const old = admit(before(), e);
    await sendReached;
    const fresh = admit(after(), e);
    await recallReached;
    // Give an answer that does not wait its chance to arrive first (the code before answered "not committed" at once).
    const early = await Promise.race([fresh.then(() => 'answered'), new Promise((r) => setTimeout(() => r('waiting'), 300))]);
    release();
    expect(await old).toEqual({ status: 'accepted' });
    expect(await fresh).toEqual({ status: 'duplicate' });
    expect(early).toBe('waiting');
    vi.restoreAllMocks();
  });

  it('the trace points at the shard that admitted an event, where its body is, after the count changed', async () => {
    // Admitted by a Worker on 8 shards; this project's consumer routes it on 16 (its own ROUTER).
    let e: UnknownEvent;
    do e = userEvent('user.updated', `user_${crypto.randomUUID()}`, Date.now() - 60_000);
    while (ledgerShardOf(e, 8) === ledgerShardOf(e, settings().dedupShards));
    const text = JSON.stringify(e);
    expect(await admit({ ...settings(), dedupShards: 8 }, e)).toEqual({ status: 'accepted' });
    // The real queue's consumer traces it about a second later.
    let items = await lookupEvent(env, settings(), e.id);
    for (let i = 0; i < 200 && items.length === 0; i++) {
      await new Promise((r) => setTimeout(r, 100));
      items = await lookupEvent(env, settings(), e.id);
    }
    expect(items.length).toBeGreaterThan(0);
    expect(new Set(items.map((i) => i.body_shard))).toEqual(new Set([ledgerShardOf(e, 8)]));
    expect(await ledgerStubByName(env, ledgerShardOf(e, 8)).getBody(e.id)).toBe(text);
  });

  it('config: dedup_shards_previous is 1–1024, differs from dedup_shards, and warns while set', () => {
    const parse = (extra: Record<string, unknown>) => parseRouterConfig({ dedup_shards: 32, ...extra, destinations: [], rules: [] }, () => undefined);
    const ok = parse({ dedup_shards_previous: 16 });
    expect(ok.ok && ok.config.settings.dedupShardsPrevious).toBe(16);
    expect(ok.warnings).toContainEqual(expect.stringContaining('dedup_shards_previous: each new event is also looked for in its shard of 16'));
    const same = parse({ dedup_shards_previous: 32 });
    expect(same.ok ? [] : same.problems).toEqual(['dedup_shards_previous: must differ from dedup_shards (32); remove it when the shard count did not change']);
    const zero = parse({ dedup_shards_previous: 0 });
    expect(zero.ok ? [] : zero.problems).toEqual(['dedup_shards_previous: must be a whole number from 1 to 1024']);
    const absent = parse({});
    expect(absent.ok && absent.config.settings.dedupShardsPrevious).toBeUndefined();
  });
});
