/**
 * The dead-letter store: deliveries that exhausted their attempts or failed
 * permanently, kept with the event, the destination, the reason and the last
 * response status. Nothing vanishes: records stay until an operator replays
 * or deletes them.
 */
import { DurableObject } from 'cloudflare:workers';
import { log } from '../log';

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
}

/** A dead letter as listed: everything but the payload. */
export type DeadLetterSummary = Omit<DeadLetterInput, 'body'> & { seq: number; dead_at: string };

export class DeadLetterStore extends DurableObject<Env> {
  private readonly sql: SqlStorage;

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
  }

  async add(records: DeadLetterInput[]): Promise<void> {
    const now = Date.now();
    for (const r of records) {
      this.sql.exec(
        'INSERT INTO dead_letters (event_id, event_type, destination, rules, reason, last_status, attempts, body, dead_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)',
        r.event_id,
        r.event_type,
        r.destination,
        JSON.stringify(r.rules),
        r.reason,
        r.last_status,
        r.attempts,
        r.body,
        now,
      );
      log('error', 'dead_letter', {
        event_id: r.event_id,
        event_type: r.event_type,
        destination: r.destination,
        reason: r.reason,
        last_status: r.last_status,
        attempts: r.attempts,
      });
    }
  }

  async list(limit = 100, afterSeq = 0): Promise<DeadLetterSummary[]> {
    const rows = this.sql
      .exec<{
        seq: number;
        event_id: string;
        event_type: string;
        destination: string;
        rules: string;
        reason: string;
        last_status: number | null;
        attempts: number;
        dead_at: number;
      }>(
        'SELECT seq, event_id, event_type, destination, rules, reason, last_status, attempts, dead_at FROM dead_letters WHERE seq > ? ORDER BY seq LIMIT ?',
        afterSeq,
        Math.min(Math.max(limit, 1), 500),
      )
      .toArray();
    return rows.map((r) => ({ ...r, rules: JSON.parse(r.rules) as string[], dead_at: new Date(r.dead_at).toISOString() }));
  }

  async count(): Promise<number> {
    return this.sql.exec<{ n: number }>('SELECT COUNT(*) AS n FROM dead_letters').one().n;
  }

  /** Removes and returns one record (with its body) for replay. */
  async take(seq: number): Promise<(DeadLetterInput & { seq: number }) | null> {
    const row = this.sql
      .exec<{ seq: number; event_id: string; event_type: string; destination: string; rules: string; reason: string; last_status: number | null; attempts: number; body: string }>(
        'SELECT seq, event_id, event_type, destination, rules, reason, last_status, attempts, body FROM dead_letters WHERE seq = ?',
        seq,
      )
      .toArray()[0];
    if (row === undefined) return null;
    this.sql.exec('DELETE FROM dead_letters WHERE seq = ?', seq);
    return { ...row, rules: JSON.parse(row.rules) as string[] };
  }

  /** Puts a taken record back (when its replay could not be enqueued). */
  async restore(record: DeadLetterInput): Promise<void> {
    await this.add([record]);
  }
}

export function deadLetterStub(env: Env) {
  return env.DEAD_LETTERS.get(env.DEAD_LETTERS.idFromName('global'));
}
