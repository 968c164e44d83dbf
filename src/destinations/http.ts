/**
 * HTTP destination: POSTs the exact bytes WorkOS sent, re-signed in the
 * WorkOS scheme with the destination's own secret and a fresh timestamp, so
 * the receiving service keeps verifying with the official WorkOS SDK.
 */
import type { HttpDestination } from '../config/router-config';
import { signWorkOSPayload } from '../webhook/signature';
import { type Delivery, type DeliveryOutcome, fetchWithTimeout, isRetryableStatus, parseRetryAfter } from './types';

export const USER_AGENT = 'workos-event-router/0.1 (+https://github.com/)';

export async function deliverHttp(dest: HttpDestination, delivery: Delivery): Promise<DeliveryOutcome> {
  const headers: Record<string, string> = {
    ...dest.headers,
    'Content-Type': 'application/json',
    'User-Agent': USER_AGENT,
    'X-WorkOS-Event-Id': delivery.event.id,
    'X-WorkOS-Event': delivery.event.event,
    'Idempotency-Key': delivery.event.id,
  };
  if (delivery.stale === true) headers['X-WorkOS-Stale'] = 'true';
  // An operator's replay (same Idempotency-Key): a receiver that drops repeats by key can let it through.
  if (delivery.replay === true) headers['X-WorkOS-Replay'] = 'true';
  if (dest.signingSecret !== undefined) headers['WorkOS-Signature'] = await signWorkOSPayload(dest.signingSecret, delivery.raw);
  const sent = await fetchWithTimeout(dest.url, { method: 'POST', headers, body: delivery.raw }, dest.timeoutMs);
  if (!sent.ok) return sent.outcome;
  const res = sent.response;
  // Drain the body so the connection can be reused; its content is not needed.
  await res.body?.cancel().catch(() => undefined);
  if (res.status >= 200 && res.status < 300) return { ok: true, status: res.status };
  const retryable = isRetryableStatus(res.status);
  const outcome: DeliveryOutcome = {
    ok: false,
    retryable,
    status: res.status,
    reason: res.status >= 300 && res.status < 400 ? 'redirect_not_followed' : `http_${res.status}`,
  };
  const retryAfter = retryable ? parseRetryAfter(res.headers.get('retry-after')) : undefined;
  if (retryAfter !== undefined) outcome.retryAfterSeconds = retryAfter;
  return outcome;
}
