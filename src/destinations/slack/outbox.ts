/**
 * The Slack outbox: one SQLite-backed Durable Object per Slack destination.
 *
 * Slack incoming webhooks accept about one message per second; a burst must
 * neither flood a channel nor be lost. Every event handed to the outbox is
 * stored first (only what its message needs, plus its raw body so that a dead
 * letter can be replayed), then:
 * - in a quiet period a single event is sent at once, as its own message;
 * - otherwise events accumulate and the alarm sends them as one digest
 *   (exact counts per type, top values of the key field, the first few events
 *   in compact form). The window is measured from when the previous POST
 *   completed, so at the receiving end consecutive messages to one
 *   destination are never closer than `digest_window_seconds` (≥ 1 s).
 * - Operational alerts that waited together go out as one message listing
 *   each of them, never counted inside an event digest.
 * - Submission is idempotent per event id (for the dedup retention): a
 *   consumer redelivery never counts an event twice. A replay is not a
 *   redelivery: it is posted again, whatever the outbox saw before.
 * - At most `max_pending` events wait; beyond that, the outbox refuses new
 *   ones and the consumer dead-letters each individually
 *   (`slack_backlog_full`), visibly, with its body.
 * - 429 honours Retry-After; 5xx and timeouts back off and retry (the
 *   buffered events stay, and later arrivals join the next message); Slack's
 *   4xx answers and exhausted attempts move the events to the dead-letter
 *   store, in bounded slices.
 * - While the configuration is invalid the buffer is held, never dead-lettered.
 *   A valid configuration without the destination (removed) dead-letters the
 *   whole buffer as `destination_removed`, one message's worth per alarm, the
 *   next alarm a second later, until nothing is left.
 */
import { DurableObject } from 'cloudflare:workers';
import { applyLogLevelOnce, loadConfig } from '../../config/load';
import type { SlackDestination } from '../../config/router-config';
import { DEAD_LETTER_CALL_BYTES, type DeadLetterInput, RECORD_OVERHEAD_BYTES, deadLetterRecord, deadLetterStub } from '../../deadletters/store';
import { packNextFit } from '../../queue/message';
import type { UnknownEvent } from '../../events/catalog';
import type { RouterMessage } from '../../queue/message';
import { errorName, log } from '../../log';
import { backoffSeconds, type DeliveryOutcome } from '../types';
import { type SlackMessage, digestSampleLine, keyFieldOf } from './format';
import { postToSlack } from './post';
import { ALERT_EVENT_TYPE, type DigestEntry, DigestBuilder, MAX_ALERTS_PER_MESSAGE, alertsMessage, renderAlert, renderEntry } from './render';

export interface OutboxItem {
  event_id: string;
  event_type: string;
  rules: string[];
  raw: string;
  /** An operational alert (src/alerts/notifier.ts): its mrkdwn text, already escaped, instead of an event to format. */
  alert?: string;
  /**
   * Sent again by an operator (a dead-letter or event replay): posted even
   * though this outbox has seen the id (its first copy may have been
   * dead-lettered, or posted and asked for again).
   */
  replay?: true;
  /** What a dead letter of this event records besides its body: kept with the entry. */
  marks?: OutboxMarks;
}

/** The event's marks a dead-letter record carries (`deadLetterRecord`): stale, its source, the ledger shard that keeps its body. */
export interface OutboxMarks {
  stale?: true;
  source?: RouterMessage['source'];
  ledger_shard?: string;
}

export type SubmitOutcome = 'accepted' | 'duplicate' | 'full';

/** At most this many buffered events go into one digest (the rest wait for the next). */
const MAX_EVENTS_PER_MESSAGE = 5000;
/** Rows read per slice when counting a digest or dead-lettering a buffer. */
const SLICE = 500;
/** How long buffered events wait between checks while the configuration is invalid. */
const HOLD_DELAY_SECONDS = 60;
/** How often a paused outbox with a buffer looks whether its destination was removed from the config. */
const PAUSED_CHECK_MS = 6 * 60 * 60 * 1000;
/** Between two runs dead-lettering the buffer of a removed destination. */
const REMOVED_DELAY_MS = 1000;
/** How long a submitted event id is remembered (a consumer redelivery within it is a duplicate). */
const SEEN_DEFAULT_DAYS = 30;
const SEEN_SWEEP_INTERVAL_MS = 60 * 60 * 1000;
/**
 * The first alert in the buffer. The type is written into the statement (not
 * bound) so SQLite can use the partial index `entries_alerts`: one row read,
 * not a scan of every event waiting in front of it (rows read are billed).
 */
export const NEXT_ALERT_SQL = `SELECT seq FROM entries WHERE event_type = '${ALERT_EVENT_TYPE}' ORDER BY seq LIMIT 1`;
/** The first notable event in the buffer (through the partial index `entries_notable`). */
export const NEXT_NOTABLE_SQL = 'SELECT seq FROM entries WHERE notable = 1 ORDER BY seq LIMIT 1';

/** The dead letters a run owes after the store failed: the entries up to `lastSeq`, with the outcome that ended them. */
interface OwedDeadLetters {
  lastSeq: number;
  reason: string;
  status: number | null;
  attempts: number;
}

export class SlackOutbox extends DurableObject<Env> {
  private readonly sql: SqlStorage;
  private sending = false;
  /** The destination as the consumer last described it (same env in production; tests may differ). */
  private lastDest: SlackDestination | undefined;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    applyLogLevelOnce(env);
    this.sql = ctx.storage.sql;
    this.sql.exec(`
      CREATE TABLE IF NOT EXISTS entries (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        event_id TEXT NOT NULL,
        event_type TEXT NOT NULL,
        rules TEXT NOT NULL,
        single TEXT,
        sample TEXT NOT NULL,
        key_field TEXT,
        key_value TEXT,
        raw TEXT NOT NULL,
        received_at INTEGER NOT NULL,
        marks TEXT,
        notable INTEGER
      );
      CREATE TABLE IF NOT EXISTS seen (event_id TEXT PRIMARY KEY, expires_at INTEGER NOT NULL) WITHOUT ROWID;
      CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
    `);
    // Buffers created before entries kept their marks.
    const columns = this.sql.exec<{ name: string }>('PRAGMA table_info(entries)').toArray().map((c) => c.name);
    if (!columns.includes('marks')) this.sql.exec('ALTER TABLE entries ADD COLUMN marks TEXT');
    // Buffers created before notable events were sent alone.
    if (!columns.includes('notable')) this.sql.exec('ALTER TABLE entries ADD COLUMN notable INTEGER');
    this.sql.exec('CREATE INDEX IF NOT EXISTS entries_notable ON entries (seq) WHERE notable = 1');
    // Alerts only (a partial index: events do not pay for it), so finding the next alert behind a backlog reads one row.
    this.sql.exec(`CREATE INDEX IF NOT EXISTS entries_alerts ON entries (seq) WHERE event_type = '${ALERT_EVENT_TYPE}'`);
    this.migrateRawOutbox();
  }

  /** Buffers written before entries were rendered (table `outbox`, raw bodies only) move to `entries`, in order. */
  private migrateRawOutbox(): void {
    const old = this.sql.exec<{ n: number }>("SELECT COUNT(*) AS n FROM sqlite_master WHERE type = 'table' AND name = 'outbox'").one().n;
    if (old === 0) return;
    const rows = this.sql
      .exec<{ event_id: string; event_type: string; rules: string; raw: string; received_at: number }>(
        'SELECT event_id, event_type, rules, raw, received_at FROM outbox ORDER BY seq',
      )
      .toArray();
    for (const r of rows) {
      const event = parseEvent({ event_id: r.event_id, event_type: r.event_type, rules: [], raw: r.raw });
      const key = keyFieldOf(event);
      this.sql.exec(
        'INSERT INTO entries (event_id, event_type, rules, single, sample, key_field, key_value, raw, received_at) VALUES (?, ?, ?, NULL, ?, ?, ?, ?, ?)',
        r.event_id,
        r.event_type,
        r.rules,
        digestSampleLine(event),
        key?.field ?? null,
        key?.value ?? null,
        r.raw,
        r.received_at,
      );
    }
    this.sql.exec('DROP TABLE outbox');
  }

  /** Stores one event (durably) and sends at once when the destination is quiet. */
  async submit(dest: SlackDestination, item: OutboxItem): Promise<SubmitOutcome> {
    return (await this.submitMany(dest, [item]))[0] ?? 'accepted';
  }

  /** Stores events (durably), one outcome per item, and sends at once when the destination is quiet. */
  async submitMany(dest: SlackDestination, items: OutboxItem[]): Promise<SubmitOutcome[]> {
    const now = Date.now();
    this.lastDest = dest;
    this.ctx.storage.kv.put('destination', dest.name);
    const seenUntil = now + this.seenRetentionMs();
    let waiting = this.count();
    const outcomes = items.map((item): SubmitOutcome => {
      if (item.replay !== true && this.sql.exec('SELECT 1 FROM seen WHERE event_id = ?', item.event_id).toArray().length > 0) return 'duplicate';
      if (waiting >= dest.maxPending) return 'full';
      const entry = item.alert !== undefined ? renderAlert(dest, item.alert) : renderEntry(dest, parseEvent(item), item.rules);
      this.sql.exec(
        'INSERT INTO entries (event_id, event_type, rules, single, sample, key_field, key_value, raw, received_at, marks, notable) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)',
        item.event_id,
        item.event_type,
        JSON.stringify(item.rules),
        entry.single ?? null,
        entry.sample,
        entry.keyField ?? null,
        entry.keyValue ?? null,
        item.raw,
        now,
        item.marks !== undefined ? JSON.stringify(item.marks) : null,
        entry.notable === true ? 1 : null,
      );
      this.sql.exec('INSERT OR REPLACE INTO seen (event_id, expires_at) VALUES (?, ?)', item.event_id, seenUntil);
      waiting += 1;
      return 'accepted';
    });
    const full = outcomes.filter((o) => o === 'full').length;
    if (full > 0) log('warn', 'slack_backlog_full', { destination: dest.name, refused: full, waiting, max_pending: dest.maxPending });
    if (outcomes.some((o) => o === 'accepted')) {
      const nextAllowed = this.nextAllowed(dest);
      if (!this.sending && now >= nextAllowed && waiting === 1) {
        // A safety net first: if the object is reset during the POST (a deploy), the alarm still sends it.
        await this.scheduleAt(now + HOLD_DELAY_SECONDS * 1000);
        await this.flush();
      }
      else await this.scheduleAt(Math.max(nextAllowed, now + 50));
    }
    return outcomes;
  }

  override async alarm(): Promise<void> {
    const found = this.destination();
    const nextAllowed = found.kind === 'ok' ? this.nextAllowed(found.dest) : 0;
    if (this.sending || Date.now() < nextAllowed) {
      // Never faster than the window: an early alarm just waits for its slot.
      await this.ctx.storage.setAlarm(Math.max(nextAllowed, Date.now() + 250));
      return;
    }
    await this.flush();
  }

  /** Number of events waiting (for tests and status). */
  async pending(): Promise<number> {
    return this.count();
  }

  /**
   * The destination is paused (`POST /admin/destinations/<name>/pause`):
   * the buffer is kept — nothing is posted, retried or dead-lettered —
   * and what is submitted meanwhile (alerts included) waits with it.
   */
  async pause(): Promise<void> {
    this.ctx.storage.kv.put('paused', true);
    // Paused, the alarm only looks, every PAUSED_CHECK_MS, whether the destination was removed (nothing could resume it).
    if (this.count() > 0) await this.scheduleAt(Date.now() + PAUSED_CHECK_MS);
  }

  /** Resumed: the buffer goes out again, at the destination's pace. */
  async resume(): Promise<void> {
    this.ctx.storage.kv.delete('paused');
    if (this.count() > 0) await this.scheduleAt(Date.now());
  }

  /** When the next message may start: a window after the previous POST completed, and not before a Retry-After. */
  private nextAllowed(dest: SlackDestination): number {
    return Math.max(this.meta('last_sent_at') + dest.digestWindowSeconds * 1000, this.meta('blocked_until'));
  }

  /**
   * One run of the outbox, never two at once: a run holds `sending` from its
   * first read of the buffer until it has removed what it sent or
   * dead-lettered (an alarm due a window after the POST, while a slow
   * dead-letter call is still on its way, would post or dead-letter the same
   * entries again).
   */
  private async flush(): Promise<void> {
    if (this.sending) return;
    this.sending = true;
    try {
      await this.flushNow();
    } finally {
      this.sending = false;
    }
  }

  private async flushNow(): Promise<void> {
    const now = Date.now();
    this.sweepSeen(now);
    // Paused: nothing goes out until `resume` (which schedules the next send), unless the destination was
    // removed from the config meanwhile: nothing could resume it then (the admin API needs the destination), so
    // its buffer is dead-lettered as below.
    if (this.ctx.storage.kv.get<boolean>('paused') === true && this.destination().kind !== 'removed') {
      if (this.count() > 0) await this.scheduleAt(Date.now() + PAUSED_CHECK_MS);
      return;
    }
    const first = this.sql
      .exec<{ seq: number; received_at: number; event_type: string }>('SELECT seq, received_at, event_type FROM entries ORDER BY seq LIMIT 1')
      .toArray()[0];
    if (first === undefined) return;
    const name = this.ctx.storage.kv.get<string>('destination') ?? '(unknown)';
    const found = this.destination();
    if (found.kind === 'held') {
      // The config is invalid (or not readable yet): hold every buffered
      // event and look again later. Only a valid config without this
      // destination means it was removed.
      log('warn', 'slack_outbox_held', { destination: name, events: this.count(), retry_in_s: HOLD_DELAY_SECONDS });
      await this.scheduleAt(Date.now() + HOLD_DELAY_SECONDS * 1000);
      return;
    }
    // The last entry this message covers, fixed now: entries arriving while it is posted wait for the next one.
    // Alerts at the head go out as one alerts message of their own (up to the first event); events as a digest.
    const alerts = first.event_type === ALERT_EVENT_TYPE ? this.leadingAlerts() : [];
    // A digest stops before the first alert queued behind its events: that alert goes out in its own message next,
    // instead of being counted in the digest as one more event type.
    const nextAlert =
      alerts.length === 0
        ? this.sql.exec<{ seq: number }>(NEXT_ALERT_SQL).toArray()[0]?.seq
        : undefined;
    // Likewise a notable event (an impersonated session, an expiring SAML certificate): it goes out alone, as its
    // own message with its warning, never counted in a digest. At the head, it is this message.
    const nextNotable = alerts.length === 0 ? this.sql.exec<{ seq: number }>(NEXT_NOTABLE_SQL).toArray()[0]?.seq : undefined;
    const lastSeq = Math.min(
      alerts[alerts.length - 1]?.seq ??
        this.sql.exec<{ seq: number }>('SELECT seq FROM entries ORDER BY seq LIMIT 1 OFFSET ?', MAX_EVENTS_PER_MESSAGE - 1).toArray()[0]?.seq ??
        this.sql.exec<{ seq: number }>('SELECT MAX(seq) AS seq FROM entries').one().seq,
      nextAlert !== undefined ? nextAlert - 1 : Number.POSITIVE_INFINITY,
      nextNotable === undefined ? Number.POSITIVE_INFINITY : nextNotable === first.seq ? first.seq : nextNotable - 1,
    );
    if (found.kind === 'removed') {
      // Nothing else resumes this outbox (the admin API needs the destination):
      // each alarm moves one bounded run, and schedules the next while entries remain.
      if (!(await this.deadLetterUpTo(lastSeq, name, 'destination_removed', null, this.meta('attempts')))) return; // the store failed: retried later
      this.setMeta('attempts', 0);
      if (this.count() > 0) await this.scheduleAt(Date.now() + REMOVED_DELAY_MS);
      else await this.ctx.storage.deleteAlarm();
      return;
    }
    const dest = found.dest;
    // Entries whose dead letters a failed store call still owes: dead-lettered first, not posted again.
    const owed = this.ctx.storage.kv.get<OwedDeadLetters>('dead_letters_owed');
    if (owed !== undefined) {
      if (!(await this.deadLetterUpTo(owed.lastSeq, name, owed.reason, owed.status, owed.attempts))) return; // retried later
      this.ctx.storage.kv.delete('dead_letters_owed');
      if (this.count() > 0) await this.scheduleAt(this.nextAllowed(dest));
      else await this.ctx.storage.deleteAlarm();
      return;
    }
    let outcome: DeliveryOutcome;
    let events = 0;
    try {
      const composed =
        alerts.length > 0 ? { message: alertsMessage(dest, alerts.map((a) => a.sample)), events: alerts.length } : this.compose(dest, lastSeq, now - first.received_at);
      events = composed.events;
      outcome = await postToSlack(dest, composed.message);
    } catch (err) {
      log('error', 'slack_outbox_error', { destination: name, error: errorName(err) });
      outcome = { ok: false, retryable: true, status: null, reason: 'adapter_error' };
    } finally {
      // The window starts when the POST completed, whatever its outcome.
      this.setMeta('last_sent_at', Date.now());
    }
    if (outcome.ok) {
      const only = events === 1 ? this.sql.exec<{ event_id: string }>('SELECT event_id FROM entries WHERE seq <= ? LIMIT 1', lastSeq).toArray()[0] : undefined;
      this.sql.exec('DELETE FROM entries WHERE seq <= ?', lastSeq);
      this.setMeta('attempts', 0);
      log('info', events === 1 ? 'delivered' : 'slack_digest_delivered', {
        destination: name,
        events,
        event_id: only?.event_id,
        status: outcome.status,
      });
    } else {
      const attempts = this.meta('attempts') + 1;
      if (outcome.retryable && attempts < dest.retry.maxAttempts) {
        this.setMeta('attempts', attempts);
        const delay = Math.max(outcome.retryAfterSeconds ?? 0, backoffSeconds(dest.retry.retryDelaySeconds, attempts));
        this.setMeta('blocked_until', Date.now() + delay * 1000);
        log('warn', 'slack_delivery_failed', { destination: name, events, status: outcome.status, reason: outcome.reason, retry_in_s: delay });
      } else {
        const reason = outcome.retryable ? `attempts_exhausted: ${outcome.reason}` : outcome.reason;
        this.setMeta('attempts', 0);
        if (!(await this.deadLetterUpTo(lastSeq, name, reason, outcome.status, attempts))) {
          // The store failed (the alarm is set to try again): owed as they are, not posted again (which started a
          // whole new cycle of retries, hours long, before the next try of the store).
          this.ctx.storage.kv.put('dead_letters_owed', { lastSeq, reason, status: outcome.status, attempts } satisfies OwedDeadLetters);
          return;
        }
      }
    }
    if (this.count() > 0) await this.scheduleAt(this.nextAllowed(dest));
    else await this.ctx.storage.deleteAlarm();
  }

  /** The alerts waiting at the head of the buffer, up to the first event (at most `MAX_ALERTS_PER_MESSAGE`). */
  private leadingAlerts(): { seq: number; sample: string }[] {
    const rows = this.sql
      .exec<{ seq: number; sample: string; event_type: string }>('SELECT seq, sample, event_type FROM entries ORDER BY seq LIMIT ?', MAX_ALERTS_PER_MESSAGE)
      .toArray();
    const end = rows.findIndex((r) => r.event_type !== ALERT_EVENT_TYPE);
    return end < 0 ? rows : rows.slice(0, end);
  }

  /** The message for the entries up to `lastSeq`: the stored single message when there is one entry, else a digest. */
  private compose(dest: SlackDestination, lastSeq: number, spanMs: number): { message: SlackMessage; events: number } {
    const builder = new DigestBuilder(dest);
    let after = 0;
    for (;;) {
      const rows = this.sql
        .exec<{ seq: number; event_type: string; rules: string; key_field: string | null; key_value: string | null }>(
          'SELECT seq, event_type, rules, key_field, key_value FROM entries WHERE seq > ? AND seq <= ? ORDER BY seq LIMIT ?',
          after,
          lastSeq,
          SLICE,
        )
        .toArray();
      for (const r of rows) builder.add({ ...r, rules: JSON.parse(r.rules) as string[] } satisfies DigestEntry);
      if (rows.length < SLICE) break;
      after = (rows[rows.length - 1] as { seq: number }).seq;
    }
    if (builder.total === 1) {
      const only = this.sql.exec<{ single: string | null }>('SELECT single FROM entries WHERE seq <= ? ORDER BY seq LIMIT 1', lastSeq).toArray()[0];
      if (only?.single != null) return { message: JSON.parse(only.single) as SlackMessage, events: 1 };
    }
    const seqs = builder.sampleSeqs();
    const samples = new Map<number, string>();
    for (let i = 0; i < seqs.length; i += 100) {
      const chunk = seqs.slice(i, i + 100);
      const rows = this.sql
        .exec<{ seq: number; sample: string }>(`SELECT seq, sample FROM entries WHERE seq IN (${chunk.map(() => '?').join(',')})`, ...chunk)
        .toArray();
      for (const r of rows) samples.set(r.seq, r.sample);
    }
    return { message: builder.build(samples, Math.max(1, Math.round(spanMs / 1000))), events: builder.total };
  }

  /**
   * Moves the entries up to `lastSeq` to the dead-letter store, a slice at a
   * time (each slice one store call, removed only once stored); if the store
   * fails, the rest stay and the alarm tries again (then `false`).
   */
  private async deadLetterUpTo(lastSeq: number, destination: string, reason: string, status: number | null, attempts: number): Promise<boolean> {
    for (;;) {
      // A slice of at most SLICE entries and DEAD_LETTER_CALL_BYTES of bodies (sizes read first: 500 large
      // events would be more than an isolate's memory, and more than one call may carry).
      const sizes = this.sql
        .exec<{ seq: number; len: number }>('SELECT seq, length(raw) AS len FROM entries WHERE seq <= ? ORDER BY seq LIMIT ?', lastSeq, SLICE)
        .toArray();
      if (sizes.length === 0) return true;
      // The first call the store's packer would make of them (one entry larger than the limit goes alone).
      const first = packNextFit(
        sizes.map((s) => ({ item: s.seq, bytes: s.len * 2 + RECORD_OVERHEAD_BYTES })),
        DEAD_LETTER_CALL_BYTES,
        Number.POSITIVE_INFINITY,
      )[0] as { item: number }[];
      const upTo = (first[first.length - 1] as { item: number }).item;
      const rows = this.sql
        .exec<{ seq: number; event_id: string; event_type: string; rules: string; raw: string; marks: string | null }>(
          'SELECT seq, event_id, event_type, rules, raw, marks FROM entries WHERE seq <= ? ORDER BY seq',
          upTo,
        )
        .toArray();
      const records: DeadLetterInput[] = rows.map((r) =>
        deadLetterRecord({
          event_id: r.event_id,
          event_type: r.event_type,
          destination,
          rules: JSON.parse(r.rules) as string[],
          reason,
          last_status: status,
          attempts,
          body: r.raw,
          ...(r.marks !== null ? (JSON.parse(r.marks) as OutboxMarks) : {}),
          // A call made again after its answer was lost stores nothing more.
          key: `outbox:${this.ctx.id.toString()}:${r.seq}`,
        }),
      );
      try {
        await deadLetterStub(this.env).add(records);
      } catch (err) {
        log('error', 'dead_letter_store_failed', { destination, count: records.length, error: errorName(err) });
        await this.scheduleAt(Date.now() + HOLD_DELAY_SECONDS * 1000);
        return false;
      }
      this.sql.exec('DELETE FROM entries WHERE seq <= ?', upTo);
      if (upTo >= lastSeq) return true;
    }
  }

  private destination(): { kind: 'ok'; dest: SlackDestination } | { kind: 'held' } | { kind: 'removed' } {
    const name = this.ctx.storage.kv.get<string>('destination');
    if (this.lastDest !== undefined && this.lastDest.name === name) return { kind: 'ok', dest: this.lastDest };
    const loaded = loadConfig(this.env);
    if (!loaded.ok || name === undefined) return { kind: 'held' };
    const d = loaded.config.destinations.get(name);
    return d?.type === 'slack' ? { kind: 'ok', dest: d } : { kind: 'removed' };
  }

  private seenRetentionMs(): number {
    const loaded = loadConfig(this.env);
    return (loaded.ok ? loaded.config.settings.dedupRetentionDays : SEEN_DEFAULT_DAYS) * 86_400_000;
  }

  /** Forgets expired event ids, at most hourly (a scan, billed as reads). */
  private sweepSeen(now: number): void {
    if (now - this.meta('seen_swept_at') < SEEN_SWEEP_INTERVAL_MS) return;
    this.sql.exec('DELETE FROM seen WHERE expires_at <= ?', now);
    this.setMeta('seen_swept_at', now);
  }

  /** Entries are only ever removed oldest first, so the waiting ones are a contiguous run of seqs (two index reads, not a scan). */
  private count(): number {
    const r = this.sql.exec<{ lo: number | null; hi: number | null }>('SELECT MIN(seq) AS lo, MAX(seq) AS hi FROM entries').one();
    return r.lo === null || r.hi === null ? 0 : r.hi - r.lo + 1;
  }

  private meta(key: string): number {
    return this.sql.exec<{ value: number }>('SELECT value FROM meta WHERE key = ?', key).toArray()[0]?.value ?? 0;
  }

  private setMeta(key: string, value: number): void {
    this.sql.exec('INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)', key, value);
  }

  private async scheduleAt(at: number): Promise<void> {
    const current = await this.ctx.storage.getAlarm();
    if (current === null || current > at) await this.ctx.storage.setAlarm(at);
  }
}

function parseEvent(item: OutboxItem): UnknownEvent {
  try {
    return JSON.parse(item.raw) as UnknownEvent;
  } catch {
    return { id: item.event_id, event: item.event_type, data: {}, created_at: '' };
  }
}

export function outboxStub(env: Env, destination: string): DurableObjectStub<SlackOutbox> {
  return env.SLACK_OUTBOX.get(env.SLACK_OUTBOX.idFromName(`slack:${destination}`)) as DurableObjectStub<SlackOutbox>;
}
