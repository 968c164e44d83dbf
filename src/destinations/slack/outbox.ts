/**
 * The Slack outbox: one SQLite-backed Durable Object per Slack destination.
 *
 * Slack incoming webhooks accept about one message per second; a burst must
 * neither flood a channel nor be lost. Every event handed to the outbox is
 * stored first, then:
 * - in a quiet period (nothing sent within the digest window) a single event
 *   is sent at once, as its own message;
 * - otherwise events accumulate and the alarm sends them at the end of the
 *   window as one digest (exact counts per type, top values of the key field,
 *   the first few events in full). So at most one message per window (≥ 1 s)
 *   reaches the webhook, and every stored event is counted exactly once.
 * - 429 honours Retry-After; 5xx and timeouts back off and retry (the
 *   buffered events stay, and later arrivals join the next message); Slack's
 *   4xx answers (`invalid_payload`, `no_service`, `channel_is_archived`, …) and
 *   exhausted attempts move the events to the dead-letter store.
 */
import { DurableObject } from 'cloudflare:workers';
import { loadConfig } from '../../config/load';
import type { SlackDestination } from '../../config/router-config';
import { type DeadLetterInput, deadLetterStub } from '../../deadletters/store';
import type { UnknownEvent } from '../../events/catalog';
import { errorName, log } from '../../log';
import { backoffSeconds, type DeliveryOutcome } from '../types';
import { buildSlackMessage, mentionFor, postToSlack } from './adapter';
import { type DigestGroup, type SlackMessage, formatDigest, keyFieldOf } from './format';

export interface OutboxItem {
  event_id: string;
  event_type: string;
  rules: string[];
  raw: string;
}

type Row = {
  seq: number;
  event_id: string;
  event_type: string;
  rules: string;
  raw: string;
  received_at: number;
};

const SAMPLES_PER_TYPE = 3;
/** How long buffered events wait between checks while the configuration is invalid. */
const HOLD_DELAY_SECONDS = 60;
const TOP_VALUES = 5;
/** At most this many buffered events go into one message (the rest wait for the next). */
const MAX_EVENTS_PER_MESSAGE = 5000;

export class SlackOutbox extends DurableObject<Env> {
  private readonly sql: SqlStorage;
  private sending = false;
  /** The destination as the consumer last described it (same env in production; tests may differ). */
  private lastDest: SlackDestination | undefined;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    this.sql = ctx.storage.sql;
    this.sql.exec(`
      CREATE TABLE IF NOT EXISTS outbox (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        event_id TEXT NOT NULL,
        event_type TEXT NOT NULL,
        rules TEXT NOT NULL,
        raw TEXT NOT NULL,
        received_at INTEGER NOT NULL
      );
      CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
    `);
  }

  /** Stores the event (durably) and sends at once when the destination is quiet. */
  async submit(dest: SlackDestination, item: OutboxItem): Promise<void> {
    const now = Date.now();
    this.lastDest = dest;
    this.ctx.storage.kv.put('destination', dest.name);
    this.sql.exec(
      'INSERT INTO outbox (event_id, event_type, rules, raw, received_at) VALUES (?, ?, ?, ?, ?)',
      item.event_id,
      item.event_type,
      JSON.stringify(item.rules),
      item.raw,
      now,
    );
    const windowMs = dest.digestWindowSeconds * 1000;
    const nextAllowed = Math.max(this.meta('last_sent_at') + windowMs, this.meta('blocked_until'));
    if (!this.sending && now >= nextAllowed && this.count() === 1) {
      await this.flush();
    } else {
      await this.scheduleAt(Math.max(nextAllowed, now + 50));
    }
  }

  override async alarm(): Promise<void> {
    const found = this.destination();
    const windowMs = (found.kind === 'ok' ? found.dest.digestWindowSeconds : 1) * 1000;
    const nextAllowed = Math.max(this.meta('last_sent_at') + windowMs, this.meta('blocked_until'));
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

  private async flush(): Promise<void> {
    const rows = this.sql.exec<Row>('SELECT * FROM outbox ORDER BY seq LIMIT ?', MAX_EVENTS_PER_MESSAGE).toArray();
    if (rows.length === 0) return;
    const lastSeq = (rows[rows.length - 1] as Row).seq;
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
    if (found.kind === 'removed') {
      await this.deadLetter(rows, name, 'destination_removed', null, this.meta('attempts'));
      this.sql.exec('DELETE FROM outbox WHERE seq <= ?', lastSeq);
      return;
    }
    const dest = found.dest;
    this.sending = true;
    let outcome: DeliveryOutcome;
    const now = Date.now();
    // The send slot is taken when the request starts, whatever its outcome.
    this.setMeta('last_sent_at', now);
    try {
      outcome = await postToSlack(dest, this.compose(dest, rows, now));
    } catch (err) {
      log('error', 'slack_outbox_error', { destination: name, error: errorName(err) });
      outcome = { ok: false, retryable: true, status: null, reason: 'adapter_error' };
    } finally {
      this.sending = false;
    }
    if (outcome.ok) {
      this.sql.exec('DELETE FROM outbox WHERE seq <= ?', lastSeq);
      this.setMeta('attempts', 0);
      log('info', rows.length === 1 ? 'delivered' : 'slack_digest_delivered', {
        destination: name,
        events: rows.length,
        event_id: rows.length === 1 ? rows[0]?.event_id : undefined,
        status: outcome.status,
      });
    } else {
      const attempts = this.meta('attempts') + 1;
      if (outcome.retryable && attempts < dest.retry.maxAttempts) {
        this.setMeta('attempts', attempts);
        const delay = Math.max(outcome.retryAfterSeconds ?? 0, backoffSeconds(dest.retry.retryDelaySeconds, attempts));
        this.setMeta('blocked_until', Date.now() + delay * 1000);
        log('warn', 'slack_delivery_failed', { destination: name, events: rows.length, status: outcome.status, reason: outcome.reason, retry_in_s: delay });
      } else {
        const reason = outcome.retryable ? `attempts_exhausted: ${outcome.reason}` : outcome.reason;
        await this.deadLetter(rows, name, reason, outcome.status, attempts);
        this.sql.exec('DELETE FROM outbox WHERE seq <= ?', lastSeq);
        this.setMeta('attempts', 0);
      }
    }
    if (this.count() > 0) {
      const windowMs = dest.digestWindowSeconds * 1000;
      await this.scheduleAt(Math.max(this.meta('last_sent_at') + windowMs, this.meta('blocked_until')));
    }
  }

  private compose(dest: SlackDestination, rows: Row[], now: number): SlackMessage {
    const parsed = rows.map((r) => ({ row: r, event: safeParse(r.raw, r) }));
    if (rows.length === 1) {
      const only = parsed[0] as { row: Row; event: UnknownEvent };
      return buildSlackMessage(dest, { event: only.event, raw: only.row.raw, rules: JSON.parse(only.row.rules) as string[], attempts: 0 });
    }
    type Group = { count: number; values: Map<string, number>; field: string; samples: UnknownEvent[] };
    const groups = new Map<string, Group>();
    const rules = new Set<string>();
    let mention: string | undefined;
    for (const { row, event } of parsed) {
      const g: Group = groups.get(row.event_type) ?? { count: 0, values: new Map(), field: '', samples: [] };
      g.count += 1;
      const key = keyFieldOf(event);
      if (key !== undefined) {
        g.field = key.field;
        g.values.set(key.value, (g.values.get(key.value) ?? 0) + 1);
      }
      if (g.samples.length < SAMPLES_PER_TYPE) g.samples.push(event);
      groups.set(row.event_type, g);
      const rowRules = JSON.parse(row.rules) as string[];
      rowRules.forEach((r) => rules.add(r));
      mention ??= mentionFor(dest, rowRules, row.event_type);
    }
    const digestGroups: DigestGroup[] = [...groups.entries()]
      .sort((a, b) => b[1].count - a[1].count)
      .map(([type, g]) => ({
        type,
        count: g.count,
        topValues: {
          field: g.field,
          values: [...g.values.entries()]
            .sort((a, b) => b[1] - a[1])
            .slice(0, TOP_VALUES)
            .map(([value, count]) => ({ value, count })),
        },
        samples: g.samples,
      }));
    const first = (rows[0] as Row).received_at;
    const windowSeconds = Math.max(1, Math.round((now - first) / 1000));
    const ctx: Parameters<typeof formatDigest>[2] = { destination: dest.name, rules: [...rules] };
    if (dest.title !== undefined) ctx.title = dest.title;
    if (mention !== undefined) ctx.mention = mention;
    return formatDigest(digestGroups, windowSeconds, ctx);
  }

  private async deadLetter(rows: Row[], destination: string, reason: string, status: number | null, attempts: number): Promise<void> {
    const records: DeadLetterInput[] = rows.map((r) => ({
      event_id: r.event_id,
      event_type: r.event_type,
      destination,
      rules: JSON.parse(r.rules) as string[],
      reason,
      last_status: status,
      attempts,
      body: r.raw,
    }));
    await deadLetterStub(this.env).add(records);
  }

  private destination(): { kind: 'ok'; dest: SlackDestination } | { kind: 'held' } | { kind: 'removed' } {
    const name = this.ctx.storage.kv.get<string>('destination');
    if (this.lastDest !== undefined && this.lastDest.name === name) return { kind: 'ok', dest: this.lastDest };
    const loaded = loadConfig(this.env);
    if (!loaded.ok || name === undefined) return { kind: 'held' };
    const d = loaded.config.destinations.get(name);
    return d?.type === 'slack' ? { kind: 'ok', dest: d } : { kind: 'removed' };
  }

  private count(): number {
    return this.sql.exec<{ n: number }>('SELECT COUNT(*) AS n FROM outbox').one().n;
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

function safeParse(raw: string, row: Row): UnknownEvent {
  try {
    return JSON.parse(raw) as UnknownEvent;
  } catch {
    return { id: row.event_id, event: row.event_type, data: {}, created_at: '' };
  }
}

export function outboxStub(env: Env, destination: string): DurableObjectStub<SlackOutbox> {
  return env.SLACK_OUTBOX.get(env.SLACK_OUTBOX.idFromName(`slack:${destination}`)) as DurableObjectStub<SlackOutbox>;
}
