/**
 * Operational alerts to Slack (`[vars.ROUTER.alerts]`): one SQLite-backed
 * Durable Object (`ALERTS`) that the router's parts tell what happened —
 * dead letters, circuits opening and closing, pauses, reconciliation errors,
 * recoveries and lag, an invalid configuration.
 *
 * - One message per kind and subject (a destination, or the router) per
 *   `min_interval_seconds`, counting what happened in between (the alarm
 *   sends what waited).
 * - A recovery (circuit closed, resumed, reconciliation or configuration
 *   working again) is sent at once, only when that outage was announced, and
 *   never before the outage's own message: what of the outage still waited
 *   goes first, then (the outage being over) without waiting for
 *   `min_interval_seconds`. A recovery that cannot be handed over yet is kept
 *   (`recovery`) and tried again with the outage's message, every minute; a
 *   new outage of the same subject before it went out withdraws it.
 * - Messages go through the Slack destinations' own outboxes, so when Slack
 *   is down they wait and are sent later. An alert that the outbox finally
 *   dead-letters is never alerted on (`router.alert` records are skipped):
 *   no alerts about alerts.
 * - The alerts configuration of the last valid `ROUTER` this object ran under
 *   (a signal or its alarm) is kept, so an invalid configuration can still be
 *   announced; without one (it never ran under a valid configuration) it is
 *   only logged. The alarm checks every minute for the fix.
 */
import { DurableObject } from 'cloudflare:workers';
import { applyLogLevelOnce, loadConfig } from '../config/load';
import type { AlertKind, AlertsConfig, SlackDestination } from '../config/router-config';
import { literal } from '../destinations/slack/format/escape';
import { type SubmitOutcome, outboxStub } from '../destinations/slack/outbox';
import { ALERT_EVENT_TYPE } from '../destinations/slack/render';
import { errorName, log, logOnce } from '../log';

/** The subject of alerts about the router as a whole. */
const ROUTER_SUBJECT = '(router)';

export interface AlertSignal {
  kind: AlertKind;
  /** A destination name; absent: the router. */
  destination?: string;
  count?: number;
  /** A short machine-readable detail (a reason, an error kind): shown escaped, at most 5 distinct kept. */
  detail?: string;
  /** A recovery of this kind's outage (reconciliation working again, configuration fixed). */
  recovered?: boolean;
  /**
   * This kind's outage ended with nothing to announce (a removed destination's
   * circuit was dropped): no recovery message, and a later outage of the same
   * subject counts its time from its own start.
   */
  forgotten?: boolean;
}

type Row = {
  kind: string;
  subject: string;
  pending: number;
  details: string;
  first_at: number | null;
  last_sent_at: number;
  outage_open: number;
  opened_at: number | null;
  /** The recovery message of this outage, not yet handed over (sent after what of the outage is still pending). */
  recovery: string | null;
};

type Settings = { alerts: AlertsConfig; targets: SlackDestination[] };

/** How long a notify call's id is remembered (a retry comes within a second). */
const CALL_ID_TTL_MS = 60 * 60 * 1000;
/** Tries of one notify call whose error is retryable, and the wait before the second (doubling). */
const NOTIFY_TRIES = 3;
const NOTIFY_RETRY_MS = 200;
/** When the alarm looks again at alerts a signal left pending, should their send after the signal be cut short. */
const SEND_SAFETY_MS = 60_000;

/** Outage kind → the recovery kind that ends it. */
const RECOVERY_OF: Partial<Record<AlertKind, AlertKind>> = { circuit_closed: 'circuit_open', resumed: 'paused' };

export class AlertNotifier extends DurableObject<Env> {
  private readonly sql: SqlStorage;
  /** Rows being handed over now (kind, subject): a run interleaved with another never sends the same message twice. */
  private readonly inFlight = new Set<string>();

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    applyLogLevelOnce(env);
    this.sql = ctx.storage.sql;
    this.sql.exec(`
      CREATE TABLE IF NOT EXISTS alerts (
        kind TEXT NOT NULL,
        subject TEXT NOT NULL,
        pending INTEGER NOT NULL DEFAULT 0,
        details TEXT NOT NULL DEFAULT '[]',
        first_at INTEGER,
        last_sent_at INTEGER NOT NULL DEFAULT 0,
        outage_open INTEGER NOT NULL DEFAULT 0,
        opened_at INTEGER,
        recovery TEXT,
        PRIMARY KEY (kind, subject)
      ) WITHOUT ROWID;
    `);
    // Objects created before recoveries were kept.
    if (!this.sql.exec<{ name: string }>("SELECT name FROM pragma_table_info('alerts')").toArray().some((c) => c.name === 'recovery')) {
      this.sql.exec('ALTER TABLE alerts ADD COLUMN recovery TEXT');
    }
  }

  /**
   * Takes signals. `callId`, when given, makes a retried call harmless: a
   * call whose answer was lost (its signals already taken) and that is made
   * again is taken once; ids are remembered for `CALL_ID_TTL_MS`.
   */
  async notify(signals: AlertSignal[], callId?: string): Promise<void> {
    const cfg = this.config();
    if (cfg === null) return;
    const now = Date.now();
    if (callId !== undefined) {
      const kv = this.ctx.storage.kv;
      if (kv.get<number>(`call:${callId}`) !== undefined) return;
      kv.put(`call:${callId}`, now);
      // Forget old ids now and then, a bounded look each time (one key per call: a burst of dead letters makes many).
      if (Math.random() < 0.1) for (const [key, at] of kv.list<number>({ prefix: 'call:', limit: 200 })) if (at < now - CALL_ID_TTL_MS) kv.delete(key);
    }
    for (const s of signals) {
      if (s.forgotten === true) {
        this.sql.exec('UPDATE alerts SET outage_open = 0, opened_at = NULL, recovery = NULL WHERE kind = ? AND subject = ?', s.kind, s.destination ?? ROUTER_SUBJECT);
        continue;
      }
      if (s.recovered === true) {
        this.recover(s.kind, s.destination ?? ROUTER_SUBJECT, cfg, now, s.detail);
        continue;
      }
      const outage = RECOVERY_OF[s.kind];
      if (outage !== undefined) {
        this.recover(outage, s.destination ?? ROUTER_SUBJECT, cfg, now, s.detail, s.kind);
        continue;
      }
      if (!cfg.alerts.on.includes(s.kind)) continue;
      const subject = s.destination ?? ROUTER_SUBJECT;
      const row = this.row(s.kind, subject);
      const details = JSON.parse(row.details) as string[];
      if (s.detail !== undefined && !details.includes(s.detail) && details.length < 5) details.push(s.detail);
      // A recovery of this subject still waiting is withdrawn: the outage goes on (its opening time kept).
      this.sql.exec(
        'UPDATE alerts SET pending = pending + ?, details = ?, first_at = COALESCE(first_at, ?), outage_open = 1, opened_at = COALESCE(opened_at, ?), recovery = NULL WHERE kind = ? AND subject = ?',
        s.count ?? 1,
        JSON.stringify(details),
        now,
        now,
        s.kind,
        subject,
      );
    }
    // Sent after this call has answered, so whoever signalled (a consumer batch writing dead letters, the registry
    // opening a circuit) never waits for Slack. Should that send be cut short (the object reset), the alarm set
    // first sends what is still pending.
    if (this.sql.exec('SELECT 1 FROM alerts WHERE pending > 0 OR recovery IS NOT NULL LIMIT 1').toArray().length > 0) {
      const current = await this.ctx.storage.getAlarm();
      if (current === null || current > now + SEND_SAFETY_MS) await this.ctx.storage.setAlarm(now + SEND_SAFETY_MS);
      this.ctx.waitUntil(this.sendDue(cfg, now).catch((err: unknown) => log('warn', 'alert_send_failed', { error: errorName(err) })));
    }
  }

  override async alarm(): Promise<void> {
    const now = Date.now();
    const cfg = this.config();
    if (cfg === null) return;
    // The configuration was announced invalid: is it fixed?
    const invalid = this.sql.exec<Row>("SELECT * FROM alerts WHERE kind = 'config_invalid' AND outage_open = 1").toArray()[0];
    if (invalid !== undefined && loadConfig(this.env).ok) this.recover('config_invalid', ROUTER_SUBJECT, cfg, now);
    await this.sendDue(cfg, now);
  }

  /** Keeps the alerts settings of the valid configuration this object runs under (see `rememberAlertSettings`). */
  async remember(): Promise<void> {
    this.config();
  }

  /** The alerts configuration now, or the last valid one (kept for announcing an invalid configuration). */
  private config(): Settings | null {
    const loaded = loadConfig(this.env);
    const kv = this.ctx.storage.kv;
    if (loaded.ok) {
      const alerts = loaded.config.alerts;
      if (alerts === null) {
        kv.delete('config');
        return null;
      }
      const targets = alerts.to.map((n) => loaded.config.destinations.get(n)).filter((d): d is SlackDestination => d?.type === 'slack');
      kv.put('config', { alerts, targets });
      return { alerts, targets };
    }
    const kept = kv.get<Settings>('config') ?? null;
    if (kept === null) {
      logOnce('alerts_settings_unknown', 'warn', 'alert_not_sent', { reason: 'config_invalid, and no valid alerts settings seen before' });
    }
    return kept;
  }

  private row(kind: string, subject: string): Row {
    this.sql.exec('INSERT OR IGNORE INTO alerts (kind, subject) VALUES (?, ?)', kind, subject);
    return this.sql.exec<Row>('SELECT * FROM alerts WHERE kind = ? AND subject = ?', kind, subject).one();
  }

  /**
   * Ends an outage — only one that was announced: its recovery is kept with the row and goes out (from
   * `sendDue`, run right after) once what of the outage still waits has been handed over.
   */
  private recover(outage: AlertKind, subject: string, cfg: Settings, now: number, detail?: string, recoveryKind?: AlertKind): void {
    const row = this.sql.exec<Row>('SELECT * FROM alerts WHERE kind = ? AND subject = ?', outage, subject).toArray()[0];
    if (row === undefined || row.outage_open === 0) return;
    const kind = recoveryKind ?? outage;
    if (recoveryKind !== undefined && !cfg.alerts.on.includes(recoveryKind)) {
      // No recovery message: what of the outage still waits goes out at its interval.
      this.sql.exec('UPDATE alerts SET outage_open = 0, opened_at = NULL, recovery = NULL WHERE kind = ? AND subject = ?', outage, subject);
      return;
    }
    const lasted = row.opened_at !== null ? ` after ${duration(now - row.opened_at)}` : '';
    const text = recoveryText(kind, subject, lasted, detail, cfg.alerts.consoleUrl);
    this.sql.exec('UPDATE alerts SET outage_open = 0, recovery = ? WHERE kind = ? AND subject = ?', text, outage, subject);
  }

  private async sendDue(cfg: Settings, now: number): Promise<void> {
    const interval = cfg.alerts.minIntervalSeconds * 1000;
    let next: number | null = null;
    for (const row of this.sql.exec<Row>('SELECT * FROM alerts WHERE pending > 0 OR recovery IS NOT NULL').toArray()) {
      const key = `${row.kind}\u0000${row.subject}`;
      if (this.inFlight.has(key)) {
        // Another run is handing it over; should that fail, look again in a minute.
        next = Math.min(next ?? Number.POSITIVE_INFINITY, now + 60_000);
        continue;
      }
      const due = row.recovery !== null ? now : row.last_sent_at + interval;
      if (due > now) {
        next = Math.min(next ?? Number.POSITIVE_INFINITY, due);
        continue;
      }
      this.inFlight.add(key);
      try {
        // An outage that recovered: what of it waited goes now (the outage is over), then the recovery — never the
        // recovery while its outage's message is still unsent.
        let sent = row.pending === 0 || (await this.send(row, cfg, now));
        // Read again: a recovery may have come while the outage's message was being handed over.
        const recovery = sent ? (this.sql.exec<Pick<Row, 'recovery'>>('SELECT recovery FROM alerts WHERE kind = ? AND subject = ?', row.kind, row.subject).toArray()[0]?.recovery ?? null) : null;
        if (recovery !== null) sent = await this.sendRecovery(row, recovery, cfg);
        if (!sent) next = Math.min(next ?? Number.POSITIVE_INFINITY, now + 60_000);
      } finally {
        this.inFlight.delete(key);
      }
    }
    if (this.sql.exec("SELECT 1 FROM alerts WHERE kind = 'config_invalid' AND outage_open = 1").toArray().length > 0) {
      next = Math.min(next ?? Number.POSITIVE_INFINITY, now + 60_000);
    }
    if (next !== null) {
      // Only ever earlier: a signal that came while this alarm awaited its posts may have set a sooner one.
      const current = await this.ctx.storage.getAlarm();
      if (current === null || current <= now || current > next) await this.ctx.storage.setAlarm(next);
    }
  }

  private async sendRecovery(row: Row, text: string, cfg: Settings): Promise<boolean> {
    if (!(await this.post(text, cfg))) return false;
    // Cleared only if unchanged meanwhile (a new outage withdraws it; a new recovery replaces it).
    this.sql.exec(
      'UPDATE alerts SET recovery = NULL, opened_at = CASE WHEN outage_open = 0 THEN NULL ELSE opened_at END WHERE kind = ? AND subject = ? AND recovery = ?',
      row.kind,
      row.subject,
      text,
    );
    log('info', 'alert_sent', { kind: row.kind, subject: row.subject, recovery: true });
    return true;
  }

  private async send(row: Row, cfg: Settings, now: number): Promise<boolean> {
    const text = outageText(row.kind as AlertKind, row.subject, row.pending, JSON.parse(row.details) as string[], cfg.alerts.consoleUrl);
    if (!(await this.post(text, cfg))) return false;
    // Only what this message counted: signals that came during the hand-off wait for the next one.
    this.sql.exec(
      "UPDATE alerts SET pending = MAX(pending - ?, 0), details = CASE WHEN pending > ? THEN details ELSE '[]' END, first_at = CASE WHEN pending > ? THEN first_at ELSE NULL END, last_sent_at = ? WHERE kind = ? AND subject = ?",
      row.pending,
      row.pending,
      row.pending,
      now,
      row.kind,
      row.subject,
    );
    log('info', 'alert_sent', { kind: row.kind, subject: row.subject, count: row.pending });
    return true;
  }

  /** Hands the message to every target's outbox (which waits out Slack outages). */
  private async post(text: string, cfg: { targets: SlackDestination[] }): Promise<boolean> {
    const id = `alert_${crypto.randomUUID()}`;
    const raw = JSON.stringify({ id, event: ALERT_EVENT_TYPE, created_at: new Date().toISOString(), data: { text } });
    let outcomes: SubmitOutcome[];
    try {
      outcomes = await Promise.all(
        cfg.targets.map((d) => outboxStub(this.env, d.name).submit(d, { event_id: `${id}:${d.name}`, event_type: ALERT_EVENT_TYPE, rules: [], raw, alert: text })),
      );
    } catch (err) {
      log('warn', 'alert_handoff_failed', { error: errorName(err) });
      return false;
    }
    // An outbox at max_pending refuses it (Slack has been down for long): said in the log, and when every target
    // refused, kept pending (its count goes on growing) and tried again in a minute, rather than counted as sent.
    const refused = cfg.targets.filter((_d, i) => outcomes[i] === 'full').map((d) => d.name);
    if (refused.length > 0) log('error', 'alert_refused_backlog_full', { destinations: refused, retried: refused.length === cfg.targets.length });
    return refused.length < cfg.targets.length;
  }
}

function duration(ms: number): string {
  const s = Math.round(ms / 1000);
  if (s < 120) return `${s} s`;
  if (s < 7200) return `${Math.round(s / 60)} min`;
  return `${(s / 3600).toFixed(1)} h`;
}

function link(consoleUrl: string | null, path: string, label: string): string {
  return consoleUrl === null ? '' : ` <${consoleUrl}${path}|${label}>`;
}

const dest = (subject: string) => literal(subject, 64);

/** The outage message (mrkdwn; every value escaped). */
export function outageText(kind: AlertKind, subject: string, count: number, details: string[], consoleUrl: string | null): string {
  const d = details.length > 0 ? ` (${details.map((x) => literal(x, 60)).join(', ')})` : '';
  const enc = encodeURIComponent(subject);
  switch (kind) {
    case 'dead_letter':
      return `:warning: *${count}* new dead letter${count === 1 ? '' : 's'} for *${dest(subject)}*${d}.${link(consoleUrl, `/console/dead-letters?destination=${enc}`, 'Open dead letters')}`;
    case 'circuit_open':
      return `:rotating_light: Circuit *open* for *${dest(subject)}*${d}: deliveries are held until a probe succeeds.${link(consoleUrl, '/console/destinations', 'Destinations')}`;
    case 'paused':
      return `:double_vertical_bar: *${dest(subject)}* was paused: its deliveries are held.${link(consoleUrl, '/console/destinations', 'Destinations')}`;
    case 'reconcile_error':
      return `:warning: Reconciliation from the WorkOS Events API failed${count > 1 ? ` ${count} times` : ''}${d}.${link(consoleUrl, '/console', 'Overview')}`;
    case 'reconcile_recovered':
      return `:mag: Reconciliation recovered *${count}* event${count === 1 ? '' : 's'} the webhooks had missed${d}.${link(consoleUrl, '/console/events', 'Events')}`;
    case 'reconcile_lag':
      return `:hourglass: Reconciliation is behind${d}.${link(consoleUrl, '/console', 'Overview')}`;
    case 'config_invalid':
      return `:no_entry: The router configuration is *invalid*: events are held until it is fixed.${link(consoleUrl, '/console', 'Overview')}`;
    case 'circuit_closed':
    case 'resumed':
      return recoveryText(kind, subject, '', undefined, consoleUrl);
    default: {
      const never: never = kind;
      return String(never);
    }
  }
}

export function recoveryText(kind: AlertKind, subject: string, lasted: string, detail: string | undefined, consoleUrl: string | null): string {
  const d = detail !== undefined ? ` (${literal(detail, 60)})` : '';
  switch (kind) {
    case 'circuit_closed':
    case 'circuit_open':
      return `:white_check_mark: *${dest(subject)}* recovered${lasted}: circuit closed${d}; held deliveries are draining.${link(consoleUrl, '/console/destinations', 'Destinations')}`;
    case 'resumed':
    case 'paused':
      return `:arrow_forward: *${dest(subject)}* resumed${lasted}${d}.${link(consoleUrl, '/console/destinations', 'Destinations')}`;
    case 'config_invalid':
      return `:white_check_mark: The router configuration is valid again${lasted}: held events flow.${link(consoleUrl, '/console', 'Overview')}`;
    default:
      return `:white_check_mark: Reconciliation works again${lasted}${d}.${link(consoleUrl, '/console', 'Overview')}`;
  }
}

export function alertsStub(env: Env): DurableObjectStub<AlertNotifier> {
  return env.ALERTS.get(env.ALERTS.idFromName('global')) as DurableObjectStub<AlertNotifier>;
}

/** Env objects (one per deploy and isolate) whose alerts settings the notifier was told of. */
const remembered = new WeakSet<object>();

/**
 * Tells the notifier the alerts settings of a valid configuration, once per
 * isolate and deploy (from the cron trigger, every minute): so a broken
 * `ROUTER` deployed later can be announced with them even when no alert was
 * ever sent before. Best effort.
 */
export async function rememberAlertSettings(env: Env): Promise<void> {
  if (remembered.has(env)) return;
  const loaded = loadConfig(env);
  if (!loaded.ok || loaded.config.alerts === null) return;
  remembered.add(env);
  try {
    await alertsStub(env).remember();
  } catch (err) {
    remembered.delete(env);
    log('warn', 'alert_notify_failed', { error: errorName(err) });
  }
}

/**
 * Tells the notifier (best effort: an alert must never break what it reports
 * on). A call that fails with an error the runtime marks retryable (the
 * notifier was reset, by a deploy say) is made again, twice at most, with the
 * same call id, so signals already taken are not counted twice.
 */
export async function notifyAlerts(env: Env, signals: AlertSignal[]): Promise<void> {
  if (signals.length === 0) return;
  // No alerts configured: no request. (An invalid config still asks: the notifier keeps the last valid alerts.)
  const loaded = loadConfig(env);
  if (loaded.ok && loaded.config.alerts === null) return;
  const callId = crypto.randomUUID();
  for (let attempt = 1; ; attempt++) {
    try {
      await alertsStub(env).notify(signals, callId);
      return;
    } catch (err) {
      const retryable = typeof err === 'object' && err !== null && (err as { retryable?: unknown }).retryable === true;
      if (!retryable || attempt >= NOTIFY_TRIES) {
        log('warn', 'alert_notify_failed', { error: errorName(err), attempts: attempt });
        return;
      }
      await new Promise((r) => setTimeout(r, NOTIFY_RETRY_MS * attempt));
    }
  }
}
