/**
 * Slack destination: hands the event to the destination's outbox (rate
 * limit, digests, Slack retries and dead letters live there). Delivered, from
 * the consumer's point of view, once the outbox has stored it; a full outbox
 * (`max_pending` events waiting during a Slack outage) refuses it, and the
 * consumer dead-letters it with its body (`slack_backlog_full`), replayable.
 */
import type { SlackDestination } from '../../config/router-config';
import type { Delivery, DeliveryOutcome } from '../types';
import { outboxStub } from './outbox';

export async function deliverSlack(dest: SlackDestination, delivery: Delivery, env: Env): Promise<DeliveryOutcome> {
  let outcome: Awaited<ReturnType<ReturnType<typeof outboxStub>['submit']>>;
  try {
    outcome = await outboxStub(env, dest.name).submit(dest, {
      event_id: delivery.event.id,
      event_type: delivery.event.event,
      rules: delivery.rules,
      raw: delivery.raw,
    });
  } catch {
    return { ok: false, retryable: true, status: null, reason: 'slack_outbox_unavailable' };
  }
  if (outcome === 'full') return { ok: false, retryable: false, status: null, reason: 'slack_backlog_full' };
  return { ok: true, status: 202 };
}
