/**
 * Defect 1 of the delivery-promises issue: events of about 100–128 KB were
 * refused (503 on every WorkOS retry) because the inline/reference decision
 * looked at the raw body, not at the serialised queue message in which every
 * `"` and `\` is escaped. Every size below goes through the real local queue
 * and the real consumer and must arrive byte-identical, exactly once.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
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

  it('decides inline vs. reference on the serialised message, with the stated margin', () => {
    expect(QUEUE_MESSAGE_LIMIT).toBe(128_000);
    expect(INLINE_MESSAGE_LIMIT).toBe(120_000);
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
});
