/**
 * Reconciliation from the WorkOS Events API: a single Durable Object that
 * owns the cursor and serializes runs.
 *
 * Each run reads `GET /events` (every catalog type some rule routes; `after` =
 * the stored cursor, `limit=100`, `order=asc`) for up to `reconcile_max_pages`
 * pages, and sends every event through the same dedup-and-enqueue path as a
 * webhook: one that already arrived is a duplicate; one the webhooks missed is
 * delivered once and counted as recovered. The cursor advances only after a
 * page's events are durably enqueued. The first run starts from now (or
 * `reconcile_since`), never the whole history by surprise.
 */
import { DurableObject } from 'cloudflare:workers';
import { loadConfig } from '../config/load';
import { EVENT_TYPES } from '../events/catalog';
import { admitEvent } from '../ingest/admit';
import { stringBinding } from '../env';
import { log } from '../log';
import { fetchEventsPage } from './workos-api';

export interface RunOptions {
  trigger: 'cron' | 'admin';
  /** ISO time: backfill from here (resets the cursor). */
  rangeStart?: string;
}

export interface RunReport {
  status: 'completed' | 'disabled' | 'already_running' | 'backing_off' | 'failed' | 'config_invalid' | 'nothing_routed';
  pages: number;
  read: number;
  recovered: number;
  error?: string;
}

export interface ReconcileStatus {
  enabled: boolean;
  last_run_at: string | null;
  last_run: { pages: number; read: number; recovered: number } | null;
  totals: { read: number; recovered: number };
  last_error: { kind: string; status: number | null; message: string; at: string } | null;
  backoff_until: string | null;
  cursor_set: boolean;
  since: string | null;
}

const PAGE_SIZE = 100;
const ADMIT_CONCURRENCY = 10;
const MAX_BACKOFF_MS = 15 * 60 * 1000;

export class Reconciler extends DurableObject<Env> {
  private running = false;

  async run(opts: RunOptions): Promise<RunReport> {
    const empty = { pages: 0, read: 0, recovered: 0 };
    const apiKey = stringBinding(this.env, 'WORKOS_API_KEY');
    if (apiKey === undefined) return { status: 'disabled', ...empty };
    if (this.running) return { status: 'already_running', ...empty };
    const loaded = loadConfig(this.env);
    if (!loaded.ok) return { status: 'config_invalid', ...empty };
    const { settings, matcher } = loaded.config;
    const types = EVENT_TYPES.filter((t) => matcher.rulesForType(t).length > 0);
    if (types.length === 0) return { status: 'nothing_routed', ...empty };
    const kv = this.ctx.storage.kv;
    const now = Date.now();
    if (opts.trigger === 'cron' && (kv.get<number>('backoff_until') ?? 0) > now) return { status: 'backing_off', ...empty };

    if (opts.rangeStart !== undefined) {
      kv.delete('cursor');
      kv.put('since', opts.rangeStart);
    } else if (kv.get<string>('since') === undefined) {
      kv.put('since', settings.reconcileSince ?? new Date(now).toISOString());
    }

    this.running = true;
    const report: RunReport = { status: 'completed', ...empty };
    try {
      const base = stringBinding(this.env, 'WORKOS_API_BASE_URL') ?? 'https://api.workos.com';
      for (let page = 0; page < settings.reconcileMaxPages; page++) {
        const cursor = kv.get<string>('cursor');
        const query = { events: types, limit: PAGE_SIZE, ...(cursor !== undefined ? { after: cursor } : { rangeStart: kv.get<string>('since') as string }) };
        const result = await fetchEventsPage(base, apiKey, query);
        if (!result.ok) {
          this.recordFailure(result.kind, result.status, result.message, result.retryAfterSeconds);
          return { ...report, status: 'failed', error: result.kind };
        }
        report.pages += 1;
        // Admit the page; stop without moving the cursor if any admission fails.
        let failed = false;
        for (let i = 0; i < result.events.length; i += ADMIT_CONCURRENCY) {
          const slice = result.events.slice(i, i + ADMIT_CONCURRENCY);
          const outcomes = await Promise.all(
            slice.map(({ event, raw }) => admitEvent(this.env, settings, event, raw, new TextEncoder().encode(raw).byteLength, 'reconcile')),
          );
          for (const [j, o] of outcomes.entries()) {
            if (o.status === 'unavailable') failed = true;
            else {
              report.read += 1;
              if (o.status === 'accepted') {
                report.recovered += 1;
                log('info', 'event_recovered', { event_id: slice[j]?.event.id, event_type: slice[j]?.event.event });
              }
            }
          }
        }
        if (failed) {
          this.recordFailure('enqueue_failed', null, 'Some events could not be enqueued; the cursor was not moved.');
          return { ...report, status: 'failed', error: 'enqueue_failed' };
        }
        const last = result.events[result.events.length - 1];
        if (last !== undefined) kv.put('cursor', last.event.id);
        if (result.events.length < PAGE_SIZE || result.after === null) break;
      }
      kv.delete('last_error');
      kv.put('failures', 0);
      kv.delete('backoff_until');
      return report;
    } finally {
      this.running = false;
      kv.put('last_run_at', Date.now());
      kv.put('last_run', { pages: report.pages, read: report.read, recovered: report.recovered });
      const totals = kv.get<{ read: number; recovered: number }>('totals') ?? { read: 0, recovered: 0 };
      kv.put('totals', { read: totals.read + report.read, recovered: totals.recovered + report.recovered });
      log('info', 'reconcile_run', { trigger: opts.trigger, ...report });
    }
  }

  async status(): Promise<ReconcileStatus> {
    const kv = this.ctx.storage.kv;
        const lastRunAt = kv.get<number>('last_run_at');
    const backoff = kv.get<number>('backoff_until');
    return {
      enabled: stringBinding(this.env, 'WORKOS_API_KEY') !== undefined,
      last_run_at: lastRunAt !== undefined ? new Date(lastRunAt).toISOString() : null,
      last_run: kv.get<{ pages: number; read: number; recovered: number }>('last_run') ?? null,
      totals: kv.get<{ read: number; recovered: number }>('totals') ?? { read: 0, recovered: 0 },
      last_error: kv.get<ReconcileStatus['last_error']>('last_error') ?? null,
      backoff_until: backoff !== undefined && backoff > Date.now() ? new Date(backoff).toISOString() : null,
      cursor_set: kv.get<string>('cursor') !== undefined,
      since: kv.get<string>('since') ?? null,
    };
  }

  private recordFailure(kind: string, status: number | null, message: string, retryAfterSeconds?: number): void {
    const kv = this.ctx.storage.kv;
    const previous = kv.get<{ kind: string }>('last_error');
    kv.put('last_error', { kind, status, message, at: new Date().toISOString() });
    // One log line per new kind of failure, not one a minute.
    if (previous?.kind !== kind) log('error', 'reconcile_failed', { kind, status, message });
    if (kind === 'rate_limited' || kind === 'server_error' || kind === 'network') {
      const failures = (kv.get<number>('failures') ?? 0) + 1;
      kv.put('failures', failures);
      const backoff = Math.min(MAX_BACKOFF_MS, Math.max((retryAfterSeconds ?? 0) * 1000, 60_000 * 2 ** (failures - 1)));
      kv.put('backoff_until', Date.now() + backoff);
    }
  }
}

export function reconcilerStub(env: Env): DurableObjectStub<Reconciler> {
  return env.RECONCILER.get(env.RECONCILER.idFromName('global')) as DurableObjectStub<Reconciler>;
}
