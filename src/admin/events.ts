/**
 * The delivery trace over the admin API:
 * - `GET /admin/events/<id>`: what happened to one event, per destination and attempt;
 * - `GET /admin/events?destination=&type=&state=&since=&until=&limit=&cursor=`: a page, newest first;
 * - `POST /admin/events/replay`: sends the events a filter selects again, to one named destination.
 * Identifiers, states, statuses and error classes only; never payloads.
 */
import { Hono } from 'hono';
import type { RouterConfig } from '../config/router-config';
import { loadConfig } from '../config/load';
import { ledgerStubByName } from '../dedup/shard';
import { ApiError } from '../http/errors';
import { audit, errorName, log } from '../log';
import { type RouterMessage, chunkForSendBatch, fitsInline, utf8Length } from '../queue/message';
import { listEvents, lookupEvent } from '../trace/client';
import { DELIVERY_STATES, type DeliveryState, NO_DESTINATION, type TraceAttempt, type TraceItem, type TraceQuery } from '../trace/store';
import { MAX_ID_LENGTH } from '../webhook/envelope';
import { parsePatterns, time } from './bulk';

export const eventRoutes = new Hono<{ Bindings: Env }>();

export interface EventView {
  id: string;
  type: string;
  source: TraceItem['source'];
  accepted_at: string;
  stale: boolean;
  rules: string[];
  deliveries: Array<{
    destination: string;
    state: DeliveryState;
    rules: string[];
    attempts: Array<{ at: string; status: number | null; error: string | null; duration_ms: number }>;
    next_attempt_at?: string;
  }>;
  /** Every time the router accepted this event (a replay is one more), oldest first. */
  acceptances?: Array<{ accepted_at: string; source: TraceItem['source'] }>;
}

const iso = (ms: number) => new Date(ms).toISOString();
const attemptView = (a: TraceAttempt) => ({ at: iso(a.at), status: a.status, error: a.error, duration_ms: a.duration_ms });

/** One acceptance as the API shows it. */
export function itemView(item: TraceItem): EventView {
  const deliveries = item.deliveries.filter((d) => d.destination !== NO_DESTINATION);
  return {
    id: item.id,
    type: item.type,
    source: item.source,
    accepted_at: iso(item.accepted_at),
    stale: item.stale,
    rules: [...new Set(deliveries.flatMap((d) => d.rules))],
    deliveries: deliveries.map((d) => ({
      destination: d.destination,
      state: d.state,
      rules: d.rules,
      attempts: d.attempts.map(attemptView),
      ...(d.state === 'retrying' && d.next_attempt_at !== null ? { next_attempt_at: iso(d.next_attempt_at) } : {}),
    })),
  };
}

/**
 * Every acceptance of one event folded into one view: the first acceptance's
 * fields, each destination's attempts in time order, and its state from its
 * latest update (a replay that delivered shows `delivered`).
 */
export function eventView(items: TraceItem[]): EventView | null {
  const first = items[0];
  if (first === undefined) return null;
  const byDest = new Map<string, { state: DeliveryState; rules: Set<string>; attempts: TraceAttempt[]; next: number | null; updated: number }>();
  for (const item of items) {
    for (const d of item.deliveries) {
      if (d.destination === NO_DESTINATION) continue;
      const cur = byDest.get(d.destination) ?? { state: d.state, rules: new Set<string>(), attempts: [], next: d.next_attempt_at, updated: -1 };
      for (const r of d.rules) cur.rules.add(r);
      cur.attempts.push(...d.attempts);
      if (d.updated_at >= cur.updated) {
        cur.state = d.state;
        cur.next = d.next_attempt_at;
        cur.updated = d.updated_at;
      }
      byDest.set(d.destination, cur);
    }
  }
  const deliveries = [...byDest].map(([destination, d]) => ({
    destination,
    state: d.state,
    rules: [...d.rules],
    attempts: d.attempts.sort((a, b) => a.at - b.at).map(attemptView),
    ...(d.state === 'retrying' && d.next !== null ? { next_attempt_at: iso(d.next) } : {}),
  }));
  return {
    id: first.id,
    type: first.type,
    source: first.source,
    accepted_at: iso(first.accepted_at),
    stale: first.stale,
    rules: [...new Set(deliveries.flatMap((d) => d.rules))],
    deliveries,
    acceptances: items.map((i) => ({ accepted_at: iso(i.accepted_at), source: i.source })),
  };
}

function configOrFail(env: Env): RouterConfig {
  const loaded = loadConfig(env);
  if (!loaded.ok) throw new ApiError(500, 'config_invalid', 'The router configuration is invalid; see the Worker logs.');
  return loaded.config;
}

const invalid = (message: string) => new ApiError(400, 'invalid_request', message);

function parseTime(value: unknown, name: string): number | undefined {
  return value === undefined ? undefined : time(value, name);
}

function parseState(value: unknown): DeliveryState | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'string' || !(DELIVERY_STATES as readonly string[]).includes(value)) throw invalid(`state must be one of ${DELIVERY_STATES.join(', ')}.`);
  return value as DeliveryState;
}

function parseDestination(value: unknown, name = 'destination'): string | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'string' || value === '' || value.length > 64) throw invalid(`${name} must be a destination name.`);
  return value;
}

export function encodeCursor(item: { accepted_at: number; id: string }): string {
  return btoa(JSON.stringify([item.accepted_at, item.id])).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

export function decodeCursor(cursor: string): { accepted_at: number; id: string } {
  try {
    const parsed: unknown = JSON.parse(atob(cursor.replace(/-/g, '+').replace(/_/g, '/')));
    if (Array.isArray(parsed) && parsed.length === 2 && Number.isSafeInteger(parsed[0]) && typeof parsed[1] === 'string') {
      return { accepted_at: parsed[0] as number, id: parsed[1] };
    }
  } catch {
    // fall through
  }
  throw invalid('cursor is not one this API returned; start again without it.');
}

export interface EventFilter {
  destination?: string;
  type?: string[];
  state?: DeliveryState;
  since?: number;
  until?: number;
}

/** The list filter from query parameters (`type` may repeat or be comma-separated). */
export function filterFromQuery(q: (name: string) => string | undefined, all: (name: string) => string[] | undefined): EventFilter {
  const f: EventFilter = {};
  const destination = parseDestination(q('destination') || undefined);
  if (destination !== undefined) f.destination = destination;
  const types = (all('type') ?? []).flatMap((t) => t.split(',')).map((t) => t.trim()).filter((t) => t !== '');
  if (types.length > 0) f.type = parsePatterns(types, 'type');
  const state = parseState(q('state') || undefined);
  if (state !== undefined) f.state = state;
  const since = parseTime(q('since') || undefined, 'since');
  if (since !== undefined) f.since = since;
  const until = parseTime(q('until') || undefined, 'until');
  if (until !== undefined) f.until = until;
  timeOrder(f, 'since', 'until');
  return f;
}

/** `since` must come before `until` (an empty range is a mistake, refused as the dead-letter filters refuse it). */
function timeOrder(f: EventFilter, since: string, until: string): void {
  if (f.since !== undefined && f.until !== undefined && f.since >= f.until) throw invalid(`${since} must be earlier than ${until}.`);
}

export function parseLimit(value: string | undefined, def: number, max: number): number {
  if (value === undefined || value === '') return def;
  const n = /^[0-9]{1,6}$/.test(value) ? Number(value) : Number.NaN;
  if (!Number.isInteger(n) || n < 1 || n > max) throw invalid(`limit must be a whole number from 1 to ${max}.`);
  return n;
}

export async function findEvent(env: Env, id: string): Promise<EventView | null> {
  const config = configOrFail(env);
  return eventView(await lookupEvent(env, config.settings, id));
}

export async function pageOfEvents(env: Env, filter: EventFilter, limit: number, cursor?: string) {
  // The request is validated whole before the config is looked at: a malformed cursor is 400 whatever ROUTER holds.
  const before = cursor !== undefined ? decodeCursor(cursor) : undefined;
  const config = configOrFail(env);
  const q: TraceQuery = { ...filter, limit, ...(before !== undefined ? { before } : {}) };
  const { items, more } = await listEvents(env, config.settings, q);
  const last = items[items.length - 1];
  return { items: items.map(itemView), next_cursor: more && last !== undefined ? encodeCursor(last) : null };
}

eventRoutes.get('/', async (c) => {
  const filter = filterFromQuery(
    (n) => c.req.query(n),
    (n) => c.req.queries(n),
  );
  const limit = parseLimit(c.req.query('limit'), 50, 500);
  return c.json(await pageOfEvents(c.env, filter, limit, c.req.query('cursor') || undefined));
});

eventRoutes.get('/:id', async (c) => {
  const id = c.req.param('id');
  if (id.length > MAX_ID_LENGTH) throw invalid('That is not an event id.');
  const view = await findEvent(c.env, id);
  if (view === null) throw new ApiError(404, 'not_found', 'No trace of that event: unknown, not yet consumed, or older than trace_retention_days.');
  return c.json(view);
});

export interface EventReplayRequest {
  filter: EventFilter;
  to: string;
  dry_run: boolean;
  limit: number;
  cursor?: string;
}

const REPLAY_KEYS = new Set(['filter', 'to', 'dry_run', 'limit', 'cursor']);
const FILTER_KEYS = new Set(['destination', 'event_type', 'state', 'since', 'until']);
/** Events one replay request sends at most; the response's `next_cursor` continues. */
export const EVENT_REPLAY_MAX = 500;

export function parseEventReplay(text: string): EventReplayRequest {
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    throw invalid('The body must be JSON: {"filter": {…}, "to": "<destination>"}.');
  }
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw invalid('The body must be a JSON object.');
  const b = body as Record<string, unknown>;
  for (const k of Object.keys(b)) if (!REPLAY_KEYS.has(k)) throw invalid(`Unknown field ${JSON.stringify(k.slice(0, 40))}.`);
  const raw = b.filter;
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw invalid('filter is required (an object; {} selects every traced event).');
  const rf = raw as Record<string, unknown>;
  for (const k of Object.keys(rf)) if (!FILTER_KEYS.has(k)) throw invalid(`Unknown filter field ${JSON.stringify(k.slice(0, 40))}.`);
  const filter: EventFilter = {};
  const destination = parseDestination(rf.destination, 'filter.destination');
  if (destination !== undefined) filter.destination = destination;
  if (rf.event_type !== undefined) filter.type = parsePatterns(rf.event_type, 'filter.event_type');
  const state = parseState(rf.state);
  if (state !== undefined) filter.state = state;
  const since = parseTime(rf.since, 'filter.since');
  if (since !== undefined) filter.since = since;
  const until = parseTime(rf.until, 'filter.until');
  if (until !== undefined) filter.until = until;
  timeOrder(filter, 'filter.since', 'filter.until');
  const to = parseDestination(b.to, 'to');
  if (to === undefined) throw invalid('to is required: the destination to send the events to.');
  if (b.dry_run !== undefined && typeof b.dry_run !== 'boolean') throw invalid('dry_run must be true or false.');
  if (b.limit !== undefined && (typeof b.limit !== 'number' || !Number.isInteger(b.limit) || b.limit < 1 || b.limit > EVENT_REPLAY_MAX)) {
    throw invalid(`limit must be a whole number from 1 to ${EVENT_REPLAY_MAX}.`);
  }
  if (b.cursor !== undefined && typeof b.cursor !== 'string') throw invalid('cursor must be a string this API returned.');
  return { filter, to, dry_run: b.dry_run === true, limit: (b.limit as number | undefined) ?? 100, ...(typeof b.cursor === 'string' ? { cursor: b.cursor } : {}) };
}

export interface EventReplayResult {
  to: string;
  dry_run: boolean;
  /** Acceptances the filter selected on this page. */
  matched: number;
  /** Events enqueued for `to` (each event once, however many acceptances it had). */
  replayed: number;
  /** Events whose body is no longer kept (past `dedup_retention_days`): reported, never silently skipped. */
  not_replayable: Array<{ id: string; reason: 'body_expired' }>;
  /** Dry run: events that would be sent. */
  replayable?: number;
  next_cursor: string | null;
}

/**
 * Where a replay the queue refused part-way goes on: the cursor after the
 * longest run of the page's first items whose events were sent (or could
 * not be: not replayable), so the next request starts at the first event not
 * sent. `from` (the request's own cursor) when none was.
 */
function resumeCursor(items: readonly TraceItem[], sent: ReadonlySet<string>, from: string | null): string | null {
  let cursor = from;
  for (const item of items) {
    if (!sent.has(item.id)) break;
    cursor = encodeCursor(item);
  }
  return cursor;
}

/**
 * Sends the events one page of the trace selects to `to` again, as fresh
 * deliveries (attempts start at zero, source `replay`). Bodies are read from
 * the ledger once per shard; messages go out in `sendBatch` chunks.
 */
export async function replayEvents(env: Env, req: EventReplayRequest): Promise<EventReplayResult> {
  const before = req.cursor !== undefined ? decodeCursor(req.cursor) : undefined;
  const config = configOrFail(env);
  const dest = config.destinations.get(req.to);
  if (dest === undefined) throw new ApiError(404, 'not_found', 'No destination with that name in the configuration.');
  const q: TraceQuery = { ...req.filter, limit: req.limit, ...(before !== undefined ? { before } : {}) };
  const { items, more } = await listEvents(env, config.settings, q);
  const last = items[items.length - 1];
  const next_cursor = more && last !== undefined ? encodeCursor(last) : null;
  const unique = new Map<string, TraceItem>();
  for (const item of items) if (!unique.has(item.id)) unique.set(item.id, item);
  const result: EventReplayResult = { to: req.to, dry_run: req.dry_run, matched: items.length, replayed: 0, not_replayable: [], next_cursor };
  // Bodies, one request per ledger shard.
  const byShard = new Map<string, string[]>();
  for (const item of unique.values()) {
    if (item.body_shard !== null) byShard.set(item.body_shard, [...(byShard.get(item.body_shard) ?? []), item.id]);
  }
  const bodies = new Map<string, { body: string; shard: string }>();
  try {
    await Promise.all(
      [...byShard].map(async ([shard, ids]) => {
        const found = await ledgerStubByName(env, shard).getBodies(ids);
        for (const [id, body] of Object.entries(found)) bodies.set(id, { body, shard });
      }),
    );
  } catch (err) {
    // Nothing was sent yet: the whole request can be retried.
    log('warn', 'event_replay_bodies_unavailable', { to: req.to, error: errorName(err) });
    throw new ApiError(503, 'temporarily_unavailable', 'The stored event bodies could not be read; nothing was sent. Retry shortly.');
  }
  const messages: RouterMessage[] = [];
  const now = Date.now();
  for (const item of unique.values()) {
    const kept = bodies.get(item.id);
    if (kept === undefined) {
      result.not_replayable.push({ id: item.id, reason: 'body_expired' });
      continue;
    }
    const message: RouterMessage = {
      v: 1,
      id: item.id,
      type: item.type,
      created_at: createdAtOf(kept.body),
      source: item.source === 'reconcile' ? 'reconcile' : 'webhook',
      accepted_at: now,
      replay: true,
      pending: { [req.to]: { attempts: 0, rules: ['(replay)'] } },
    };
    if (item.stale) message.stale = true;
    if (fitsInline(message, kept.body, utf8Length(kept.body))) {
      message.body = kept.body;
      message.ledger_shard = kept.shard;
    } else message.body_ref = { shard: kept.shard };
    messages.push(message);
  }
  if (!req.dry_run) {
    for (const chunk of chunkForSendBatch(messages, (m) => m)) {
      try {
        await env.EVENTS_QUEUE.sendBatch(chunk.map((m) => ({ body: m, contentType: 'json' as const })));
      } catch {
        log('error', 'event_replay_enqueue_failed', { to: req.to, replayed: result.replayed, left: messages.length - result.replayed });
        if (result.replayed === 0) throw new ApiError(503, 'temporarily_unavailable', 'The queue refused the replay; nothing was sent. Run the same request again.');
        audit('events_replayed', { to: req.to, replayed: result.replayed, not_replayable: result.not_replayable.length, incomplete: true });
        // Sent again, those would reach the destination twice: replays are not deduplicated by receivers.
        const resume_cursor = resumeCursor(items, new Set([...messages.slice(0, result.replayed).map((m) => m.id), ...result.not_replayable.map((n) => n.id)]), req.cursor ?? null);
        throw new ApiError(
          503,
          'temporarily_unavailable',
          `The queue refused the replay after ${result.replayed} of ${messages.length} events. Running the same request again would send those ${result.replayed} again: continue with "cursor": resume_cursor to send the rest.`,
          {},
          { replayed: result.replayed, resume_cursor },
        );
      }
      result.replayed += chunk.length;
    }
    audit('events_replayed', { to: req.to, replayed: result.replayed, not_replayable: result.not_replayable.length });
  } else result.replayable = messages.length;
  return result;
}

function createdAtOf(body: string): string {
  try {
    const v = (JSON.parse(body) as { created_at?: unknown }).created_at;
    return typeof v === 'string' ? v : '';
  } catch {
    return '';
  }
}

eventRoutes.post('/replay', async (c) => {
  const req = parseEventReplay(await c.req.text());
  return c.json(await replayEvents(c.env, req));
});
