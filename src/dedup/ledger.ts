/**
 * The dedup ledger: a SQLite-backed Durable Object, one of `dedup_shards`
 * shards, chosen by the event's ordering key (else its id; see `shardKeyOf`).
 *
 * `admit()` is the whole accept path in one Durable Object request
 * (`admitMany()` takes several, for reconciliation):
 *   check → enqueue to the router's queue → record (ONE row, kept for the
 *   retention window, written with the object's ordering record in the same
 *   synchronous step). Nothing is written before the enqueue: on enqueue
 *   failure nothing has changed, so WorkOS's retry is accepted as if the
 *   failed attempt never happened; a crash after the enqueue and before the
 *   record means the retry is enqueued again (at-least-once), exactly as a
 *   crash between a persisted claim and its commit would (a claim only made
 *   the retry wait for its lease; test/delivery/ledger-crash-integration.test.ts).
 *   Rows in the `pending` state are only found in ledgers written by an older
 *   release: they are honoured until their lease runs out.
 *
 * Rows live in one table per UTC day of the event's `created_at`
 * (`ledger_dYYYYMMDD`; every copy of an event carries the same `created_at`,
 * so a lookup reads one table). An event whose `created_at` is not an ISO
 * 8601 time (WorkOS always sends one) is filed under the day it arrived, and
 * its copies are looked for in every day table: a copy arriving on a later
 * day is still a duplicate. A day's table is dropped whole once
 * `dedup_retention_days` have passed since that day ended: dropping a table
 * writes no rows, where deleting its rows one by one writes (and bills) one
 * per row. So every event is remembered for at least the retention after its
 * `created_at` (after its arrival, when undated) — the same clock the reconciler's retention floor uses — and
 * at most a day more. The table `ledger` holds rows written by older releases
 * and is still read and swept row by row — only while it holds any: an
 * object learns that when it starts (every deploy restarts it) and again
 * after each sweep, so a ledger with no old rows makes no lookup there.
 *
 * Admissions about one ordering key (or, without one, one event id) run one
 * after another inside the object, so concurrent copies of an event wait for
 * the first one's outcome (exactly one winner) and two events about one
 * object never both look newest. Every accepted body is kept here for the
 * retention window (for the console and event replays): in its ledger row,
 * or apart when too large for a queue message, and then the message carries
 * a reference.
 */
import { DurableObject } from 'cloudflare:workers';
import { type OrderingKey, ledgerStubByName, shardName, shardOf } from './shard';
import { applyLogLevelOnce, parsedConfig } from '../config/load';
import { errorName, log } from '../log';
import { type RouterMessage, fitsInline } from '../queue/message';

export interface AdmitRequest {
  id: string;
  type: string;
  created_at: string;
  /** Raw body text (exact bytes WorkOS sent, UTF-8). */
  body: string;
  bodyBytes: number;
  source: RouterMessage['source'];
  /** This object's shard name (recorded in body references). */
  shard: string;
  /**
   * The shard this event met before `dedup_shards` changed (`dedup_shards_previous`):
   * an id this object does not know is looked for there too, with its ordering record.
   */
  previousShard?: string;
  /**
   * The key this event's shard was chosen by, when `ordering` does not say it
   * (an ordering key with an undated `created_at`); else it is the ordering
   * key, or the id.
   */
  shardKey?: string;
  retentionMs: number;
  /** Out-of-order tracking, when the event is about an object or subject with a parseable `created_at`. */
  /** `routed: false`: no rule routes the event; it is judged, but does not move the record (absent: routed, as older Workers send it). */
  ordering?: OrderingKey & { createdAtMs: number; deletion: boolean; routed?: false };
}

/** An object's ordering record: the newest `created_at` routed about it, and whether it was deleted. */
type OrderRow = {
  newest_ms: number;
  deleted: number;
};

/** What a shard remembers of an event (`recall`, `peek`). */
export interface Recall {
  committed: boolean;
  order: OrderRow | null;
  /** `peek` only: a copy of this id is being admitted here right now. */
  admitting?: boolean;
}

export type AdmitResult =
  | { status: 'accepted'; stale?: boolean }
  | { status: 'duplicate' }
  | { status: 'in_progress' }
  | { status: 'unavailable' };

/** How often the retention sweep runs while the ledger holds rows. */
export const SWEEP_INTERVAL_MS = 60 * 60 * 1000;

/**
 * How far ahead of the ledger's clock an ordering record may be moved. An
 * event dated later than this (WorkOS's clock wrong, not a skew of seconds)
 * counts as dated this far ahead of its arrival: otherwise one such event
 * would flag every later event of its object stale until that date came.
 */
export const ORDER_AHEAD_LIMIT_MS = 60_000;

export class DedupLedger extends DurableObject<Env> {
  private readonly sql: SqlStorage;
  /** The tail of the admissions queued per ordering key (or event id). */
  private readonly lanes = new Map<string, Promise<unknown>>();
  /** Ids whose admission is under way here (from its checks to its record). */
  private readonly admitting = new Set<string>();
  private alarmKnownSet = false;
  /** Day tables (`ledger_dYYYYMMDD`) → when they may be dropped; mirrors `ledger_days`. */
  private readonly days = new Map<string, number>();
  /** Does the legacy `ledger` table hold rows (written by an older release)? Only this code's start and sweeps change that. */
  private legacyRows: boolean;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    applyLogLevelOnce(env);
    this.sql = ctx.storage.sql;
    // WITHOUT ROWID and no secondary indexes: an accepted event and an object
    // update write exactly one row each (rows written are what SQLite storage
    // bills). The hourly sweep scans instead, and scanned rows are billed as
    // reads, a thousand times cheaper.
    this.sql.exec(`
      CREATE TABLE IF NOT EXISTS ledger (
        id TEXT PRIMARY KEY,
        state TEXT NOT NULL,
        lease_until INTEGER NOT NULL,
        expires_at INTEGER NOT NULL,
        source TEXT NOT NULL
      ) WITHOUT ROWID;
      CREATE TABLE IF NOT EXISTS bodies (
        id TEXT PRIMARY KEY,
        body TEXT NOT NULL,
        expires_at INTEGER NOT NULL
      ) WITHOUT ROWID;
      CREATE TABLE IF NOT EXISTS objects (
        key TEXT PRIMARY KEY,
        newest_ms INTEGER NOT NULL,
        deleted INTEGER NOT NULL,
        expires_at INTEGER NOT NULL
      ) WITHOUT ROWID;
    `);
    // Every accepted body is kept in its ledger row (written with it: no
    // extra row), so the console and event replays can read it for as long
    // as the event is remembered. Added in place for ledgers created before.
    const cols = this.sql.exec<{ name: string }>("SELECT name FROM pragma_table_info('ledger')").toArray();
    if (!cols.some((c) => c.name === 'body')) this.sql.exec('ALTER TABLE ledger ADD COLUMN body TEXT');
    // The day tables and when each may be dropped (one row per day, written when the day's first event is).
    this.sql.exec('CREATE TABLE IF NOT EXISTS ledger_days (name TEXT PRIMARY KEY, drop_at INTEGER NOT NULL) WITHOUT ROWID');
    for (const r of this.sql.exec<{ name: string; drop_at: number }>('SELECT name, drop_at FROM ledger_days')) this.days.set(r.name, r.drop_at);
    this.legacyRows = this.hasLegacyRows();
  }

  private hasLegacyRows(): boolean {
    return this.sql.exec<{ e: number }>('SELECT EXISTS (SELECT 1 FROM ledger) AS e').one().e === 1;
  }

  /** Does this `created_at` date the event (an ISO 8601 time)? Else it is filed under the day it arrived. */
  static dated(createdAt: string): boolean {
    return ISO_TIME.test(createdAt) && !Number.isNaN(Date.parse(createdAt));
  }

  /** The day table of an event (by its `created_at`; one that does not date it counts as now). */
  static dayTable(createdAt: string, now: number): string {
    const d = new Date(DedupLedger.dated(createdAt) ? Date.parse(createdAt) : now);
    return `ledger_d${d.getUTCFullYear()}${String(d.getUTCMonth() + 1).padStart(2, '0')}${String(d.getUTCDate()).padStart(2, '0')}`;
  }

  /** Creates a day table on first use and makes sure it is kept until `dropAt` at least. */
  private ensureDay(name: string, dropAt: number): void {
    const known = this.days.get(name);
    if (known !== undefined && known >= dropAt) return;
    if (known === undefined) {
      this.sql.exec(
        `CREATE TABLE IF NOT EXISTS ${name} (id TEXT PRIMARY KEY, state TEXT NOT NULL, lease_until INTEGER NOT NULL, expires_at INTEGER NOT NULL, source TEXT NOT NULL, body TEXT) WITHOUT ROWID`,
      );
    }
    this.sql.exec('INSERT INTO ledger_days (name, drop_at) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET drop_at = MAX(drop_at, excluded.drop_at)', name, dropAt);
    this.days.set(name, Math.max(known ?? 0, dropAt));
  }

  /** The row about `id`: in its day table when the day is known, else in any (newest first), else in the legacy table (when it holds any). */
  private find<T>(columns: string, id: string, day?: string): T | undefined {
    const tables = day !== undefined ? (this.days.has(day) ? [day] : []) : [...this.days.keys()].sort().reverse();
    for (const t of tables) {
      const row = this.sql.exec<T & Record<string, SqlStorageValue>>(`SELECT ${columns} FROM ${t} WHERE id = ?`, id).toArray()[0];
      if (row !== undefined) return row;
    }
    if (!this.legacyRows) return undefined;
    return this.sql.exec<T & Record<string, SqlStorageValue>>(`SELECT ${columns} FROM ledger WHERE id = ?`, id).toArray()[0];
  }

  async admit(req: AdmitRequest): Promise<AdmitResult> {
    return this.inLane(req.ordering?.key ?? `id:${req.id}`, async () => {
      this.admitting.add(req.id);
      try {
        return await this.admitNow(req);
      } finally {
        this.admitting.delete(req.id);
      }
    });
  }

  /**
   * Several admissions in one request (a reconciliation page's events for
   * this shard). Each goes through its lane as `admit` would, in the order
   * given, so two events about one object are judged one after the other;
   * one that fails answers `unavailable` without failing the others.
   */
  async admitMany(reqs: AdmitRequest[]): Promise<AdmitResult[]> {
    return Promise.all(
      reqs.map((req) =>
        this.admit(req).catch((err: unknown): AdmitResult => {
          log('error', 'ledger_admit_failed', { event_id: req.id, error: errorName(err) });
          return { status: 'unavailable' };
        }),
      ),
    );
  }

  /** An accepted event's body (kept with its ledger row, or apart when large), or null when unknown or expired. */
  async getBody(id: string): Promise<string | null> {
    const row = this.sql.exec<{ body: string }>('SELECT body FROM bodies WHERE id = ?', id).toArray()[0];
    if (row !== undefined) return row.body;
    const kept = this.find<{ body: string | null; state: string }>('body, state', id);
    return kept?.state === 'committed' ? kept.body : null;
  }

  /** Bodies of several events (one request for a page of replays); absent ids are unknown or expired. */
  async getBodies(ids: string[]): Promise<Record<string, string>> {
    const out: Record<string, string> = {};
    for (const id of ids) {
      const body = await this.getBody(id);
      if (body !== null) out[id] = body;
    }
    return out;
  }

  /** Keeps a body too large for a queue message (dead-letter replays, large retries) until `untilMs`. */
  async storeBody(id: string, body: string, untilMs: number): Promise<void> {
    this.sql.exec(
      'INSERT INTO bodies (id, body, expires_at) VALUES (?, ?, ?) ON CONFLICT (id) DO UPDATE SET body = excluded.body, expires_at = MAX(expires_at, excluded.expires_at)',
      id,
      body,
      untilMs,
    );
    await this.ensureAlarm(Date.now());
  }

  /** Keeps a stored body at least until `untilMs` (a retry chain still needs it). False when it is gone. */
  async extendBody(id: string, untilMs: number): Promise<boolean> {
    return this.sql.exec('UPDATE bodies SET expires_at = MAX(expires_at, ?) WHERE id = ?', untilMs, id).rowsWritten > 0;
  }

  /**
   * What this shard remembers of an event another shard is admitting since
   * `dedup_shards` changed: whether it was committed here, and the ordering
   * record of its object. Reads only. It answers after any admission of the
   * same object (or id) in progress here, so a copy that a Worker still on
   * the old count is admitting at that moment counts as committed.
   */
  async recall(id: string, createdAt: string, orderingKey?: string): Promise<Recall> {
    return this.inLane(orderingKey ?? `id:${id}`, async () => this.remembered(id, createdAt, orderingKey));
  }

  /**
   * What this shard remembers of an event that a Worker still on another
   * `dedup_shards` (a deploy's rollout) is admitting in another shard, when
   * this is the event's shard under this object's config. It answers at once,
   * saying whether a copy is being admitted here right now: the caller then
   * answers `in_progress`, and the retry finds it committed. (Waiting instead,
   * as `recall` does, could deadlock: this shard's admission may be waiting on
   * the caller's `recall`.)
   */
  async peek(id: string, createdAt: string, orderingKey?: string): Promise<Recall> {
    return { ...this.remembered(id, createdAt, orderingKey), admitting: this.admitting.has(id) };
  }

  private remembered(id: string, createdAt: string, orderingKey?: string): Recall {
    const row = this.find<{ state: string }>('state', id, DedupLedger.dated(createdAt) ? DedupLedger.dayTable(createdAt, Date.now()) : undefined);
    return { committed: row?.state === 'committed', order: (orderingKey !== undefined ? this.orderOf(orderingKey) : undefined) ?? null };
  }

  /**
   * While this object's config names `dedup_shards_previous`: when `req` was
   * routed here by that previous count (a Worker still on it, during the
   * deploy's rollout), the event's shard under the current count. Else
   * undefined: the request came by the current count, or no change is under way.
   */
  private currentShardOf(req: AdmitRequest): string | undefined {
    const loaded = parsedConfig(this.env);
    if (!loaded.ok) return undefined;
    const { dedupShards, dedupShardsPrevious } = loaded.config.settings;
    if (dedupShardsPrevious === undefined) return undefined;
    const key = req.shardKey ?? req.ordering?.key ?? req.id;
    const current = shardName(shardOf(key, dedupShards));
    return current !== req.shard && req.shard === shardName(shardOf(key, dedupShardsPrevious)) ? current : undefined;
  }

  /** What shard `name` remembers of `req` (`recall` or `peek`); null, logged as `msg`, when it cannot be reached. */
  private async ask(name: string, method: 'recall' | 'peek', req: AdmitRequest, msg: string): Promise<Recall | null> {
    const stub = ledgerStubByName(this.env, name);
    try {
      return method === 'recall' ? await stub.recall(req.id, req.created_at, req.ordering?.key) : await stub.peek(req.id, req.created_at, req.ordering?.key);
    } catch (err) {
      log('error', msg, { event_id: req.id, shard: name, error: errorName(err) });
      return null;
    }
  }

  /** This shard's ordering record of an object (or subject). */
  private orderOf(key: string): OrderRow | undefined {
    return this.sql.exec<OrderRow>('SELECT newest_ms, deleted FROM objects WHERE key = ?', key).toArray()[0];
  }

  /** Has this id been committed (accepted and enqueued)? */
  async isCommitted(id: string): Promise<boolean> {
    return this.find<{ state: string }>('state', id)?.state === 'committed';
  }

  override async alarm(): Promise<void> {
    const now = Date.now();
    // Whole day tables past their retention: dropped, which writes no rows (deleting them would write one each).
    let days = 0;
    for (const { name } of this.sql.exec<{ name: string }>('SELECT name FROM ledger_days WHERE drop_at <= ?', now).toArray()) {
      if (!/^ledger_d\d{8}$/.test(name)) continue;
      this.sql.exec(`DROP TABLE IF EXISTS ${name}`);
      this.sql.exec('DELETE FROM ledger_days WHERE name = ?', name);
      this.days.delete(name);
      days += 1;
    }
    const removed = this.legacyRows ? this.sql.exec('DELETE FROM ledger WHERE expires_at <= ?', now).rowsWritten : 0;
    this.legacyRows = this.legacyRows && this.hasLegacyRows();
    const bodies = this.sql.exec('DELETE FROM bodies WHERE expires_at <= ?', now).rowsWritten;
    const objects = this.sql.exec('DELETE FROM objects WHERE expires_at <= ?', now).rowsWritten;
    // Keep sweeping while anything is left in any table: replay bodies and
    // ordering records outlive the ledger rows that created them.
    const left = this.sql
      .exec<{ n: number }>('SELECT (SELECT COUNT(*) FROM ledger) + (SELECT COUNT(*) FROM bodies) + (SELECT COUNT(*) FROM objects) AS n')
      .one().n + this.days.size;
    this.alarmKnownSet = false;
    if (left > 0) {
      await this.ctx.storage.setAlarm(now + SWEEP_INTERVAL_MS);
      this.alarmKnownSet = true;
    }
    log('info', 'ledger_sweep', { days, removed, bodies, objects, left });
  }

  /** Runs `fn` after every earlier admission in the same lane has finished. */
  private async inLane<T>(lane: string, fn: () => Promise<T>): Promise<T> {
    const before = this.lanes.get(lane);
    const mine = (before ?? Promise.resolve()).then(fn, fn);
    const tail = mine.catch(() => undefined);
    this.lanes.set(lane, tail);
    try {
      return await mine;
    } finally {
      if (this.lanes.get(lane) === tail) this.lanes.delete(lane);
    }
  }

  private async admitNow(req: AdmitRequest): Promise<AdmitResult> {
    const now = Date.now();
    const day = DedupLedger.dayTable(req.created_at, now);
    // Undated: filed under its arrival day, so an earlier copy may sit in any day's table.
    const row = this.find<{ state: string; lease_until: number }>('state, lease_until', req.id, DedupLedger.dated(req.created_at) ? day : undefined);
    if (row !== undefined) {
      if (row.state === 'committed') return { status: 'duplicate' };
      // A claim written by an older release (this one writes none): honoured until its lease runs out.
      if (row.lease_until > now) return { status: 'in_progress' };
    }
    // Since dedup_shards changed, an event this shard does not know may have been filed under its previous shard.
    let previous: Recall | null = null;
    if (row === undefined && req.previousShard !== undefined && req.previousShard !== req.shard) {
      previous = await this.ask(req.previousShard, 'recall', req, 'ledger_previous_unavailable');
      if (previous === null) return { status: 'unavailable' };
      if (previous.committed) return { status: 'duplicate' };
    }
    // Sent here by a Worker still on the previous dedup_shards (during the deploy's rollout): the event's shard
    // under the current count may have accepted a copy already, from a Worker on the new count.
    const current = row === undefined ? this.currentShardOf(req) : undefined;
    if (current !== undefined) {
      const seen = await this.ask(current, 'peek', req, 'ledger_current_unavailable');
      if (seen === null) return { status: 'unavailable' };
      if (seen.committed) return { status: 'duplicate' };
      if (seen.admitting === true) return { status: 'in_progress' };
      if (seen.order !== null) previous = seen;
    }
    const order = this.readOrder(req, previous?.order ?? null);
    const message: RouterMessage = { v: 1, id: req.id, type: req.type, created_at: req.created_at, source: req.source, accepted_at: now, ledger_shard: req.shard };
    if (order.stale) message.stale = true;
    const large = !fitsInline(message, req.body, req.bodyBytes);
    const until = now + req.retentionMs;
    if (large) {
      // The message carries a reference, so the body must be readable before the consumer can run.
      this.sql.exec('INSERT OR REPLACE INTO bodies (id, body, expires_at) VALUES (?, ?, ?)', req.id, req.body, until);
      message.body_ref = { shard: req.shard, until };
    } else {
      message.body = req.body;
    }
    try {
      await this.env.EVENTS_QUEUE.send(message, { contentType: 'json' });
    } catch (err) {
      // The body stays (until its day is dropped): a send reported failed may still have been stored by the
      // queue, and that message needs it; WorkOS's retry of the event replaces it.
      log('error', 'enqueue_failed', { event_id: req.id, error: errorName(err) });
      return { status: 'unavailable' };
    }
    // The record and the ordering record together (synchronous: one implicit transaction). Later copies of
    // this id wait in its lane for this, then find it.
    const dropAt = dayEnd(day) + req.retentionMs;
    this.ensureDay(day, dropAt);
    this.sql.exec(
      `INSERT OR REPLACE INTO ${day} (id, state, lease_until, expires_at, source, body) VALUES (?, 'committed', ?, ?, ?, ?)`,
      req.id,
      now,
      dropAt,
      req.source,
      large ? null : req.body,
    );
    // A claim an older release left for this id (crash) is superseded (day tables hold committed rows only).
    if (row !== undefined && this.legacyRows) this.sql.exec('DELETE FROM ledger WHERE id = ?', req.id);
    this.writeOrder(req, order, now);
    await this.ensureAlarm(now);
    return order.stale ? { status: 'accepted', stale: true } : { status: 'accepted' };
  }

  /**
   * Is this event stale against what was committed for its object? A
   * deletion of an `object` is never stale; anything else about a deleted
   * object is; otherwise an event older than the newest routed one is.
   */
  private readOrder(req: AdmitRequest, previous: OrderRow | null): { stale: boolean; row?: OrderRow } {
    const o = req.ordering;
    if (o === undefined) return { stale: false };
    // This shard's record and the previous shard's (since dedup_shards changed), together: each may know what the
    // other does not (a Worker on the old count committed a deletion there, one on the new count an update here).
    // The result is written here after the admission.
    const own = this.orderOf(o.key);
    const row =
      own !== undefined && previous !== null
        ? { newest_ms: Math.max(own.newest_ms, previous.newest_ms), deleted: own.deleted === 1 || previous.deleted === 1 ? 1 : 0 }
        : (own ?? previous ?? undefined);
    if (row === undefined) return { stale: false };
    if (o.kind === 'object') {
      if (o.deletion) return { stale: false, row };
      return { stale: row.deleted === 1 || o.createdAtMs < row.newest_ms, row };
    }
    return { stale: o.createdAtMs < row.newest_ms, row };
  }

  private writeOrder(req: AdmitRequest, order: { row?: OrderRow }, now: number): void {
    const o = req.ordering;
    // An event no rule routes reached nobody: an older one that is routed must not be stale because of it.
    if (o === undefined || o.routed === false) return;
    const ahead = o.createdAtMs - now;
    if (ahead > ORDER_AHEAD_LIMIT_MS) log('warn', 'created_at_ahead', { event_id: req.id, event: req.type, ahead_seconds: Math.round(ahead / 1000) });
    this.sql.exec(
      'INSERT OR REPLACE INTO objects (key, newest_ms, deleted, expires_at) VALUES (?, ?, ?, ?)',
      o.key,
      Math.max(order.row?.newest_ms ?? 0, Math.min(o.createdAtMs, now + ORDER_AHEAD_LIMIT_MS)),
      order.row?.deleted === 1 || (o.kind === 'object' && o.deletion) ? 1 : 0,
      now + req.retentionMs,
    );
  }

  private async ensureAlarm(now: number): Promise<void> {
    if (this.alarmKnownSet) return;
    if ((await this.ctx.storage.getAlarm()) === null) await this.ctx.storage.setAlarm(now + SWEEP_INTERVAL_MS);
    this.alarmKnownSet = true;
  }
}

/** An ISO 8601 date and time, as WorkOS writes `created_at` (`2026-11-29T01:02:03.456Z`). */
const ISO_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}/;

/** When the UTC day of a `ledger_dYYYYMMDD` table ends (ms). */
function dayEnd(table: string): number {
  const d = table.slice('ledger_d'.length);
  return Date.UTC(Number(d.slice(0, 4)), Number(d.slice(4, 6)) - 1, Number(d.slice(6, 8))) + 86_400_000;
}
