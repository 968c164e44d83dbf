/**
 * The queue consumer: delivers each accepted event to every destination its
 * rules name.
 *
 * - One internal message per event; on partial failure only the destinations
 *   that failed are re-enqueued (with their attempt count and a backoff
 *   delay), so a destination that succeeded is never called again.
 * - Permanent failures and exhausted attempts go to the dead-letter store.
 * - A batch stays within a subrequest budget (Workers Free: 50): a message
 *   that does not fit what is left is redelivered whole by the platform; one
 *   whose fan-out exceeds a whole batch's budget is split, the rest deferred
 *   to a follow-up message. Nothing beyond the budget is attempted.
 * - Follow-ups and dead letters are flushed in one `sendBatch` and one
 *   dead-letter call; a message is acked only after its follow-ups are safe.
 */
import type { RouterConfig } from '../config/router-config';
import { loadConfig } from '../config/load';
import { type DeadLetterInput, deadLetterStub } from '../deadletters/store';
import { ledgerStubByName } from '../dedup/shard';
import { deliver } from '../destinations';
import { type DeliveryOutcome, backoffSeconds } from '../destinations/types';
import type { UnknownEvent } from '../events/catalog';
import { errorName, log } from '../log';
import { type RouterMessage, isRouterMessage } from './message';

export const EVENTS_QUEUE_NAME = 'workos-router-events';
export const DLQ_NAME = 'workos-router-events-dlq';

/** Subrequests kept back for the flush (one sendBatch, one dead-letter call). */
const FLUSH_RESERVE = 2;
/** sendBatch accepts at most 100 messages and 256 KB. */
const BATCH_MAX_MESSAGES = 100;
const BATCH_MAX_BYTES = 200 * 1024;

interface FollowUp {
  body: RouterMessage;
  delaySeconds: number;
}

interface MessagePlan {
  message: Message<unknown>;
  followUps: FollowUp[];
  deadLetters: DeadLetterInput[];
  /** Not started for lack of budget: redelivered by the platform (no new message written). */
  redeliver?: boolean;
}

export async function consumeBatch(batch: MessageBatch<unknown>, env: Env): Promise<void> {
  if (batch.queue === DLQ_NAME || batch.queue.endsWith('-dlq')) return consumeDeadLetterQueue(batch, env);
  const loaded = loadConfig(env);
  if (!loaded.ok) {
    // Never drop: hold the messages until the config is fixed.
    batch.retryAll({ delaySeconds: 60 });
    return;
  }
  const config = loaded.config;
  const fullBudget = config.settings.consumerSubrequestBudget - FLUSH_RESERVE;
  let budget = fullBudget;
  const plans: MessagePlan[] = [];
  const work: MessageWork[] = [];
  for (const message of batch.messages) {
    const plan: MessagePlan = { message, followUps: [], deadLetters: [] };
    plans.push(plan);
    const body = message.body;
    if (!isRouterMessage(body)) {
      log('error', 'malformed_queue_message', { message_id: message.id });
      plan.deadLetters.push({
        event_id: `queue-message:${message.id}`,
        event_type: 'unknown',
        destination: '(router)',
        rules: [],
        reason: 'malformed_queue_message',
        last_status: null,
        attempts: message.attempts,
        body: safeStringify(body),
      });
      continue;
    }
    let raw = body.body;
    if (raw === undefined && body.body_ref !== undefined) {
      if (budget < 1) {
        plan.redeliver = true;
        continue;
      }
      budget -= 1;
      try {
        raw = (await ledgerStubByName(env, body.body_ref.shard).getBody(body.id)) ?? undefined;
      } catch (err) {
        log('warn', 'body_fetch_failed', { event_id: body.id, error: errorName(err) });
        plan.followUps.push({ body, delaySeconds: 30 });
        continue;
      }
    }
    if (raw === undefined) {
      plan.deadLetters.push({ event_id: body.id, event_type: body.type, destination: '(router)', rules: [], reason: 'body_expired', last_status: null, attempts: 0, body: '' });
      continue;
    }
    let event: UnknownEvent;
    try {
      event = JSON.parse(raw) as UnknownEvent;
    } catch {
      // Verified at ingest, so this is storage corruption: keep it, don't crash the batch.
      plan.deadLetters.push({ event_id: body.id, event_type: body.type, destination: '(router)', rules: [], reason: 'malformed_body', last_status: null, attempts: 0, body: raw });
      continue;
    }
    const pending = body.pending ?? initialDeliveries(config, event, body.stale === true);
    const names = Object.keys(pending);
    if (names.length === 0) {
      log('info', 'unrouted', { event_id: body.id, event_type: body.type });
      continue;
    }
    if (names.length > budget && names.length <= fullBudget) {
      // It would fit a batch of its own: let the platform redeliver it whole
      // rather than writing a follow-up message (one message per event).
      plan.redeliver = true;
      continue;
    }
    const now = names.slice(0, Math.max(0, budget));
    const later = names.slice(now.length);
    budget -= now.length;
    work.push({ plan, body, event, raw, pending, now, later });
  }
  // Deliveries of every message in the batch run concurrently: a slow
  // destination holds up only its own requests.
  await Promise.all(work.map((w) => deliverMessage(w, config, env)));
  await flush(plans, env);
}

interface MessageWork {
  plan: MessagePlan;
  body: RouterMessage;
  event: UnknownEvent;
  raw: string;
  pending: NonNullable<RouterMessage['pending']>;
  /** Destinations attempted in this invocation, and those deferred (budget). */
  now: string[];
  later: string[];
}

async function deliverMessage(w: MessageWork, config: RouterConfig, env: Env): Promise<void> {
  const { plan, body, event, raw, pending, now, later } = w;
  const outcomes = await Promise.all(
    now.map(async (name) => {
      const dest = config.destinations.get(name);
      const state = pending[name] as { attempts: number; rules: string[] };
      if (dest === undefined) {
        return { name, state, outcome: { ok: false, retryable: false, status: null, reason: 'destination_removed' } as DeliveryOutcome };
      }
      const delivery = { event, raw, rules: state.rules, attempts: state.attempts, stale: body.stale === true };
      const outcome = await deliver(dest, delivery, env).catch((err: unknown): DeliveryOutcome => {
        log('error', 'adapter_error', { event_id: body.id, destination: name, error: errorName(err) });
        return { ok: false, retryable: true, status: null, reason: 'adapter_error' };
      });
      return { name, state, outcome };
    }),
  );
  for (const { name, state, outcome } of outcomes) {
    const attempts = state.attempts + 1;
    const base = { event_id: body.id, event_type: body.type, destination: name, attempt: attempts };
    if (outcome.ok) {
      // Slack deliveries are handed to the destination's outbox (202), which logs the actual send.
      log('info', outcome.status === 202 ? 'handed_to_outbox' : 'delivered', { ...base, status: outcome.status, latency_ms: Date.now() - body.accepted_at });
      continue;
    }
    const dest = config.destinations.get(name);
    const maxAttempts = dest?.retry.maxAttempts ?? 1;
    if (outcome.retryable && attempts < maxAttempts && dest !== undefined) {
      const delay = Math.max(outcome.retryAfterSeconds ?? 0, backoffSeconds(dest.retry.retryDelaySeconds, attempts));
      log('warn', 'delivery_failed', { ...base, status: outcome.status, reason: outcome.reason, retry_in_s: delay });
      plan.followUps.push({ body: withPending(body, { [name]: { attempts, rules: state.rules } }), delaySeconds: delay });
    } else {
      plan.deadLetters.push({
        event_id: body.id,
        event_type: body.type,
        destination: name,
        rules: state.rules,
        reason: outcome.retryable ? `attempts_exhausted: ${outcome.reason}` : outcome.reason,
        last_status: outcome.status,
        attempts,
        body: raw,
      });
    }
  }
  if (later.length > 0) {
    const rest: NonNullable<RouterMessage['pending']> = {};
    for (const name of later) rest[name] = pending[name] as { attempts: number; rules: string[] };
    plan.followUps.push({ body: withPending(body, rest), delaySeconds: 0 });
    log('info', 'deliveries_deferred', { event_id: body.id, deferred: later.length });
  }
}

/**
 * Every destination of every matching rule, once, with the rules that named
 * it. A stale event skips the rules that say `stale = "drop"` (counted and
 * logged); rules that deliver stale events still do (marked stale).
 */
export function initialDeliveries(config: RouterConfig, event: UnknownEvent, stale = false): NonNullable<RouterMessage['pending']> {
  const { rules } = config.matcher.match(event);
  const pending: NonNullable<RouterMessage['pending']> = {};
  const dropped: string[] = [];
  for (const rule of rules) {
    if (stale && rule.stale === 'drop') {
      dropped.push(rule.name);
      continue;
    }
    for (const to of rule.to) {
      const slot = pending[to] ?? { attempts: 0, rules: [] };
      slot.rules.push(rule.name);
      pending[to] = slot;
    }
  }
  if (dropped.length > 0) log('info', 'stale_dropped', { event_id: event.id, event_type: event.event, rules: dropped });
  return pending;
}

function withPending(body: RouterMessage, pending: NonNullable<RouterMessage['pending']>): RouterMessage {
  return { ...body, pending };
}

async function flush(plans: MessagePlan[], env: Env): Promise<void> {
  const followUps = plans.flatMap((p) => p.followUps);
  const deadLetters = plans.flatMap((p) => p.deadLetters);
  let followUpsSafe = true;
  let deadLettersSafe = true;
  if (followUps.length > 0) {
    try {
      for (const chunk of chunkBySize(followUps)) {
        await env.EVENTS_QUEUE.sendBatch(chunk.map((f) => ({ body: f.body, contentType: 'json' as const, delaySeconds: f.delaySeconds })));
      }
    } catch (err) {
      followUpsSafe = false;
      log('error', 'follow_up_enqueue_failed', { count: followUps.length, error: errorName(err) });
    }
  }
  if (deadLetters.length > 0) {
    try {
      await deadLetterStub(env).add(deadLetters);
    } catch (err) {
      deadLettersSafe = false;
      log('error', 'dead_letter_store_failed', { count: deadLetters.length, error: errorName(err) });
    }
  }
  for (const plan of plans) {
    if (plan.redeliver === true) {
      plan.message.retry({ delaySeconds: 0 });
      continue;
    }
    const unsafe = (plan.followUps.length > 0 && !followUpsSafe) || (plan.deadLetters.length > 0 && !deadLettersSafe);
    // Retrying the original re-runs its deliveries (at-least-once; receivers
    // deduplicate on Idempotency-Key). Losing it would drop the event.
    if (unsafe) plan.message.retry({ delaySeconds: 30 });
    else plan.message.ack();
  }
}

function chunkBySize(items: FollowUp[]): FollowUp[][] {
  const chunks: FollowUp[][] = [];
  let current: FollowUp[] = [];
  let size = 0;
  for (const item of items) {
    const bytes = (item.body.body?.length ?? 0) * 3 + 1024;
    if (current.length > 0 && (current.length >= BATCH_MAX_MESSAGES || size + bytes > BATCH_MAX_BYTES)) {
      chunks.push(current);
      current = [];
      size = 0;
    }
    current.push(item);
    size += bytes;
  }
  if (current.length > 0) chunks.push(current);
  return chunks;
}

/** Messages the platform gave up on: keep them in the dead-letter store. */
async function consumeDeadLetterQueue(batch: MessageBatch<unknown>, env: Env): Promise<void> {
  const records: DeadLetterInput[] = batch.messages.map((m) => {
    const b = m.body;
    const ok = isRouterMessage(b);
    return {
      event_id: ok ? b.id : `queue-message:${m.id}`,
      event_type: ok ? b.type : 'unknown',
      destination: ok && b.pending !== undefined ? Object.keys(b.pending).join(',') : '(all)',
      rules: [],
      reason: 'consumer_retries_exhausted',
      last_status: null,
      attempts: m.attempts,
      body: ok ? (b.body ?? `{"body_ref":${JSON.stringify(b.body_ref)}}`) : safeStringify(b),
    };
  });
  try {
    await deadLetterStub(env).add(records);
    batch.ackAll();
  } catch (err) {
    log('error', 'dead_letter_store_failed', { count: records.length, error: errorName(err) });
    batch.retryAll({ delaySeconds: 60 });
  }
}

function safeStringify(v: unknown): string {
  try {
    return JSON.stringify(v) ?? '';
  } catch {
    return '';
  }
}
