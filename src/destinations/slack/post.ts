/**
 * Posting one Block Kit message to a Slack incoming webhook. 200 `ok` is
 * delivered; 429 honours Retry-After; Slack's 4xx answers (`invalid_payload`,
 * `no_service`, `channel_is_archived`, …) are permanent and carry Slack's
 * reason; 5xx and timeouts are retryable.
 */
import type { SlackDestination } from '../../config/router-config';
import { type DeliveryOutcome, fetchWithTimeout, isRetryableStatus, parseRetryAfter } from '../types';
import type { SlackMessage } from './format';

export async function postToSlack(dest: SlackDestination, message: SlackMessage): Promise<DeliveryOutcome> {
  const sent = await fetchWithTimeout(
    dest.url,
    { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(message) },
    dest.timeoutMs,
  );
  if (!sent.ok) return sent.outcome;
  const res = sent.response;
  const text = (await res.text().catch(() => '')).trim();
  if (res.status >= 200 && res.status < 300) return { ok: true, status: res.status };
  const retryable = isRetryableStatus(res.status);
  const outcome: DeliveryOutcome = { ok: false, retryable, status: res.status, reason: slackReason(res.status, text) };
  const retryAfter = res.status === 429 ? parseRetryAfter(res.headers.get('retry-after')) : undefined;
  if (retryAfter !== undefined) outcome.retryAfterSeconds = retryAfter;
  return outcome;
}

/** Slack answers errors as a short snake_case word (`invalid_payload`); keep only that. */
function slackReason(status: number, body: string): string {
  const word = status < 500 && /^[a-z0-9_]{1,64}$/.test(body) ? body : `http_${status}`;
  return `slack_${word}`;
}
