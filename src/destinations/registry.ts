/**
 * The destination registry: one SQLite-backed Durable Object that knows, for
 * every destination, whether it is paused, whether its circuit is open, and
 * how it has been doing (last success, last failure and its error, counts).
 * The consumer reads the blocked sets once per batch and reports the batch's
 * outcomes once at its end, so the cost is two requests per batch whatever
 * the number of events or destinations.
 *
 * Rows written are what SQLite storage bills, so a batch that only succeeded
 * for a healthy destination (circuit closed, no failure streak) is not
 * written at once: its counts and last success are added up in memory and
 * written once per destination every `HEALTH_FLUSH_MS` (by the next report
 * after that, or by the alarm), and before any read of health or counters.
 * Anything about a failure, a probe or an open circuit is written at once. A
 * restart of the object can lose at most that window of success counts —
 * never an event, a failure or circuit state.
 *
 * Circuit breaker: after `circuit.failures` consecutive retryable failures a
 * destination's circuit opens; its deliveries are then held exactly as when
 * paused (src/destinations/held.ts). Every cooldown the registry's alarm asks
 * the held store to send its oldest delivery as the probe; a success closes
 * the circuit and the held deliveries drain in acceptance order, a failure
 * doubles the cooldown (capped). With nothing held there is no probe and the
 * circuit stays open until the next cooldown: only an answer from the service
 * closes it — unless the valid config no longer has the destination, whose
 * circuit is then dropped. Permanent failures (4xx) neither count nor reset
 * the streak.
 */
import { applyLogLevelOnce, parsedConfig } from '../config/load';
import { DurableObject } from 'cloudflare:workers';
import { type CircuitPolicy, MAX_CIRCUIT_COOLDOWN_SECONDS } from '../config/router-config';
import { audit, errorName, log } from '../log';
import { heldStub } from './held';
import { outboxStub } from './slack/outbox';
import { notifyAlerts } from '../alerts/notifier';

export interface DestinationHealth {
  name: string;
  state: 'active' | 'paused';
  /** `open`: deliveries held until a probe succeeds. */
  circuit: 'closed' | 'open';
  circuit_opened_at: string | null;
  next_probe_at: string | null;
  consecutive_failures: number;
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
  /** Retryable failures (5xx, 429, timeouts, network errors) in this batch. */
  retryable_failures?: number;
  /** Retryable failures after the batch's last success (all of them when none succeeded). */
  trailing_failures?: number;
  /** The outcome of the circuit probe this batch carried (`unanswered`: refused before reaching the service). */
  probe?: 'ok' | 'failed' | 'unanswered';
  last_success_at?: number;
  last_failure_at?: number;
  /** Short machine-readable reason of the last failure (never payload content). */
  last_error?: string;
  /** Failures by class (`http_5xx`, `http_4xx`, `timeout`, `network_error`, …), for metrics. */
  failure_classes?: Record<string, number>;
}

type Row = {
  name: string;
  paused_at: number | null;
  consecutive_failures: number;
  circuit_open_at: number | null;
  cooldown_ms: number | null;
  next_probe_at: number | null;
  last_success_at: number | null;
  last_failure_at: number | null;
  last_error: string | null;
  delivered: number;
  failed: number;
};

/** Success-only reports of healthy destinations are written at most this often (see the header). */
export const HEALTH_FLUSH_MS = 10_000;

/** Slots are spaced 5 % wider than 1/rate, so network jitter at the receiver stays under the rate. */
const RATE_HEADROOM = 1.05;
/** How far ahead one consumer batch takes send slots at most (it waits for them); the rest is deferred. */
export const RATE_HORIZON_MS = 5_000;
/** How late after its slot a consumer may still send (it takes a fresh slot when later: src/queue/consumer.ts), with room to spare. */
const SLOT_LATE_MARGIN_MS = 200;
/** How far past the last slot granted the stored bound is moved each time it is written. */
const SLOT_LEASE_MS = 5_000;
/** What `syncHeld` did: told the held store to drain (and how many it holds), to hold, or could not (retried by the alarm). */
export type HeldSync = { state: 'draining'; held: number } | { state: 'holding' } | { state: 'owed' };
/** How soon a held store that could not be told to hold or drain is told again. */
const HELD_SYNC_RETRY_MS = 30_000;
/** How long a probe may take to report before another is sent (they would otherwise pile up during a backlog). */
export const PROBE_REPORT_WAIT_MS = 10 * 60 * 1000;

export class DestinationRegistry extends DurableObject<Env> {
  private readonly sql: SqlStorage;
  /**
   * Rate limits: per destination, the time (ms) of its next free send slot,
   * in memory. Storage keeps, per destination, a time no slot granted lies
   * beyond (`slotsUntil`, moved SLOT_LEASE_MS ahead at a time, so written at
   * most once per that much of slots): a restarted registry starts after it,
   * so batches still holding slots from before the restart and those taking
   * new ones never add up past the limit.
   */
  private readonly nextSlot = new Map<string, number>();
  private readonly slotsUntil = new Map<string, number>();
  /** Per destination, the last call telling its held store to hold or drain (they go one after another). */
  private readonly heldLanes = new Map<string, Promise<HeldSync>>();
  /** Success-only reports not yet written, per destination. */
  private readonly unwritten = new Map<string, { delivered: number; last_success_at: number | null }>();
  /** When the oldest of them must be written (null: none waiting). */
  private flushDue: number | null = null;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    applyLogLevelOnce(env);
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
    this.sql.exec('CREATE TABLE IF NOT EXISTS counters (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID');
    const cols = new Set(this.sql.exec<{ name: string }>("SELECT name FROM pragma_table_info('destinations')").toArray().map((c) => c.name));
    if (!cols.has('consecutive_failures')) {
      this.sql.exec(`
        ALTER TABLE destinations ADD COLUMN consecutive_failures INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE destinations ADD COLUMN circuit_open_at INTEGER;
        ALTER TABLE destinations ADD COLUMN cooldown_ms INTEGER;
        ALTER TABLE destinations ADD COLUMN next_probe_at INTEGER;
      `);
    }
  }

  /**
   * Send slots for rate-limited destinations, for one consumer batch: for
   * each, up to `count` slots within the next `horizonMs`, spaced 1/rate
   * apart across every batch; `next` is when the first slot not granted would
   * be (the caller defers the rest until then). Both are given in ms from
   * now, not as clock times: the caller adds them to the time the answer
   * reached it, so the trip back (long when this object sits far from the
   * consumer) does not make every first slot late.
   */
  async reserve(requests: Record<string, { count: number; perSecond: number }>, horizonMs: number): Promise<Record<string, { slotsInMs: number[]; nextInMs: number }>> {
    const now = Date.now();
    const out: Record<string, { slotsInMs: number[]; nextInMs: number }> = {};
    for (const [name, { count, perSecond }] of Object.entries(requests)) {
      const spacing = (1000 / perSecond) * RATE_HEADROOM;
      let t = Math.max(now, this.nextSlot.get(name) ?? this.slotsUntilOf(name));
      const slots: number[] = [];
      while (slots.length < count && t <= now + Math.min(horizonMs, RATE_HORIZON_MS)) {
        slots.push(t);
        t += spacing;
      }
      this.nextSlot.set(name, t);
      const last = slots.at(-1);
      // Before the slots are handed out: the bound covers them, and a consumer's send up to a little late.
      if (last !== undefined && last + SLOT_LATE_MARGIN_MS > this.slotsUntilOf(name)) {
        const until = last + SLOT_LATE_MARGIN_MS + SLOT_LEASE_MS;
        this.ctx.storage.kv.put(`slots_until:${name}`, until);
        this.slotsUntil.set(name, until);
      }
      out[name] = { slotsInMs: slots.map((s) => s - now), nextInMs: t - now };
    }
    return out;
  }

  private slotsUntilOf(name: string): number {
    let until = this.slotsUntil.get(name);
    if (until === undefined) {
      until = this.ctx.storage.kv.get<number>(`slots_until:${name}`) ?? 0;
      this.slotsUntil.set(name, until);
    }
    return until;
  }

  /**
   * What the consumer must not deliver to, read once per batch: paused
   * destinations and open circuits, with the token of each open circuit's
   * latest probe (the only one tried).
   */
  async blocked(): Promise<{ paused: string[]; open: string[]; probes: Record<string, number> }> {
    const rows = this.sql.exec<{ name: string; paused_at: number | null; circuit_open_at: number | null }>(
      'SELECT name, paused_at, circuit_open_at FROM destinations WHERE paused_at IS NOT NULL OR circuit_open_at IS NOT NULL',
    );
    const paused: string[] = [];
    const open: string[] = [];
    const probes: Record<string, number> = {};
    for (const r of rows) {
      if (r.paused_at !== null) paused.push(r.name);
      if (r.circuit_open_at !== null) {
        open.push(r.name);
        const token = this.ctx.storage.kv.get<number>(`probe_token:${r.name}`);
        if (token !== undefined) probes[r.name] = token;
      }
    }
    return { paused, open, probes };
  }

  /** Names of the paused destinations. */
  async paused(): Promise<string[]> {
    return this.sql.exec<{ name: string }>('SELECT name FROM destinations WHERE paused_at IS NOT NULL').toArray().map((r) => r.name);
  }

  /**
   * Pauses a destination (idempotent) and its held store, and its Slack
   * outbox when `slack` says it has one; returns when it was paused.
   */
  async pause(name: string, opts: { slack?: boolean } = {}): Promise<number> {
    if (opts.slack === true) this.ctx.storage.kv.put(`slack_outbox:${name}`, true);
    const now = Date.now();
    this.sql.exec(
      'INSERT INTO destinations (name, paused_at) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET paused_at = COALESCE(paused_at, excluded.paused_at)',
      name,
      now,
    );
    const at = this.sql.exec<{ paused_at: number }>('SELECT paused_at FROM destinations WHERE name = ?', name).one().paused_at;
    if (at === now) {
      audit('destination_paused', { destination: name }, 'warn');
      await notifyAlerts(this.env, [{ kind: 'paused', destination: name }]);
    }
    await this.syncHeld(name);
    return at;
  }

  /**
   * Resumes a destination (idempotent) and tells its held store to drain,
   * unless its circuit is open: then they keep waiting for it to close.
   * `was`: it was paused; `held`: what the store does now.
   */
  async resume(name: string, opts: { slack?: boolean } = {}): Promise<{ was: boolean; circuitOpen: boolean; held: HeldSync }> {
    if (opts.slack === true) this.ctx.storage.kv.put(`slack_outbox:${name}`, true);
    const was = this.sql.exec('UPDATE destinations SET paused_at = NULL WHERE name = ? AND paused_at IS NOT NULL', name).rowsWritten > 0;
    if (was) {
      audit('destination_resumed', { destination: name });
      await notifyAlerts(this.env, [{ kind: 'resumed', destination: name }]);
    }
    const open = this.sql.exec<{ o: number | null }>('SELECT circuit_open_at AS o FROM destinations WHERE name = ?', name).toArray()[0]?.o ?? null;
    return { was, circuitOpen: open !== null, held: await this.syncHeld(name) };
  }

  async report(reports: Record<string, DestinationReport>, circuits: Record<string, CircuitPolicy | null> = {}): Promise<void> {
    const now = Date.now();
    for (const [name, report] of Object.entries(reports)) {
      if (this.onlySuccess(name, report)) {
        const waiting = this.unwritten.get(name) ?? { delivered: 0, last_success_at: null };
        waiting.delivered += report.delivered;
        if (report.last_success_at !== undefined) waiting.last_success_at = Math.max(waiting.last_success_at ?? 0, report.last_success_at);
        this.unwritten.set(name, waiting);
        continue;
      }
      // Written now, with what waited for it.
      const waiting = this.unwritten.get(name);
      this.unwritten.delete(name);
      const r: DestinationReport =
        waiting === undefined
          ? report
          : {
              ...report,
              delivered: report.delivered + waiting.delivered,
              ...(waiting.last_success_at !== null ? { last_success_at: Math.max(report.last_success_at ?? 0, waiting.last_success_at) } : {}),
            };
      this.writeHealth(name, r);
      for (const [cls, n] of Object.entries(r.failure_classes ?? {})) this.bump(JSON.stringify(['delivery_failures_total', { destination: name, class: cls }]), n);
      await this.updateCircuit(name, r, circuits[name] ?? null, now);
    }
    if (this.unwritten.size === 0) this.flushDue = null;
    else if (this.flushDue === null) {
      this.flushDue = now + HEALTH_FLUSH_MS;
      await this.scheduleProbe(this.flushDue);
    } else if (now >= this.flushDue) this.flushHealth();
  }

  /** A report that only says "delivered" for a destination already known, healthy and with its circuit closed. */
  private onlySuccess(name: string, r: DestinationReport): boolean {
    if (r.failed > 0 || (r.retryable_failures ?? 0) > 0 || r.probe !== undefined || r.last_failure_at !== undefined) return false;
    if (Object.keys(r.failure_classes ?? {}).length > 0) return false;
    const row = this.sql
      .exec<{ circuit_open_at: number | null; consecutive_failures: number }>('SELECT circuit_open_at, consecutive_failures FROM destinations WHERE name = ?', name)
      .toArray()[0];
    return row !== undefined && row.circuit_open_at === null && row.consecutive_failures === 0;
  }

  /** Writes every success report still waiting (one row per destination). */
  private flushHealth(): void {
    for (const [name, w] of this.unwritten) {
      this.writeHealth(name, { delivered: w.delivered, failed: 0, ...(w.last_success_at !== null ? { last_success_at: w.last_success_at } : {}) });
    }
    this.unwritten.clear();
    this.flushDue = null;
  }

  private writeHealth(name: string, r: DestinationReport): void {
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

  /** Adds counters flushed by Worker isolates (src/metrics/counters.ts). */
  async addCounters(entries: Array<[string, number]>): Promise<void> {
    for (const [key, n] of entries) this.bump(key, n);
  }

  /** Every stored counter: key (JSON [name, labels]) → value. */
  async counters(): Promise<Array<{ key: string; value: number }>> {
    this.flushHealth();
    return this.sql.exec<{ key: string; value: number }>('SELECT key, value FROM counters').toArray();
  }

  private bump(key: string, n: number): void {
    this.sql.exec('INSERT INTO counters (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = value + excluded.value', key, n);
  }

  /** The breaker's bookkeeping for one destination after one batch. */
  private async updateCircuit(name: string, r: DestinationReport, policy: CircuitPolicy | null, now: number): Promise<void> {
    const row = this.sql.exec<Row>('SELECT * FROM destinations WHERE name = ?', name).one();
    const retryable = r.retryable_failures ?? 0;
    const consecutive = r.delivered > 0 ? (r.trailing_failures ?? 0) : row.consecutive_failures + retryable;
    if (row.circuit_open_at !== null) {
      if (r.probe === 'ok' || r.delivered > 0) {
        await this.close(row, now);
        return;
      }
      if (r.probe === 'unanswered') {
        // Nothing was learnt about the service: the next probe one cooldown later, not doubled.
        const cooldown = row.cooldown_ms ?? 60_000;
        this.sql.exec('UPDATE destinations SET consecutive_failures = ?, next_probe_at = ? WHERE name = ?', consecutive, now + cooldown, name);
        log('info', 'circuit_probe_unanswered', { destination: name, next_probe_in_s: cooldown / 1000 });
        await this.scheduleProbe(now + cooldown);
        return;
      }
      if (r.probe === 'failed') {
        const cooldown = Math.min((row.cooldown_ms ?? 60_000) * 2, MAX_CIRCUIT_COOLDOWN_SECONDS * 1000);
        this.sql.exec('UPDATE destinations SET consecutive_failures = ?, cooldown_ms = ?, next_probe_at = ? WHERE name = ?', consecutive, cooldown, now + cooldown, name);
        log('warn', 'circuit_probe_failed', { destination: name, next_probe_in_s: cooldown / 1000 });
        await this.scheduleProbe(now + cooldown);
        return;
      }
    }
    if (policy !== null && row.circuit_open_at === null && consecutive >= policy.failures) {
      const cooldown = policy.cooldownSeconds * 1000;
      this.sql.exec(
        'UPDATE destinations SET consecutive_failures = ?, circuit_open_at = ?, cooldown_ms = ?, next_probe_at = ? WHERE name = ?',
        consecutive,
        now,
        cooldown,
        now + cooldown,
        name,
      );
      // A token of this opening's own: a probe sent during an earlier opening, still on its way, is not taken for one of this one.
      this.ctx.storage.kv.put(`probe_token:${name}`, now);
      log('warn', 'circuit_open', { destination: name, consecutive_failures: consecutive, probe_in_s: policy.cooldownSeconds });
      await this.syncHeld(name);
      await notifyAlerts(this.env, [{ kind: 'circuit_open', destination: name, detail: `${consecutive} failures in a row` }]);
      await this.scheduleProbe(now + cooldown);
      return;
    }
    if (consecutive !== row.consecutive_failures) this.sql.exec('UPDATE destinations SET consecutive_failures = ? WHERE name = ?', consecutive, name);
  }

  private async close(row: Row, now: number): Promise<void> {
    this.sql.exec('UPDATE destinations SET consecutive_failures = 0, circuit_open_at = NULL, cooldown_ms = NULL, next_probe_at = NULL WHERE name = ?', row.name);
    this.ctx.storage.kv.delete(`probe_token:${row.name}`);
    // The held deliveries drain now (unless paused meanwhile: they wait for the resume).
    const sync = await this.syncHeld(row.name);
    const held = sync.state === 'draining' ? sync.held : null;
    const detail = sync.state === 'draining' ? `${sync.held} held` : sync.state === 'holding' ? 'held until the destination is resumed' : 'held deliveries drain shortly';
    log('info', 'circuit_closed', { destination: row.name, open_for_s: Math.round((now - (row.circuit_open_at ?? now)) / 1000), held });
    await notifyAlerts(this.env, [{ kind: 'circuit_closed', destination: row.name, detail }]);
  }

  /**
   * Makes the destination's held store hold (paused, or circuit open) or
   * drain, as this registry's row says when the call is made, and says which
   * it did (with how many it drains). The registry is the only one that
   * tells a held store to hold or drain, and one destination's calls go one
   * after another: a pause that lands while a circuit-close's drain call is
   * on its way makes the next call, which arrives after it and holds. The
   * sync is owed from before the call until it succeeds: when the held store
   * cannot be reached, or this object restarts during the call, the alarm
   * tries again every 30 s, so deliveries are neither stranded after a
   * circuit closed nor drained into an open one.
   */
  private syncHeld(name: string): Promise<HeldSync> {
    const before = this.heldLanes.get(name) ?? Promise.resolve();
    // After the previous call whatever its outcome (a failure of one does not skip the next).
    const mine = before.catch(() => undefined).then(() => this.syncHeldNow(name));
    this.heldLanes.set(name, mine);
    mine
      .finally(() => {
        if (this.heldLanes.get(name) === mine) this.heldLanes.delete(name);
      })
      .catch(() => undefined);
    return mine;
  }

  private async syncHeldNow(name: string): Promise<HeldSync> {
    const row = this.sql.exec<Row>('SELECT * FROM destinations WHERE name = ?', name).toArray()[0];
    const hold = row !== undefined && (row.paused_at !== null || row.circuit_open_at !== null);
    // Owed from before the call, not only once it is seen failing: the state that asks for it is already
    // written, and a restart of this object during the call (a deploy) must not leave the held store
    // holding behind a closed circuit, or draining into an open one, with nothing to tell it again.
    this.ctx.storage.kv.put(`held_sync_owed:${name}`, true);
    await this.scheduleProbe(Date.now() + HELD_SYNC_RETRY_MS);
    try {
      const held = heldStub(this.env, name);
      let sync: HeldSync = { state: 'holding' };
      if (hold) await held.pause(name);
      else sync = { state: 'draining', held: await held.resume(name) };
      // A Slack destination's outbox follows the pause alone (it keeps its buffer while paused), in this
      // same lane: two admin calls racing each other cannot leave it paused under an active destination.
      if (this.ctx.storage.kv.get<boolean>(`slack_outbox:${name}`) === true) {
        const outbox = outboxStub(this.env, name);
        if (row?.paused_at != null) await outbox.pause();
        else await outbox.resume();
      }
      this.ctx.storage.kv.delete(`held_sync_owed:${name}`);
      return sync;
    } catch (err) {
      log('error', 'held_sync_failed', { destination: name, hold, error: errorName(err) });
      this.ctx.storage.kv.put(`held_sync_owed:${name}`, true);
      await this.scheduleProbe(Date.now() + HELD_SYNC_RETRY_MS);
      return { state: 'owed' };
    }
  }

  private async scheduleProbe(at: number): Promise<void> {
    const current = await this.ctx.storage.getAlarm();
    if (current === null || current > at) await this.ctx.storage.setAlarm(at);
  }

  /**
   * Probes every open circuit that is due. With nothing held there is nothing
   * to probe with: the service has not answered anything, so the circuit
   * stays open (closing it would announce a recovery nobody saw, and the
   * deliveries still on their way back as delayed retries would then fail
   * against a closed circuit and open it again). The next probe time is one
   * cooldown later, not doubled — no probe failed — so a delivery held
   * meanwhile (any event arriving while the circuit is open) is the probe at
   * most one cooldown after it arrives. The circuit closes on a probe the
   * service answers, or on any success reported meanwhile (`updateCircuit`).
   */
  override async alarm(): Promise<void> {
    const now = Date.now();
    this.flushHealth();
    for (const [key] of [...this.ctx.storage.kv.list<boolean>({ prefix: 'held_sync_owed:' })]) await this.syncHeld(key.slice('held_sync_owed:'.length));
    const due = this.sql.exec<Row>('SELECT * FROM destinations WHERE circuit_open_at IS NOT NULL AND next_probe_at <= ?', now).toArray();
    for (const row of due) {
      const tokenKey = `probe_token:${row.name}`;
      const previousToken = this.ctx.storage.kv.get<number>(tokenKey);
      try {
        // The token is written before the probe is sent, so a consumer reading it finds the probe's own.
        this.ctx.storage.kv.put(tokenKey, now);
        const probe = await heldStub(this.env, row.name).probe(row.name, now);
        // No probe went out: an earlier one still on its way stays the one tried.
        if (probe !== 'sent') {
          if (previousToken === undefined) this.ctx.storage.kv.delete(tokenKey);
          else this.ctx.storage.kv.put(tokenKey, previousToken);
        }
        if (probe === 'failed') {
          // Held deliveries, but none could be sent: tried again soon.
          log('warn', 'circuit_probe_not_sent', { destination: row.name, retry_in_s: 30 });
          this.sql.exec('UPDATE destinations SET next_probe_at = ? WHERE name = ?', now + 30_000, row.name);
          continue;
        }
        if (probe === 'empty') {
          if (this.removedFromConfig(row.name)) {
            await this.forget(row, now);
            continue;
          }
          const cooldown = row.cooldown_ms ?? 60_000;
          this.sql.exec('UPDATE destinations SET next_probe_at = ? WHERE name = ?', now + cooldown, row.name);
          log('info', 'circuit_probe_skipped', { destination: row.name, held: 0, next_probe_in_s: cooldown / 1000 });
          continue;
        }
        // One probe at a time: its report sets the next one (sooner); only if it never reports (a queue
        // backlog, an invalid ROUTER holding it) is another sent, after PROBE_REPORT_WAIT_MS at least.
        this.sql.exec('UPDATE destinations SET next_probe_at = ? WHERE name = ?', now + Math.max(row.cooldown_ms ?? 60_000, PROBE_REPORT_WAIT_MS), row.name);
      } catch (err) {
        log('error', 'circuit_probe_unavailable', { destination: row.name, error: errorName(err) });
        this.sql.exec('UPDATE destinations SET next_probe_at = ? WHERE name = ?', now + 30_000, row.name);
      }
    }
    const probeAt = this.sql.exec<{ at: number | null }>('SELECT MIN(next_probe_at) AS at FROM destinations WHERE circuit_open_at IS NOT NULL').one().at;
    const owed = [...this.ctx.storage.kv.list({ prefix: 'held_sync_owed:' })].length > 0;
    // Success counts still in memory are written by their own due time too (a report during this alarm may have set it).
    const next = Math.min(probeAt ?? Number.POSITIVE_INFINITY, owed ? now + HELD_SYNC_RETRY_MS : Number.POSITIVE_INFINITY, this.flushDue ?? Number.POSITIVE_INFINITY);
    if (next !== Number.POSITIVE_INFINITY) {
      const target = Math.max(next, now + 1_000);
      // Only ever earlier: a report or a pause made while this alarm awaited its calls may have set a sooner one
      // (an alarm time up to this one's start is this alarm's own).
      const current = await this.ctx.storage.getAlarm();
      if (current === null || current <= now || current > target) await this.ctx.storage.setAlarm(target);
    }
  }

  /** Only a valid ROUTER without the destination means it was removed (an invalid one says nothing). */
  private removedFromConfig(name: string): boolean {
    const loaded = parsedConfig(this.env);
    return loaded.ok && !loaded.config.destinations.has(name);
  }

  /**
   * A destination removed from the config while its circuit was open, with
   * nothing held: nothing will ever probe it, so its circuit is dropped
   * (closed without a recovery alert: the service never answered) instead of
   * waking this object every cooldown for ever. Its held store is told to
   * stop holding, so a destination added back under the same name starts
   * with a closed circuit and nothing stranded; its pause, if any, stays.
   */
  private async forget(row: Row, now: number): Promise<void> {
    this.sql.exec('UPDATE destinations SET consecutive_failures = 0, circuit_open_at = NULL, cooldown_ms = NULL, next_probe_at = NULL WHERE name = ?', row.name);
    this.ctx.storage.kv.delete(`probe_token:${row.name}`);
    log('info', 'circuit_forgotten', { destination: row.name, reason: 'destination_removed', open_for_s: Math.round((now - (row.circuit_open_at ?? now)) / 1000) });
    await this.syncHeld(row.name);
    // No recovery to announce; a destination added back under the name starts a new outage, timed from its own opening.
    await notifyAlerts(this.env, [{ kind: 'circuit_open', destination: row.name, forgotten: true }]);
  }

  async health(names: string[]): Promise<DestinationHealth[]> {
    this.flushHealth();
    const rows = new Map(this.sql.exec<Row>('SELECT * FROM destinations').toArray().map((r) => [r.name, r]));
    const iso = (ms: number | null | undefined) => (ms === null || ms === undefined ? null : new Date(ms).toISOString());
    return names.map((name) => {
      const r = rows.get(name);
      return {
        name,
        state: r?.paused_at != null ? 'paused' : 'active',
        circuit: r?.circuit_open_at != null ? 'open' : 'closed',
        circuit_opened_at: iso(r?.circuit_open_at),
        next_probe_at: iso(r?.next_probe_at),
        consecutive_failures: r?.consecutive_failures ?? 0,
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
