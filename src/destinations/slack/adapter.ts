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
import { type OutboxItem, type SubmitOutcome, outboxStub } from './outbox';

interface Waiter {
  item: OutboxItem;
  resolve: (o: SubmitOutcome) => void;
  reject: (err: unknown) => void;
}

/** Collects a batch's Slack hand-offs per destination; `flush` sends each destination's in one request. */
export class SlackHandOff {
  private readonly queued = new Map<string, { dest: SlackDestination; waiters: Waiter[] }>();
  private flushed = false;

  constructor(private readonly env: Env) {}

  /** Destinations handed over so far (each costs one subrequest at flush). */
  has(destination: string): boolean {
    return this.queued.has(destination);
  }

  submit(dest: SlackDestination, item: OutboxItem): Promise<SubmitOutcome> {
    if (this.flushed) return outboxStub(this.env, dest.name).submit(dest, item);
    return new Promise<SubmitOutcome>((resolve, reject) => {
      const slot = this.queued.get(dest.name) ?? { dest, waiters: [] };
      slot.waiters.push({ item, resolve, reject });
      this.queued.set(dest.name, slot);
    });
  }

  async flush(): Promise<void> {
    this.flushed = true;
    await Promise.all(
      [...this.queued.values()].map(async ({ dest, waiters }) => {
        try {
          const outcomes = await outboxStub(this.env, dest.name).submitMany(
            dest,
            waiters.map((w) => w.item),
          );
          waiters.forEach((w, i) => w.resolve(outcomes[i] ?? 'accepted'));
        } catch (err) {
          for (const w of waiters) w.reject(err);
        }
      }),
    );
  }
}

export async function deliverSlack(dest: SlackDestination, delivery: Delivery, env: Env, handOff?: SlackHandOff): Promise<DeliveryOutcome> {
  const item: OutboxItem = { event_id: delivery.event.id, event_type: delivery.event.event, rules: delivery.rules, raw: delivery.raw };
  let outcome: SubmitOutcome;
  try {
    outcome = await (handOff !== undefined ? handOff.submit(dest, item) : outboxStub(env, dest.name).submit(dest, item));
  } catch {
    return { ok: false, retryable: true, status: null, reason: 'slack_outbox_unavailable' };
  }
  if (outcome === 'full') return { ok: false, retryable: false, status: null, reason: 'slack_backlog_full' };
  return { ok: true, status: 202 };
}
