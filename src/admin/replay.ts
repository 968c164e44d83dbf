/**
 * Replaying one dead letter: its event goes back through the normal delivery
 * path (fresh attempts). Shared by the single replay (admin route) and bulk
 * replay jobs (run by the dead-letter store). This function only enqueues:
 * taking the record out of the store, and putting it back when the outcome
 * says so, is the caller's part.
 *
 * - A record of an event reconciliation could never enqueue
 *   (`reconcile_enqueue_failed`) was never accepted: it is admitted through
 *   the dedup ledger like a webhook, so a copy that arrived meanwhile is not
 *   delivered twice (`duplicate`).
 * - A record the router itself could not route (`(router)`) is routed again
 *   by the rules in force when the consumer reads it.
 * - Any other record goes to its own destination only, with its rules, its
 *   `stale` mark and its `source` — when the configuration still has that
 *   destination (else the consumer could only dead-letter it again).
 * - A body too large for a queue message is kept in the event's ledger shard
 *   and the message carries a reference.
 */
import type { RouterConfig } from '../config/router-config';
import { RECONCILE_ENQUEUE_FAILED, ROUTER_DESTINATION, type DeadLetterRecord } from '../deadletters/store';
import { ledgerStub, shardKeyOf } from '../dedup/shard';
import type { UnknownEvent } from '../events/catalog';
import { admitEvent } from '../ingest/admit';
import { errorName } from '../log';
import { INLINE_MESSAGE_LIMIT, type RouterMessage, fitsInline, utf8Length } from '../queue/message';
import { envelopeProblem } from '../webhook/envelope';

export type ReplayOutcome =
  /** Enqueued: the record can leave the store. */
  | { status: 'replayed' }
  /** Admitted through the ledger, which already had the event: nothing to deliver; the record can leave the store. */
  | { status: 'duplicate' }
  /**
   * Keep the record: it holds no event to replay (no body, a body that is not
   * a WorkOS event), or its destination is no longer configured.
   */
  | { status: 'not_replayable'; why: 'no_event' | 'destination_removed' }
  /** The queue or the ledger failed: keep the record; try again later. `error` is a class name, never a payload. */
  | { status: 'unavailable'; error: string };

export async function replayRecord(env: Env, config: RouterConfig, record: DeadLetterRecord): Promise<ReplayOutcome> {
  const settings = config.settings;
  let parsed: unknown;
  try {
    parsed = JSON.parse(record.body);
  } catch {
    return { status: 'not_replayable', why: 'no_event' };
  }
  if (envelopeProblem(parsed) !== null) return { status: 'not_replayable', why: 'no_event' };
  const event = parsed as UnknownEvent;
  const bodyBytes = utf8Length(record.body);
  if (record.reason === RECONCILE_ENQUEUE_FAILED) {
    const result = await admitEvent(env, config, event, record.body, bodyBytes, record.source ?? 'reconcile');
    if (result.status === 'accepted') return { status: 'replayed' };
    if (result.status === 'duplicate') return { status: 'duplicate' };
    return { status: 'unavailable', error: result.status };
  }
  if (record.destination !== ROUTER_DESTINATION && !config.destinations.has(record.destination)) return { status: 'not_replayable', why: 'destination_removed' };
  try {
    const message: RouterMessage = {
      v: 1,
      id: record.event_id,
      type: record.event_type,
      created_at: event.created_at,
      source: record.source ?? 'webhook',
      accepted_at: Date.now(),
      replay: true,
    };
    if (record.destination !== ROUTER_DESTINATION) message.pending = { [record.destination]: { attempts: 0, rules: record.rules } };
    if (record.stale === true) message.stale = true;
    if (!fitsInline(message, record.body, bodyBytes)) {
      const { name, stub } = ledgerStub(env, shardKeyOf(event), settings.dedupShards);
      const until = Date.now() + settings.dedupRetentionDays * 86_400_000;
      await stub.storeBody(record.event_id, record.body, until);
      message.body_ref = { shard: name, until };
    } else {
      message.body = record.body;
      if (record.ledger_shard !== undefined) message.ledger_shard = record.ledger_shard;
    }
    await env.EVENTS_QUEUE.send(message, { contentType: 'json' });
    return { status: 'replayed' };
  } catch (err) {
    return { status: 'unavailable', error: errorName(err).split(':')[0] ?? 'Error' };
  }
}

/**
 * Subrequests one replay may make, at most: the ledger admission; or the
 * queue send, plus storing the body first when it may not travel inline
 * (decided without building the message: a body that could need more than
 * half of a queue message counts two).
 */
export function replaySubrequests(record: Pick<DeadLetterRecord, 'reason' | 'body'>): number {
  if (record.reason === RECONCILE_ENQUEUE_FAILED) return 1;
  return utf8Length(record.body) * 2 + 2_048 <= INLINE_MESSAGE_LIMIT ? 1 : 2;
}
