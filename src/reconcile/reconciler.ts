/**
 * Reconciliation from the WorkOS Events API: a single Durable Object that
 * owns the position and serializes runs.
 *
 * Each run reads `GET /events` (every catalog type some rule routes,
 * `limit=100`, `order=asc`) and sends every event through the same
 * dedup-and-enqueue path as a webhook (a page's events in one request to
 * each ledger shard): one that already arrived is a duplicate; one the
 * webhooks missed is delivered once and counted as recovered.
 *
 * - Position: (id, created_at) of the last event read that is safely behind
 *   us. A run starts `reconcile_overlap_seconds` before its created_at
 *   (`range_start`), so an event that became visible late is still found; the
 *   ledger absorbs the repeats. With overlap 0 it reads strictly `after` the id.
 *   The first run starts from now (or `reconcile_since`).
 * - Retention: the ledger remembers ids for `dedup_retention_days`. A start
 *   older than that (less a margin) is clamped, and older events read on
 *   resume are skipped, so nothing the ledger may have forgotten is delivered
 *   again as "recovered".
 * - Catch-up: `reconcile_max_pages` pages per run, continued while more pages
 *   remain, up to ~20 s and 8× that many pages (45 at most, and fewer when
 *   the run's requests to Cloudflare services would pass
 *   `SERVICE_CALL_BUDGET`: a run fits Workers Free); `behind` says a run stopped
 *   with more to read, and the next run carries on right after the last event
 *   read (not from the overlap window, which a busy minute could fill).
 * - Failures: the position never moves past an event that could not be
 *   enqueued; it is retried on later runs and, after `MAX_EVENT_ATTEMPTS`,
 *   dead-lettered (`reconcile_enqueue_failed`) and passed. An event another
 *   delivery holds (`in_progress`) is retried without failing the run, and is
 *   given up on only once that claim's lease must have run out. Pages must be
 *   ascending by created_at; on disorder the position stays before it. Every
 *   failed run backs off exponentially (1 min doubling, capped at 15 min;
 *   Retry-After honoured); the cron skips runs until then, an admin run does not.
 */
import { DurableObject } from 'cloudflare:workers';
import { loadConfig } from '../config/load';
import type { RouterConfig, RouterSettings } from '../config/router-config';
import { RECONCILE_ENQUEUE_FAILED, ROUTER_DESTINATION, deadLetterRecord, deadLetterStub } from '../deadletters/store';
import type { AdmitResult } from '../dedup/ledger';
import { EVENT_TYPES } from '../events/catalog';
import { admitEvents, isRouted } from '../ingest/admit';
import { stringBinding } from '../env';
import { errorName, log } from '../log';
import { type ApiEvent, type EventsPageQuery, fetchEventsPage } from './workos-api';
import { type AlertSignal, notifyAlerts } from '../alerts/notifier';

export interface RunOptions {
  trigger: 'cron' | 'admin';
  /** ISO time: backfill from here (resets the position). */
  rangeStart?: string;
}

export interface RunCounts {
  pages: number;
  /** Events newer than the newest read before (a backfill starts afresh). */
  read: number;
  /** Events at or before the newest read before: the overlap window (repeats, and late arrivals), a retried page, a backfill. */
  reread: number;
  /** Events the webhooks had missed, delivered now. */
  recovered: number;
  /** Events older than the dedup retention, not admitted. */
  skipped_expired: number;
  /** Items of a page that are not events the router can take (logged `reconcile_item_skipped`), not admitted. */
  skipped_malformed: number;
  /** Events given up on (could not be enqueued after `MAX_EVENT_ATTEMPTS`). */
  dead_lettered: number;
  /** Events that could not be enqueued this run; retried on the next. */
  retrying: number;
  /** Events another delivery was admitting; retried on the next run. */
  in_progress: number;
}

export interface RunReport extends RunCounts {
  status: 'completed' | 'disabled' | 'already_running' | 'backing_off' | 'failed' | 'config_invalid' | 'nothing_routed';
  /** The run stopped at its page limit with more pages available. */
  behind: boolean;
  /** This run's start (`range_start` or `reconcile_since`) was older than the dedup retention allows. */
  clamped_since?: SinceClamp;
  error?: string;
}

/** The last event read that the reconciler is safely past. `created_at` is null for a cursor stored by an older release. */
export interface Position {
  id: string;
  created_at: string | null;
}

export interface SinceClamp {
  /** The start that was asked for (`range_start` or `reconcile_since`). */
  requested: string;
  /** The start used: now − `dedup_retention_days` + 1 hour. */
  clamped_to: string;
  at: string;
}

export interface ReconcileTotals {
  read: number;
  reread: number;
  recovered: number;
  skipped_expired: number;
}

export interface ReconcileStatus {
  enabled: boolean;
  last_run_at: string | null;
  last_run: RunCounts | null;
  totals: ReconcileTotals;
  last_error: { kind: string; status: number | null; message: string; at: string } | null;
  backoff_until: string | null;
  consecutive_failures: number;
  /** Seconds between now and the created_at of the newest event read (else the position, else the start). */
  lag_seconds: number | null;
  behind: boolean;
  /** Events dead-lettered by reconciliation, in total. */
  dead_lettered: number;
  /** Events waiting for another attempt. */
  retrying_events: number;
  clamped_since: SinceClamp | null;
  cursor_set: boolean;
  cursor: Position | null;
  since: string | null;
}

const PAGE_SIZE = 100;
/** Reconciliation this far behind (and still catching up) is alerted on (`reconcile_lag`). */
const LAG_ALERT_SECONDS = 3600;
const DAY_MS = 86_400_000;
const BASE_BACKOFF_MS = 60_000;
const MAX_BACKOFF_MS = 15 * 60 * 1000;
/** Attempts (one per run) at admitting an event before it is dead-lettered. */
export const MAX_EVENT_ATTEMPTS = 5;
/** Starts are clamped to now − retention + this, so no event the ledger may have forgotten is read. */
export const RETENTION_MARGIN_MS = 60 * 60 * 1000;
/** A catch-up that stops this close to real time owes the next overlap window the time before where it stopped. */
const OWED_WINDOW_MS = 15 * 60 * 1000;
/** A run continues past `reconcile_max_pages` while it has run less than this... */
export const CATCH_UP_MS = 20_000;
/** ...and read fewer than this many times `reconcile_max_pages` pages... */
export const CATCH_UP_FACTOR = 8;
/**
 * ...and never more pages than this. A run keeps within Workers Free's
 * limits per invocation (50 requests to the Internet, 1,000 to Cloudflare
 * services; Paid allows 10,000): one Events API request a page, and at most
 * one ledger request per shard holding the page's events plus one to the
 * dead-letter store.
 */
export const MAX_PAGES_PER_RUN = 45;
/** Requests to Cloudflare services (ledger shards, the dead-letter store, alerts) one run makes at most. */
export const SERVICE_CALL_BUDGET = 900;
const PRUNE_INTERVAL_MS = 60 * 60 * 1000;
const FAIL_PREFIX = 'evfail:';
const DEAD_PREFIX = 'dead:';

/** Per-event admission failures, kept across runs. */
interface EventFailure {
  attempts: number;
  first_at: number;
  last: 'unavailable' | 'in_progress';
  /** The event's created_at (ms): a backfill never starts after an event still being retried. Absent in older records. */
  created_ms?: number;
}

interface Failure {
  kind: string;
  status: number | null;
  message: string;
  retryAfterSeconds?: number;
}

/** An event's place in the created_at order (ties by id). */
interface Mark {
  id: string;
  ms: number;
}

interface Seen extends Mark {
  created_at: string;
  handled: boolean;
}

const utf8 = new TextEncoder();

function iso(ms: number): string {
  return new Date(ms).toISOString();
}

/** Is `a` strictly later than `b`? Everything is later than nothing. */
function isAfter(a: Mark, b: Mark | null): boolean {
  return b === null || a.ms > b.ms || (a.ms === b.ms && a.id > b.id);
}

function markOf(p: Position | null): Mark | null {
  if (p === null || p.created_at === null) return null;
  const ms = Date.parse(p.created_at);
  return Number.isNaN(ms) ? null : { id: p.id, ms };
}

/** How many out-of-order event ids the reconciler remembers as answered that way before (the newest kept). */
const DISORDER_MEMORY = 1000;

/** The remembered out-of-order ids (a single id, as an older release stored it, reads as one). */
function disorderSeen(kv: SyncKvStorage): string[] {
  const v = kv.get<string | string[]>('disorder_seen');
  return typeof v === 'string' ? [v] : Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : [];
}

/**
 * The index of the last event the position may move to: before the first
 * event not handled, and, when the order broke at `disorderAt`, no later
 * than the last event at or before the earliest created_at from there on (so
 * the next run's window still covers everything after the disorder).
 */
function safeEnd(seq: readonly Seen[], disorderAt: number): number {
  let limit = seq.findIndex((s) => !s.handled);
  if (limit < 0) limit = seq.length;
  if (disorderAt >= 0) {
    let minAfter = Infinity;
    for (let i = disorderAt; i < seq.length; i++) minAfter = Math.min(minAfter, (seq[i] as Seen).ms);
    let j = 0;
    while (j < disorderAt && (seq[j] as Seen).ms <= minAfter) j++;
    limit = Math.min(limit, j);
  }
  return limit - 1;
}

function emptyCounts(): RunCounts {
  return { pages: 0, read: 0, reread: 0, recovered: 0, skipped_expired: 0, skipped_malformed: 0, dead_lettered: 0, retrying: 0, in_progress: 0 };
}

export class Reconciler extends DurableObject<Env> {
  private running = false;
  /** Requests to Cloudflare services this run has made (see `SERVICE_CALL_BUDGET`). */
  private serviceCalls = 0;
  /** This run's part in `owed_from`: whether it read the overlap owed, and the one it leaves (see `settleOwed`). */
  private owed: { consumed: boolean; next: number | undefined } = { consumed: false, next: undefined };

  /**
   * After a run that succeeded: the overlap it owes the next run (it stopped
   * close to real time), kept with an older one it did not read; one it read
   * is dropped. A failed run changes nothing, so what it was to read stays owed.
   */
  private settleOwed(): void {
    const kv = this.ctx.storage.kv;
    const prior = this.owed.consumed ? undefined : kv.get<number>('owed_from');
    const owed = Math.min(prior ?? Number.POSITIVE_INFINITY, this.owed.next ?? Number.POSITIVE_INFINITY);
    if (owed === Number.POSITIVE_INFINITY) kv.delete('owed_from');
    else kv.put('owed_from', owed);
  }

  async run(opts: RunOptions): Promise<RunReport> {
    const idle = (status: RunReport['status']): RunReport => ({ status, ...emptyCounts(), behind: false });
    const apiKey = stringBinding(this.env, 'WORKOS_API_KEY');
    if (apiKey === undefined) return idle('disabled');
    if (this.running) return idle('already_running');
    const loaded = loadConfig(this.env);
    if (!loaded.ok) return idle('config_invalid');
    const { settings, matcher } = loaded.config;
    const types = EVENT_TYPES.filter((t) => matcher.rulesForType(t).length > 0);
    if (types.length === 0) return idle('nothing_routed');
    const kv = this.ctx.storage.kv;
    const started = Date.now();
    if (opts.trigger === 'cron' && (kv.get<number>('backoff_until') ?? 0) > started) return idle('backing_off');
    const floorMs = this.retentionFloor(started, settings.dedupRetentionDays) + RETENTION_MARGIN_MS;

    let clamp: SinceClamp | undefined;
    if (opts.rangeStart !== undefined) {
      this.setPosition(null);
      kv.delete('newest');
      kv.delete('continue_after');
      kv.delete('owed_from');
      clamp = this.setSince(this.backfillStart(opts.rangeStart), floorMs, settings, false);
    } else if (kv.get<string>('since') === undefined) {
      clamp = this.setSince(settings.reconcileSince ?? iso(started), floorMs, settings, false);
    }

    this.running = true;
    this.serviceCalls = 0;
    this.owed = { consumed: false, next: undefined };
    const report: RunReport = { ...idle('completed'), ...(clamp !== undefined ? { clamped_since: clamp } : {}) };
    try {
      this.prune(started, floorMs, settings);
      const failure = await this.readPages(apiKey, types, loaded.config, started, floorMs, report);
      if (failure !== null) {
        this.recordFailure(failure);
        report.status = 'failed';
        report.error = failure.kind;
        await notifyAlerts(this.env, [{ kind: 'reconcile_error', detail: failure.status !== null ? `${failure.kind} (HTTP ${failure.status})` : failure.kind }]);
        return report;
      }
      const signals: AlertSignal[] = [];
      if (kv.get('last_error') !== undefined) signals.push({ kind: 'reconcile_error', recovered: true });
      if (report.recovered > 0) signals.push({ kind: 'reconcile_recovered', count: report.recovered });
      if (report.behind) {
        const lag = (await this.status()).lag_seconds;
        if (lag !== null && lag > LAG_ALERT_SECONDS) signals.push({ kind: 'reconcile_lag', detail: `${Math.round(lag / 60)} min behind` });
      }
      this.settleOwed();
      await notifyAlerts(this.env, signals);
      kv.delete('last_error');
      kv.put('failures', 0);
      kv.delete('backoff_until');
      return report;
    } finally {
      this.running = false;
      const { status: _s, behind, error: _e, clamped_since: _c, ...counts } = report;
      kv.put('last_run_at', Date.now());
      kv.put('last_run', counts);
      kv.put('behind', behind);
      const totals = this.totals();
      kv.put('totals', {
        read: totals.read + report.read,
        reread: totals.reread + report.reread,
        recovered: totals.recovered + report.recovered,
        skipped_expired: totals.skipped_expired + report.skipped_expired,
      } satisfies ReconcileTotals);
      if (report.dead_lettered > 0) kv.put('dead_lettered', (kv.get<number>('dead_lettered') ?? 0) + report.dead_lettered);
      log('info', 'reconcile_run', { trigger: opts.trigger, ...report });
    }
  }

  async status(): Promise<ReconcileStatus> {
    const kv = this.ctx.storage.kv;
    const now = Date.now();
    const lastRunAt = kv.get<number>('last_run_at');
    const backoff = kv.get<number>('backoff_until');
    const position = this.position();
    const since = kv.get<string>('since') ?? null;
    const basis = kv.get<Mark>('newest')?.ms ?? markOf(position)?.ms ?? (since !== null ? Date.parse(since) : Number.NaN);
    let retrying = 0;
    for (const _ of kv.list({ prefix: FAIL_PREFIX })) retrying += 1;
    return {
      enabled: stringBinding(this.env, 'WORKOS_API_KEY') !== undefined,
      last_run_at: lastRunAt !== undefined ? iso(lastRunAt) : null,
      last_run: kv.get<RunCounts>('last_run') ?? null,
      totals: this.totals(),
      last_error: kv.get<ReconcileStatus['last_error']>('last_error') ?? null,
      backoff_until: backoff !== undefined && backoff > now ? iso(backoff) : null,
      consecutive_failures: kv.get<number>('failures') ?? 0,
      lag_seconds: Number.isFinite(basis) ? Math.max(0, Math.round((now - basis) / 1000)) : null,
      behind: kv.get<boolean>('behind') ?? false,
      dead_lettered: kv.get<number>('dead_lettered') ?? 0,
      retrying_events: retrying,
      clamped_since: kv.get<SinceClamp>('clamped_since') ?? null,
      cursor_set: position !== null,
      cursor: position,
      since,
    };
  }

  /**
   * Reads pages from the position (or the start) and admits their events,
   * moving the position as far as is safe after each page. Returns the
   * run's failure, or null.
   */
  private async readPages(
    apiKey: string,
    types: readonly string[],
    config: RouterConfig,
    started: number,
    floorMs: number,
    report: RunReport,
  ): Promise<Failure | null> {
    const settings = config.settings;
    const kv = this.ctx.storage.kv;
    const base = stringBinding(this.env, 'WORKOS_API_BASE_URL') ?? 'https://api.workos.com';
    const startPos = this.position();
    const startMark = markOf(startPos);
    const newestAtStart = kv.get<Mark>('newest') ?? null;
    let newest = newestAtStart;
    const overlapMs = settings.reconcileOverlapSeconds * 1000;
    // The last run stopped at its page limit: carry on right after the last event it read (its window was read).
    // (An id alone was stored by an older release.)
    const stored = kv.get<string | { id: string; ms: number }>('continue_after');
    kv.delete('continue_after');
    const continueAfter = typeof stored === 'string' ? { id: stored, ms: null } : stored;
    const lastRunAt = kv.get<number>('last_run_at') ?? started;
    let window: Pick<EventsPageQuery, 'after' | 'rangeStart'>;
    // Older than the retention floor (reconciliation stopped for weeks): the API may no longer serve it; start at the floor.
    if (startPos !== null && continueAfter !== undefined && continueAfter.ms !== null && continueAfter.ms < floorMs) window = { rangeStart: iso(floorMs) };
    else if (startPos !== null && continueAfter !== undefined) window = { after: continueAfter.id };
    // The overlap counts back from the position, or from when the last run ended when the position's
    // created_at lies later (a clock ahead at WorkOS): else the window would start past events still to come.
    // A catch-up that stopped close to real time skipped the overlap before where it stopped (`owed_from`):
    // the first run after it reads from there.
    else if (startPos !== null && startMark !== null && overlapMs > 0) {
      const owedFrom = kv.get<number>('owed_from') ?? Number.POSITIVE_INFINITY;
      // Read now, dropped only when this run succeeds (a failed run leaves it owed to the next).
      this.owed.consumed = true;
      window = { rangeStart: iso(Math.max(Math.min(Math.min(startMark.ms, lastRunAt) - overlapMs, owedFrom), floorMs)) };
    }
    // A position older than the retention floor (the Events API may no longer serve it): start from the floor.
    else if (startPos !== null && startMark !== null && startMark.ms < floorMs) window = { rangeStart: iso(floorMs) };
    // No overlap, and the position dated after the last run ended (a clock ahead at WorkOS): reading `after`
    // it would skip what was created before that time; read from when the last run ended instead.
    else if (startPos !== null && startMark !== null && startMark.ms > lastRunAt) window = { rangeStart: iso(Math.max(lastRunAt, floorMs)) };
    else if (startPos !== null) window = { after: startPos.id };
    else window = { rangeStart: this.effectiveSince(floorMs, settings) };

    const cap = settings.reconcileMaxPages;
    const hardCap = Math.min(cap * CATCH_UP_FACTOR, Math.max(cap, MAX_PAGES_PER_RUN));
    const seq: Seen[] = [];
    let maxMs = -Infinity;
    let disorderAt = -1;
    // Events the API answered out of order in earlier runs (passed now), and those found out of order in this one.
    const passed = new Set(disorderSeen(kv));
    const found: string[] = [];
    // The most service requests one page can take: one per shard holding its events, one for dead letters.
    const pageCalls = Math.min(PAGE_SIZE, settings.dedupShards) + 1;
    for (let page = 0; ; page++) {
      const outOfBudget = page > 0 && this.serviceCalls + pageCalls > SERVICE_CALL_BUDGET;
      if (outOfBudget || (page >= cap && (page >= hardCap || Date.now() - started >= CATCH_UP_MS))) {
        report.behind = true;
        const last = seq[seq.length - 1];
        if (last !== undefined) {
          kv.put('continue_after', { id: last.id, ms: last.ms });
          // Stopped close to real time: an event created just before `last` may still become visible, and the
          // continuation reads only after it. The first run that reads an overlap again starts this far back.
          if (overlapMs > 0 && last.ms > started - OWED_WINDOW_MS) this.owed.next = last.ms - overlapMs;
        }
        return null;
      }
      const result = await fetchEventsPage(base, apiKey, { events: types, limit: PAGE_SIZE, ...window });
      if (!result.ok) {
        const failure: Failure = { kind: result.kind, status: result.status, message: result.message };
        if (result.retryAfterSeconds !== undefined) failure.retryAfterSeconds = result.retryAfterSeconds;
        return failure;
      }
      report.pages += 1;
      for (const item of result.skipped) {
        report.skipped_malformed += 1;
        log('warn', 'reconcile_item_skipped', { event_id: item.id, problem: item.problem });
      }
      const handled = await this.admitPage(result.events, config, floorMs, report);
      for (const [i, e] of result.events.entries()) {
        const mark: Mark = { id: e.event.id, ms: e.createdAtMs };
        if (e.createdAtMs < maxMs) {
          // The same disorder as an earlier run's: the API answers it that way every time. Holding the position
          // again would fail every run at the same place; its events are all admitted, so it is passed. Every
          // out-of-order event of a failed run is remembered, not only the first: one misplaced event with
          // several later ones earlier than it costs one failed run, not one per event.
          if (passed.has(e.event.id)) log('warn', 'reconcile_disorder_passed', { event_id: e.event.id, created_at: e.event.created_at });
          else {
            found.push(e.event.id);
            if (disorderAt < 0) disorderAt = seq.length;
          }
        }
        maxMs = Math.max(maxMs, e.createdAtMs);
        if (isAfter(mark, newestAtStart)) report.read += 1;
        else report.reread += 1;
        if (isAfter(mark, newest)) newest = mark;
        seq.push({ ...mark, created_at: e.event.created_at, handled: handled[i] === true });
      }
      if (newest !== null && newest !== newestAtStart) kv.put('newest', newest);

      // Move the position as far as is safe, never behind where this run started.
      const end = safeEnd(seq, disorderAt);
      const candidate = end >= 0 ? (seq[end] as Seen) : null;
      this.setPosition(candidate !== null && isAfter(candidate, startMark) ? { id: candidate.id, created_at: candidate.created_at } : startPos);

      if (disorderAt >= 0) {
        const bad = seq[disorderAt] as Seen;
        kv.put('disorder_seen', [...passed, ...found].slice(-DISORDER_MEMORY));
        return {
          kind: 'out_of_order',
          status: null,
          message: `The Events API answered events out of created_at order (${bad.id} at ${bad.created_at} came after a later one); the position was not moved past it.`,
        };
      }
      if (report.retrying > 0) {
        return { kind: 'enqueue_failed', status: null, message: `${report.retrying} event(s) could not be enqueued; they are retried on the next runs, then dead-lettered.` };
      }
      // An event another delivery holds: the position waits before it; read on next run.
      if (handled.some((h) => !h)) return null;
      const lastId = result.lastId ?? result.events[result.events.length - 1]?.event.id;
      if (lastId === undefined || result.items < PAGE_SIZE || result.after === null) return null;
      window = { after: lastId };
    }
  }

  /**
   * Admits one page (skipping events older than the retention and those
   * already dead-lettered). Returns, per event, whether it is handled: the
   * position may move past it.
   */
  private async admitPage(events: readonly ApiEvent[], config: RouterConfig, floorMs: number, report: RunReport): Promise<boolean[]> {
    const settings = config.settings;
    const kv = this.ctx.storage.kv;
    const handled = events.map(() => false);
    const todo: number[] = [];
    for (const [i, e] of events.entries()) {
      if (e.createdAtMs < floorMs) {
        report.skipped_expired += 1;
        handled[i] = true;
        kv.delete(FAIL_PREFIX + e.event.id);
      } else if (kv.get<number>(DEAD_PREFIX + e.event.id) !== undefined) {
        handled[i] = true;
      } else todo.push(i);
    }
    const results = await admitEvents(
      this.env,
      settings,
      todo.map((i) => {
        const e = events[i] as ApiEvent;
        return { event: e.event, text: e.raw, bodyBytes: utf8.encode(e.raw).byteLength, routed: isRouted(config, e.event) };
      }),
      'reconcile',
      () => (this.serviceCalls += 1),
    );
    const outcomes = todo.map((i, k): [number, AdmitResult] => [i, results[k] as AdmitResult]);

    const now = Date.now();
    const leaseMs = settings.claimLeaseSeconds * 1000;
    const giveUp: { i: number; failure: EventFailure }[] = [];
    const retry = (failure: EventFailure) => {
      if (failure.last === 'unavailable') report.retrying += 1;
      else report.in_progress += 1;
    };
    for (const [i, o] of outcomes) {
      const e = events[i] as ApiEvent;
      const key = FAIL_PREFIX + e.event.id;
      if (o.status === 'accepted' || o.status === 'duplicate') {
        handled[i] = true;
        kv.delete(key);
        if (o.status === 'accepted') {
          report.recovered += 1;
          log('info', 'event_recovered', { event_id: e.event.id, event_type: e.event.event });
        }
        continue;
      }
      const previous = kv.get<EventFailure>(key);
      const failure: EventFailure = { attempts: (previous?.attempts ?? 0) + 1, first_at: previous?.first_at ?? now, last: o.status, created_ms: e.createdAtMs };
      // An event another delivery holds is given up on only once that claim's lease must have run out.
      if (failure.attempts >= MAX_EVENT_ATTEMPTS && (o.status === 'unavailable' || now - failure.first_at >= leaseMs)) giveUp.push({ i, failure });
      else {
        kv.put(key, failure);
        retry(failure);
      }
    }
    if (giveUp.length === 0) return handled;

    const records = giveUp.map(({ i, failure }) => {
      const e = events[i] as ApiEvent;
      return deadLetterRecord({
        event_id: e.event.id,
        event_type: e.event.event,
        destination: ROUTER_DESTINATION,
        reason: RECONCILE_ENQUEUE_FAILED,
        attempts: failure.attempts,
        body: e.raw,
        source: 'reconcile',
      });
    });
    try {
      this.serviceCalls += 1;
      await deadLetterStub(this.env).add(records);
    } catch (err) {
      log('error', 'reconcile_dead_letter_failed', { events: records.length, error: errorName(err) });
      for (const { i, failure } of giveUp) {
        kv.put(FAIL_PREFIX + (events[i] as ApiEvent).event.id, failure);
        retry(failure);
      }
      return handled;
    }
    for (const { i } of giveUp) {
      const e = events[i] as ApiEvent;
      kv.put(DEAD_PREFIX + e.event.id, e.createdAtMs);
      kv.delete(FAIL_PREFIX + e.event.id);
      handled[i] = true;
      report.dead_lettered += 1;
    }
    return handled;
  }

  /** The stored position; a bare id stored by an older release reads as a position without created_at. */
  private position(): Position | null {
    const kv = this.ctx.storage.kv;
    const p = kv.get<Position>('position');
    if (p !== undefined) return p;
    const legacy = kv.get<string>('cursor');
    return legacy !== undefined ? { id: legacy, created_at: null } : null;
  }

  private setPosition(p: Position | null): void {
    const kv = this.ctx.storage.kv;
    if (p === null) kv.delete('position');
    else if (kv.get<Position>('position')?.id !== p.id) kv.put('position', p);
    kv.delete('cursor');
  }

  /**
   * Where a backfill starts: `range_start`, or earlier if an event the
   * router could not enqueue yet is older (the position restarts at the
   * backfill's start, and an event before it would never be read again:
   * neither enqueued nor dead-lettered).
   */
  private backfillStart(requested: string): string {
    let oldest = Number.POSITIVE_INFINITY;
    let retrying = 0;
    for (const [, f] of this.ctx.storage.kv.list<EventFailure>({ prefix: FAIL_PREFIX })) {
      retrying += 1;
      if (f.created_ms !== undefined) oldest = Math.min(oldest, f.created_ms);
    }
    if (!(oldest < Date.parse(requested))) return requested;
    const moved = iso(oldest);
    log('warn', 'reconcile_backfill_moved', { requested, moved_to: moved, retrying });
    return moved;
  }

  /**
   * Stores the start of reading, clamped to the ledger's memory (`floorMs`).
   * A clamp is logged (`reconcile_since_clamped`) and kept for the status;
   * `quiet` re-clamps a start that aged past the floor without logging again.
   */
  private setSince(requested: string, floorMs: number, settings: RouterSettings, quiet: boolean): SinceClamp | undefined {
    const kv = this.ctx.storage.kv;
    if (Date.parse(requested) >= floorMs) {
      kv.put('since', requested);
      kv.delete('clamped_since');
      return undefined;
    }
    const used = iso(floorMs);
    const clamp: SinceClamp = { requested, clamped_to: used, at: iso(Date.now()) };
    kv.put('since', used);
    kv.put('clamped_since', clamp);
    if (!quiet) {
      log('warn', 'reconcile_since_clamped', {
        requested,
        clamped_to: used,
        dedup_retention_days: settings.dedupRetentionDays,
        detail: 'Events older than the dedup retention may have been forgotten by the ledger; reading them would deliver duplicates.',
      });
    }
    return clamp;
  }

  /**
   * The oldest `created_at` the ledger surely remembers: now − retention;
   * and, until the new retention has passed since `dedup_retention_days` was
   * raised, no older than what the shorter one in force before still keeps
   * (the days the ledger filed under it are dropped on its schedule).
   */
  private retentionFloor(now: number, days: number): number {
    const kv = this.ctx.storage.kv;
    type Seen = { days: number; raised_at?: number; previous_days?: number };
    const seen = kv.get<Seen>('retention');
    let next: Seen = seen ?? { days };
    if (seen !== undefined && days !== seen.days) {
      // Raised: remember the shortest retention still in effect for older days; lowered: now − days is stricter anyway.
      next = days > seen.days ? { days, raised_at: now, previous_days: Math.min(seen.days, seen.previous_days ?? seen.days) } : { days };
    }
    let floor = now - days * DAY_MS;
    if (next.raised_at !== undefined && next.previous_days !== undefined) {
      if (now - days * DAY_MS >= next.raised_at) next = { days };
      else floor = Math.max(floor, Math.min(next.raised_at, now - next.previous_days * DAY_MS));
    }
    if (seen === undefined || JSON.stringify(seen) !== JSON.stringify(next)) kv.put('retention', next);
    return floor;
  }

  /** The stored start, re-clamped if it has aged past the floor since it was stored. */
  private effectiveSince(floorMs: number, settings: RouterSettings): string {
    const kv = this.ctx.storage.kv;
    const since = kv.get<string>('since') ?? iso(Date.now());
    if (Date.parse(since) >= floorMs) return since;
    return this.setSince(kv.get<SinceClamp>('clamped_since')?.requested ?? since, floorMs, settings, true)?.clamped_to ?? iso(floorMs);
  }

  private totals(): ReconcileTotals {
    const stored = this.ctx.storage.kv.get<Partial<ReconcileTotals>>('totals') ?? {};
    return { read: stored.read ?? 0, reread: stored.reread ?? 0, recovered: stored.recovered ?? 0, skipped_expired: stored.skipped_expired ?? 0 };
  }

  /** At most hourly: forgets failure counts and dead-letter marks for events past the retention. */
  private prune(now: number, floorMs: number, settings: RouterSettings): void {
    const kv = this.ctx.storage.kv;
    if ((kv.get<number>('pruned_at') ?? 0) > now - PRUNE_INTERVAL_MS) return;
    kv.put('pruned_at', now);
    const retentionMs = settings.dedupRetentionDays * DAY_MS;
    const gone: string[] = [];
    for (const [key, f] of kv.list<EventFailure>({ prefix: FAIL_PREFIX })) if (f.first_at < now - retentionMs) gone.push(key);
    for (const [key, createdAtMs] of kv.list<number>({ prefix: DEAD_PREFIX })) if (createdAtMs < floorMs) gone.push(key);
    for (const key of gone) kv.delete(key);
  }

  private recordFailure(f: Failure): void {
    const kv = this.ctx.storage.kv;
    const previous = kv.get<{ kind: string }>('last_error');
    kv.put('last_error', { kind: f.kind, status: f.status, message: f.message, at: iso(Date.now()) });
    // One log line per new kind of failure, not one a minute.
    if (previous?.kind !== f.kind) log('error', 'reconcile_failed', { kind: f.kind, status: f.status, message: f.message });
    const failures = (kv.get<number>('failures') ?? 0) + 1;
    kv.put('failures', failures);
    const backoff = Math.min(MAX_BACKOFF_MS, Math.max((f.retryAfterSeconds ?? 0) * 1000, BASE_BACKOFF_MS * 2 ** Math.min(failures - 1, 10)));
    kv.put('backoff_until', Date.now() + backoff);
  }
}

export function reconcilerStub(env: Env): DurableObjectStub<Reconciler> {
  return env.RECONCILER.get(env.RECONCILER.idFromName('global')) as DurableObjectStub<Reconciler>;
}
