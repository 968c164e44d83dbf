/**
 * Defect 1 of the delivery-promises issue: events of about 100–128 KB were
 * refused (503 on every WorkOS retry) because the inline/reference decision
 * looked at the raw body, not at the serialised queue message in which every
 * `"` and `\` is escaped. Every size below goes through the real local queue
 * and the real consumer and must arrive byte-identical, exactly once.
 */
import { runInDurableObject } from 'cloudflare:test';
import { env } from 'cloudflare:workers';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { ledgerShardOf, ledgerStubByName } from '../../src/dedup/shard';
import type { UnknownEvent } from '../../src/events/catalog';
import { INLINE_MESSAGE_LIMIT, QUEUE_MESSAGE_LIMIT } from '../../src/queue/message';
import { deadLettersFor, watchLogs } from '../helpers/observe';
import { Sink } from '../helpers/sink';
import { until } from '../helpers/until';
import { postWebhook, sampleEvent } from '../helpers/webhook';
import { BIG } from './router';

const sink = new Sink();
beforeEach(() => sink.reset().install());
afterEach(() => vi.restoreAllMocks());

/** A signed-able event whose JSON text is exactly `bytes` long, half of it quotes and backslashes. */
function eventOfSize(type: string, bytes: number): { event: Record<string, unknown>; text: string } {
  const event = sampleEvent({ event: type, data: { id: `conn_${crypto.randomUUID()}`, object: 'connection', blob: '' } });
  const base = JSON.stringify(event).length;
  const unit = 'q"\\'; // serialises to 5 characters: q \" \\
  const units = Math.max(0, Math.floor((bytes - base - 4) / 5));
  const blob = unit.repeat(units) + 'x'.repeat(bytes - base - units * 5);
  (event.data as Record<string, unknown>).blob = blob;
  const text = JSON.stringify(event);
  expect(text.length).toBe(bytes);
  return { event, text };
}

const bytesOf = (v: unknown) => new TextEncoder().encode(JSON.stringify(v)).byteLength;

/**
 * The size of the queue message carrying this event inline, as the ledger builds it (the fields it sets, at their
 * sizes; exact to a few bytes, which the tests' 1,500-byte distances absorb).
 */
const inlineMessageBytes = (e: { event: Record<string, unknown>; text: string }) =>
  bytesOf({ v: 1, id: e.event.id, type: e.event.event, created_at: e.event.created_at, source: 'webhook', accepted_at: Date.now(), ledger_shard: 'ledger-15', body: e.text });

/** An escaped-heavy event whose queue message, carrying it inline, would be about `target` bytes. */
function eventWithMessageNear(target: number): { event: Record<string, unknown>; text: string } {
  let lo = 1_000;
  let hi = target;
  while (hi - lo > 10) {
    const mid = Math.floor((lo + hi) / 2);
    if (inlineMessageBytes(eventOfSize('connection.activated', mid)) <= target) lo = mid;
    else hi = mid;
  }
  const found = eventOfSize('connection.activated', lo);
  expect(Math.abs(inlineMessageBytes(found) - target)).toBeLessThan(100);
  return found;
}

/**
 * Posts the event through the webhook endpoint and returns the body its ledger shard keeps apart for a message that
 * refers to it instead of carrying it (the `bodies` table; null: the message carries it inline).
 */
async function admitted(event: Record<string, unknown>, text: string): Promise<string | null> {
  const res = await postWebhook(text);
  expect(await res.json()).toEqual({ status: 'accepted', id: event.id });
  const shard = ledgerStubByName(env, ledgerShardOf(event as unknown as UnknownEvent, 16));
  return runInDurableObject(shard, (_instance, state) =>
    state.storage.sql.exec<{ body: string }>('SELECT body FROM bodies WHERE id = ?', event.id as string).toArray()[0]?.body ?? null,
  );
}

/** Sends a small event after the others and waits for it: the queue has moved past everything sent before. */
async function drained(): Promise<void> {
  const sentinel = sampleEvent({ event: 'connection.activated', data: { id: `conn_${crypto.randomUUID()}`, object: 'connection' } });
  expect((await postWebhook(sentinel)).status).toBe(200);
  await sink.until(() => sink.about(sentinel.id as string, BIG).length === 1, 'the sentinel event');
}

describe('events near and over the queue message limit', () => {
  const sizes = [100, 112, 119, 124, 127, 128, 140, 300].map((kb) => kb * 1000);

  it('accepts each size and delivers it byte-identical, once, through the real queue', async () => {
    const sent = sizes.map((bytes) => eventOfSize('connection.activated', bytes));
    for (const { text } of sent) {
      const res = await postWebhook(text);
      expect(res.status, `a ${text.length}-byte event`).toBe(200);
      expect(((await res.json()) as { status: string }).status).toBe('accepted');
    }
    for (const { event, text } of sent) {
      await sink.until(() => sink.about(event.id as string, BIG).length > 0, `delivery of the ${text.length}-byte event`);
    }
    await drained();
    for (const { event, text } of sent) {
      const got = sink.about(event.id as string, BIG);
      expect(got, `deliveries of the ${text.length}-byte event`).toHaveLength(1);
      expect(got[0]?.body === text, `the ${text.length}-byte event arrives byte-identical`).toBe(true);
    }
  });

  it('decides inline vs. reference on the serialised message, with the stated margin', async () => {
    expect(QUEUE_MESSAGE_LIMIT).toBe(128_000);
    expect(INLINE_MESSAGE_LIMIT).toBe(120_000);
    // Both events are far under 120,000 bytes raw, half quotes and backslashes: serialised into a message, they
    // land 1,500 bytes either side of 120,000, both under the platform's 128,000.
    const inline = eventWithMessageNear(INLINE_MESSAGE_LIMIT - 1_500);
    const ref = eventWithMessageNear(INLINE_MESSAGE_LIMIT + 1_500);
    expect(ref.text.length).toBeLessThan(INLINE_MESSAGE_LIMIT - 40_000);

    // The messages either side of the margin, carrying their event inline.
    expect(inlineMessageBytes(inline)).toBeLessThanOrEqual(INLINE_MESSAGE_LIMIT);
    // Inline, the larger one would have been over the margin, though the queue would still have taken it.
    const wouldBe = inlineMessageBytes(ref);
    expect(wouldBe).toBeGreaterThan(INLINE_MESSAGE_LIMIT);
    expect(wouldBe).toBeLessThanOrEqual(QUEUE_MESSAGE_LIMIT);

    // The smaller goes inline: its ledger shard keeps no body. The larger goes by reference: its shard keeps it.
    expect(await admitted(inline.event, inline.text)).toBeNull();
    expect(await admitted(ref.event, ref.text)).toBe(ref.text);

    // Either way, the real consumer delivers it byte-identical.
    for (const { event, text } of [inline, ref]) {
      await sink.until(() => sink.about(event.id as string, BIG).length > 0, `delivery of the ${text.length}-byte event`);
      expect(sink.about(event.id as string, BIG)[0]?.body === text).toBe(true);
    }
  });

  it('a queue destination refuses an event over 128,000 bytes as message_too_large (permanent), and takes one just under', async () => {
    const logs = watchLogs();
    const over = eventOfSize('api_key.created', 129_000); // between 128,000 and 130,048: was retried as a send failure
    const under = eventOfSize('api_key.created', 127_000);
    expect((await postWebhook(over.text)).status).toBe(200);
    expect((await postWebhook(under.text)).status).toBe(200);
    const overId = over.event.id as string;
    const underId = under.event.id as string;
    await sink.until(() => sink.about(overId, BIG).length === 1 && sink.about(underId, BIG).length === 1, 'both events at the HTTP destination');
    await sink.until(() => logs.about(underId, 'delivered').some((r) => r.destination === 'audit'), 'the smaller event delivered to the queue');
    // A batch stores its dead letters after its deliveries: wait for the record, not for the other event's log line.
    await until(async () => (await deadLettersFor(overId)).length > 0, 'the larger event dead-lettered', 15_000, 100);
    const dead = await deadLettersFor(overId);
    expect(dead).toHaveLength(1);
    expect(dead[0]).toMatchObject({ destination: 'audit', reason: 'message_too_large', attempts: 1 });
    await drained(); // every batch before the sentinel's has stored its dead letters
    expect(await deadLettersFor(underId)).toEqual([]);
  });

  it('measured on what is sent: a 36 KB event whose numbers grow when re-serialised (1e20 → 100000000000000000000) past 128,000 bytes is message_too_large at once, not a send failure retried', async () => {
    const event = sampleEvent({ event: 'api_key.created', data: { id: `api_key_${crypto.randomUUID()}`, object: 'api_key', name: 'grows' } });
    const text = JSON.stringify(event).replace('"name":"grows"', `"name":"grows","counts":[${Array(6_500).fill('1e20').join(',')}]`);
    expect(text.length).toBeLessThan(40_000);
    expect(bytesOf(JSON.parse(text))).toBeGreaterThan(128_000);
    expect((await postWebhook(text)).status).toBe(200);
    const id = event.id as string;
    await until(async () => (await deadLettersFor(id)).length > 0, 'the event dead-lettered for the queue destination', 15_000, 100);
    expect(await deadLettersFor(id)).toMatchObject([{ destination: 'audit', reason: 'message_too_large', attempts: 1 }]);
  });
});
