/**
 * Slack destination: hands the event to the destination's outbox (rate
 * limit, digests, Slack retries and dead letters live there). Delivered, from
 * the consumer's point of view, once the outbox has stored it; a full outbox
 * (`max_pending` events waiting during a Slack outage) refuses it, and the
 * consumer dead-letters it with its body (`slack_backlog_full`), replayable.
 *
 * Within one consumer invocation the events for one Slack destination are
 * handed over together (`SlackHandOff`): one outbox request per destination
 * per batch, not one per event.
 */
import type { SlackDestination } from '../../config/router-config';
import type { Delivery, DeliveryOutcome } from '../types';
import { HandOffBatch } from '../hand-off';
import { type OutboxItem, type OutboxMarks, type SubmitOutcome, outboxStub } from './outbox';

/** A batch's Slack hand-offs: one `submitMany` per outbox. */
export class SlackHandOff extends HandOffBatch<{ dest: SlackDestination; item: OutboxItem }, SubmitOutcome> {
  constructor(env: Env) {
    super((name, entries) => outboxStub(env, name).submitMany((entries[0] as { dest: SlackDestination }).dest, entries.map((e) => e.item)));
  }
}

export async function deliverSlack(dest: SlackDestination, delivery: Delivery, env: Env, handOff?: SlackHandOff): Promise<DeliveryOutcome> {
  const item: OutboxItem = { event_id: delivery.event.id, event_type: delivery.event.event, rules: delivery.rules, raw: delivery.raw };
  if (delivery.replay === true) item.replay = true;
  const marks: OutboxMarks = {};
  if (delivery.stale === true) marks.stale = true;
  if (delivery.source !== undefined) marks.source = delivery.source;
  if (delivery.ledger_shard !== undefined) marks.ledger_shard = delivery.ledger_shard;
  if (Object.keys(marks).length > 0) item.marks = marks;
  let outcome: SubmitOutcome;
  try {
    outcome = await (handOff !== undefined ? handOff.submit(dest.name, { dest, item }) : outboxStub(env, dest.name).submit(dest, item));
  } catch {
    return { ok: false, retryable: true, status: null, reason: 'slack_outbox_unavailable' };
  }
  if (outcome === 'full') return { ok: false, retryable: false, status: null, reason: 'slack_backlog_full' };
  return { ok: true, status: 202 };
}
