/**
 * The dead-letter store: deliveries that exhausted their attempts or failed
 * permanently, kept with the event, the destination, the reason and the last
 * response status. Records stay until an operator replays or deletes them, or
 * until they are older than `dead_letter_retention_days` (default 30): an
 * alarm sweeps them at most hourly while the store holds records.
 */
import { DurableObject } from 'cloudflare:workers';
import { loadConfig } from '../config/load';
import { SETTINGS_SPEC } from '../config/router-config';
import { routerVar } from '../env';
import { log } from '../log';
import type { RouterMessage } from '../queue/message';

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
}

/** A dead letter as listed: everything but the payload. */
export type DeadLetterSummary = Omit<DeadLetterInput, 'body'> & { seq: number; dead_at: string };

/** A dead letter taken for replay: the record with its body, seq and time of death. */
export type DeadLetterRecord = DeadLetterInput & { seq: number; dead_at: number };

/**
 * Builds a record with the defaults (no rules, no status, no attempts), so
 * callers don't write the literal by hand. Optional marks are set only when given.
 */
/** The destination of a dead letter the router itself could not route: replay routes it by the rules then in force. */
export const ROUTER_DESTINATION = '(router)';

/** The reason of an event reconciliation read but could never enqueue (so never accepted: its replay goes through the ledger). */
export const RECONCILE_ENQUEUE_FAILED = 'reconcile_enqueue_failed';

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
  let raw: unknown = routerVar(env);
  if (typeof raw === 'string') {
    try {
      raw = JSON.parse(raw);
    } catch {
      raw = undefined;
    }
  }
  const value = typeof raw === 'object' && raw !== null ? (raw as Record<string, unknown>)[RETENTION_SPEC.key] : undefined;
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
};

const SUMMARY_COLUMNS = 'seq, event_id, event_type, destination, rules, reason, last_status, attempts, dead_at, stale, source';

/** Columns added after the first release: name → definition (all nullable, so old rows read as "unknown"). */
const ADDED_COLUMNS: ReadonlyArray<[string, string]> = [
  ['stale', 'INTEGER'],
  ['source', 'TEXT'],
];

export class DeadLetterStore extends DurableObject<Env> {
  private readonly sql: SqlStorage;
  /** Known to have an alarm scheduled (saves a storage read per add). */
  private alarmKnownSet = false;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
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
    `);
    migrate(this.sql);
    // Records written before the sweep existed (or whose alarm was lost) get one now.
    void ctx.blockConcurrencyWhile(async () => {
      if (this.sql.exec('SELECT 1 FROM dead_letters LIMIT 1').toArray().length > 0) await this.ensureAlarm(Date.now());
    });
  }

  async add(records: DeadLetterInput[]): Promise<void> {
    const now = Date.now();
    for (const r of records) {
      this.insert(r, now);
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
    if (records.length > 0) await this.ensureAlarm(now);
  }

  async list(limit = 100, afterSeq = 0): Promise<DeadLetterSummary[]> {
    const rows = this.sql
      .exec<Row>(`SELECT ${SUMMARY_COLUMNS} FROM dead_letters WHERE seq > ? ORDER BY seq LIMIT ?`, afterSeq, Math.min(Math.max(limit, 1), 500))
      .toArray();
    return rows.map((r) => ({ ...fromRow(r), dead_at: new Date(r.dead_at).toISOString() }));
  }

  async count(): Promise<number> {
    return this.sql.exec<{ n: number }>('SELECT COUNT(*) AS n FROM dead_letters').one().n;
  }

  /** Deletes one record; false when there is none with that seq. */
  async remove(seq: number): Promise<boolean> {
    return this.sql.exec('DELETE FROM dead_letters WHERE seq = ?', seq).rowsWritten > 0;
  }

  /** Removes and returns one record (with its body) for replay. */
  async take(seq: number): Promise<DeadLetterRecord | null> {
    const row = this.sql.exec<Row & { body: string }>(`SELECT ${SUMMARY_COLUMNS}, body FROM dead_letters WHERE seq = ?`, seq).toArray()[0];
    if (row === undefined) return null;
    this.sql.exec('DELETE FROM dead_letters WHERE seq = ?', seq);
    return { ...fromRow(row), body: row.body, dead_at: row.dead_at };
  }

  /**
   * Puts a taken record back (when its replay could not be enqueued): same
   * seq and time of death when known, so the operator's view and the
   * retention clock are unchanged.
   */
  async restore(record: DeadLetterInput & { seq?: number; dead_at?: number }): Promise<void> {
    const now = Date.now();
    this.insert(record, record.dead_at ?? now, record.seq);
    log('warn', 'dead_letter_restored', { event_id: record.event_id, destination: record.destination, ...(record.seq !== undefined ? { seq: record.seq } : {}) });
    await this.ensureAlarm(now);
  }

  /** Retention sweep: removes records older than `dead_letter_retention_days`; reschedules while records remain. */
  override async alarm(): Promise<void> {
    const now = Date.now();
    const retentionDays = deadLetterRetentionDays(this.env);
    const removed = this.sql.exec('DELETE FROM dead_letters WHERE dead_at < ?', now - retentionDays * DAY_MS).rowsWritten;
    const left = await this.count();
    this.alarmKnownSet = false;
    if (left > 0) {
      await this.ctx.storage.setAlarm(now + SWEEP_INTERVAL_MS);
      this.alarmKnownSet = true;
    }
    log('info', 'dead_letter_sweep', { removed, left, retention_days: retentionDays });
  }

  private insert(r: DeadLetterInput, deadAt: number, seq?: number): void {
    this.sql.exec(
      'INSERT INTO dead_letters (seq, event_id, event_type, destination, rules, reason, last_status, attempts, body, dead_at, stale, source) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)',
      seq ?? null,
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
    );
  }

  private async ensureAlarm(now: number): Promise<void> {
    if (this.alarmKnownSet) return;
    if ((await this.ctx.storage.getAlarm()) === null) await this.ctx.storage.setAlarm(now + SWEEP_INTERVAL_MS);
    this.alarmKnownSet = true;
  }
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
  return summary;
}

export function deadLetterStub(env: Env) {
  return env.DEAD_LETTERS.get(env.DEAD_LETTERS.idFromName('global'));
}
