/**
 * The delivery trace: what happened to every accepted event, per destination
 * and per attempt. Identifiers, states, HTTP statuses and error classes only;
 * bodies are never copied here (they stay in the dedup ledger, see
 * `DedupLedger.getBody`).
 *
 * Storage is one SQLite-backed Durable Object per UTC day of acceptance and
 * trace shard (`trace_shards`, by event id), so it scales with traffic by
 * adding shards, and retention is a whole object: each bucket deletes itself
 * by alarm once its day is older than `trace_retention_days`. The consumer
 * writes once per bucket per invocation (`TraceWriter`), never once per
 * attempt.
 *
 * One row per (destination, acceptance, event), keyed in that order so that
 * a destination's history is one key range, newest first: inserting it writes
 * the row and one index entry (`trace_by_event`, for lookups by id); every
 * later attempt rewrites that one row (its attempts are a JSON list in it).
 * Deliveries in any state but `delivered` are also kept in a partial index
 * (`trace_unhappy`): the incident questions ("what is retrying, held, dead")
 * read only those, and the common case — delivered at the first attempt —
 * never writes it.
 */
import { applyLogLevelOnce } from '../config/load';
import { DurableObject } from 'cloudflare:workers';
import { Matcher } from '../routing/matcher';
import { log } from '../log';

export type DeliveryState = 'delivered' | 'retrying' | 'held' | 'dead_lettered' | 'discarded' | 'stale_dropped' | 'unrouted';
export const DELIVERY_STATES: readonly DeliveryState[] = ['delivered', 'retrying', 'held', 'dead_lettered', 'discarded', 'stale_dropped', 'unrouted'];
export type TraceSource = 'webhook' | 'reconcile' | 'replay';

/** The destination name of a trace row for an event no rule sent anywhere (`unrouted`). */
export const NO_DESTINATION = '';

export interface TraceAttempt {
  /** ms since epoch when the attempt started. */
  at: number;
  /** HTTP status the destination answered, when it answered. */
  status: number | null;
  /** Short machine-readable reason of a failure (`http_503`, `timeout`, …), null on success. */
  error: string | null;
  duration_ms: number;
}

/** What one consumer invocation learned about one delivery of one accepted event. */
export interface TraceWrite {
  event_id: string;
  event_type: string;
  source: TraceSource;
  accepted_at: number;
  stale: boolean;
  /** The ledger shard that keeps the event's body (for payload views and replays). */
  body_shard: string | null;
  destination: string;
  rules: string[];
  state: DeliveryState;
  attempt?: TraceAttempt;
  next_attempt_at?: number | null;
}

export interface TraceDelivery {
  destination: string;
  state: DeliveryState;
  rules: string[];
  attempts: TraceAttempt[];
  next_attempt_at: number | null;
  updated_at: number;
}

/** One acceptance of one event, with its deliveries. */
export interface TraceItem {
  id: string;
  type: string;
  source: TraceSource;
  accepted_at: number;
  stale: boolean;
  body_shard: string | null;
  deliveries: TraceDelivery[];
}

export interface TraceQuery {
  destination?: string;
  /** Patterns as in rules (`*`, leading `!`). */
  type?: string[];
  state?: DeliveryState;
  /** ms, inclusive. */
  since?: number;
  /** ms, exclusive. */
  until?: number;
  /** Only acceptances strictly before this one (newest-first paging). */
  before?: { accepted_at: number; id: string };
  limit: number;
}

type Key = { accepted_at: number; event_id: string };

type Row = {
  accepted_at: number;
  event_id: string;
  destination: string;
  event_type: string;
  source: string;
  stale: number;
  body_shard: string | null;
  rules: string;
  state: string;
  next_attempt_at: number | null;
  attempts: string;
  updated_at: number;
};

/** Most attempts kept per delivery row (the newest ones). */
const MAX_ATTEMPTS_KEPT = 50;

export class DeliveryTrace extends DurableObject<Env> {
  private readonly sql: SqlStorage;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    applyLogLevelOnce(env);
    this.sql = ctx.storage.sql;
    this.sql.exec(`
      CREATE TABLE IF NOT EXISTS trace (
        destination TEXT NOT NULL,
        accepted_at INTEGER NOT NULL,
        event_id TEXT NOT NULL,
        event_type TEXT NOT NULL,
        source TEXT NOT NULL,
        stale INTEGER NOT NULL,
        body_shard TEXT,
        rules TEXT NOT NULL,
        state TEXT NOT NULL,
        next_attempt_at INTEGER,
        attempts TEXT NOT NULL,
        updated_at INTEGER NOT NULL,
        PRIMARY KEY (destination, accepted_at, event_id)
      ) WITHOUT ROWID;
      CREATE INDEX IF NOT EXISTS trace_by_event ON trace (event_id);
      CREATE INDEX IF NOT EXISTS trace_unhappy ON trace (state, accepted_at, event_id) WHERE state <> 'delivered';
      CREATE TABLE IF NOT EXISTS trace_destinations (destination TEXT PRIMARY KEY) WITHOUT ROWID;
      CREATE TABLE IF NOT EXISTS trace_types (event_type TEXT PRIMARY KEY) WITHOUT ROWID;
    `);
  }

  /** Event types this bucket has rows for (written once per type per bucket): a type filter resolves to these. */
  private types(): string[] {
    return this.sql.exec<{ event_type: string }>('SELECT event_type FROM trace_types').toArray().map((r) => r.event_type);
  }

  /** Destinations this bucket has rows for (written once per destination per bucket). */
  private destinations(): string[] {
    return this.sql.exec<{ destination: string }>('SELECT destination FROM trace_destinations').toArray().map((r) => r.destination);
  }

  /**
   * Records what one invocation learned. `expiresAt`: when this bucket may be
   * deleted whole (its day's end plus the retention); the alarm is moved only
   * later, never earlier.
   */
  async record(writes: TraceWrite[], expiresAt: number): Promise<void> {
    const now = Date.now();
    const known = new Set(this.destinations());
    const types = new Set(this.types());
    for (const w of writes) {
      if (!known.has(w.destination)) {
        this.sql.exec('INSERT OR IGNORE INTO trace_destinations (destination) VALUES (?)', w.destination);
        known.add(w.destination);
      }
      if (!types.has(w.event_type)) {
        this.sql.exec('INSERT OR IGNORE INTO trace_types (event_type) VALUES (?)', w.event_type);
        types.add(w.event_type);
      }
      const attempt = w.attempt !== undefined ? JSON.stringify(w.attempt) : null;
      this.sql.exec(
        `INSERT INTO trace (accepted_at, event_id, destination, event_type, source, stale, body_shard, rules, state, next_attempt_at, attempts, updated_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, CASE WHEN ?11 IS NULL THEN '[]' ELSE json_array(json(?11)) END, ?)
         ON CONFLICT (destination, accepted_at, event_id) DO UPDATE SET
           state = excluded.state,
           next_attempt_at = excluded.next_attempt_at,
           body_shard = COALESCE(excluded.body_shard, trace.body_shard),
           attempts = CASE WHEN ?11 IS NULL THEN trace.attempts ELSE json_insert(trace.attempts, '$[#]', json(?11)) END,
           updated_at = excluded.updated_at`,
        w.accepted_at,
        w.event_id,
        w.destination,
        w.event_type,
        w.source,
        w.stale ? 1 : 0,
        w.body_shard,
        JSON.stringify(w.rules),
        w.state,
        w.next_attempt_at ?? null,
        attempt,
        now,
      );
    }
    const alarm = await this.ctx.storage.getAlarm();
    if (alarm === null || alarm < expiresAt) await this.ctx.storage.setAlarm(expiresAt);
  }

  /** Marks dead-lettered deliveries of these events as discarded (their dead letters were deleted). */
  async discard(pairs: Array<{ event_id: string; destination: string }>): Promise<number> {
    let changed = 0;
    const now = Date.now();
    for (const p of pairs) {
      changed += this.sql.exec(
        "UPDATE trace SET state = 'discarded', next_attempt_at = NULL, updated_at = ? WHERE event_id = ? AND destination = ? AND state = 'dead_lettered'",
        now,
        p.event_id,
        p.destination,
      ).rowsWritten;
    }
    return changed;
  }

  /** Every acceptance of one event kept in this bucket. */
  async lookup(id: string): Promise<TraceItem[]> {
    return group(this.sql.exec<Row>('SELECT * FROM trace WHERE event_id = ? ORDER BY accepted_at, destination', id).toArray());
  }

  /**
   * Acceptances newest first, each with all its deliveries, that the query
   * selects. A state other than `delivered` reads the partial index; anything
   * else reads each destination's key range newest first (one destination, or
   * every one this bucket has, merged), stopping once `limit` acceptances match.
   */
  async list(q: TraceQuery): Promise<TraceItem[]> {
    const time: string[] = [];
    const timeArgs: SqlStorageValue[] = [];
    if (q.since !== undefined) {
      time.push('accepted_at >= ?');
      timeArgs.push(q.since);
    }
    if (q.until !== undefined) {
      time.push('accepted_at < ?');
      timeArgs.push(q.until);
    }
    if (q.before !== undefined) {
      time.push('(accepted_at < ? OR (accepted_at = ? AND event_id < ?))');
      timeArgs.push(q.before.accepted_at, q.before.accepted_at, q.before.id);
    }
    if (q.type !== undefined) {
      // The patterns select among the types present; SQL then filters the scan natively.
      const patterns = q.type;
      const selected = this.types().filter((t) => Matcher.namesMatch(patterns, t));
      if (selected.length === 0) return [];
      time.push('event_type IN (SELECT value FROM json_each(?))');
      timeArgs.push(JSON.stringify(selected));
    }
    const keys = new Map<string, Key>();
    // Up to `limit` acceptances from one scan, newest first: an acceptance has a row per destination, so rows
    // are counted by acceptance (counting rows ended a page early, and its `more` said there was no next one).
    const take = (rows: Iterable<{ accepted_at: number; event_id: string; event_type: string }>) => {
      const found = new Set<string>();
      for (const row of rows) {
        const key = `${row.accepted_at}\u0000${row.event_id}`;
        if (!keys.has(key)) keys.set(key, { accepted_at: row.accepted_at, event_id: row.event_id });
        found.add(key);
        if (found.size >= q.limit) break;
      }
    };
    if (q.state !== undefined && q.state !== 'delivered') {
      const where = ["state = ?", "state <> 'delivered'", ...time];
      const args: SqlStorageValue[] = [q.state, ...timeArgs];
      if (q.destination !== undefined) {
        where.push('destination = ?');
        args.push(q.destination);
      }
      take(
        this.sql.exec<{ accepted_at: number; event_id: string; event_type: string }>(
          `SELECT accepted_at, event_id, event_type FROM trace INDEXED BY trace_unhappy WHERE ${where.join(' AND ')} ORDER BY accepted_at DESC, event_id DESC`,
          ...args,
        ),
      );
    } else {
      for (const destination of q.destination !== undefined ? [q.destination] : this.destinations()) {
        const where = ['destination = ?', ...time];
        const args: SqlStorageValue[] = [destination, ...timeArgs];
        if (q.state !== undefined) {
          where.push('state = ?');
          args.push(q.state);
        }
        take(
          this.sql.exec<{ accepted_at: number; event_id: string; event_type: string }>(
            `SELECT accepted_at, event_id, event_type FROM trace WHERE ${where.join(' AND ')} ORDER BY accepted_at DESC, event_id DESC`,
            ...args,
          ),
        );
      }
    }
    const chosen = [...keys.values()].sort((a, b) => b.accepted_at - a.accepted_at || (a.event_id < b.event_id ? 1 : a.event_id > b.event_id ? -1 : 0)).slice(0, q.limit);
    const rows: Row[] = [];
    for (const k of chosen) {
      rows.push(...this.sql.exec<Row>('SELECT * FROM trace WHERE event_id = ? AND accepted_at = ? ORDER BY destination', k.event_id, k.accepted_at).toArray());
    }
    return group(rows).sort(newestFirst);
  }

  /** Counts of deliveries by state since a time (for the console's overview). */
  async counts(since: number): Promise<Record<string, number>> {
    const out: Record<string, number> = {};
    for (const destination of this.destinations()) {
      const rows = this.sql.exec<{ state: string; n: number }>(
        'SELECT state, COUNT(*) AS n FROM trace WHERE destination = ? AND accepted_at >= ? GROUP BY state',
        destination,
        since,
      );
      for (const r of rows) out[r.state] = (out[r.state] ?? 0) + r.n;
    }
    return out;
  }

  /** Retention: the whole bucket goes at once. */
  override async alarm(): Promise<void> {
    const rows = this.sql.exec<{ n: number }>('SELECT COUNT(*) AS n FROM trace').one().n;
    await this.ctx.storage.deleteAll();
    log('info', 'trace_bucket_expired', { rows });
  }
}

export function newestFirst(a: TraceItem, b: TraceItem): number {
  return b.accepted_at - a.accepted_at || (a.id < b.id ? 1 : a.id > b.id ? -1 : 0);
}

function group(rows: Row[]): TraceItem[] {
  const items = new Map<string, TraceItem>();
  for (const r of rows) {
    const key = `${r.accepted_at}\u0000${r.event_id}`;
    let item = items.get(key);
    if (item === undefined) {
      item = {
        id: r.event_id,
        type: r.event_type,
        source: r.source as TraceSource,
        accepted_at: r.accepted_at,
        stale: r.stale === 1,
        body_shard: r.body_shard,
        deliveries: [],
      };
      items.set(key, item);
    }
    if (r.body_shard !== null) item.body_shard = r.body_shard;
    const attempts = JSON.parse(r.attempts) as TraceAttempt[];
    item.deliveries.push({
      destination: r.destination,
      state: r.state as DeliveryState,
      rules: JSON.parse(r.rules) as string[],
      attempts: attempts.slice(-MAX_ATTEMPTS_KEPT),
      next_attempt_at: r.next_attempt_at,
      updated_at: r.updated_at,
    });
  }
  return [...items.values()];
}
