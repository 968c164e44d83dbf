/**
 * Held deliveries: one SQLite-backed Durable Object per destination, where
 * the consumer puts the deliveries it may not make while the destination is
 * paused. They wait in storage, not in the queue (whose longest delay is 12
 * hours), with their attempt counts untouched, for up to `HOLD_LIMIT_DAYS`.
 * On resume they are re-enqueued in acceptance order, a slice per second, each
 * once (removed only after its message is enqueued; a crash between the two
 * re-sends that slice: at-least-once, like every queue hand-off). Deliveries
 * held longer than the limit go to dead letters (`held_too_long`), replayable.
 */
import { DurableObject } from 'cloudflare:workers';
import { applyLogLevelOnce, loadConfig } from '../config/load';
import { deadLetterRecord, deadLetterStub } from '../deadletters/store';
import { ledgerStub } from '../dedup/shard';
import { errorName, log } from '../log';
import { HandOffBatch } from './hand-off';
import { Lane } from '../lane';
import { TraceWriter } from '../trace/client';
import { type RouterMessage, chunkForSendBatch, fitsInline, utf8Length } from '../queue/message';

export interface HeldDelivery {
  event_id: string;
  event_type: string;
  created_at: string;
  source: RouterMessage['source'];
  stale: boolean;
  accepted_at: number;
  /** Attempts already made (not consumed while held). */
  attempts: number;
  rules: string[];
  /** The raw event body. */
  body: string;
  /** Sent again by an operator (a dead-letter or event replay): still a replay when it drains. */
  replay?: boolean;
  /** The ledger shard that admitted the event (`RouterMessage.ledger_shard`), when the message said. */
  ledger_shard?: string;
}

export const HOLD_LIMIT_DAYS = 14;
const DAY_MS = 86_400_000;
/** Deliveries re-enqueued per drain step, and the pause between steps (the drain rate). */
const DRAIN_SLICE = 50;
const DRAIN_STEP_MS = 1_000;
const EXPIRY_CHECK_MS = 6 * 60 * 60 * 1000;
/** After the dead-letter store failed to take expired (or removed) deliveries. */
const EXPIRE_RETRY_MS = 60 * 1000;
/** Expired deliveries go to the dead-letter store in slices of at most 200, and of at most this many body bytes (one call each: far below a call's size limit). */
export const EXPIRE_SLICE_BYTES = 8 * 1024 * 1024;

type Row = {
  seq: number;
  event_id: string;
  event_type: string;
  created_at: string;
  source: string;
  stale: number;
  accepted_at: number;
  attempts: number;
  rules: string;
  body: string;
  held_at: number;
  replay: number | null;
  ledger_shard: string | null;
};

export class HeldDeliveries extends DurableObject<Env> {
  private readonly sql: SqlStorage;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    applyLogLevelOnce(env);
    this.sql = ctx.storage.sql;
    this.sql.exec(`
      CREATE TABLE IF NOT EXISTS held (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        event_id TEXT NOT NULL,
        event_type TEXT NOT NULL,
        created_at TEXT NOT NULL,
        source TEXT NOT NULL,
        stale INTEGER NOT NULL,
        accepted_at INTEGER NOT NULL,
        attempts INTEGER NOT NULL,
        rules TEXT NOT NULL,
        body TEXT NOT NULL,
        held_at INTEGER NOT NULL
      );
      CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    `);
    // Added in place for stores created before: whether a held delivery is an operator's replay, and its ledger shard.
    const cols = this.sql.exec<{ name: string }>("SELECT name FROM pragma_table_info('held')").toArray();
    if (!cols.some((c) => c.name === 'replay')) this.sql.exec('ALTER TABLE held ADD COLUMN replay INTEGER');
    if (!cols.some((c) => c.name === 'ledger_shard')) this.sql.exec('ALTER TABLE held ADD COLUMN ledger_shard TEXT');
    // A delivery already held is not held twice (see hold): one index row per held delivery, on a path that only
    // runs while the destination is paused or its circuit open.
    this.sql.exec('CREATE INDEX IF NOT EXISTS held_by_event ON held (event_id)');
  }

  /**
   * Keeps deliveries for `destination`. When the destination was resumed
   * meanwhile, they drain at once. An event already held here is not held
   * again: a hold whose answer was lost (the call stored them, the consumer
   * saw it fail) is made again by the message's retry, and a drained delivery
   * whose removal a crash prevented may come back while the destination is
   * blocked again; kept twice, it would be delivered twice. An operator's
   * replay of an event already held marks the held delivery a replay instead.
   */
  async hold(destination: string, items: HeldDelivery[]): Promise<void> {
    const now = Date.now();
    this.ctx.storage.kv.put('destination', destination);
    let kept = 0;
    for (const d of items) {
      kept += this.sql.exec(
        `INSERT INTO held (event_id, event_type, created_at, source, stale, accepted_at, attempts, rules, body, held_at, replay, ledger_shard)
         SELECT ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ? WHERE NOT EXISTS (SELECT 1 FROM held WHERE event_id = ?1)`,
        d.event_id,
        d.event_type,
        d.created_at,
        d.source,
        d.stale ? 1 : 0,
        d.accepted_at,
        d.attempts,
        JSON.stringify(d.rules),
        d.body,
        now,
        d.replay === true ? 1 : null,
        d.ledger_shard ?? null,
      ).rowsWritten > 0 ? 1 : 0;
      // An operator's replay of an event already held here: the held delivery becomes that replay (fresh attempts,
      // sent as a replay), not a second one.
      if (d.replay === true) this.sql.exec('UPDATE held SET replay = 1, attempts = MIN(attempts, ?) WHERE event_id = ? AND replay IS NOT 1', d.attempts, d.event_id);
    }
    log('info', 'deliveries_held', { destination, count: kept, ...(kept < items.length ? { already_held: items.length - kept } : {}) });
    await this.scheduleAt(this.ctx.storage.kv.get<boolean>('active') === true ? this.nextDrainAt(now) : now + EXPIRY_CHECK_MS);
  }

  /** When the next drain step may run: now, but never within a second of the last one (a resume or a hold does not speed the drain up). */
  private nextDrainAt(now: number): number {
    return Math.max(now, (this.ctx.storage.kv.get<number>('drained_at') ?? 0) + DRAIN_STEP_MS);
  }

  async pause(destination: string): Promise<void> {
    this.ctx.storage.kv.put('destination', destination);
    this.ctx.storage.kv.put('active', false);
  }

  /** Starts draining; returns how many deliveries are waiting. */
  async resume(destination: string): Promise<number> {
    this.ctx.storage.kv.put('destination', destination);
    this.ctx.storage.kv.put('active', true);
    const n = await this.count();
    if (n > 0) await this.scheduleAt(this.nextDrainAt(Date.now()));
    return n;
  }

  async count(): Promise<number> {
    return this.sql.exec<{ n: number }>('SELECT COUNT(*) AS n FROM held').one().n;
  }

  /**
   * Work that takes rows out of the store (a drain step, a probe, the
   * expiry) runs one at a time: a probe sent while the expiry reads the same
   * oldest rows would be both sent and dead-lettered.
   */
  private readonly lane = new Lane();

  override alarm(): Promise<void> {
    const destination = this.ctx.storage.kv.get<string>('destination') ?? '(unknown)';
    return this.lane.run(() => this.alarmNow(destination));
  }

  private async alarmNow(destination: string): Promise<void> {
    const expired = await this.expire(destination);
    if (this.ctx.storage.kv.get<boolean>('active') === true) {
      this.ctx.storage.kv.put('drained_at', Date.now());
      const more = await this.drainStep(destination);
      if (more) {
        await this.ctx.storage.setAlarm(Date.now() + DRAIN_STEP_MS);
        return;
      }
    }
    // A dead-letter store that failed is tried again in a minute, not at the next 6-hourly check.
    if ((await this.count()) > 0) await this.ctx.storage.setAlarm(Date.now() + (expired ? EXPIRY_CHECK_MS : EXPIRE_RETRY_MS));
  }

  /**
   * The circuit breaker's probe: sends the oldest held delivery alone, marked
   * as the probe (the consumer tries it although the circuit is open). False
   * when nothing is held.
   */
  async probe(destination: string, token?: number): Promise<'sent' | 'empty' | 'failed'> {
    this.ctx.storage.kv.put('destination', destination);
    return this.lane.run(async () => {
      if ((await this.count()) === 0) return 'empty';
      // Not sent (the queue or the ledger refused): the registry tries again soon, not after a probe's report wait.
      return (await this.sendOldest(destination, 1, { token })).sent > 0 ? 'sent' : 'failed';
    });
  }

  /** Re-enqueues the oldest slice in acceptance order; true when more remain. */
  private async drainStep(destination: string): Promise<boolean> {
    return (await this.sendOldest(destination, DRAIN_SLICE, null)).more;
  }

  /** Re-enqueues the oldest held deliveries, up to `limit`: how many went, and whether any remain to send. */
  private async sendOldest(destination: string, limit: number, probe: { token: number | undefined } | null): Promise<{ sent: number; more: boolean }> {
    const rows = this.sql.exec<Row>('SELECT * FROM held ORDER BY accepted_at, seq LIMIT ?', limit).toArray();
    if (rows.length === 0) return { sent: 0, more: false };
    const loaded = loadConfig(this.env);
    const settings = loaded.ok ? loaded.config.settings : undefined;
    const messages: RouterMessage[] = [];
    // Each body too large for a message is one more call (to the ledger): within the subrequest budget,
    // keeping room for the sendBatch chunks; the rest wait for the next step.
    const storeCalls = Math.max(1, (settings?.consumerSubrequestBudget ?? 45) - 5);
    let stored = 0;
    const taken: Row[] = [];
    for (const r of rows) {
      const m: RouterMessage = {
        v: 1,
        id: r.event_id,
        type: r.event_type,
        created_at: r.created_at,
        source: r.source === 'reconcile' ? 'reconcile' : 'webhook',
        accepted_at: r.accepted_at,
        pending: { [destination]: { attempts: r.attempts, rules: JSON.parse(r.rules) as string[] } },
      };
      if (r.stale === 1) m.stale = true;
      if (r.replay === 1) m.replay = true;
      if (r.ledger_shard !== null) m.ledger_shard = r.ledger_shard;
      if (probe !== null) {
        m.probe = destination;
        if (probe.token !== undefined) m.probe_token = probe.token;
      }
      if (fitsInline(m, r.body, utf8Length(r.body))) m.body = r.body;
      else {
        if (stored >= storeCalls) break;
        stored += 1;
        const until = Date.now() + (settings?.dedupRetentionDays ?? 30) * DAY_MS;
        const { name, stub } = ledgerStub(this.env, r.event_id, settings?.dedupShards ?? 16);
        try {
          await stub.storeBody(r.event_id, r.body, until);
        } catch (err) {
          log('error', 'held_body_store_failed', { destination, event_id: r.event_id, error: errorName(err) });
          return { sent: 0, more: true }; // try again next step
        }
        m.body_ref = { shard: name, until };
      }
      messages.push(m);
      taken.push(r);
    }
    // One sendBatch per slice (at most 50 messages); split when large.
    let sent = 0;
    for (const chunk of chunkForSendBatch(messages, (m) => m)) {
      try {
        await this.env.EVENTS_QUEUE.sendBatch(chunk.map((body) => ({ body, contentType: 'json' as const })));
      } catch (err) {
        log('error', 'held_drain_failed', { destination, error: errorName(err) });
        break;
      }
      const seqs = taken.slice(sent, sent + chunk.length).map((r) => r.seq);
      this.sql.exec(`DELETE FROM held WHERE seq IN (${placeholders(seqs.length)})`, ...seqs);
      sent += chunk.length;
    }
    if (sent > 0) log('info', probe !== null ? 'circuit_probe_sent' : 'held_drained', { destination, count: sent });
    return { sent, more: sent === taken.length ? (await this.count()) > 0 : true };
  }

  /**
   * Dead-letters deliveries held longer than the limit (`held_too_long`) —
   * or all of them (`destination_removed`) once a valid ROUTER no longer has
   * the destination: nothing could resume them, and the dead-letter store is
   * where they can be listed, exported, and replayed if it comes back. None
   * while the config is invalid (every event is held then). A slice at a
   * time. False when the dead-letter store failed (tried again in a minute).
   */
  private async expire(destination: string): Promise<boolean> {
    const loaded = loadConfig(this.env);
    // An invalid config holds everything, these deliveries included: nothing is dead-lettered until it is fixed.
    if (!loaded.ok) return true;
    const removed = destination !== '(unknown)' && !loaded.config.destinations.has(destination);
    const cutoff = removed ? Number.MAX_SAFE_INTEGER : Date.now() - HOLD_LIMIT_DAYS * DAY_MS;
    const reason = removed ? 'destination_removed' : 'held_too_long';
    for (;;) {
      // Sizes first: 200 large bodies (a directory sync's 600 KB events) would not fit one call, nor memory.
      const sizes = this.sql
        .exec<{ seq: number; bytes: number }>('SELECT seq, length(CAST(body AS BLOB)) AS bytes FROM held WHERE held_at <= ? ORDER BY seq LIMIT 200', cutoff)
        .toArray();
      if (sizes.length === 0) return true;
      const seqs: number[] = [];
      let bytes = 0;
      for (const s of sizes) {
        if (seqs.length > 0 && bytes + s.bytes > EXPIRE_SLICE_BYTES) break;
        seqs.push(s.seq);
        bytes += s.bytes;
      }
      const rows = this.sql.exec<Row>(`SELECT * FROM held WHERE seq IN (${placeholders(seqs.length)}) ORDER BY seq`, ...seqs).toArray();
      const records = rows.map((r) =>
        deadLetterRecord({
          event_id: r.event_id,
          event_type: r.event_type,
          destination,
          rules: JSON.parse(r.rules) as string[],
          reason,
          attempts: r.attempts,
          body: r.body,
          stale: r.stale === 1,
          source: r.source === 'reconcile' ? 'reconcile' : 'webhook',
          ...(r.ledger_shard !== null ? { ledger_shard: r.ledger_shard } : {}),
          // A call made again after its answer was lost stores nothing more.
          key: `held:${this.ctx.id.toString()}:${r.seq}`,
        }),
      );
      try {
        await deadLetterStub(this.env).add(records);
      } catch (err) {
        log('error', 'dead_letter_store_failed', { destination, count: records.length, error: errorName(err) });
        return false;
      }
      this.sql.exec(`DELETE FROM held WHERE seq IN (${placeholders(seqs.length)})`, ...seqs);
      await this.traceExpired(destination, rows);
    }
  }

  /** The trace learns these held deliveries were dead-lettered (best effort). */
  private async traceExpired(destination: string, rows: Row[]): Promise<void> {
    const loaded = loadConfig(this.env);
    if (!loaded.ok) return;
    const trace = new TraceWriter(this.env, loaded.config.settings);
    for (const r of rows) {
      trace.add({
        event_id: r.event_id,
        event_type: r.event_type,
        source: r.source === 'reconcile' ? 'reconcile' : 'webhook',
        accepted_at: r.accepted_at,
        stale: r.stale === 1,
        body_shard: r.ledger_shard,
        destination,
        rules: JSON.parse(r.rules) as string[],
        state: 'dead_lettered',
      });
    }
    await trace.flush();
  }

  private async scheduleAt(at: number): Promise<void> {
    const current = await this.ctx.storage.getAlarm();
    if (current === null || current > at) await this.ctx.storage.setAlarm(at);
  }
}

export function heldStub(env: Env, destination: string): DurableObjectStub<HeldDeliveries> {
  return env.HELD_DELIVERIES.get(env.HELD_DELIVERIES.idFromName(`held:${destination}`)) as DurableObjectStub<HeldDeliveries>;
}

/** A batch's deliveries for paused destinations: one `hold` per destination. */
export class HeldHandOff extends HandOffBatch<HeldDelivery, void> {
  constructor(env: Env) {
    super(async (destination, items) => {
      await heldStub(env, destination).hold(destination, items);
      return items.map(() => undefined);
    });
  }
}

/** `?, ?, …` for an `IN (…)` list of `n` values. */
function placeholders(n: number): string {
  return Array.from({ length: n }, () => '?').join(',');
}
