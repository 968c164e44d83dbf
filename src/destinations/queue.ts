/**
 * Queue destination: sends the WorkOS envelope (as JSON) to a producer binding.
 * Messages are limited to 128,000 bytes: a larger event fails permanently and is
 * dead-lettered with reason `message_too_large` (route large events over HTTP).
 */
import { type QueueDestination, isQueueBinding } from '../config/router-config';
import { bindingNamed } from '../env';
import { QUEUE_MESSAGE_LIMIT, utf8Length } from '../queue/message';
import type { Delivery, DeliveryOutcome } from './types';

export async function deliverQueue(dest: QueueDestination, delivery: Delivery, env: Env): Promise<DeliveryOutcome> {
  const binding = bindingNamed(env, dest.queue);
  if (!isQueueBinding(binding)) return { ok: false, retryable: false, status: null, reason: 'queue_binding_missing' };
  const body: Record<string, unknown> = { ...delivery.event };
  if (delivery.stale === true) body.stale = true;
  // Measured on what is sent (the envelope re-serialised, plus `stale`), against the platform limit in bytes.
  // A body under a sixth of the limit in UTF-16 units cannot reach it: re-serialised, a unit of the body takes at
  // most 3 bytes (a character) or 5.25 (`1e20` is written 100000000000000000000): skip measuring.
  if (delivery.raw.length * 6 + 64 > QUEUE_MESSAGE_LIMIT && utf8Length(JSON.stringify(body)) > QUEUE_MESSAGE_LIMIT) {
    return { ok: false, retryable: false, status: null, reason: 'message_too_large' };
  }
  try {
    await (binding as Queue).send(body, { contentType: 'json' });
    return { ok: true, status: 200 };
  } catch {
    return { ok: false, retryable: true, status: null, reason: 'queue_send_failed' };
  }
}
