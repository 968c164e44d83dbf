/**
 * The WorkOS Events API client (`GET /events`), kept minimal on purpose: it
 * returns the wire objects exactly as sent (snake_case), never passing them
 * through an SDK deserializer that renames fields. Each event also comes with
 * its `created_at` in ms (an event whose `created_at` is not a time makes the
 * page malformed: the reconciler orders and windows by it).
 */
import { isLoopbackHost } from '../config/router-config';
import type { UnknownEvent } from '../events/catalog';
import { parseRetryAfter } from '../destinations/types';
import { envelopeProblem } from '../webhook/envelope';

export interface EventsPageQuery {
  events: readonly string[];
  /** Cursor: the events after this id. Takes precedence over `rangeStart`. */
  after?: string;
  /** ISO time: the events created at or after it. */
  rangeStart?: string;
  limit: number;
}

export interface ApiEvent {
  event: UnknownEvent;
  /** The event as JSON text (what is admitted and dead-lettered). */
  raw: string;
  /** `created_at` in ms since the epoch. */
  createdAtMs: number;
}

/** An item of a page that is not an event the router can take (so it is skipped, not the whole page). */
export interface SkippedItem {
  /** Its `id` when it has a printable one. */
  id: string | null;
  problem: string;
}

export type EventsPage =
  | {
      ok: true;
      events: ApiEvent[];
      after: string | null;
      /** Items skipped (not an event envelope, or a `created_at` that is not a time). */
      skipped: SkippedItem[];
      /** How many items the page held, skipped ones included. */
      items: number;
      /** The `id` of the page's last item (skipped or not), when it has one: where the next page starts. */
      lastId: string | null;
    }
  | {
      ok: false;
      kind: 'unauthorized' | 'rate_limited' | 'server_error' | 'client_error' | 'malformed' | 'network';
      status: number | null;
      retryAfterSeconds?: number;
      message: string;
    };

export async function fetchEventsPage(baseUrl: string, apiKey: string, q: EventsPageQuery, timeoutMs = 15_000): Promise<EventsPage> {
  let url: URL;
  try {
    url = new URL('/events', baseUrl);
  } catch {
    return { ok: false, kind: 'client_error', status: null, message: 'WORKOS_API_BASE_URL is not a URL; the API key was not sent.' };
  }
  // The API key travels in the Authorization header: never over plain HTTP, except to a loopback host (tests, local mocks).
  if (url.protocol !== 'https:' && !(url.protocol === 'http:' && isLoopbackHost(url.hostname))) {
    return { ok: false, kind: 'client_error', status: null, message: 'WORKOS_API_BASE_URL must use https:// (http:// only for loopback hosts); the API key was not sent.' };
  }
  for (const type of q.events) url.searchParams.append('events[]', type);
  url.searchParams.set('limit', String(q.limit));
  url.searchParams.set('order', 'asc');
  if (q.after !== undefined) url.searchParams.set('after', q.after);
  else if (q.rangeStart !== undefined) url.searchParams.set('range_start', q.rangeStart);
  let res: Response;
  try {
    res = await fetch(url.toString(), {
      headers: { Authorization: `Bearer ${apiKey}`, Accept: 'application/json', 'User-Agent': 'workos-event-router/0.1' },
      // Never follow a redirect with the API key in the Authorization header.
      redirect: 'manual',
      signal: AbortSignal.timeout(timeoutMs),
    });
  } catch {
    return { ok: false, kind: 'network', status: null, message: 'The WorkOS API could not be reached.' };
  }
  if (res.status === 401 || res.status === 403) {
    await res.body?.cancel();
    return { ok: false, kind: 'unauthorized', status: res.status, message: `The WorkOS API refused the API key (HTTP ${res.status}); check WORKOS_API_KEY.` };
  }
  if (res.status === 429) {
    await res.body?.cancel();
    const out: EventsPage = { ok: false, kind: 'rate_limited', status: 429, message: 'The WorkOS API rate-limited the reconciler.' };
    const ra = parseRetryAfter(res.headers.get('retry-after'));
    if (ra !== undefined) out.retryAfterSeconds = ra;
    return out;
  }
  if (res.status >= 500) {
    await res.body?.cancel();
    return { ok: false, kind: 'server_error', status: res.status, message: `The WorkOS API answered HTTP ${res.status}.` };
  }
  if (res.status < 200 || res.status >= 300) {
    await res.body?.cancel();
    return { ok: false, kind: 'client_error', status: res.status, message: `The WorkOS API answered HTTP ${res.status}.` };
  }
  let body: unknown;
  try {
    body = await res.json();
  } catch {
    return { ok: false, kind: 'malformed', status: res.status, message: 'The WorkOS API answered with a body that is not JSON.' };
  }
  if (typeof body !== 'object' || body === null || !Array.isArray((body as { data?: unknown }).data)) {
    return { ok: false, kind: 'malformed', status: res.status, message: 'The WorkOS API answer has no "data" list.' };
  }
  const list = body as { data: unknown[]; list_metadata?: { after?: unknown } };
  const events: ApiEvent[] = [];
  const skipped: SkippedItem[] = [];
  let lastId: string | null = null;
  // One bad item is skipped (and reported), not the whole page: a page refused for it would be refused on every run.
  for (const item of list.data) {
    const id = itemId(item);
    if (id !== null) lastId = id;
    const problem = envelopeProblem(item);
    if (problem !== null) {
      skipped.push({ id, problem });
      continue;
    }
    const event = item as UnknownEvent;
    const createdAtMs = Date.parse(event.created_at);
    if (Number.isNaN(createdAtMs)) {
      skipped.push({ id, problem: 'its "created_at" is not an ISO 8601 time' });
      continue;
    }
    events.push({ event, raw: JSON.stringify(item), createdAtMs });
  }
  const after = list.list_metadata?.after;
  return { ok: true, events, after: typeof after === 'string' && after !== '' ? after : null, skipped, items: list.data.length, lastId };
}

/** An item's `id`, when it is a printable string an `after` cursor can carry (0x21–0x7E, at most 256 characters). */
function itemId(item: unknown): string | null {
  if (typeof item !== 'object' || item === null) return null;
  const id = (item as { id?: unknown }).id;
  return typeof id === 'string' && /^[\x21-\x7E]{1,256}$/.test(id) ? id : null;
}
