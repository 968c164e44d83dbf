/**
 * The ledger writes one row per accepted event, after the enqueue (issue 15:
 * one write per accepted event). These tests are the proof that dropping the
 * persisted claim that used to precede the enqueue weakens nothing:
 *
 * - a crash AFTER the enqueue and before the row: the retry is enqueued again
 *   (at-least-once). With a persisted claim the retry is enqueued again too,
 *   only later, once the claim's lease has run out (the legacy-claim test in
 *   ingest-integration.test.ts shows that path); either way two messages.
 * - a crash BEFORE the enqueue: nothing was written, so the retry is accepted
 *   at once (a claim would have made it wait for its lease, answering 409).
 * - a failed enqueue writes no row; a large event's body stays (the queue may
 *   have stored the message it reported failed, and that message needs it).
 * - concurrent copies inside one object still make exactly one message (they
 *   wait in the id's lane for the first one's outcome): ingest-integration's
 *   "50 simultaneous deliveries of one id" test.
 *
 * The crash is the runtime's own: `ctx.abort()` resets the object mid-request,
 * losing its memory and every write it had not made yet. The queue send is
 * stubbed only to place that crash (or, once, a failed send) around it; what
 * was enqueued is counted where it ends up: the router's own consumer takes
 * it from the real local queue and delivers it to crm (played by the sink).
 * A count that must not grow is read after a later sentinel event has been
 * delivered.
 */
import { runInDurableObject } from 'cloudflare:test';
import { env } from 'cloudflare:workers';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { DedupLedger } from '../../src/dedup/ledger';
import { shardKeyOf, shardName, shardOf } from '../../src/dedup/shard';
import type { RouterMessage } from '../../src/queue/message';
import { Sink } from '../helpers/sink';
import { postWebhook, sampleEvent as baseSample } from '../helpers/webhook';
import { BIG, CRM } from './router';
import { deadLettersFor } from '../helpers/observe';

const sink = new Sink();
beforeEach(() => sink.reset().install());
afterEach(() => vi.restoreAllMocks());

function sampleEvent(): Record<string, unknown> {
  return baseSample({ data: { id: `user_${crypto.randomUUID()}`, email: 'crash@example.com', object: 'user' } });
}

function ledgerFor(event: Record<string, unknown>): DurableObjectStub<DedupLedger> {
  return env.DEDUP_LEDGER.get(env.DEDUP_LEDGER.idFromName(shardName(shardOf(shardKeyOf(event as never), 16)))) as DurableObjectStub<DedupLedger>;
}

/** The ledger's rows about the event, in every table (its day table, and the older releases' `ledger`). */
async function ledgerRows(event: Record<string, unknown>): Promise<{ state: string }[]> {
  return runInDurableObject(ledgerFor(event), (_i, state) => rowsAbout(state.storage.sql, event.id as string));
}

function rowsAbout(sql: SqlStorage, id: string): { state: string }[] {
  const tables = sql.exec<{ name: string }>("SELECT name FROM sqlite_master WHERE type = 'table' AND (name = 'ledger' OR name GLOB 'ledger_d[0-9]*')").toArray();
  return tables.flatMap((t) => sql.exec<{ state: string }>(`SELECT state FROM ${t.name} WHERE id = ?`, id).toArray());
}

/**
 * Crashes the event's ledger shard around its first send about the event:
 * just before it ('before') or right after it succeeded ('after'). Every
 * other send goes through to the real queue untouched.
 */
async function crashAroundFirstSend(event: Record<string, unknown>, when: 'before' | 'after'): Promise<void> {
  await runInDurableObject(ledgerFor(event), (instance, state) => {
    const queue = (instance as unknown as { env: Env }).env.EVENTS_QUEUE;
    const send = queue.send.bind(queue);
    let crashed = false;
    vi.spyOn(queue, 'send').mockImplementation(async (body, options) => {
      if ((body as RouterMessage).id !== event.id || crashed) return send(body, options);
      crashed = true;
      if (when === 'before') state.abort('simulated crash before the enqueue');
      const result = await send(body, options);
      state.abort('simulated crash after the enqueue');
      return result;
    });
  });
}

/** The event's deliveries to crm: one per message the ledger enqueued about it. */
const atCrm = (event: Record<string, unknown>) => sink.about(event.id as string, CRM).length;

/** Waits until `n` messages about the event have been delivered, then until a later event has been too (so no more are coming). */
async function deliveredExactly(event: Record<string, unknown>, n: number): Promise<void> {
  await sink.until(() => atCrm(event) >= n, `${n} deliveries of the event`, 20_000);
  const later = sampleEvent();
  expect((await postWebhook(later)).status).toBe(200);
  await sink.until(() => atCrm(later) === 1, 'the sentinel event at crm', 20_000);
  expect(atCrm(event)).toBe(n);
}

describe('ledger: one row per accepted event, written after the enqueue', () => {
  it('crash after the enqueue, before the row: the retry is enqueued again (at-least-once), and the next copy is a duplicate', async () => {
    const event = sampleEvent();
    await crashAroundFirstSend(event, 'after');
    const first = await postWebhook(event);
    expect(first.status).toBe(503);
    expect(await first.json()).toMatchObject({ error: 'temporarily_unavailable' });
    expect(await ledgerRows(event)).toEqual([]);
    await sink.until(() => atCrm(event) === 1, 'the message enqueued before the crash, delivered', 20_000);

    expect(await (await postWebhook(event)).json()).toEqual({ status: 'accepted', id: event.id });
    expect(await ledgerRows(event)).toEqual([{ state: 'committed' }]);
    expect(await (await postWebhook(event)).json()).toEqual({ status: 'duplicate', id: event.id });
    await deliveredExactly(event, 2);
  });

  it('crash before the enqueue: nothing was written, the retry is accepted at once and enqueued once', async () => {
    const event = sampleEvent();
    await crashAroundFirstSend(event, 'before');
    expect((await postWebhook(event)).status).toBe(503);
    expect(await ledgerRows(event)).toEqual([]);
    expect(await (await postWebhook(event)).json()).toEqual({ status: 'accepted', id: event.id });
    // One row, in its final state: nothing was written before the enqueue, nothing after but the record.
    expect(await ledgerRows(event)).toEqual([{ state: 'committed' }]);
    // One message: the crashed attempt enqueued nothing.
    await deliveredExactly(event, 1);
  });

  it('a failed enqueue leaves no row and no stored body', async () => {
    const event = sampleEvent();
    await runInDurableObject(ledgerFor(event), (instance) => {
      const queue = (instance as unknown as { env: Env }).env.EVENTS_QUEUE;
      vi.spyOn(queue, 'send').mockRejectedValueOnce(new Error('queue down'));
    });
    expect((await postWebhook(event)).status).toBe(503);
    const left = await runInDurableObject(ledgerFor(event), (_i, state) => ({
      ledger: rowsAbout(state.storage.sql, event.id as string).length,
      bodies: state.storage.sql.exec('SELECT 1 FROM bodies WHERE id = ?', event.id as string).toArray().length,
    }));
    expect(left).toEqual({ ledger: 0, bodies: 0 });
    await deliveredExactly(event, 0);
  });

  it('a large event whose send the queue stored but reported failed: its body stays for that message, which delivers it (the body was deleted and the message dead-lettered body_expired)', async () => {
    // Over the inline limit: the message carries a reference to the body kept in the ledger.
    const event = baseSample({ event: 'connection.activated', data: { id: `conn_${crypto.randomUUID()}`, object: 'connection', blob: 'x'.repeat(150_000) } });
    await runInDurableObject(ledgerFor(event), (instance) => {
      const queue = (instance as unknown as { env: Env }).env.EVENTS_QUEUE;
      const real = queue.send.bind(queue);
      vi.spyOn(queue, 'send').mockImplementationOnce(async (message, options) => {
        await real(message, options);
        throw new Error('reported failed after it was stored');
      });
    });
    expect((await postWebhook(event)).status).toBe(503);
    // Not accepted (WorkOS retries it), but the message the queue kept is delivered, body and all.
    await sink.until(() => sink.about(event.id as string, BIG).length > 0, 'the stored message delivered');
    expect(sink.about(event.id as string, BIG)[0]?.body === JSON.stringify(event)).toBe(true);
    expect(await deadLettersFor(event.id as string)).toEqual([]);
  });
});
