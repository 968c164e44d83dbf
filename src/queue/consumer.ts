/**
 * The queue consumer: delivers each accepted event to every destination its
 * rules name.
 *
 * - One internal message per event; on partial failure the destinations that
 *   failed travel on in one follow-up message per event (each with its attempt
 *   count and the time before which it is not tried again), so a destination
 *   that succeeded is never called again by a retry.
 * - Permanent failures and exhausted attempts go to the dead-letter store.
 * - A batch stays within two subrequest budgets, as Workers counts them
 *   (Free: 50 requests to the Internet, 1,000 to Cloudflare services, per
 *   invocation): HTTP deliveries within `consumer_subrequest_budget`, and
 *   calls to Durable Objects and queues (queue deliveries, hand-offs, the
 *   registry, the flush) within `serviceCallBudget`. The calls the flush will
 *   make (queue sends, the dead-letter call, body storage) are reserved up
 *   front: a message that does not fit what is left is redelivered whole by
 *   the platform; one whose fan-out exceeds a whole batch's budget is split,
 *   the rest deferred to its follow-up.
 * - Each message is acked or retried on its own outcome: acked once its
 *   follow-up and dead letters are safe, retried (at-least-once) otherwise.
 * - An invalid configuration holds events: each message is re-enqueued as a
 *   fresh message (attempts start again) every minute until the config is
 *   fixed, so none reaches the platform's dead-letter queue meanwhile.
 */
import type { CircuitPolicy, RouterConfig } from '../config/router-config';
import { loadConfig } from '../config/load';
import { type DeadLetterInput, ROUTER_DESTINATION, deadLetterCalls, deadLetterRecord, deadLetterStub, shareBodies } from '../deadletters/store';
import { ledgerShardOf, ledgerStub, ledgerStubByName, shardKeyOf } from '../dedup/shard';
import { SlackHandOff, deliver } from '../destinations';
import { type HeldDelivery, HeldHandOff } from '../destinations/held';
import { type DestinationReport, RATE_HORIZON_MS, registryStub } from '../destinations/registry';
import { type Delivery, type DeliveryOutcome, MAX_DELAY_SECONDS, backoffSeconds } from '../destinations/types';
import type { UnknownEvent } from '../events/catalog';
import { errorName, log } from '../log';
import { notifyAlerts } from '../alerts/notifier';
import { AnalyticsBatch } from '../metrics/analytics';
import { TraceWriter, bucketName } from '../trace/client';
import { NO_DESTINATION, type TraceSource, type TraceWrite } from '../trace/store';
import { SlotRefill } from './slot-refill';
import { type PendingDelivery, QUEUE_MESSAGE_LIMIT, type RouterMessage, chunkForSendBatch, isRouterMessage, messageBytes, sendBatchCount } from './message';

export const EVENTS_QUEUE_NAME = 'workos-router-events';
export const DLQ_NAME = 'workos-router-events-dlq';

/** Subrequests: to the Internet (`web`) and to Cloudflare services (`service`). */
interface Cost {
  web: number;
  service: number;
}

const plus = (a: Cost, b: Cost): Cost => ({ web: a.web + b.web, service: a.service + b.service });

/**
 * Calls to Cloudflare services (Durable Objects, queues) one consumer
 * invocation makes at most: 900 keeps within Workers Free's 1,000, and a
 * `consumer_subrequest_budget` raised above it (a Paid plan, which allows
 * 10,000 in all) raises this too.
 */
function serviceCallBudget(webBudget: number): number {
  return Math.max(900, webBudget);
}

/** Calls every batch makes besides its deliveries: the destination registry's read of the blocked sets and its report (and, when a destination has `max_per_second`, its send slots and up to REFILL_CALLS for fresh ones). */
const BATCH_BASE_CALLS = 2;
/**
 * A rate-limited request this late for its slot is not sent at it (it would
 * crowd the following slots) but takes a fresh one. Slots are spaced 5 %
 * wider than 1/rate, which leaves 50 ms a second: 40 of them may go to a late
 * start, the rest to the network's jitter.
 */
const LATE_SLOT_MS = 40;
/** Registry calls one batch may make for fresh slots (each serves every request late at about the same moment). */
const REFILL_CALLS = 4;
/** How long events wait between checks while the configuration is invalid. */
export const HOLD_DELAY_SECONDS = 60;
/** A follow-up must fit one queue message, with a margin for the platform's own fields. */
const FOLLOW_UP_LIMIT = QUEUE_MESSAGE_LIMIT - 1_000;
/** A stored body is kept at least this long past the last scheduled attempt that needs it. */
const BODY_KEEP_MARGIN_MS = 7 * 86_400_000;
const DAY_MS = 86_400_000;
/** Retention used for stored bodies when the config cannot be read (holding). */
const FALLBACK_RETENTION_MS = 30 * DAY_MS;

type Pending = Record<string, PendingDelivery>;

interface FollowUp {
  body: RouterMessage;
  delaySeconds: number;
}

interface MessagePlan {
  message: Message<unknown>;
  followUp?: FollowUp;
  deadLetters: DeadLetterInput[];
  /** Not started for lack of budget: redelivered by the platform (no new message written). */
  redeliver?: boolean;
  /** The event, when its body was read (needed to move a body to the ledger). */
  event?: UnknownEvent;
  raw?: string;
}

export async function consumeBatch(batch: MessageBatch<unknown>, env: Env): Promise<void> {
  if (batch.queue === DLQ_NAME || batch.queue.endsWith('-dlq')) return consumeDeadLetterQueue(batch, env);
  const loaded = loadConfig(env);
  if (!loaded.ok) return holdBatch(batch, env);
  const config = loaded.config;
  // Requests to the Internet (HTTP deliveries) and to Cloudflare services (everything else), budgeted apart.
  const webBudget = config.settings.consumerSubrequestBudget;
  const serviceBudget = serviceCallBudget(config.settings.consumerSubrequestBudget);
  // Which destinations are paused or have an open circuit: one read per batch
  // (and one report of the batch's outcomes at its end).
  let blocked: Blocked;
  try {
    const b = await registryStub(env).blocked();
    blocked = { paused: new Set(b.paused), open: new Set(b.open), probes: b.probes };
  } catch (err) {
    log('error', 'destination_registry_unavailable', { error: errorName(err) });
    // Each message by its own attempts: a long outage must not use up the platform's retries (and dead-letter every
    // event untried) within the hour; the bodies kept in the ledger outlive the waits.
    await keepBodies(env, [...batch.messages], () => undefined, (m) => failureRetryDelaySeconds(m.attempts));
    for (const m of batch.messages) m.retry({ delaySeconds: failureRetryDelaySeconds(m.attempts) });
    return;
  }
  const rateLimited = [...config.destinations.values()].some((d) => d.maxPerSecond !== null);
  const baseCalls = BATCH_BASE_CALLS + (rateLimited ? 1 + REFILL_CALLS : 0);
  let usedWeb = 0;
  let usedService = baseCalls;
  // No trace (trace_retention_days = 0): no trace write to reserve.
  const bucketOf = (m: RouterMessage) => (config.settings.traceRetentionDays === 0 ? '' : bucketName(m.accepted_at, m.id, config.settings.traceShards));
  const reserve = new FlushReserve(bucketOf);
  const trace = new TraceWriter(env, config.settings);
  const plans: MessagePlan[] = [];
  const work: MessageWork[] = [];
  /** Slack and blocked destinations already handed events in this batch (each hand-off is one request per destination). */
  const slackHanded = new Set<string>();
  const batchedHandOff = (name: string) => blocked.paused.has(name) || blocked.open.has(name) || config.destinations.get(name)?.type === 'slack';
  const now = Date.now();
  for (const message of batch.messages) {
    const plan: MessagePlan = { message, deadLetters: [] };
    plans.push(plan);
    const body = message.body;
    if (!isRouterMessage(body)) {
      log('error', 'malformed_queue_message', { message_id: message.id });
      plan.deadLetters.push(
        deadLetterRecord({
          event_id: `queue-message:${message.id}`,
          event_type: 'unknown',
          destination: ROUTER_DESTINATION,
          reason: 'malformed_queue_message',
          attempts: message.attempts,
          body: safeStringify(body),
        }),
      );
      reserve.deadLetters = true;
      continue;
    }
    const trial = reserve.with(body);
    let raw = body.body;
    if (raw === undefined && body.body_ref !== undefined) {
      // Redelivered whole only when a batch of its own would have room (else it would come back for ever).
      if (usedService + 1 + trial.calls() > serviceBudget && (usedService > baseCalls || usedWeb > 0)) {
        plan.redeliver = true;
        continue;
      }
      usedService += 1;
      try {
        raw = (await ledgerStubByName(env, body.body_ref.shard).getBody(body.id)) ?? undefined;
      } catch (err) {
        log('warn', 'body_fetch_failed', { event_id: body.id, error: errorName(err) });
        plan.followUp = { body, delaySeconds: 30 };
        reserve.commit(trial);
        continue;
      }
    }
    if (raw === undefined) {
      plan.deadLetters.push(routerDeadLetter(body, 'body_expired', ''));
      reserve.commit(trial);
      continue;
    }
    let event: UnknownEvent;
    try {
      event = JSON.parse(raw) as UnknownEvent;
    } catch {
      // Verified at ingest, so this is storage corruption: keep it, don't crash the batch.
      plan.deadLetters.push(routerDeadLetter(body, 'malformed_body', raw));
      reserve.commit(trial);
      continue;
    }
    plan.event = event;
    plan.raw = raw;
    // A follow-up carries its deliveries; a first delivery asks the rules.
    const { pending, dropped } = body.pending !== undefined ? { pending: body.pending, dropped: new Map<string, string[]>() } : routeEvent(config, event, body.stale === true);
    const names = Object.keys(pending);
    const traced = () => traceBase(body, keptIn(body, () => ledgerShardOf(event, config.settings.dedupShards)));
    // Destinations its rules dropped it for (stale): traced as such, never as unrouted.
    for (const [destination, rules] of dropped) trace.add({ ...traced(), destination, rules, state: 'stale_dropped' });
    if (names.length === 0) {
      if (dropped.size === 0) {
        log('info', 'unrouted', { event_id: body.id, event_type: body.type });
        trace.add({ ...traced(), destination: NO_DESTINATION, rules: [], state: 'unrouted' });
      }
      reserve.commit(trial);
      continue;
    }
    const due = names.filter((n) => (pending[n]?.not_before ?? 0) <= now + 1_000);
    const left: Cost = { web: webBudget - usedWeb, service: serviceBudget - usedService - trial.calls() };
    // Each delivery is one subrequest (HTTP: to the Internet; queue: to a service), except the batched
    // hand-offs (Slack, paused, open circuit): one per destination per batch.
    const costOf = (name: string, handed: Set<string>): Cost => {
      const direct: Cost = config.destinations.get(name)?.type === 'queue' ? { web: 0, service: 1 } : { web: 1, service: 0 };
      // The circuit's probe is delivered although the circuit is open, and a failed one goes back on hold
      // by a call of its own (the batch's hand-offs have gone by then).
      if (blocked.open.has(name) && !isBlocked(blocked, name, body)) return plus(direct, { web: 0, service: 1 });
      if (batchedHandOff(name)) return { web: 0, service: handed.has(name) ? 0 : 1 };
      return direct;
    };
    const handed = new Set(slackHanded);
    const dueCost = due.reduce((sum: Cost, n) => {
      const c = costOf(n, handed);
      handed.add(n);
      return plus(sum, c);
    }, { web: 0, service: 0 });
    const fits = (c: Cost, room: Cost) => c.web <= room.web && c.service <= room.service;
    if (!fits(dueCost, left) && fits(dueCost, { web: webBudget, service: serviceBudget - baseCalls - new FlushReserve(bucketOf).with(body).calls() })) {
      // It would fit a batch of its own: let the platform redeliver it whole
      // rather than writing a follow-up message (one message per event).
      plan.redeliver = true;
      continue;
    }
    const attempt: string[] = [];
    let cost: Cost = { web: 0, service: 0 };
    for (const n of due) {
      const c = costOf(n, slackHanded);
      if (!fits(plus(cost, c), left)) break;
      attempt.push(n);
      cost = plus(cost, c);
      if (batchedHandOff(n)) slackHanded.add(n);
    }
    usedWeb += cost.web;
    usedService += cost.service;
    reserve.commit(trial);
    work.push({ plan, body, event, raw, pending, attempt });
  }
  // Deliveries of every message in the batch run concurrently: a slow
  // destination holds up only its own requests. Slack hand-offs are collected
  // while the deliveries start, then sent once per destination.
  const ctx: BatchContext = {
    slack: new SlackHandOff(env),
    held: new HeldHandOff(env),
    refill: new SlotRefill(env, rateLimited ? REFILL_CALLS : 0, RATE_HORIZON_MS),
    blocked,
    reports: {},
    streaks: new Map(),
    trace,
    analytics: new AnalyticsBatch(),
  };
  if (rateLimited) await takeSendSlots(work, config, env, ctx);
  const delivering = Promise.all(work.map((w) => deliverMessage(w, config, env, ctx)));
  await Promise.all([ctx.slack.flush(), ctx.held.flush()]);
  await delivering;
  // Service calls the budget still has room for, beyond what the flush reserved (its dead-letter calls past the first).
  await flush(plans, env, config, serviceBudget - usedService - reserve.calls());
  for (const plan of plans) {
    const b = plan.message.body;
    if (!isRouterMessage(b)) continue;
    for (const d of plan.deadLetters) {
      if (d.destination === ROUTER_DESTINATION) {
        trace.add({ ...traceBase(b, keptIn(b, () => null)), destination: ROUTER_DESTINATION, rules: [], state: 'dead_lettered' });
      }
    }
  }
  ctx.analytics.write(env);
  await Promise.all([
    trace.flush(),
    Object.keys(ctx.reports).length > 0
      ? registryStub(env)
          .report(ctx.reports, circuitsOf(config, ctx.reports))
          .catch((err: unknown) => log('warn', 'destination_report_failed', { error: errorName(err) }))
      : undefined,
  ]);
}

/**
 * `max_per_second`: takes send slots from the registry for every delivery
 * this batch would make to a rate-limited destination (in message order).
 * A delivery with a slot waits for it; one without is deferred to its
 * follow-up, not before the next free slot (its attempts untouched).
 */
async function takeSendSlots(work: MessageWork[], config: RouterConfig, env: Env, ctx: BatchContext): Promise<void> {
  const requests: Record<string, { count: number; perSecond: number }> = {};
  for (const w of work) {
    for (const name of w.attempt) {
      const rate = config.destinations.get(name)?.maxPerSecond ?? null;
      if (rate === null || isBlocked(ctx.blocked, name, w.body)) continue;
      const r = requests[name] ?? { count: 0, perSecond: rate };
      r.count++;
      requests[name] = r;
    }
  }
  if (Object.keys(requests).length === 0) return;
  let granted: Record<string, { slots: number[]; next: number }>;
  try {
    const answer = await registryStub(env).reserve(requests, RATE_HORIZON_MS);
    // Slots come as offsets from the registry's "now": counted from when the answer arrived here.
    const at = Date.now();
    granted = Object.fromEntries(Object.entries(answer).map(([n, g]) => [n, { slots: g.slotsInMs.map((o) => at + o), next: at + g.nextInMs }]));
  } catch (err) {
    // No slots: defer every rate-limited delivery a little rather than risk exceeding the limit.
    log('warn', 'rate_slots_unavailable', { error: errorName(err) });
    const at = Date.now() + 5_000;
    granted = Object.fromEntries(Object.keys(requests).map((n) => [n, { slots: [], next: at }]));
  }
  let deferred = 0;
  for (const w of work) {
    for (const name of [...w.attempt]) {
      const g = granted[name];
      if (g === undefined || isBlocked(ctx.blocked, name, w.body)) continue;
      const slot = g.slots.shift();
      if (slot !== undefined) {
        w.slots = { ...w.slots, [name]: slot };
        continue;
      }
      w.attempt = w.attempt.filter((n) => n !== name);
      const state = w.pending[name] as PendingDelivery;
      w.pending = { ...w.pending, [name]: { ...state, not_before: g.next } };
      deferred++;
    }
  }
  if (deferred > 0) log('info', 'rate_limited', { deferred, destinations: Object.keys(requests) });
}

/** A failure's class for metrics: the status class, or the reason when there was no answer. */
function failureClass(outcome: Extract<DeliveryOutcome, { ok: false }>): string {
  if (outcome.status !== null) return `http_${Math.floor(outcome.status / 100)}xx`;
  return /^[a-z_]{1,40}$/.test(outcome.reason) ? outcome.reason : 'other';
}

/** The breaker policy of each destination reported on. */
function circuitsOf(config: RouterConfig, reports: Record<string, DestinationReport>): Record<string, CircuitPolicy | null> {
  return Object.fromEntries(Object.keys(reports).map((n) => [n, config.destinations.get(n)?.circuit ?? null]));
}

/**
 * The ledger shard that keeps a message's body: its reference's, else the
 * shard that admitted it, else (a message that says neither) `fallback`'s
 * answer, the event's shard under the current `dedup_shards`.
 */
function keptIn(body: RouterMessage, fallback: () => string | null): string | null {
  return body.body_ref?.shard ?? body.ledger_shard ?? fallback();
}

/** The fields every trace write of this message shares. */
function traceBase(body: RouterMessage, bodyShard: string | null): Omit<TraceWrite, 'destination' | 'rules' | 'state'> {
  const source: TraceSource = body.replay === true ? 'replay' : body.source;
  return { event_id: body.id, event_type: body.type, source, accepted_at: body.accepted_at, stale: body.stale === true, body_shard: bodyShard };
}

/**
 * Counts the calls the flush will make for the messages planned so far: the
 * dead-letter call, and the sendBatch chunks their follow-ups could need
 * (next-fit over worst-case sizes, the same packing `flush` uses), plus one
 * call for each message whose stored body may need its lifetime extended or
 * whose follow-up may need its body moved to the ledger, plus one trace write
 * per trace bucket the messages belong to.
 */
class FlushReserve {
  deadLetters = false;
  private sizes: number[] = [];
  private extras = 0;
  private buckets = new Set<string>();

  constructor(private readonly bucketOf: (m: RouterMessage) => string) {}

  with(body: RouterMessage): FlushReserve {
    const next = new FlushReserve(this.bucketOf);
    const bucket = this.bucketOf(body);
    next.buckets = bucket === '' ? this.buckets : new Set([...this.buckets, bucket]);
    next.deadLetters = true;
    const size = worstCaseFollowUpBytes(body);
    next.sizes = [...this.sizes, size];
    // A body in the ledger may need its lifetime extended; an inline body
    // near the limit may have to move to the ledger.
    next.extras = this.extras + (body.body_ref !== undefined || size >= FOLLOW_UP_LIMIT - 16_000 ? 1 : 0);
    return next;
  }

  commit(trial: FlushReserve): void {
    this.buckets = trial.buckets;
    this.deadLetters = trial.deadLetters;
    this.sizes = trial.sizes;
    this.extras = trial.extras;
  }

  calls(): number {
    return (this.deadLetters ? 1 : 0) + sendBatchCount(this.sizes) + this.extras + this.buckets.size;
  }
}

function worstCaseFollowUpBytes(body: RouterMessage): number {
  // UTF-16 length × 3 bounds UTF-8 bytes; escaping at most doubles them.
  return body.body === undefined ? 4_096 : Math.min(QUEUE_MESSAGE_LIMIT, body.body.length * 6 + 4_096);
}

interface MessageWork {
  plan: MessagePlan;
  body: RouterMessage;
  event: UnknownEvent;
  raw: string;
  pending: Pending;
  /** Destinations attempted in this invocation; the others stay pending. */
  attempt: string[];
  /** Rate-limited destinations: the time (ms) before which the request is not sent. */
  slots?: Record<string, number>;
}

/** Destinations that get no request: paused ones, and open circuits (except the latest probe a message carries). */
interface Blocked {
  paused: Set<string>;
  open: Set<string>;
  /** Open circuit → the token of its latest probe. */
  probes: Record<string, number>;
}

function isBlocked(b: Blocked, name: string, body: RouterMessage): boolean {
  if (b.paused.has(name)) return true;
  if (!b.open.has(name)) return false;
  // The probe is tried unless a later one was sent since (this one was late: it is held again, unused).
  const latest = b.probes[name];
  return !(body.probe === name && (body.probe_token === undefined || latest === undefined || body.probe_token === latest));
}

/** What the deliveries of one batch share: batched hand-offs, the blocked sets, and the outcomes to report. */
interface BatchContext {
  slack: SlackHandOff;
  held: HeldHandOff;
  /** Fresh send slots for rate-limited requests that missed theirs. */
  refill: SlotRefill;
  blocked: Blocked;
  reports: Record<string, DestinationReport>;
  /** Per destination: when its last success and its retryable failures ended (for the breaker's streak). */
  streaks: Map<string, { lastOk: number; failures: number[] }>;
  trace: TraceWriter;
  analytics: AnalyticsBatch;
}

/** How long a delivery waits when it could not be put on hold (the hold store was unavailable). */
const HOLD_RETRY_MS = 30_000;

async function deliverMessage(w: MessageWork, config: RouterConfig, env: Env, ctx: BatchContext): Promise<void> {
  const { plan, body, event, raw, pending, attempt } = w;
  /** `attempts`: what a delivery that could not be held has used (a failed probe used one). */
  type Result = { name: string; state: PendingDelivery; outcome: DeliveryOutcome | 'held' | 'hold_failed' | 'late'; started?: number; ended?: number; attempts?: number };
  const outcomes = await Promise.all(
    attempt.map(async (name): Promise<Result> => {
      const dest = config.destinations.get(name);
      const state = pending[name] as PendingDelivery;
      if (dest === undefined) {
        return { name, state, outcome: { ok: false, retryable: false, status: null, reason: 'destination_removed' } };
      }
      /** Held in storage (attempts untouched, unless a failed probe used one): nothing more reaches the destination until it is released. */
      const hold = (attempts = state.attempts): Promise<Result> => {
        const held: HeldDelivery = {
          event_id: body.id,
          event_type: body.type,
          created_at: body.created_at,
          source: body.source,
          stale: body.stale === true,
          accepted_at: body.accepted_at,
          attempts,
          rules: state.rules,
          body: raw,
        };
        if (body.replay === true) held.replay = true;
        if (body.ledger_shard !== undefined) held.ledger_shard = body.ledger_shard;
        return ctx.held.submit(name, held).then(
          (): Result => ({ name, state, outcome: 'held' }),
          (err: unknown): Result => {
            log('error', 'hold_failed', { event_id: body.id, destination: name, error: errorName(err) });
            return { name, state, outcome: 'hold_failed', attempts };
          },
        );
      };
      // Paused or circuit open.
      if (isBlocked(ctx.blocked, name, body)) return hold();
      const delivery: Delivery = {
        event,
        raw,
        rules: state.rules,
        attempts: state.attempts,
        replay: body.replay === true,
        ...eventMarks(body),
      };
      let slot = w.slots?.[name];
      while (slot !== undefined) {
        const wait = slot - Date.now();
        if (wait > 0) await new Promise((r) => setTimeout(r, wait));
        if (Date.now() - slot <= LATE_SLOT_MS) break;
        // Past its slot (a busy invocation): sending now would crowd the slots given out after it. A fresh
        // slot comes after all of them; without one, it is tried again later, attempts untouched.
        slot = (await ctx.refill.take(name, dest.maxPerSecond ?? 1)) ?? undefined;
        if (slot === undefined) return { name, state, outcome: 'late' };
      }
      const started = Date.now();
      const outcome = await deliver(dest, delivery, env, ctx.slack).catch((err: unknown): DeliveryOutcome => {
        log('error', 'adapter_error', { event_id: body.id, destination: name, error: errorName(err) });
        return { ok: false, retryable: true, status: null, reason: 'adapter_error' };
      });
      const ended = Date.now();
      record(ctx, name, outcome, started, ended, body.probe === name);
      ctx.analytics.add(name, body.type, outcome.ok ? 'delivered' : 'failed', ended - body.accepted_at);
      // A failed probe: the circuit stays open (the registry doubles the cooldown), so the delivery goes back on
      // hold instead of being retried past the open circuit. The probe counts as an attempt: a delivery the
      // destination always fails reaches max_attempts and is dead-lettered below, so it cannot be the probe for ever.
      if (body.probe === name && !outcome.ok && outcome.retryable && state.attempts + 1 < dest.retry.maxAttempts) return hold(state.attempts + 1);
      return { name, state, outcome, started, ended };
    }),
  );
  const next: Pending = {};
  for (const name of Object.keys(pending)) if (!attempt.includes(name)) next[name] = pending[name] as PendingDelivery;
  const now = Date.now();
  const base = traceBase(body, keptIn(body, () => ledgerShardOf(event, config.settings.dedupShards)));
  for (const result of outcomes) {
    const { name, state, outcome, started, ended } = result;
    const traced = { ...base, destination: name, rules: state.rules };
    if (outcome === 'held') {
      log('info', 'delivery_held', { event_id: body.id, event_type: body.type, destination: name });
      ctx.trace.add({ ...traced, state: 'held', next_attempt_at: null });
      ctx.analytics.add(name, body.type, 'held', now - body.accepted_at);
      continue;
    }
    if (outcome === 'late') {
      next[name] = { attempts: state.attempts, rules: state.rules, not_before: now + 1_000 };
      ctx.trace.add({ ...traced, state: 'retrying', next_attempt_at: now + 1_000 });
      continue;
    }
    if (outcome === 'hold_failed') {
      next[name] = { attempts: result.attempts ?? state.attempts, rules: state.rules, not_before: now + HOLD_RETRY_MS };
      ctx.trace.add({ ...traced, state: 'retrying', next_attempt_at: now + HOLD_RETRY_MS });
      continue;
    }
    const at = started ?? now;
    const attempt = {
      at,
      status: outcome.status,
      error: outcome.ok ? null : outcome.reason,
      duration_ms: Math.max(0, (ended ?? now) - at),
    };
    const attempts = state.attempts + 1;
    const fields = { event_id: body.id, event_type: body.type, destination: name, attempt: attempts };
    if (outcome.ok) {
      // Slack deliveries are handed to the destination's outbox, which logs the actual send (an HTTP 202 is a delivery).
      const handedOff = config.destinations.get(name)?.type === 'slack';
      log('info', handedOff ? 'handed_to_outbox' : 'delivered', { ...fields, status: outcome.status, latency_ms: now - body.accepted_at });
      ctx.trace.add({ ...traced, state: 'delivered', attempt, next_attempt_at: null });
      continue;
    }
    const dest = config.destinations.get(name);
    const maxAttempts = dest?.retry.maxAttempts ?? 1;
    if (outcome.retryable && attempts < maxAttempts && dest !== undefined) {
      const delay = Math.max(outcome.retryAfterSeconds ?? 0, backoffSeconds(dest.retry.retryDelaySeconds, attempts));
      log('warn', 'delivery_failed', { ...fields, status: outcome.status, reason: outcome.reason, retry_in_s: delay });
      next[name] = { attempts, rules: state.rules, not_before: now + delay * 1000 };
      ctx.trace.add({ ...traced, state: 'retrying', attempt, next_attempt_at: now + delay * 1000 });
    } else {
      ctx.trace.add({ ...traced, state: 'dead_lettered', attempt, next_attempt_at: null });
      plan.deadLetters.push(
        deadLetterRecord({
          event_id: body.id,
          event_type: body.type,
          destination: name,
          rules: state.rules,
          reason: outcome.retryable ? `attempts_exhausted: ${outcome.reason}` : outcome.reason,
          last_status: outcome.status,
          attempts,
          body: raw,
          ...eventMarks(body),
        }),
      );
    }
  }
  const owed = Object.keys(next);
  if (owed.length > 0) {
    const firstDue = Math.min(...owed.map((n) => next[n]?.not_before ?? now));
    const delaySeconds = Math.min(MAX_DELAY_SECONDS, Math.max(0, Math.ceil((firstDue - now) / 1000)));
    // A follow-up is never a probe: only the held store sends those, one at a time.
    const { probe: _probe, probe_token: _token, ...rest } = body;
    plan.followUp = { body: { ...rest, pending: next }, delaySeconds };
    const deferred = owed.filter((n) => pending[n] !== undefined && !attempt.includes(n) && next[n] === pending[n]);
    if (deferred.length > 0) log('info', 'deliveries_deferred', { event_id: body.id, deferred: deferred.length, in_s: delaySeconds });
  }
}

function record(ctx: BatchContext, name: string, outcome: DeliveryOutcome, at: number, ended: number, probe: boolean): void {
  const reports = ctx.reports;
  const r = reports[name] ?? { delivered: 0, failed: 0 };
  const streak = ctx.streaks.get(name) ?? { lastOk: 0, failures: [] };
  ctx.streaks.set(name, streak);
  if (!outcome.ok) {
    const cls = failureClass(outcome);
    r.failure_classes = { ...r.failure_classes, [cls]: (r.failure_classes?.[cls] ?? 0) + 1 };
  }
  if (outcome.ok) streak.lastOk = Math.max(streak.lastOk, ended);
  else if (outcome.retryable) streak.failures.push(ended);
  r.retryable_failures = streak.failures.length;
  r.trailing_failures = streak.failures.filter((t) => t > streak.lastOk).length;
  // A probe the destination answered, even with a 4xx, shows it is back. One that never reached it (refused here:
  // too large for a queue message, a missing binding) says nothing of it: the circuit stays open, the next probe
  // comes a cooldown later (not doubled).
  if (probe) r.probe = outcome.ok || (!outcome.retryable && outcome.status !== null) ? 'ok' : outcome.retryable ? 'failed' : 'unanswered';
  if (outcome.ok) {
    r.delivered += 1;
    r.last_success_at = Math.max(r.last_success_at ?? 0, at);
  } else {
    r.failed += 1;
    if (at >= (r.last_failure_at ?? 0)) {
      r.last_failure_at = at;
      r.last_error = outcome.status !== null ? `${outcome.reason} (HTTP ${outcome.status})` : outcome.reason;
    }
  }
  reports[name] = r;
}

/**
 * Every destination of every matching rule, once, with the rules that named
 * it. A stale event skips the rules that say `stale = "drop"` (counted and
 * logged); rules that deliver stale events still do (marked stale).
 */
export function initialDeliveries(config: RouterConfig, event: UnknownEvent, stale = false): Pending {
  return routeEvent(config, event, stale).pending;
}

/**
 * The deliveries an event's rules ask for, and the destinations its rules
 * would have reached but dropped because it is stale (`stale = "drop"`; a
 * destination another rule still routes it to is not dropped).
 */
function routeEvent(config: RouterConfig, event: UnknownEvent, stale: boolean): { pending: Pending; dropped: Map<string, string[]> } {
  const { rules } = config.matcher.match(event);
  const pending: Pending = {};
  const dropped = new Map<string, string[]>();
  const droppedRules: string[] = [];
  for (const rule of rules) {
    if (stale && rule.stale === 'drop') {
      droppedRules.push(rule.name);
      for (const to of rule.to) dropped.set(to, [...(dropped.get(to) ?? []), rule.name]);
      continue;
    }
    for (const to of rule.to) {
      const slot = pending[to] ?? { attempts: 0, rules: [] };
      slot.rules.push(rule.name);
      pending[to] = slot;
    }
  }
  for (const to of Object.keys(pending)) dropped.delete(to);
  if (droppedRules.length > 0) log('info', 'stale_dropped', { event_id: event.id, event_type: event.event, rules: droppedRules });
  return { pending, dropped };
}

function eventMarks(body: RouterMessage): { stale?: boolean; source: RouterMessage['source']; ledger_shard?: string } {
  return {
    source: body.source,
    ...(body.stale === true ? { stale: true } : {}),
    ...(body.ledger_shard !== undefined ? { ledger_shard: body.ledger_shard } : {}),
  };
}

/** A dead letter the router itself could not route (replay routes it by the rules then in force). */
function routerDeadLetter(body: RouterMessage, reason: string, raw: string): DeadLetterInput {
  return deadLetterRecord({ event_id: body.id, event_type: body.type, destination: ROUTER_DESTINATION, reason, body: raw, ...eventMarks(body) });
}

/**
 * Makes each follow-up safe to send: a body kept in the ledger stays there
 * as long as the follow-up may need it, and an inline follow-up that grew
 * past one queue message moves its body to the ledger.
 */
async function prepareFollowUp(plan: MessagePlan, env: Env, config: RouterConfig | undefined, now: number): Promise<void> {
  const f = plan.followUp;
  if (f === undefined) return;
  const needUntil = now + f.delaySeconds * 1000 + DAY_MS;
  const ref = f.body.body_ref;
  if (ref !== undefined) {
    if (ref.until !== undefined && ref.until >= needUntil) return;
    const until = needUntil + BODY_KEEP_MARGIN_MS;
    await keepBody(env, ref.shard, f.body.id, until, plan.raw);
    f.body = { ...f.body, body_ref: { shard: ref.shard, until } };
    return;
  }
  if (f.body.body === undefined || messageBytes(f.body) <= FOLLOW_UP_LIMIT) return;
  const shards = config?.settings.dedupShards ?? 16;
  const retentionMs = config !== undefined ? config.settings.dedupRetentionDays * DAY_MS : FALLBACK_RETENTION_MS;
  const key = plan.event !== undefined ? shardKeyOf(plan.event) : f.body.id;
  const { name, stub } = ledgerStub(env, key, shards);
  const until = Math.max(now + retentionMs, needUntil + BODY_KEEP_MARGIN_MS);
  await stub.storeBody(f.body.id, f.body.body, until);
  const { body: _inline, ...rest } = f.body;
  f.body = { ...rest, body_ref: { shard: name, until } };
}

/** Prepares every follow-up (`prepareFollowUp`); returns the plans whose follow-up could not be made safe. */
async function prepareFollowUps(plans: MessagePlan[], env: Env, config: RouterConfig | undefined, now: number): Promise<MessagePlan[]> {
  const failed: MessagePlan[] = [];
  await Promise.all(
    plans.map(async (plan) => {
      try {
        await prepareFollowUp(plan, env, config, now);
      } catch (err) {
        log('error', 'follow_up_body_store_failed', { event_id: plan.followUp?.body.id, error: errorName(err) });
        failed.push(plan);
      }
    }),
  );
  return failed;
}

async function flush(plans: MessagePlan[], env: Env, config: RouterConfig | undefined, spareCalls: number): Promise<void> {
  const now = Date.now();
  // Per message: is everything it must leave behind safe?
  const safe = new Map<MessagePlan, boolean>();
  for (const plan of await prepareFollowUps(plans, env, config, now)) safe.set(plan, false);
  // Dead letters first, then follow-ups, each only for messages whose earlier steps are safe. A message whose dead
  // letters could not be written is retried whole (its deliveries run again), so it must leave no follow-up behind:
  // sent, each redelivery would start one more retry chain of the destinations still failing. The other way round,
  // a follow-up that cannot be sent after its dead letters were written makes the redelivery write them again: each
  // is keyed by its message and destination, and the store keeps the first.
  // Dead letters go in calls of bounded size: the first is reserved in the budget, the others use what it has left;
  // messages whose records find no room are retried whole (their deliveries run again: at-least-once).
  for (const p of plans) for (const d of p.deadLetters) d.key ??= deadLetterKey(p.message, d.destination);
  const calls = deadLetterCalls(
    plans.filter((p) => p.deadLetters.length > 0 && safe.get(p) !== false),
    (p) => p.deadLetters,
  );
  for (const [i, chunk] of calls.entries()) {
    if (i > spareCalls) {
      for (const p of chunk) safe.set(p, false);
      log('warn', 'dead_letters_over_budget', { count: chunk.length });
      continue;
    }
    try {
      await deadLetterStub(env).addShared(shareBodies(chunk.flatMap((p) => p.deadLetters)));
    } catch (err) {
      for (const p of chunk) safe.set(p, false);
      log('error', 'dead_letter_store_failed', { count: chunk.length, error: errorName(err) });
    }
  }
  const sending = plans.filter((p) => p.followUp !== undefined && safe.get(p) !== false);
  for (const chunk of chunkPlans(sending)) {
    try {
      await env.EVENTS_QUEUE.sendBatch(
        chunk.map((p) => ({ body: (p.followUp as FollowUp).body, contentType: 'json' as const, delaySeconds: (p.followUp as FollowUp).delaySeconds })),
      );
    } catch (err) {
      for (const p of chunk) safe.set(p, false);
      log('error', 'follow_up_enqueue_failed', { count: chunk.length, error: errorName(err) });
    }
  }
  const failed = plans.filter((p) => p.redeliver !== true && safe.get(p) === false);
  await keepBodies(env, failed.map((p) => p.message), (m) => failed.find((p) => p.message === m)?.raw, (m) => failureRetryDelaySeconds(m.attempts));
  for (const plan of plans) {
    if (plan.redeliver === true) plan.message.retry({ delaySeconds: 0 });
    // Retrying the original re-runs its deliveries (at-least-once; receivers
    // deduplicate on Idempotency-Key). Losing it would drop the event.
    else if (safe.get(plan) === false) plan.message.retry({ delaySeconds: failureRetryDelaySeconds(plan.message.attempts) });
    else plan.message.ack();
  }
}

/**
 * What makes two dead letters the same record: the acceptance (event id and
 * time accepted) and the destination. A message redelivered, or a second
 * retry chain of one acceptance (a follow-up the queue stored but reported
 * failed, then sent again by the redelivery), ends in the record already
 * kept; a replay is a new acceptance time. A message the router cannot read:
 * by its platform id.
 */
function deadLetterKey(message: Message<unknown>, destination: string): string {
  const body = message.body;
  return isRouterMessage(body) && typeof body.accepted_at === 'number' ? `acc:${body.id}:${body.accepted_at}:${destination}` : `msg:${message.id}:${destination}`;
}

function chunkPlans(plans: MessagePlan[]): MessagePlan[][] {
  return chunkForSendBatch(plans, (p) => (p.followUp as FollowUp).body);
}

/**
 * The configuration is invalid: hold every message by re-enqueueing it as a
 * fresh message (its platform attempt count starts again), so no event is
 * dead-lettered however long the config stays broken. A message whose
 * re-enqueue fails is retried by the platform instead, 60 s doubling up to
 * 12 hours.
 */
async function holdBatch(batch: MessageBatch<unknown>, env: Env): Promise<void> {
  const now = Date.now();
  const plans: MessagePlan[] = batch.messages.map((message) => {
    const plan: MessagePlan = { message, deadLetters: [] };
    if (isRouterMessage(message.body)) plan.followUp = { body: message.body, delaySeconds: HOLD_DELAY_SECONDS };
    return plan;
  });
  log('warn', 'held_config_invalid', { count: plans.length, retry_in_s: HOLD_DELAY_SECONDS });
  await notifyAlerts(env, [{ kind: 'config_invalid', count: plans.length }]);
  for (const plan of await prepareFollowUps(plans, env, undefined, now)) plan.redeliver = true;
  for (const chunk of chunkPlans(plans.filter((p) => p.followUp !== undefined && p.redeliver !== true))) {
    try {
      await env.EVENTS_QUEUE.sendBatch(
        chunk.map((p) => ({ body: (p.followUp as FollowUp).body, contentType: 'json' as const, delaySeconds: HOLD_DELAY_SECONDS })),
      );
    } catch (err) {
      for (const p of chunk) p.redeliver = true;
      log('error', 'hold_enqueue_failed', { count: chunk.length, error: errorName(err) });
    }
  }
  for (const plan of plans) {
    // Not re-enqueued (the queue or the ledger failed): retried by the platform, with waits that grow as for any
    // failure of the router's own services, so a long outage does not use up its tries while the config is broken.
    if (plan.redeliver === true) plan.message.retry({ delaySeconds: failureRetryDelaySeconds(plan.message.attempts, HOLD_DELAY_SECONDS) });
    // A malformed message cannot be re-enqueued as a router message: leave it
    // to the platform (retries, then the DLQ consumer keeps it).
    else if (plan.followUp === undefined) plan.message.retry({ delaySeconds: HOLD_DELAY_SECONDS });
    else plan.message.ack();
  }
}

/**
 * Messages the platform gave up on: keep them in the dead-letter store, one
 * record per destination still owed, each with the event's real body (read
 * back from the ledger for large events), so that every record can be
 * replayed. When the store is unavailable the batch is re-sent to this queue
 * as fresh messages (so the platform never discards it), and only if that
 * fails too is it retried.
 */
async function consumeDeadLetterQueue(batch: MessageBatch<unknown>, env: Env): Promise<void> {
  const loaded = loadConfig(env);
  const config = loaded.ok ? loaded.config : undefined;
  const groups: Array<{ message: Message<unknown>; records: DeadLetterInput[] }> = [];
  let bodiesReadable = true;
  for (const m of batch.messages) {
    const records = await deadLetterRecordsOf(m, env, config);
    if (records === null) {
      bodiesReadable = false;
      break;
    }
    // A retry of this message after its records were stored (the answer was lost) stores nothing more.
    for (const r of records) r.key = `dlq:${m.id}:${r.destination}`;
    groups.push({ message: m, records });
  }
  const left = new Set<Message<unknown>>(batch.messages);
  if (bodiesReadable) {
    // In calls of bounded size (a batch of large events dead-lettered at several destinations is too large for one);
    // each message is acked once its records are stored, and goes back to the DLQ (below) if they are not.
    for (const chunk of deadLetterCalls(groups, (g) => g.records)) {
      const records = chunk.flatMap((g) => g.records);
      try {
        await deadLetterStub(env).addShared(shareBodies(records));
      } catch (err) {
        log('error', 'dead_letter_store_failed', { count: records.length, error: errorName(err) });
        continue;
      }
      for (const g of chunk) {
        g.message.ack();
        left.delete(g.message);
      }
      if (config !== undefined) await traceDeadLetters(env, config, batch, records);
    }
  }
  if (left.size === 0) return;
  // A large event's body waits in the ledger only as long as its message was expected to need it: while the
  // store stays down it must outlive every wait below (a store down for a day would otherwise find it gone).
  const bodies = new Map(groups.map((g) => [g.message, g.records.find((r) => r.body !== '')?.body]));
  await keepBodies(env, [...left], (m) => bodies.get(m), (m) => Math.max(300, dlqRetryDelaySeconds(m.attempts)));
  // Back to the DLQ as fresh messages (their retry count starts again), in chunks a sendBatch takes
  // (a batch of large events exceeds one call's limit); each message acked or retried on its own chunk.
  let requeued = 0;
  for (const chunk of chunkForSendBatch([...left], (m) => m.body as RouterMessage)) {
    try {
      await env.EVENTS_DLQ.sendBatch(chunk.map((m) => ({ body: m.body, contentType: 'json' as const, delaySeconds: 300 })));
      for (const m of chunk) m.ack();
      requeued += chunk.length;
    } catch (err) {
      // Both the store and the queue failed: the platform keeps the message through max_retries (100) retries, then
      // drops it. Waits that double up to 12 hours stretch those retries over weeks (about 46 days), not 100 minutes.
      log('error', 'dead_letter_requeue_failed', { count: chunk.length, error: errorName(err) });
      for (const m of chunk) m.retry({ delaySeconds: dlqRetryDelaySeconds(m.attempts) });
    }
  }
  if (requeued > 0) log('warn', 'dead_letters_requeued', { count: requeued, retry_in_s: 300 });
}

/**
 * Keeps the ledger bodies of these messages (those that carry a reference)
 * for at least their wait more, plus a day: extended, or stored again from
 * `bodyOf` when the ledger no longer has it. Best effort: a ledger that
 * cannot be reached now is asked again at the message's next try.
 */
async function keepBodies(env: Env, messages: Message<unknown>[], bodyOf: (m: Message<unknown>) => string | undefined, waitSecondsOf: (m: Message<unknown>) => number): Promise<void> {
  const now = Date.now();
  await Promise.all(
    messages.map(async (m) => {
      const b = m.body;
      if (!isRouterMessage(b) || b.body_ref === undefined) return;
      const until = now + waitSecondsOf(m) * 1000 + DAY_MS + BODY_KEEP_MARGIN_MS;
      if (b.body_ref.until !== undefined && b.body_ref.until >= until) return;
      try {
        await keepBody(env, b.body_ref.shard, b.id, until, bodyOf(m));
      } catch (err) {
        log('warn', 'body_keep_failed', { event_id: b.id, error: errorName(err) });
      }
    }),
  );
}

/**
 * Keeps a body in the ledger until at least `until`; gone (it should not be,
 * but a ledger that lost it must not take the event with it), it is stored
 * again from `body`, the copy at hand, when there is one.
 */
async function keepBody(env: Env, shard: string, id: string, until: number, body: string | undefined): Promise<void> {
  const stub = ledgerStubByName(env, shard);
  if (!(await stub.extendBody(id, until)) && body !== undefined) await stub.storeBody(id, body, until);
}

/**
 * The wait before a message is tried again after a failure of the router's
 * own services (the destination registry, the dead-letter store, the queue):
 * `first` seconds, doubling with each attempt, at most 12 hours (the
 * platform's longest delay). The platform drops a message after its 100th
 * try (`max_retries`); these waits stretch those tries over about 46 days
 * instead of an hour or two.
 */
function failureRetryDelaySeconds(attempts: number, first = 30): number {
  return Math.min(first * 2 ** Math.max(0, Math.min(attempts - 1, 20)), 43_200);
}

/** The wait before the DLQ consumer's next try of a message it could neither store nor re-queue: 60 s doubling, at most 12 hours. */
function dlqRetryDelaySeconds(attempts: number): number {
  return failureRetryDelaySeconds(attempts, 60);
}

/**
 * The dead letters of one message the platform gave up on: one per
 * destination still owed, with the event's real body; null when its body
 * could not be read back from the ledger (the batch is then re-sent).
 */
async function deadLetterRecordsOf(m: Message<unknown>, env: Env, config: RouterConfig | undefined): Promise<DeadLetterInput[] | null> {
  const b = m.body;
  if (!isRouterMessage(b)) {
    return [
      deadLetterRecord({
        event_id: `queue-message:${m.id}`,
        event_type: 'unknown',
        destination: ROUTER_DESTINATION,
        reason: 'consumer_retries_exhausted',
        attempts: m.attempts,
        body: safeStringify(b),
      }),
    ];
  }
  let raw = b.body;
  if (raw === undefined && b.body_ref !== undefined) {
    try {
      raw = (await ledgerStubByName(env, b.body_ref.shard).getBody(b.id)) ?? undefined;
    } catch (err) {
      log('error', 'body_fetch_failed', { event_id: b.id, error: errorName(err) });
      return null;
    }
  }
  if (raw === undefined) return [routerDeadLetter(b, 'body_expired', '')];
  let owed: Pending | undefined = b.pending;
  if (owed === undefined && config !== undefined) {
    try {
      owed = initialDeliveries(config, JSON.parse(raw) as UnknownEvent, b.stale === true);
    } catch {
      return [routerDeadLetter(b, 'malformed_body', raw)];
    }
  }
  // No config to route by: one record that replay routes by the rules then in force.
  if (owed === undefined) return [{ ...routerDeadLetter(b, 'consumer_retries_exhausted', raw), attempts: m.attempts }];
  return Object.entries(owed).map(([destination, state]) =>
    deadLetterRecord({
      event_id: b.id,
      event_type: b.type,
      destination,
      rules: state.rules,
      reason: 'consumer_retries_exhausted',
      attempts: state.attempts,
      body: raw,
      ...eventMarks(b),
    }),
  );
}

/** The trace learns that the platform gave up on these messages: each owed delivery is dead-lettered. */
async function traceDeadLetters(env: Env, config: RouterConfig, batch: MessageBatch<unknown>, records: DeadLetterInput[]): Promise<void> {
  const trace = new TraceWriter(env, config.settings);
  const byId = new Map<string, RouterMessage>();
  for (const m of batch.messages) if (isRouterMessage(m.body)) byId.set(m.body.id, m.body);
  for (const r of records) {
    const b = byId.get(r.event_id);
    if (b === undefined) continue;
    // Where the ledger keeps the body (an inline message's body is kept in its event's shard): event replays read it there.
    const shard = keptIn(b, () => eventShardOf(r.body, config.settings.dedupShards));
    trace.add({ ...traceBase(b, shard), destination: r.destination, rules: r.rules ?? [], state: 'dead_lettered' });
  }
  await trace.flush();
}

/** The ledger shard of the event in `raw` under `shards`, or null when it is not an event. */
function eventShardOf(raw: string, shards: number): string | null {
  try {
    const event = JSON.parse(raw) as UnknownEvent;
    return typeof event === 'object' && event !== null && typeof event.id === 'string' ? ledgerShardOf(event, shards) : null;
  } catch {
    return null;
  }
}

function safeStringify(v: unknown): string {
  try {
    return JSON.stringify(v) ?? '';
  } catch {
    return '';
  }
}
