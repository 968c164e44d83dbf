/**
 * Out-of-order protection: per object (data.id) and family, the newest
 * created_at routed; an older event arriving later is stale, and deletions
 * win over later-arriving updates. Rules choose to deliver (marked) or drop.
 */
import { runInDurableObject } from 'cloudflare:test';
import { env } from 'cloudflare:workers';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { DedupLedger } from '../../src/dedup/ledger';
import { shardName } from '../../src/dedup/shard';
import type { RouterMessage } from '../../src/queue/message';
import { makeEvent } from '../fixtures/events';
import { runBatch, testEnv } from '../helpers/consumer';
import { postWebhook } from '../helpers/webhook';

const KEEP = 'https://keep.example.test/';
const SYNC = 'https://sync.example.test/';
const ROUTER = {
  destinations: [
    { name: 'keep', type: 'http', url: KEEP },
    { name: 'sync', type: 'http', url: SYNC },
  ],
  rules: [
    { name: 'audit-everything', events: ['dsync.user.*'], to: ['keep'] }, // stale = "deliver" (default)
    { name: 'user-sync', events: ['dsync.user.*'], to: ['sync'], stale: 'drop' },
  ],
};

let sent: RouterMessage[];
let received: { url: string; stale: string | null; id: string | null }[];

beforeEach(async () => {
  sent = [];
  received = [];
  const stub = env.DEDUP_LEDGER.get(env.DEDUP_LEDGER.idFromName(shardName(0))) as DurableObjectStub<DedupLedger>;
  await runInDurableObject(stub, (instance) => {
    const queue = (instance as unknown as { env: Env }).env.EVENTS_QUEUE;
    vi.spyOn(queue, 'send').mockImplementation(async (body) => {
      sent.push(body as RouterMessage);
      return { metadata: { metrics: { backlogCount: 0, backlogBytes: 0, oldestMessageTimestamp: 0 } } } as never;
    });
  });
  vi.spyOn(globalThis, 'fetch').mockImplementation(async (input, init) => {
    const req = new Request(input as RequestInfo, init);
    received.push({ url: req.url, stale: req.headers.get('x-workos-stale'), id: req.headers.get('x-workos-event-id') });
    return new Response('ok');
  });
});
afterEach(() => vi.restoreAllMocks());

function userEvent(type: 'dsync.user.updated' | 'dsync.user.deleted' | 'dsync.user.created', userId: string, createdAt: string) {
  const e = makeEvent(type, { created_at: createdAt });
  (e.data as { id: string }).id = userId;
  return e;
}

async function accept(e: object): Promise<RouterMessage> {
  const res = await postWebhook(e);
  expect(res.status).toBe(200);
  expect(((await res.json()) as { status: string }).status).toBe('accepted');
  return sent.at(-1) as RouterMessage;
}

describe('out-of-order protection', () => {
  it('an older dsync.user.updated after a newer one is flagged: delivered marked to "deliver" rules, dropped by "drop" rules', async () => {
    const user = `directory_user_${crypto.randomUUID()}`;
    const newer = await accept(userEvent('dsync.user.updated', user, '2026-11-20T10:00:05.000Z'));
    const older = await accept(userEvent('dsync.user.updated', user, '2026-11-20T10:00:01.000Z'));
    expect(newer.stale).toBeUndefined();
    expect(older.stale).toBe(true);

    await runBatch([newer, older], testEnv(ROUTER));
    expect(received.filter((r) => r.id === newer.id).map((r) => [r.url, r.stale])).toEqual(
      expect.arrayContaining([
        [KEEP, null],
        [SYNC, null],
      ]),
    );
    expect(received.filter((r) => r.id === older.id).map((r) => [r.url, r.stale])).toEqual([[KEEP, 'true']]);
  });

  it('dsync.user.deleted then an older dsync.user.updated never resurrects the user downstream', async () => {
    const user = `directory_user_${crypto.randomUUID()}`;
    const deleted = await accept(userEvent('dsync.user.deleted', user, '2026-11-20T11:00:00.000Z'));
    const lateUpdate = await accept(userEvent('dsync.user.updated', user, '2026-11-20T10:59:00.000Z'));
    // Deletions win even over an update stamped later that arrives after them.
    const laterUpdate = await accept(userEvent('dsync.user.updated', user, '2026-11-20T11:00:30.000Z'));
    expect(deleted.stale).toBeUndefined();
    expect(lateUpdate.stale).toBe(true);
    expect(laterUpdate.stale).toBe(true);
    await runBatch([deleted, lateUpdate, laterUpdate], testEnv(ROUTER));
    const toSync = received.filter((r) => r.url === SYNC).map((r) => r.id);
    expect(toSync).toEqual([deleted.id]);
  });

  it('in-order events and other objects are not stale', async () => {
    const a = `directory_user_${crypto.randomUUID()}`;
    const b = `directory_user_${crypto.randomUUID()}`;
    const m1 = await accept(userEvent('dsync.user.created', a, '2026-11-20T09:00:00.000Z'));
    const m2 = await accept(userEvent('dsync.user.updated', a, '2026-11-20T09:00:01.000Z'));
    const m3 = await accept(userEvent('dsync.user.updated', b, '2026-11-20T08:00:00.000Z'));
    expect([m1.stale, m2.stale, m3.stale]).toEqual([undefined, undefined, undefined]);
  });

  it('tracking expires with the ledger retention (swept by the alarm)', async () => {
    const user = `directory_user_${crypto.randomUUID()}`;
    await accept(userEvent('dsync.user.updated', user, '2026-11-20T10:00:05.000Z'));
    // Find the shard holding the object and age its row past retention.
    let swept = false;
    for (let i = 0; i < 16 && !swept; i++) {
      const stub = env.DEDUP_LEDGER.get(env.DEDUP_LEDGER.idFromName(shardName(i))) as DurableObjectStub<DedupLedger>;
      swept = await runInDurableObject(stub, async (instance, state) => {
        const n = state.storage.sql.exec('UPDATE objects SET expires_at = 0 WHERE key = ?', `dsync.user:${user}`).rowsWritten;
        if (n > 0) await instance.alarm();
        return n > 0;
      });
    }
    expect(swept).toBe(true);
    const again = await accept(userEvent('dsync.user.updated', user, '2026-11-20T10:00:01.000Z'));
    expect(again.stale).toBeUndefined();
  });
});
