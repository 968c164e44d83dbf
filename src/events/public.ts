/**
 * The public entry point for downstream projects (package.json `exports`,
 * `"./events"`):
 *
 *   import { type RoutedEvent, parseRoutedMessage } from 'workos-event-router/events';
 *
 * It re-exports the event catalog (the `EVENT_TYPES` list, `EventType`,
 * `EventPayload`, `WorkOSEvent`, `isCatalogEventType`) and describes what a
 * **queue destination** receives from the router: the WorkOS envelope
 * (`id`, `event`, `data`, `created_at`, optional `context`, and `object` for
 * events recovered from the Events API) re-serialised as JSON, with
 * `"stale": true` added when the router judged it out of order (see
 * `src/destinations/queue.ts`; README "Out-of-order protection"). The field is
 * absent, never `false`, when the event is not stale.
 *
 * Runtime cost: the catalog's list and its `Set` (from `./catalog`), and the
 * few lines of `parseRoutedMessage` below. Everything else is type-only and
 * erased at build time; nothing from `@workos-inc/node` reaches a bundle.
 */
import { type EventEnvelope, type WorkOSEvent, isCatalogEventType } from './catalog';

export { EVENT_TYPES, isCatalogEventType } from './catalog';
export type { EventEnvelope, EventFamily, EventPayload, EventType, WorkOSEvent } from './catalog';

/** The marks the router adds to the envelope it sends to a queue destination. */
export interface RouterMarks {
  /**
   * `true` when a newer event for the same object (or subject) was already
   * routed, or the object was deleted before this event arrived. Absent
   * otherwise. Only rules with `stale = "deliver"` (the default) send these.
   */
  stale?: true;
}

/**
 * A catalog event as a queue destination receives it: a union discriminated
 * on `event` (`switch (e.event)` narrows `data`), plus the router's marks.
 */
export type RoutedEvent = WorkOSEvent & RouterMarks;

/**
 * An event whose type this catalog does not know (WorkOS adds types over time;
 * the router routes them by pattern): its payload is not typed. Kept apart
 * from `RoutedEvent` (its `event` is any string, which would stop `switch
 * (e.event)` from narrowing), as the `known: false` result of
 * `parseRoutedMessage`.
 */
export type UnknownRoutedEvent = EventEnvelope<string, Record<string, unknown>> & RouterMarks;

export type ParseRoutedMessageResult =
  | { ok: true; known: true; event: RoutedEvent }
  | { ok: true; known: false; event: UnknownRoutedEvent }
  | { ok: false; reason: string };

/**
 * Checks a queue message body (`message.body`) and types it: a JSON object
 * with non-empty string `id`, `event` and `created_at`, an object `data`, and,
 * when present, an object (or null) `context` and a boolean `stale`. Only the
 * envelope is checked, not the payload inside `data`. An event type outside
 * the catalog is accepted with `known: false` as an `UnknownRoutedEvent`, so
 * a consumer can skip it instead of failing. Never throws; the `reason` never
 * quotes the message.
 *
 * Returns the body itself, except that `context: null` and `stale: false`
 * (neither of which the catalog types) are dropped, in a shallow copy.
 */
export function parseRoutedMessage(body: unknown): ParseRoutedMessageResult {
  try {
    if (!isRecord(body)) return { ok: false, reason: 'The message body is not a JSON object.' };
    for (const field of ['id', 'event', 'created_at'] as const) {
      const v = body[field];
      if (typeof v !== 'string' || v.length === 0) return { ok: false, reason: `The event has no non-empty string "${field}".` };
    }
    if (!isRecord(body['data'])) return { ok: false, reason: 'The event has no object "data".' };
    const context = body['context'];
    if (context !== undefined && context !== null && !isRecord(context)) {
      return { ok: false, reason: 'The event "context", when present, is not an object.' };
    }
    const stale = body['stale'];
    if (stale !== undefined && typeof stale !== 'boolean') {
      return { ok: false, reason: 'The event "stale" mark, when present, is not a boolean.' };
    }
    if (context === null || stale === false) {
      const copy: Record<string, unknown> = { ...body };
      if (context === null) delete copy['context'];
      if (stale === false) delete copy['stale'];
      return typed(copy);
    }
    return typed(body);
  } catch {
    // A throwing getter or a revoked Proxy (a body that did not come from JSON): refuse it, never throw.
    return { ok: false, reason: 'The message body could not be read.' };
  }
}

function typed(event: Record<string, unknown>): ParseRoutedMessageResult {
  return isCatalogEventType(event['event'] as string)
    ? { ok: true, known: true, event: event as unknown as RoutedEvent }
    : { ok: true, known: false, event: event as unknown as UnknownRoutedEvent };
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
