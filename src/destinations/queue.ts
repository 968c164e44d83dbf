/**
 * Queue destination: sends the WorkOS envelope (as JSON) to a producer binding.
 * Messages are limited to 128 KB: a larger event fails permanently and is
 * dead-lettered with reason `message_too_large` (route large events over HTTP).
 */
import type { QueueDestination } from '../config/router-config';
import { bindingNamed } from '../env';
import type { Delivery, DeliveryOutcome } from './types';

const QUEUE_MESSAGE_LIMIT = 128 * 1024;

export async function deliverQueue(dest: QueueDestination, delivery: Delivery, env: Env): Promise<DeliveryOutcome> {
  const binding = bindingNamed(env, dest.queue);
  if (!isQueue(binding)) return { ok: false, retryable: false, status: null, reason: 'queue_binding_missing' };
  if (new TextEncoder().encode(delivery.raw).byteLength > QUEUE_MESSAGE_LIMIT - 1024) {
    return { ok: false, retryable: false, status: null, reason: 'message_too_large' };
  }
  const body: Record<string, unknown> = { ...delivery.event };
  if (delivery.stale === true) body.stale = true;
  try {
    await binding.send(body, { contentType: 'json' });
    return { ok: true, status: 200 };
  } catch {
    return { ok: false, retryable: true, status: null, reason: 'queue_send_failed' };
  }
}

function isQueue(v: unknown): v is Queue {
  return typeof v === 'object' && v !== null && typeof (v as { send?: unknown }).send === 'function';
}
