/**
 * The dedup ledger: a SQLite-backed Durable Object, sharded by event id.
 *
 * `admit()` is the whole accept path in one Durable Object request:
 *   claim (pending row with a short lease) → enqueue to the router's queue →
 *   commit (row kept for the retention window). On enqueue failure the claim is
 *   released, so WorkOS's retry is accepted rather than called a duplicate. A
 *   claim that was never committed (crash) expires after its lease.
 *
 * Concurrent deliveries of one id inside this object wait for the first one's
 * outcome (exactly one winner; the others answer "duplicate" once it commits,
 * or try again themselves if it failed). Bodies too large for a queue message
 * are kept here and the message carries a reference.
 *
 * Shards are chosen by the event's object key (see `shardKeyOf`), so the
 * out-of-order check — the newest `created_at` routed per object and family,
 * and whether the object was deleted — rides on the same single request.
 */
import { DurableObject } from 'cloudflare:workers';
import { errorName, log } from '../log';
import { INLINE_BODY_LIMIT, type RouterMessage } from '../queue/message';

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
  leaseMs: number;
  retentionMs: number;
  /** Out-of-order tracking: `<family>:<data.id>` when the payload names an object. */
  objectKey?: string;
  /** `created_at` in ms, when parseable. */
  createdAtMs?: number;
  /** Is this a deletion (`*.deleted`)? Deletions win over later-arriving updates. */
  deletion?: boolean;
}

export type AdmitResult =
  | { status: 'accepted'; stale?: boolean }
  | { status: 'duplicate' }
  | { status: 'in_progress' }
  | { status: 'unavailable' };

/** How often the retention sweep runs while the ledger holds rows. */
export const SWEEP_INTERVAL_MS = 60 * 60 * 1000;

export class DedupLedger extends DurableObject<Env> {
  private readonly sql: SqlStorage;
  private readonly inflight = new Map<string, Promise<AdmitResult>>();
  private alarmKnownSet = false;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    this.sql = ctx.storage.sql;
    // WITHOUT ROWID and no secondary indexes: every claim, commit and object
    // update writes exactly one row (rows written are what SQLite storage
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
  }

  async admit(req: AdmitRequest): Promise<AdmitResult> {
    for (let inflight = this.inflight.get(req.id); inflight !== undefined; inflight = this.inflight.get(req.id)) {
      const first = await inflight;
      if (first.status === 'accepted') return { status: 'duplicate' };
      // The first delivery failed and released its claim: try again ourselves.
    }
    const now = Date.now();
    const row = this.sql.exec<{ state: string; lease_until: number }>('SELECT state, lease_until FROM ledger WHERE id = ?', req.id).toArray()[0];
    if (row !== undefined) {
      if (row.state === 'committed') return { status: 'duplicate' };
      if (row.lease_until > now) return { status: 'in_progress' };
      // A stale claim from a crashed attempt: take it over.
    }
    this.sql.exec(
      'INSERT OR REPLACE INTO ledger (id, state, lease_until, expires_at, source) VALUES (?, ?, ?, ?, ?)',
      req.id,
      'pending',
      now + req.leaseMs,
      now + req.leaseMs,
      req.source,
    );
    const stale = this.observeObject(req, now);
    const attempt = this.enqueueAndCommit(req, now, stale);
    this.inflight.set(req.id, attempt);
    try {
      return await attempt;
    } finally {
      this.inflight.delete(req.id);
    }
  }

  /** The stored body of a large event, or null when unknown or expired. */
  async getBody(id: string): Promise<string | null> {
    const row = this.sql.exec<{ body: string }>('SELECT body FROM bodies WHERE id = ?', id).toArray()[0];
    return row?.body ?? null;
  }

  /** Keeps a body too large for a queue message (dead-letter replays), for `retentionMs`. */
  async storeBody(id: string, body: string, retentionMs: number): Promise<void> {
    this.sql.exec('INSERT OR REPLACE INTO bodies (id, body, expires_at) VALUES (?, ?, ?)', id, body, Date.now() + retentionMs);
    await this.ensureAlarm(Date.now());
  }

  /** Has this id been committed (accepted and enqueued)? */
  async isCommitted(id: string): Promise<boolean> {
    const row = this.sql.exec<{ state: string }>('SELECT state FROM ledger WHERE id = ?', id).toArray()[0];
    return row?.state === 'committed';
  }

  override async alarm(): Promise<void> {
    const now = Date.now();
    const removed = this.sql.exec('DELETE FROM ledger WHERE expires_at <= ?', now).rowsWritten;
    this.sql.exec('DELETE FROM bodies WHERE expires_at <= ?', now);
    this.sql.exec('DELETE FROM objects WHERE expires_at <= ?', now);
    const left = this.sql.exec<{ n: number }>('SELECT COUNT(*) AS n FROM ledger').one().n;
    this.alarmKnownSet = false;
    if (left > 0) {
      await this.ctx.storage.setAlarm(now + SWEEP_INTERVAL_MS);
      this.alarmKnownSet = true;
    }
    log('info', 'ledger_sweep', { removed, left });
  }

  /**
   * Records the event against its object and says whether it is stale: older
   * than the newest event already routed for the object, or an update arriving
   * after the object's deletion. Done synchronously at claim time, so two
   * events for one object never both look newest.
   */
  private observeObject(req: AdmitRequest, now: number): boolean {
    if (req.objectKey === undefined || req.createdAtMs === undefined) return false;
    const deletion = req.deletion === true;
    const row = this.sql
      .exec<{ newest_ms: number; deleted: number }>('SELECT newest_ms, deleted FROM objects WHERE key = ?', req.objectKey)
      .toArray()[0];
    const stale = row !== undefined && ((row.deleted === 1 && !deletion) || req.createdAtMs < row.newest_ms);
    this.sql.exec(
      'INSERT OR REPLACE INTO objects (key, newest_ms, deleted, expires_at) VALUES (?, ?, ?, ?)',
      req.objectKey,
      Math.max(row?.newest_ms ?? 0, req.createdAtMs),
      row?.deleted === 1 || deletion ? 1 : 0,
      now + req.retentionMs,
    );
    return stale;
  }

  private async enqueueAndCommit(req: AdmitRequest, now: number, stale: boolean): Promise<AdmitResult> {
    const message: RouterMessage = {
      v: 1,
      id: req.id,
      type: req.type,
      created_at: req.created_at,
      source: req.source,
      accepted_at: now,
    };
    if (stale) message.stale = true;
    const large = req.bodyBytes > INLINE_BODY_LIMIT;
    if (large) {
      this.sql.exec('INSERT OR REPLACE INTO bodies (id, body, expires_at) VALUES (?, ?, ?)', req.id, req.body, now + req.retentionMs);
      message.body_ref = { shard: req.shard };
    } else {
      message.body = req.body;
    }
    try {
      await this.env.EVENTS_QUEUE.send(message, { contentType: 'json' });
    } catch (err) {
      this.sql.exec('DELETE FROM ledger WHERE id = ?', req.id);
      if (large) this.sql.exec('DELETE FROM bodies WHERE id = ?', req.id);
      log('error', 'enqueue_failed', { event_id: req.id, error: errorName(err) });
      return { status: 'unavailable' };
    }
    this.sql.exec("UPDATE ledger SET state = 'committed', expires_at = ? WHERE id = ?", now + req.retentionMs, req.id);
    await this.ensureAlarm(now);
    return stale ? { status: 'accepted', stale: true } : { status: 'accepted' };
  }

  private async ensureAlarm(now: number): Promise<void> {
    if (this.alarmKnownSet) return;
    if ((await this.ctx.storage.getAlarm()) === null) await this.ctx.storage.setAlarm(now + SWEEP_INTERVAL_MS);
    this.alarmKnownSet = true;
  }
}
