/**
 * The destination registry: one SQLite-backed Durable Object that knows, for
 * every destination, whether it is paused and how it has been doing (last
 * success, last failure and its error, counts). The consumer reads the paused
 * set once per batch and reports the batch's outcomes once at its end, so the
 * cost is two requests per batch whatever the number of events or
 * destinations.
 */
import { DurableObject } from 'cloudflare:workers';
import { log } from '../log';

export interface DestinationHealth {
  name: string;
  state: 'active' | 'paused';
  paused_at: string | null;
  last_success_at: string | null;
  last_failure_at: string | null;
  last_error: string | null;
  delivered: number;
  failed: number;
}

/** What one consumer invocation saw for one destination. */
export interface DestinationReport {
  delivered: number;
  failed: number;
  last_success_at?: number;
  last_failure_at?: number;
  /** Short machine-readable reason of the last failure (never payload content). */
  last_error?: string;
}

type Row = {
  name: string;
  paused_at: number | null;
  last_success_at: number | null;
  last_failure_at: number | null;
  last_error: string | null;
  delivered: number;
  failed: number;
};

export class DestinationRegistry extends DurableObject<Env> {
  private readonly sql: SqlStorage;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    this.sql = ctx.storage.sql;
    this.sql.exec(`
      CREATE TABLE IF NOT EXISTS destinations (
        name TEXT PRIMARY KEY,
        paused_at INTEGER,
        last_success_at INTEGER,
        last_failure_at INTEGER,
        last_error TEXT,
        delivered INTEGER NOT NULL DEFAULT 0,
        failed INTEGER NOT NULL DEFAULT 0
      ) WITHOUT ROWID;
    `);
  }

  /** Names of the paused destinations. */
  async paused(): Promise<string[]> {
    return this.sql.exec<{ name: string }>('SELECT name FROM destinations WHERE paused_at IS NOT NULL').toArray().map((r) => r.name);
  }

  /** Pauses a destination (idempotent); returns when it was paused. */
  async pause(name: string): Promise<number> {
    const now = Date.now();
    this.sql.exec(
      'INSERT INTO destinations (name, paused_at) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET paused_at = COALESCE(paused_at, excluded.paused_at)',
      name,
      now,
    );
    const at = this.sql.exec<{ paused_at: number }>('SELECT paused_at FROM destinations WHERE name = ?', name).one().paused_at;
    if (at === now) log('warn', 'destination_paused', { destination: name });
    return at;
  }

  /** Resumes a destination (idempotent); true when it was paused. */
  async resume(name: string): Promise<boolean> {
    const was = this.sql.exec('UPDATE destinations SET paused_at = NULL WHERE name = ? AND paused_at IS NOT NULL', name).rowsWritten > 0;
    if (was) log('info', 'destination_resumed', { destination: name });
    return was;
  }

  async report(reports: Record<string, DestinationReport>): Promise<void> {
    for (const [name, r] of Object.entries(reports)) {
      this.sql.exec(
        `INSERT INTO destinations (name, last_success_at, last_failure_at, last_error, delivered, failed) VALUES (?, ?, ?, ?, ?, ?)
         ON CONFLICT (name) DO UPDATE SET
           last_success_at = COALESCE(MAX(last_success_at, excluded.last_success_at), last_success_at, excluded.last_success_at),
           last_failure_at = COALESCE(MAX(last_failure_at, excluded.last_failure_at), last_failure_at, excluded.last_failure_at),
           last_error = CASE WHEN excluded.last_failure_at IS NOT NULL AND (last_failure_at IS NULL OR excluded.last_failure_at >= last_failure_at) THEN excluded.last_error ELSE last_error END,
           delivered = delivered + excluded.delivered,
           failed = failed + excluded.failed`,
        name,
        r.last_success_at ?? null,
        r.last_failure_at ?? null,
        r.last_error ?? null,
        r.delivered,
        r.failed,
      );
    }
  }

  async health(names: string[]): Promise<DestinationHealth[]> {
    const rows = new Map(this.sql.exec<Row>('SELECT * FROM destinations').toArray().map((r) => [r.name, r]));
    const iso = (ms: number | null | undefined) => (ms === null || ms === undefined ? null : new Date(ms).toISOString());
    return names.map((name) => {
      const r = rows.get(name);
      return {
        name,
        state: r?.paused_at != null ? 'paused' : 'active',
        paused_at: iso(r?.paused_at),
        last_success_at: iso(r?.last_success_at),
        last_failure_at: iso(r?.last_failure_at),
        last_error: r?.last_error ?? null,
        delivered: r?.delivered ?? 0,
        failed: r?.failed ?? 0,
      };
    });
  }
}

export function registryStub(env: Env): DurableObjectStub<DestinationRegistry> {
  return env.DESTINATIONS.get(env.DESTINATIONS.idFromName('global')) as DurableObjectStub<DestinationRegistry>;
}
