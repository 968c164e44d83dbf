/**
 * Slack destination: POSTs a Block Kit message to an incoming webhook.
 * 200 `ok` is delivered; 429 honours Retry-After; Slack's 4xx answers
 * (`invalid_payload`, `no_service`, `channel_is_archived`, …) are permanent
 * and dead-lettered with Slack's reason; 5xx and timeouts are retried.
 */
import type { SlackDestination } from '../../config/router-config';
import { Matcher } from '../../routing/matcher';
import { type Delivery, type DeliveryOutcome, fetchWithTimeout, isRetryableStatus, parseRetryAfter } from '../types';
import { type SlackMessage, formatSlackMessage } from './format';
import { outboxStub } from './outbox';

export function buildSlackMessage(dest: SlackDestination, delivery: Delivery): SlackMessage {
  const rule = delivery.rules.join(', ');
  const ctx: Parameters<typeof formatSlackMessage>[1] = { rule, destination: dest.name };
  if (dest.title !== undefined) ctx.title = dest.title;
  const mention = mentionFor(dest, delivery.rules, delivery.event.event);
  if (mention !== undefined) ctx.mention = mention;
  return formatSlackMessage(delivery.event, ctx);
}

export function mentionFor(dest: SlackDestination, rules: readonly string[], type: string): string | undefined {
  const m = dest.mention;
  if (m === undefined) return undefined;
  if (m.rules.length === 0 && m.events.length === 0) return m.text;
  if (m.rules.some((r) => rules.includes(r))) return m.text;
  if (m.events.length > 0 && m.events.some((p) => Matcher.namesMatch([p], type))) return m.text;
  return undefined;
}

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

/**
 * Hands the event to the destination's outbox (rate limit, digests, Slack
 * retries and dead letters live there). Delivered, from the consumer's point
 * of view, once the outbox has stored it.
 */
export async function deliverSlack(dest: SlackDestination, delivery: Delivery, env: Env): Promise<DeliveryOutcome> {
  try {
    await outboxStub(env, dest.name).submit(dest, {
      event_id: delivery.event.id,
      event_type: delivery.event.event,
      rules: delivery.rules,
      raw: delivery.raw,
    });
    return { ok: true, status: 202 };
  } catch {
    return { ok: false, retryable: true, status: null, reason: 'slack_outbox_unavailable' };
  }
}

/** Slack answers errors as a short snake_case word (`invalid_payload`); keep only that. */
function slackReason(status: number, body: string): string {
  const word = status < 500 && /^[a-z0-9_]{1,64}$/.test(body) ? body : `http_${status}`;
  return `slack_${word}`;
}
