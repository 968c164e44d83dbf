/**
 * Bulk dead-letter actions (`POST /admin/dead-letters/replay` and
 * `/discard`): the request, its validation, and the job summary the store
 * reports. The work itself runs in the dead-letter store (src/deadletters/store.ts),
 * in bounded slices driven by its alarm.
 *
 * Body: `{ "filter": { … }, "dry_run"?: boolean }`. `filter` is required, even
 * empty (`"filter": {}` selects every dead letter), so that a bare `{}` never
 * acts on the whole store by accident. Every given condition must hold:
 * - `destination`: exact destination name (`(router)` for records the router itself could not route);
 * - `event_type`: a pattern or a list of patterns, as in rules (`*` any run of
 *   characters, a leading `!` excludes; a list of only exclusions selects every other type);
 * - `reason`: exact, or a prefix when it ends in `*` (`http_*`);
 * - `since` (inclusive) / `until` (exclusive): ISO 8601 times compared with `dead_at`.
 */
import { parseIsoTime } from '../config/iso-time';
import { suggest } from '../config/router-config';
import { ApiError } from '../http/errors';

export type BulkAction = 'replay' | 'discard';

export interface DeadLetterFilter {
  destination?: string;
  /** Patterns, always a list once validated. */
  event_type?: string[];
  /** Exact, or a prefix when it ends in `*`. */
  reason?: string;
  /** ISO 8601 (normalised to `toISOString()`), inclusive. */
  since?: string;
  /** ISO 8601 (normalised to `toISOString()`), exclusive. */
  until?: string;
}

export interface BulkRequest {
  filter: DeadLetterFilter;
  dry_run: boolean;
}

export type JobState = 'running' | 'done' | 'failed';

/** A bulk job as reported by the admin API: identifiers and counts, never payloads. */
export interface DeadLetterJob {
  id: string;
  action: BulkAction;
  state: JobState;
  filter: DeadLetterFilter;
  /** Records the filter selected when the job started (records added later are never part of it). */
  matched: number;
  /** Replayed (or found already delivered, for events reconciliation could not enqueue) / discarded. */
  done: number;
  /** Kept in the store: not replayable, or busy in another job; includes `uncertain`. */
  failed: number;
  /** Records whose replay was in flight when the store restarted: kept, and logged (`dead_letter_replay_uncertain`). */
  uncertain: number;
  started_at: string;
  finished_at: string | null;
  /** Why the job is waiting (retrying) or why it failed. */
  error?: string;
}

/** Outcome of starting a bulk action in the store. */
export type StartResult =
  /** `max_seq`: the newest record the count saw (a confirmation may limit its job to it). */
  | { kind: 'dry_run'; matched: number; max_seq: number }
  | { kind: 'started'; job: DeadLetterJob }
  | { kind: 'existing'; job: DeadLetterJob }
  | { kind: 'key_reused'; job_id: string }
  /** A new replay job was refused: `ROUTER` is invalid (a repeated key still gets its job). */
  | { kind: 'config_invalid' };

/** Patterns as rules accept them (src/config/router-config.ts): letters, digits, `_ . - *`, an optional leading `!`. */
const PATTERN = /^!?[A-Za-z0-9_.*-]+$/;
const BODY_KEYS = ['filter', 'dry_run'] as const;
const FILTER_KEYS = ['destination', 'event_type', 'reason', 'since', 'until'] as const;
const MAX_TEXT = 256;
const MAX_PATTERNS = 100;
/** Idempotency keys: 1–255 printable ASCII characters without spaces (a UUID, a ULID, a request id). */
const IDEMPOTENCY_KEY = /^[\x21-\x7E]{1,255}$/;

const EXAMPLE = '{"filter": {"destination": "crm"}}';

function invalid(message: string): ApiError {
  return new ApiError(400, 'invalid_request', message);
}

/** A key name for an error message: quoted, bounded, never raw control characters. */
/** A request's field name in an error: JSON-quoted, cut at 64 characters. */
export function quoted(key: string): string {
  return JSON.stringify(key.length > 64 ? `${key.slice(0, 64)}…` : key);
}

export function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Parses and validates a bulk request body; throws `400 invalid_request` naming the problem. */
export function parseBulkRequest(text: string): BulkRequest {
  if (text.trim() === '') {
    throw invalid(`The body must be a JSON object with a "filter", e.g. ${EXAMPLE}; send "filter": {} to select every dead letter.`);
  }
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    throw invalid(`The body must be JSON, e.g. ${EXAMPLE}.`);
  }
  if (!isObject(body)) throw invalid(`The body must be a JSON object, e.g. ${EXAMPLE}.`);
  for (const key of Object.keys(body)) {
    if (!(BODY_KEYS as readonly string[]).includes(key)) {
      throw invalid(`Unknown field ${quoted(key)}${suggest(key, BODY_KEYS)}: the body takes "filter" and "dry_run".`);
    }
  }
  if (body.dry_run !== undefined && typeof body.dry_run !== 'boolean') throw invalid('"dry_run" must be true or false.');
  if (body.filter === undefined) {
    throw invalid('"filter" is required: name the dead letters to act on, or send "filter": {} to select every dead letter.');
  }
  return { filter: parseFilter(body.filter), dry_run: body.dry_run === true };
}

function parseFilter(raw: unknown): DeadLetterFilter {
  if (!isObject(raw)) throw invalid(`"filter" must be an object, e.g. ${EXAMPLE} ({} selects every dead letter).`);
  const filter: DeadLetterFilter = {};
  for (const key of Object.keys(raw)) {
    if (!(FILTER_KEYS as readonly string[]).includes(key)) {
      throw invalid(`Unknown filter field ${quoted(key)}${suggest(key, FILTER_KEYS)}: a filter takes ${FILTER_KEYS.map((k) => `"${k}"`).join(', ')}.`);
    }
  }
  if (raw.destination !== undefined) filter.destination = text(raw.destination, 'filter.destination');
  if (raw.event_type !== undefined) filter.event_type = parsePatterns(raw.event_type);
  if (raw.reason !== undefined) {
    const reason = text(raw.reason, 'filter.reason');
    if (reason.slice(0, -1).includes('*')) throw invalid('filter.reason: "*" may only end a reason prefix, as in "http_*".');
    filter.reason = reason;
  }
  const since = raw.since !== undefined ? time(raw.since, 'filter.since') : undefined;
  const until = raw.until !== undefined ? time(raw.until, 'filter.until') : undefined;
  if (since !== undefined && until !== undefined && since >= until) throw invalid('filter.since must be earlier than filter.until.');
  if (since !== undefined) filter.since = new Date(since).toISOString();
  if (until !== undefined) filter.until = new Date(until).toISOString();
  return filter;
}

function text(v: unknown, at: string): string {
  if (typeof v !== 'string' || v === '') throw invalid(`${at} must be a non-empty string.`);
  if (v.length > MAX_TEXT) throw invalid(`${at} must be at most ${MAX_TEXT} characters long.`);
  return v;
}

/** Event-type patterns as in rules: one pattern or a non-empty list (shared with the trace's filters). */
export function parsePatterns(v: unknown, name = 'filter.event_type'): string[] {
  const list = typeof v === 'string' ? [v] : v;
  if (!Array.isArray(list) || list.length === 0) {
    throw invalid(`${name} must be a pattern or a non-empty list of patterns, e.g. "dsync.*" or ["user.*", "!user.deleted"].`);
  }
  if (list.length > MAX_PATTERNS) throw invalid(`${name} takes at most ${MAX_PATTERNS} patterns.`);
  return list.map((p: unknown, i) => {
    const at = typeof v === 'string' ? name : `${name}[${i}]`;
    if (typeof p !== 'string' || p === '' || p === '!') throw invalid(`${at}: empty pattern (a pattern is a string such as "dsync.*").`);
    if (p.length > MAX_TEXT || !PATTERN.test(p)) {
      throw invalid(`${at}: invalid pattern (letters, digits, "_", ".", "-", "*", and a leading "!" to exclude).`);
    }
    return p;
  });
}


/** A strict ISO 8601 time (with its zone) or date, in ms; shared with the trace's filters. */
export function time(v: unknown, at: string): number {
  const ms = typeof v === 'string' ? parseIsoTime(v) : null;
  if (ms === null) throw invalid(`${at} must be an ISO 8601 time with its zone, e.g. "2026-11-01T00:00:00Z" (or a date, "2026-11-01").`);
  return ms;
}

/** The `Idempotency-Key` header: absent, or 1–255 printable ASCII characters without spaces. */
export function parseIdempotencyKey(header: string | undefined): string | null {
  if (header === undefined) return null;
  const key = header.trim();
  if (!IDEMPOTENCY_KEY.test(key)) throw invalid('Idempotency-Key must be 1–255 printable ASCII characters without spaces (a UUID, for example).');
  return key;
}

/**
 * What an idempotency key stands for: the action and the filter, in a
 * canonical form (fields in a fixed order), so a retry of the same request
 * matches and a different request under the same key does not.
 */
export function requestFingerprint(action: BulkAction, filter: DeadLetterFilter): string {
  return JSON.stringify([action, filter.destination ?? null, filter.event_type ?? null, filter.reason ?? null, filter.since ?? null, filter.until ?? null]);
}
