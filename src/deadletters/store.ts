/**
 * The dead-letter store: deliveries that exhausted their attempts or failed
 * permanently, kept with the event, the destination, the reason and the last
 * response status. Records stay until an operator replays or deletes them, or
 * until they are older than `dead_letter_retention_days` (default 30): an
 * alarm sweeps them at most hourly while the store holds records.
 *
 * Bulk actions (replay or discard by filter; src/admin/bulk.ts) run here as
 * jobs: the first slice inside the request, the rest driven by the same
 * alarm, one bounded slice at a time, their progress in `dead_letter_jobs`.
 * A replayed record leaves the store only once its replay is enqueued; the
 * record in flight is noted on its job first, so a restart in the middle
 * never replays it twice by itself nor loses it (it is kept and reported).
 */
import { DurableObject } from 'cloudflare:workers';
import { applyLogLevelOnce, loadConfig } from '../config/load';
import { type RouterConfig, type RouterSettings, SETTINGS_SPEC } from '../config/router-config';
import { routerSource } from '../config/source';
import { audit, errorName, log, logOnce } from '../log';
import { type RouterMessage, packNextFit } from '../queue/message';
import { Matcher } from '../routing/matcher';
import { markDiscarded } from '../trace/client';
import { type AlertSignal, notifyAlerts } from '../alerts/notifier';
import { ALERT_EVENT_TYPE } from '../destinations/slack/render';
import { type BulkAction, type BulkRequest, type DeadLetterFilter, type DeadLetterJob, type JobState, type StartResult, requestFingerprint } from '../admin/bulk';
import { type ReplayOutcome, replayRecord, replaySubrequests } from '../admin/replay';
import { Lane } from '../lane';

export interface DeadLetterInput {
  event_id: string;
  event_type: string;
  destination: string;
  rules: string[];
  reason: string;
  last_status: number | null;
  attempts: number;
  /** Raw event body. */
  body: string;
  /** The event was out of order (stale) when it was routed; a replay keeps the mark. */
  stale?: boolean;
  /** How the router learned of the event; a replay keeps it (default 'webhook'). */
  source?: RouterMessage['source'];
  /** The ledger shard that admitted the event (`RouterMessage.ledger_shard`): a replay tells the trace where its body is kept. */
  ledger_shard?: string;
  /**
   * Who writes this dead letter, so that writing it again changes nothing:
   * the queue message and destination, the held delivery, the outbox entry.
   * A message redelivered after its dead letters were stored, or a call
   * made again after its answer was lost, would otherwise store a second
   * record (and a bulk replay would then deliver the event twice). Not
   * listed, not kept past the record.
   */
  key?: string;
}

/**
 * Bodies one `add` call carries at most, counted as the runtime serialises a
 * string (at most 2 bytes a character): far below a call's size limit. A
 * batch of large events dead-lettered at several destinations each would
 * otherwise be one call too large to make, failed again on every retry.
 */
export const DEAD_LETTER_CALL_BYTES = 8 * 1024 * 1024;

/** What one record adds to a call besides its body (its fields, as serialised), counted generously. */
export const RECORD_OVERHEAD_BYTES = 512;

/**
 * Records as an `addShared` call carries them: each distinct body once. The
 * records of one message share its body, so an event of 1.9 MB dead-lettered
 * at twenty destinations is one body in the call, not twenty (which no call
 * could carry: a call's arguments are limited to 32 MiB).
 */
export interface SharedBodies {
  bodies: string[];
  records: (Omit<DeadLetterInput, 'body'> & { body: number })[];
}

export function shareBodies(records: readonly DeadLetterInput[]): SharedBodies {
  const index = new Map<string, number>();
  const bodies: string[] = [];
  const shared = records.map((r) => {
    let i = index.get(r.body);
    if (i === undefined) {
      i = bodies.push(r.body) - 1;
      index.set(r.body, i);
    }
    return { ...r, body: i };
  });
  return { bodies, records: shared };
}

/** What a call carrying these records weighs: each distinct body once, plus each record's fields. */
export function callBytes(records: readonly DeadLetterInput[]): number {
  const distinct = new Set(records.map((r) => r.body));
  let bytes = records.length * RECORD_OVERHEAD_BYTES;
  for (const b of distinct) bytes += b.length * 2;
  return bytes;
}

/**
 * Packs groups of dead letters (one group per message) into `addShared` calls
 * of at most DEAD_LETTER_CALL_BYTES of bodies, in order, a group's shared body
 * counted once. A group is never split, so a message's records are stored
 * together or not at all; one larger than the limit goes alone (a message's
 * records share one body of at most `max_body_bytes`, so it fits a call).
 */
export function deadLetterCalls<T>(groups: readonly T[], recordsOf: (group: T) => readonly DeadLetterInput[]): T[][] {
  const sized = groups.map((item) => ({ item, bytes: callBytes(recordsOf(item)) }));
  return packNextFit(sized, DEAD_LETTER_CALL_BYTES, Number.POSITIVE_INFINITY).map((call) => call.map((c) => c.item));
}

/** A dead letter as listed: everything but the payload. */
export type DeadLetterSummary = Omit<DeadLetterInput, 'body'> & { seq: number; dead_at: string };

/** A dead letter taken for replay: the record with its body, seq and time of death. */
export type DeadLetterRecord = DeadLetterInput & { seq: number; dead_at: number };

/** The destination of a dead letter the router itself could not route: replay routes it by the rules then in force. */
export const ROUTER_DESTINATION = '(router)';

/** The reason of an event reconciliation read but could never enqueue (so never accepted: its replay goes through the ledger). */
export const RECONCILE_ENQUEUE_FAILED = 'reconcile_enqueue_failed';

/**
 * Builds a record with the defaults (no rules, no status, no attempts), so
 * callers don't write the literal by hand. Optional marks are set only when given.
 */
export function deadLetterRecord(fields: {
  event_id: string;
  event_type: string;
  destination: string;
  reason: string;
  body: string;
  rules?: string[];
  last_status?: number | null;
  attempts?: number;
  stale?: boolean;
  source?: RouterMessage['source'];
  ledger_shard?: string;
  key?: string;
}): DeadLetterInput {
  const record: DeadLetterInput = {
    event_id: fields.event_id,
    event_type: fields.event_type,
    destination: fields.destination,
    rules: fields.rules ?? [],
    reason: fields.reason,
    last_status: fields.last_status ?? null,
    attempts: fields.attempts ?? 0,
    body: fields.body,
  };
  if (fields.stale !== undefined) record.stale = fields.stale;
  if (fields.source !== undefined) record.source = fields.source;
  if (fields.ledger_shard !== undefined) record.ledger_shard = fields.ledger_shard;
  if (fields.key !== undefined) record.key = fields.key;
  return record;
}

/** How often the retention sweep runs while the store holds records. */
export const SWEEP_INTERVAL_MS = 60 * 60 * 1000;
const DAY_MS = 86_400_000;
const RETENTION_SPEC = SETTINGS_SPEC.find((s) => s.field === 'deadLetterRetentionDays') ?? { key: 'dead_letter_retention_days', def: 30, min: 1, max: 365 };

/**
 * Days a dead letter is kept. With an invalid config: the default, or the
 * raw `dead_letter_retention_days` when it is itself valid and longer; a
 * broken config never makes the sweep remove records sooner.
 */
export function deadLetterRetentionDays(env: Env): number {
  const loaded = loadConfig(env);
  if (loaded.ok) return loaded.config.settings.deadLetterRetentionDays;
  let raw: unknown = routerSource(env).raw;
  if (typeof raw === 'string') {
    try {
      raw = JSON.parse(raw);
    } catch {
      raw = undefined;
    }
  }
  const given = typeof raw === 'object' && raw !== null ? (raw as Record<string, unknown>)[RETENTION_SPEC.key] : undefined;
  // Read as the config reads it: a whole number, or a string of digits.
  const value = typeof given === 'string' && /^\d+$/.test(given) ? Number(given) : given;
  const valid = typeof value === 'number' && Number.isInteger(value) && value >= RETENTION_SPEC.min && value <= RETENTION_SPEC.max;
  return valid ? Math.max(RETENTION_SPEC.def, value) : RETENTION_SPEC.def;
}

type Row = {
  seq: number;
  event_id: string;
  event_type: string;
  destination: string;
  rules: string;
  reason: string;
  last_status: number | null;
  attempts: number;
  dead_at: number;
  stale: number | null;
  source: string | null;
  ledger_shard: string | null;
};

const SUMMARY_COLUMNS = 'seq, event_id, event_type, destination, rules, reason, last_status, attempts, dead_at, stale, source, ledger_shard';

/** Columns added after the first release: name → definition (all nullable, so old rows read as "unknown"). */
const ADDED_COLUMNS: ReadonlyArray<[string, string]> = [
  ['stale', 'INTEGER'],
  ['source', 'TEXT'],
  ['ledger_shard', 'TEXT'],
  ['dedup_key', 'TEXT'],
];

/**
 * Secondary index for bulk actions: by destination. Its entries are ordered
 * by (destination, seq) — the seq (rowid) is implicitly its last column — so
 * a job pages through one destination's records by seq as an index range,
 * with no sort; without a destination it pages the table by its primary key.
 * `dead_at` is deliberately not indexed: each index costs one more row
 * written per record added or removed, and one containing `dead_at` would
 * serve only the time bounds (checked on the rows a page visits, whose seq
 * order follows their time of death) and the hourly sweep (a scan, billed as
 * rows read, like the ledger's).
 */
const INDEXES = [
  'CREATE INDEX IF NOT EXISTS dead_letters_by_destination ON dead_letters (destination)',
  // A dead letter written again (a redelivered message, a call made again) is the same record (DeadLetterInput.key):
  // one more row written per record, on a path that only runs when deliveries fail.
  'CREATE UNIQUE INDEX IF NOT EXISTS dead_letters_by_key ON dead_letters (dedup_key) WHERE dedup_key IS NOT NULL',
];

/** Records one replay slice takes at most (also bounded by `consumer_subrequest_budget` subrequests). */
export const REPLAY_SLICE = 100;
/** Records one discard slice deletes at most (its only subrequests: marking them discarded in the trace, one call per retained trace day). */
export const DISCARD_SLICE = 500;
/** Finished jobs (and their idempotency keys) are kept this long. */
export const JOB_RETENTION_MS = 7 * DAY_MS;
/** Consecutive failed attempts to enqueue (queue or ledger unavailable) before a replay job gives up. */
export const JOB_MAX_RETRIES = 10;
/** Backoff of a job whose replay could not be enqueued: 1 s, doubling, at most a minute. */
const JOB_RETRY_MAX_MS = 60_000;
/** A replay job waits this long while ROUTER is invalid (checked again each time). */
const CONFIG_HOLD_MS = 60_000;
/** Set before a job's first slice runs in the request: if the request dies, the alarm carries on. */
const JOB_WATCHDOG_MS = 30_000;
/** Jobs listed on /admin/status: every running one, then the latest finished. */
const LISTED_JOBS = 20;

type JobRow = {
  id: string;
  idempotency_key: string | null;
  fingerprint: string;
  action: string;
  filter: string;
  types: string | null;
  max_seq: number;
  matched: number;
  done: number;
  failed: number;
  uncertain: number;
  state: string;
  cursor_seq: number;
  inflight_seq: number | null;
  next_at: number;
  retries: number;
  error: string | null;
  started_at: number;
  finished_at: number | null;
};

export class DeadLetterStore extends DurableObject<Env> {
  private readonly sql: SqlStorage;
  /** Known to have an alarm scheduled (saves a storage read per add). */
  private alarmKnownSet = false;
  /** When the next retention sweep is due, when known (jobs move the alarm). */
  private sweepAt: number | undefined;
  /** Records whose replay a job is enqueuing right now: nobody else takes them meanwhile. */
  private readonly inflight = new Set<number>();
  /** Job slices run one at a time (the request's first slice and the alarm's). */
  private readonly slices = new Lane();

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    applyLogLevelOnce(env);
    this.sql = ctx.storage.sql;
    this.sql.exec(`
      CREATE TABLE IF NOT EXISTS dead_letters (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        event_id TEXT NOT NULL,
        event_type TEXT NOT NULL,
        destination TEXT NOT NULL,
        rules TEXT NOT NULL,
        reason TEXT NOT NULL,
        last_status INTEGER,
        attempts INTEGER NOT NULL,
        body TEXT NOT NULL,
        dead_at INTEGER NOT NULL
      );
      CREATE TABLE IF NOT EXISTS dead_letter_jobs (
        id TEXT PRIMARY KEY,
        idempotency_key TEXT UNIQUE,
        fingerprint TEXT NOT NULL,
        action TEXT NOT NULL,
        filter TEXT NOT NULL,
        types TEXT,
        max_seq INTEGER NOT NULL,
        matched INTEGER NOT NULL,
        done INTEGER NOT NULL DEFAULT 0,
        failed INTEGER NOT NULL DEFAULT 0,
        uncertain INTEGER NOT NULL DEFAULT 0,
        state TEXT NOT NULL,
        cursor_seq INTEGER NOT NULL DEFAULT 0,
        inflight_seq INTEGER,
        next_at INTEGER NOT NULL,
        retries INTEGER NOT NULL DEFAULT 0,
        error TEXT,
        started_at INTEGER NOT NULL,
        finished_at INTEGER
      ) WITHOUT ROWID;
    `);
    migrate(this.sql);
    for (const index of INDEXES) this.sql.exec(index);
    // A fresh instance has nothing in flight: a job's noted record is from a restart.
    this.recoverInflight();
    void ctx.blockConcurrencyWhile(async () => {
      // Running jobs carry on; records written before the sweep existed (or whose alarm was lost) get one.
      const nextJob = this.nextJobAt();
      if (nextJob !== null) {
        const current = await ctx.storage.getAlarm();
        if (current === null || current > nextJob) await ctx.storage.setAlarm(nextJob);
        this.alarmKnownSet = true;
      }
      if (this.hasRecords()) await this.ensureAlarm(Date.now());
    });
  }

  /** Stores records sent with each distinct body once (`shareBodies`): how the consumers send a batch's. */
  async addShared(shared: SharedBodies): Promise<void> {
    const records = shared.records.map((r): DeadLetterInput => {
      const body = shared.bodies[r.body];
      if (body === undefined) throw new Error('dead letter body index out of range');
      return { ...r, body };
    });
    await this.add(records);
  }

  async add(records: DeadLetterInput[]): Promise<void> {
    const now = Date.now();
    const added: DeadLetterInput[] = [];
    for (const r of records) {
      if (!this.insert(r, now)) continue;
      added.push(r);
      log('error', 'dead_letter', {
        event_id: r.event_id,
        event_type: r.event_type,
        destination: r.destination,
        reason: r.reason,
        last_status: r.last_status,
        attempts: r.attempts,
        ...(r.stale === true ? { stale: true } : {}),
        ...(r.source !== undefined ? { source: r.source } : {}),
      });
    }
    if (added.length < records.length) log('warn', 'dead_letters_already_stored', { count: records.length - added.length });
    if (added.length > 0) await this.ensureAlarm(now);
    await notifyAlerts(this.env, deadLetterSignals(added));
  }

  /** Summaries in seq order after `afterSeq`; with a filter (as bulk actions take), only the records it selects. */
  async list(limit = 100, afterSeq = 0, filter?: DeadLetterFilter): Promise<DeadLetterSummary[]> {
    const max = Number.MAX_SAFE_INTEGER;
    const where = filter !== undefined ? filterSql(filter, this.selection(filter, max).types, max) : { sql: '1 = 1', args: [] };
    const rows = this.sql
      .exec<Row>(`SELECT ${SUMMARY_COLUMNS} FROM dead_letters WHERE ${where.sql} AND seq > ? ORDER BY seq LIMIT ?`, ...where.args, afterSeq, Math.min(Math.max(limit, 1), 500))
      .toArray();
    return rows.map((r) => ({ ...fromRow(r), dead_at: new Date(r.dead_at).toISOString() }));
  }

  /** Dead letters per destination name. */
  async countsByDestination(): Promise<Record<string, number>> {
    const rows = this.sql.exec<{ destination: string; n: number }>('SELECT destination, COUNT(*) AS n FROM dead_letters GROUP BY destination').toArray();
    return Object.fromEntries(rows.map((r) => [r.destination, r.n]));
  }

  async count(): Promise<number> {
    return this.sql.exec<{ n: number }>('SELECT COUNT(*) AS n FROM dead_letters').one().n;
  }

  /**
   * Deletes one record; `not_found` when there is none with that seq, `busy`
   * while a replay of it is being enqueued (deleting it then would not stop
   * the delivery). The trace marks its delivery `discarded`.
   */
  async remove(seq: number): Promise<'deleted' | 'not_found' | 'busy'> {
    if (this.inflight.has(seq)) return 'busy';
    const row = this.sql.exec<{ event_id: string; destination: string }>('DELETE FROM dead_letters WHERE seq = ? RETURNING event_id, destination', seq).toArray()[0];
    if (row === undefined) return 'not_found';
    // The trace knows a delivery by event and destination, not by record: while another dead letter of the same
    // pair remains (the event dead-lettered there again), the delivery is not marked discarded.
    await this.traceDiscarded(this.withoutOthers([row]));
    return 'deleted';
  }

  /**
   * The deleted (event, destination) pairs of which no dead letter remains.
   * Per destination, one query over its remaining records (the destination
   * index): none when a discard took all of them, the usual case.
   */
  private withoutOthers(deleted: Array<{ event_id: string; destination: string }>): Array<{ event_id: string; destination: string }> {
    const byDestination = new Map<string, Set<string>>();
    for (const d of deleted) {
      const ids = byDestination.get(d.destination) ?? new Set<string>();
      ids.add(d.event_id);
      byDestination.set(d.destination, ids);
    }
    const out: Array<{ event_id: string; destination: string }> = [];
    for (const [destination, ids] of byDestination) {
      const remaining = new Set(
        this.sql
          .exec<{ event_id: string }>(
            'SELECT DISTINCT event_id FROM dead_letters WHERE destination = ? AND event_id IN (SELECT value FROM json_each(?))',
            destination,
            JSON.stringify([...ids]),
          )
          .toArray()
          .map((r) => r.event_id),
      );
      for (const id of ids) if (!remaining.has(id)) out.push({ event_id: id, destination });
    }
    return out;
  }

  /** Tells the trace these deliveries were discarded (best effort: the trace is observability). */
  private async traceDiscarded(pairs: Array<{ event_id: string; destination: string }>): Promise<void> {
    const loaded = loadConfig(this.env);
    if (!loaded.ok || pairs.length === 0) return;
    await markDiscarded(this.env, loaded.config.settings, pairs).catch((err: unknown) =>
      log('warn', 'trace_write_failed', { discarded: pairs.length, error: errorName(err) }),
    );
  }

  /** Removes and returns one record (with its body); null when there is none, or a job is replaying it right now. (Replays keep the record until enqueued: `replayOne`.) */
  async take(seq: number): Promise<DeadLetterRecord | null> {
    const taken = this.takeNow(seq);
    return taken.status === 'taken' ? taken.record : null;
  }

  /**
   * Replays one record from inside the store: it stays in the store while its
   * replay is enqueued and leaves only afterwards, so a crash in between can
   * at worst replay it again (at-least-once), never lose it.
   */
  async replayOne(
    seq: number,
  ): Promise<
    | { status: 'replayed' | 'duplicate'; event_id: string; destination: string }
    | { status: 'not_replayable'; reason: string; why: 'no_event' | 'destination_removed' }
    | { status: 'unavailable'; error: string }
    | { status: 'busy' }
    | { status: 'not_found' }
    | { status: 'config_invalid' }
  > {
    if (this.inflight.has(seq)) return { status: 'busy' };
    const record = this.readRecord(seq);
    if (record === undefined) return { status: 'not_found' };
    const loaded = loadConfig(this.env);
    if (!loaded.ok) return { status: 'config_invalid' };
    const outcome = await this.replayInFlight(seq, record, loaded.config);
    if (outcome.status === 'replayed' || outcome.status === 'duplicate') {
      this.sql.exec('DELETE FROM dead_letters WHERE seq = ?', seq);
      audit('dead_letter_replayed', { seq, event_id: record.event_id, destination: record.destination, status: outcome.status });
      return { status: outcome.status, event_id: record.event_id, destination: record.destination };
    }
    if (outcome.status === 'not_replayable') return { status: 'not_replayable', reason: record.reason, why: outcome.why };
    return { status: 'unavailable', error: outcome.error };
  }

  /**
   * Starts a bulk replay or discard of the records `request.filter` selects
   * now (records added later are never part of it), or counts them
   * (`dry_run`). With an idempotency key, a request already seen returns its
   * job instead (or `key_reused` when the key came with another request).
   * With `refuseNew`, no new job is started (`config_invalid`), while a
   * repeated key still gets its job. The first slice runs before this
   * returns: a small set is done at once. `upToSeq` limits the job to the
   * records a dry run counted (the console's confirmation): none added since.
   */
  async startJob(action: BulkAction, request: BulkRequest, idempotencyKey: string | null, refuseNew = false, upToSeq?: number): Promise<StartResult> {
    const now = Date.now();
    if (request.dry_run) {
      const max = this.maxSeq();
      return { kind: 'dry_run', matched: this.selection(request.filter, max).matched, max_seq: max };
    }
    const fingerprint = requestFingerprint(action, request.filter);
    if (idempotencyKey !== null) {
      const seen = this.sql.exec<JobRow>('SELECT * FROM dead_letter_jobs WHERE idempotency_key = ?', idempotencyKey).toArray()[0];
      if (seen !== undefined) return seen.fingerprint === fingerprint ? { kind: 'existing', job: toJob(seen) } : { kind: 'key_reused', job_id: seen.id };
    }
    if (refuseNew) return { kind: 'config_invalid' };
    // Everything up to here is synchronous: two requests with one key cannot both start a job.
    const maxSeq = upToSeq !== undefined ? Math.min(upToSeq, this.maxSeq()) : this.maxSeq();
    const { matched, types } = this.selection(request.filter, maxSeq);
    const id = `dlj_${crypto.randomUUID().replace(/-/g, '')}`;
    this.sql.exec(
      'INSERT INTO dead_letter_jobs (id, idempotency_key, fingerprint, action, filter, types, max_seq, matched, state, next_at, started_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)',
      id,
      idempotencyKey,
      fingerprint,
      action,
      JSON.stringify(request.filter),
      types === null ? null : JSON.stringify(types),
      maxSeq,
      matched,
      'running',
      now,
      now,
    );
    if (matched === 0) {
      this.finish(id, 'done', now);
      return { kind: 'started', job: toJob(this.jobRow(id) as JobRow) };
    }
    await this.armWatchdog(id, now);
    await this.slices.run(() => this.runSlice(id));
    const job = toJob(this.jobRow(id) as JobRow); // as the request's slice left it (the alarm may start on the next one)
    await this.reschedule();
    return { kind: 'started', job };
  }

  /** One job, or null. */
  async job(id: string): Promise<DeadLetterJob | null> {
    const row = this.jobRow(id);
    return row === undefined ? null : toJob(row);
  }

  /** Jobs for /admin/status: every running one, then the most recent finished ones. */
  async jobs(): Promise<DeadLetterJob[]> {
    return this.sql
      .exec<JobRow>(`SELECT * FROM dead_letter_jobs ORDER BY state = 'running' DESC, started_at DESC LIMIT ?`, LISTED_JOBS)
      .toArray()
      .map(toJob);
  }

  /**
   * One alarm for both duties: the next slice of the running job that waited
   * longest, and the retention sweep (removes records older than
   * `dead_letter_retention_days`; hourly while records remain).
   */
  override async alarm(): Promise<void> {
    try {
      const job = this.sql.exec<{ id: string }>(`SELECT id FROM dead_letter_jobs WHERE state = 'running' ORDER BY next_at, started_at LIMIT 1`).toArray()[0];
      if (job !== undefined) await this.slices.run(() => this.runSlice(job.id));
      const now = Date.now();
      if (job === undefined || this.sweepAt === undefined || this.sweepAt <= now) this.sweep(now);
      await this.reschedule();
    } catch (err) {
      // The platform retries a failed alarm a few times, then drops it: the next add must look again, not trust
      // that an alarm is set (the sweep and running jobs would stop until this object restarts).
      this.alarmKnownSet = false;
      throw err;
    }
  }

  private sweep(now: number): void {
    const retentionDays = deadLetterRetentionDays(this.env);
    const removed = this.sql.exec('DELETE FROM dead_letters WHERE dead_at < ?', now - retentionDays * DAY_MS).rowsWritten;
    this.sql.exec(`DELETE FROM dead_letter_jobs WHERE state != 'running' AND finished_at < ?`, now - JOB_RETENTION_MS);
    const left = this.sql.exec<{ n: number }>('SELECT COUNT(*) AS n FROM dead_letters').one().n;
    this.sweepAt = now + SWEEP_INTERVAL_MS;
    log('info', 'dead_letter_sweep', { removed, left, retention_days: retentionDays });
  }

  /** The alarm: the earliest running job, else the sweep while records remain, else none. */
  private async reschedule(): Promise<void> {
    const now = Date.now();
    let at = this.nextJobAt();
    if (at === null && this.hasRecords()) at = Math.max(this.sweepAt ?? now + SWEEP_INTERVAL_MS, now);
    if (at === null) {
      await this.ctx.storage.deleteAlarm();
      this.alarmKnownSet = false;
    } else {
      await this.ctx.storage.setAlarm(at);
      this.alarmKnownSet = true;
    }
  }

  /** Before a job's first slice: an alarm within the watchdog delay (remembering the sweep it may move). */
  private async armWatchdog(id: string, now: number): Promise<void> {
    const current = await this.ctx.storage.getAlarm();
    const othersRunning = this.sql.exec(`SELECT 1 FROM dead_letter_jobs WHERE state = 'running' AND id != ? LIMIT 1`, id).toArray().length > 0;
    if (current !== null && this.sweepAt === undefined && !othersRunning) this.sweepAt = current;
    if (current === null || current > now + JOB_WATCHDOG_MS) await this.ctx.storage.setAlarm(now + JOB_WATCHDOG_MS);
    this.alarmKnownSet = true;
  }

  private async runSlice(id: string): Promise<void> {
    const job = this.jobRow(id);
    if (job === undefined || job.state !== 'running') return;
    if (job.action === 'discard') await this.discardSlice(job);
    else await this.replaySlice(job);
  }

  /**
   * Deletes up to DISCARD_SLICE matching records in one step, tells the trace,
   * then records the slice on the job (so a job seen `done` has told it).
   */
  private async discardSlice(job: JobRow): Promise<void> {
    const page = this.page(job, DISCARD_SLICE);
    const seqs = page.filter((seq) => !this.inflight.has(seq));
    const deleted =
      seqs.length > 0
        ? this.sql
            .exec<{ event_id: string; destination: string }>(
              'DELETE FROM dead_letters WHERE seq IN (SELECT value FROM json_each(?)) RETURNING event_id, destination',
              JSON.stringify(seqs),
            )
            .toArray()
        : [];
    this.sql.exec(
      'UPDATE dead_letter_jobs SET done = done + ?, failed = failed + ?, cursor_seq = ? WHERE id = ?',
      seqs.length,
      page.length - seqs.length,
      page[page.length - 1] ?? job.cursor_seq,
      job.id,
    );
    await this.traceDiscarded(this.withoutOthers(deleted));
    const now = Date.now();
    this.sql.exec('UPDATE dead_letter_jobs SET next_at = ? WHERE id = ?', now, job.id);
    if (page.length < DISCARD_SLICE) this.finish(job.id, 'done', now);
  }

  /**
   * Replays matching records one by one, up to REPLAY_SLICE records and
   * `consumer_subrequest_budget` subrequests. Each record: noted on the job
   * as in flight (with the cursor past it) → enqueued → removed from the
   * store with the job's count, in one step. Not replayable: kept, counted
   * failed. Queue or ledger unavailable: kept, the cursor goes back before
   * it, and the job waits (backoff) — giving up after JOB_MAX_RETRIES
   * attempts in a row.
   */
  private async replaySlice(job: JobRow): Promise<void> {
    const loaded = loadConfig(this.env);
    if (!loaded.ok) {
      this.sql.exec('UPDATE dead_letter_jobs SET next_at = ?, error = ? WHERE id = ?', Date.now() + CONFIG_HOLD_MS, 'config_invalid: waiting for a valid ROUTER', job.id);
      logOnce(`dead_letter_job_held:${job.id}`, 'warn', 'dead_letter_job_held', { job_id: job.id, reason: 'config_invalid' });
      return;
    }
    const settings = loaded.config.settings;
    const page = this.page(job, REPLAY_SLICE);
    let subrequests = 0;
    let before = job.cursor_seq;
    for (const seq of page) {
      const record = this.inflight.has(seq) ? undefined : this.readRecord(seq);
      if (record === undefined) {
        // Another job is enqueuing it (kept if that fails: counted here as not done), or it left the store meanwhile.
        const busy = this.inflight.has(seq) ? 1 : 0;
        this.sql.exec('UPDATE dead_letter_jobs SET failed = failed + ?, cursor_seq = ? WHERE id = ?', busy, seq, job.id);
        before = seq;
        continue;
      }
      const cost = replaySubrequests(record);
      if (subrequests > 0 && subrequests + cost > settings.consumerSubrequestBudget) {
        this.sql.exec('UPDATE dead_letter_jobs SET next_at = ? WHERE id = ?', Date.now(), job.id);
        return;
      }
      subrequests += cost;
      this.sql.exec('UPDATE dead_letter_jobs SET inflight_seq = ?, cursor_seq = ? WHERE id = ?', seq, seq, job.id);
      const outcome = await this.replayInFlight(seq, record, loaded.config);
      if (outcome.status === 'replayed' || outcome.status === 'duplicate') {
        this.sql.exec('DELETE FROM dead_letters WHERE seq = ?', seq);
        this.sql.exec('UPDATE dead_letter_jobs SET done = done + 1, inflight_seq = NULL, retries = 0, error = NULL WHERE id = ?', job.id);
      } else if (outcome.status === 'not_replayable') {
        this.sql.exec('UPDATE dead_letter_jobs SET failed = failed + 1, inflight_seq = NULL WHERE id = ?', job.id);
        log('warn', 'dead_letter_not_replayable', { job_id: job.id, seq, event_id: record.event_id, destination: record.destination, reason: record.reason, why: outcome.why });
      } else {
        const now = Date.now();
        const retries = (this.jobRow(job.id)?.retries ?? 0) + 1;
        const error = `could not enqueue (${outcome.error})`;
        this.sql.exec(
          'UPDATE dead_letter_jobs SET inflight_seq = NULL, cursor_seq = ?, retries = ?, error = ?, next_at = ? WHERE id = ?',
          before,
          retries,
          error,
          now + Math.min(1000 * 2 ** (retries - 1), JOB_RETRY_MAX_MS),
          job.id,
        );
        log('warn', 'dead_letter_replay_unavailable', { job_id: job.id, seq, event_id: record.event_id, destination: record.destination, error: outcome.error, retries });
        if (retries >= JOB_MAX_RETRIES) this.finish(job.id, 'failed', now);
        return;
      }
      before = seq;
    }
    const now = Date.now();
    if (page.length < REPLAY_SLICE) this.finish(job.id, 'done', now);
    else this.sql.exec('UPDATE dead_letter_jobs SET next_at = ? WHERE id = ?', now, job.id);
  }

  /** Ends a job and logs its one line of counts (never bodies). */
  private finish(id: string, state: Exclude<JobState, 'running'>, now: number): void {
    this.sql.exec('UPDATE dead_letter_jobs SET state = ?, finished_at = ?, inflight_seq = NULL WHERE id = ?', state, now, id);
    const row = this.jobRow(id);
    if (row === undefined) return;
    const job = toJob(row);
    const fields = { job_id: job.id, state: job.state, matched: job.matched, failed: job.failed, filter: job.filter, ...(job.error !== undefined ? { error: job.error } : {}) };
    if (job.action === 'discard') audit('dead_letters_discarded', { ...fields, discarded: job.done });
    else if (state === 'done') audit('dead_letters_replayed', { ...fields, replayed: job.done, uncertain: job.uncertain });
    else audit('dead_letters_replayed', { ...fields, replayed: job.done, uncertain: job.uncertain }, 'warn');
  }

  /**
   * The records a filter selects among those up to `maxSeq`: how many, and
   * (with `event_type`) which event types — the patterns are matched by the
   * router's own matcher against each distinct type present, so paging can
   * select by type in SQL.
   */
  private selection(filter: DeadLetterFilter, maxSeq: number): { matched: number; types: string[] | null } {
    const where = filterSql(filter, null, maxSeq);
    const patterns = filter.event_type;
    if (patterns === undefined) {
      return { matched: this.sql.exec<{ n: number }>(`SELECT COUNT(*) AS n FROM dead_letters WHERE ${where.sql}`, ...where.args).one().n, types: null };
    }
    let matched = 0;
    const types: string[] = [];
    for (const g of this.sql.exec<{ event_type: string; n: number }>(`SELECT event_type, COUNT(*) AS n FROM dead_letters WHERE ${where.sql} GROUP BY event_type`, ...where.args)) {
      if (!Matcher.namesMatch(patterns, g.event_type)) continue;
      matched += g.n;
      types.push(g.event_type);
    }
    return { matched, types };
  }

  /** The seqs of the job's next records after its cursor, in seq order (an index or primary-key range, never a sort). */
  private page(job: JobRow, limit: number): number[] {
    const filter = JSON.parse(job.filter) as DeadLetterFilter;
    const types = job.types === null ? null : (JSON.parse(job.types) as string[]);
    const where = filterSql(filter, types, job.max_seq);
    return this.sql
      .exec<{ seq: number }>(`SELECT seq FROM dead_letters WHERE ${where.sql} AND seq > ? ORDER BY seq LIMIT ?`, ...where.args, job.cursor_seq, limit)
      .toArray()
      .map((r) => r.seq);
  }

  /** Notes left by a replay in flight when the previous instance stopped: the record is kept (never lost) and reported, never replayed again by its job. */
  private recoverInflight(): void {
    const stuck = this.sql.exec<{ id: string; inflight_seq: number }>('SELECT id, inflight_seq FROM dead_letter_jobs WHERE inflight_seq IS NOT NULL').toArray();
    for (const s of stuck) {
      const kept = this.sql.exec<{ event_id: string; destination: string }>('SELECT event_id, destination FROM dead_letters WHERE seq = ?', s.inflight_seq).toArray()[0];
      this.sql.exec('UPDATE dead_letter_jobs SET inflight_seq = NULL, failed = failed + 1, uncertain = uncertain + 1 WHERE id = ?', s.id);
      log('warn', 'dead_letter_replay_uncertain', {
        job_id: s.id,
        seq: s.inflight_seq,
        kept: kept !== undefined,
        ...(kept !== undefined ? { event_id: kept.event_id, destination: kept.destination } : {}),
      });
    }
  }

  private takeNow(seq: number): { status: 'taken'; record: DeadLetterRecord } | { status: 'busy' } | { status: 'not_found' } {
    if (this.inflight.has(seq)) return { status: 'busy' };
    const record = this.readRecord(seq);
    if (record === undefined) return { status: 'not_found' };
    this.sql.exec('DELETE FROM dead_letters WHERE seq = ?', seq);
    return { status: 'taken', record };
  }

  /** One record with its body, or undefined. */
  private readRecord(seq: number): DeadLetterRecord | undefined {
    const row = this.sql.exec<Row & { body: string }>(`SELECT ${SUMMARY_COLUMNS}, body FROM dead_letters WHERE seq = ?`, seq).toArray()[0];
    return row === undefined ? undefined : { ...fromRow(row), body: row.body, dead_at: row.dead_at };
  }

  /** Replays a record while it stays in the store, marked in flight (so no other replay takes it meanwhile). */
  private async replayInFlight(seq: number, record: DeadLetterRecord, config: RouterConfig): Promise<ReplayOutcome> {
    this.inflight.add(seq);
    try {
      return await replayRecord(this.env, config, record);
    } catch (err) {
      return { status: 'unavailable', error: errorName(err).split(':')[0] ?? 'Error' };
    } finally {
      this.inflight.delete(seq);
    }
  }

  private jobRow(id: string): JobRow | undefined {
    return this.sql.exec<JobRow>('SELECT * FROM dead_letter_jobs WHERE id = ?', id).toArray()[0];
  }

  /** When the earliest running job wants its next slice, or null. */
  private nextJobAt(): number | null {
    return this.sql.exec<{ at: number | null }>(`SELECT MIN(next_at) AS at FROM dead_letter_jobs WHERE state = 'running'`).one().at;
  }

  private maxSeq(): number {
    return this.sql.exec<{ m: number }>('SELECT COALESCE(MAX(seq), 0) AS m FROM dead_letters').one().m;
  }

  private hasRecords(): boolean {
    return this.sql.exec('SELECT 1 FROM dead_letters LIMIT 1').toArray().length > 0;
  }

  /** Stores one record; false when one with its key is already stored (nothing written). */
  private insert(r: DeadLetterInput, deadAt: number): boolean {
    return (
      this.sql.exec(
        `INSERT INTO dead_letters (event_id, event_type, destination, rules, reason, last_status, attempts, body, dead_at, stale, source, ledger_shard, dedup_key)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (dedup_key) WHERE dedup_key IS NOT NULL DO NOTHING RETURNING seq`,
        r.event_id,
        r.event_type,
        r.destination,
        JSON.stringify(r.rules),
        r.reason,
        r.last_status,
        r.attempts,
        r.body,
        deadAt,
        r.stale === undefined ? null : r.stale ? 1 : 0,
        r.source ?? null,
        r.ledger_shard ?? null,
        r.key ?? null,
      ).toArray().length > 0
    );
  }

  private async ensureAlarm(now: number): Promise<void> {
    if (this.alarmKnownSet) return;
    if ((await this.ctx.storage.getAlarm()) === null) {
      await this.ctx.storage.setAlarm(now + SWEEP_INTERVAL_MS);
      this.sweepAt = now + SWEEP_INTERVAL_MS;
    }
    this.alarmKnownSet = true;
  }
}

/** New dead letters as alert signals: counted per destination, with their reasons; alerts themselves never alert. */
function deadLetterSignals(records: DeadLetterInput[]): AlertSignal[] {
  const by = new Map<string, { count: number; reasons: Set<string> }>();
  for (const r of records) {
    if (r.event_type === ALERT_EVENT_TYPE) continue;
    const g = by.get(r.destination) ?? { count: 0, reasons: new Set<string>() };
    g.count++;
    g.reasons.add(r.reason.split(':')[0] ?? r.reason);
    by.set(r.destination, g);
  }
  return [...by].flatMap(([destination, g]) => [...g.reasons].slice(0, 5).map((detail, i) => ({ kind: 'dead_letter' as const, destination, count: i === 0 ? g.count : 0, detail })));
}

/** The SQL conditions of a filter (and, when known, of the event types it selects), for records up to `maxSeq`. */
function filterSql(filter: DeadLetterFilter, types: string[] | null, maxSeq: number): { sql: string; args: SqlStorageValue[] } {
  const conditions = ['seq <= ?'];
  const args: SqlStorageValue[] = [maxSeq];
  if (filter.destination !== undefined) {
    conditions.push('destination = ?');
    args.push(filter.destination);
  }
  if (filter.reason !== undefined) {
    if (!filter.reason.endsWith('*')) {
      conditions.push('reason = ?');
      args.push(filter.reason);
    } else if (filter.reason.length > 1) {
      conditions.push('instr(reason, ?) = 1'); // starts with (case-sensitive, unlike LIKE)
      args.push(filter.reason.slice(0, -1));
    }
  }
  if (filter.since !== undefined) {
    conditions.push('dead_at >= ?');
    args.push(Date.parse(filter.since));
  }
  if (filter.until !== undefined) {
    conditions.push('dead_at < ?');
    args.push(Date.parse(filter.until));
  }
  if (types !== null) {
    conditions.push('event_type IN (SELECT value FROM json_each(?))');
    args.push(JSON.stringify(types));
  }
  return { sql: conditions.join(' AND '), args };
}

function toJob(row: JobRow): DeadLetterJob {
  const job: DeadLetterJob = {
    id: row.id,
    action: row.action === 'discard' ? 'discard' : 'replay',
    state: row.state === 'done' || row.state === 'failed' ? row.state : 'running',
    filter: JSON.parse(row.filter) as DeadLetterFilter,
    matched: row.matched,
    done: row.done,
    failed: row.failed,
    uncertain: row.uncertain,
    started_at: new Date(row.started_at).toISOString(),
    finished_at: row.finished_at === null ? null : new Date(row.finished_at).toISOString(),
  };
  if (row.error !== null) job.error = row.error;
  return job;
}

/** Adds the columns a table created by an older release lacks. */
function migrate(sql: SqlStorage): void {
  const have = new Set(sql.exec<{ name: string }>('PRAGMA table_info(dead_letters)').toArray().map((c) => c.name));
  for (const [name, type] of ADDED_COLUMNS) {
    if (!have.has(name)) sql.exec(`ALTER TABLE dead_letters ADD COLUMN ${name} ${type}`);
  }
}

function fromRow(r: Row): Omit<DeadLetterInput, 'body'> & { seq: number } {
  const summary: Omit<DeadLetterInput, 'body'> & { seq: number } = {
    seq: r.seq,
    event_id: r.event_id,
    event_type: r.event_type,
    destination: r.destination,
    rules: JSON.parse(r.rules) as string[],
    reason: r.reason,
    last_status: r.last_status,
    attempts: r.attempts,
  };
  if (r.stale !== null) summary.stale = r.stale === 1;
  if (r.source === 'webhook' || r.source === 'reconcile') summary.source = r.source;
  if (r.ledger_shard !== null) summary.ledger_shard = r.ledger_shard;
  return summary;
}

export function deadLetterStub(env: Env) {
  return env.DEAD_LETTERS.get(env.DEAD_LETTERS.idFromName('global'));
}
