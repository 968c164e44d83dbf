/**
 * Reaching the delivery trace's buckets (src/trace/store.ts): which bucket
 * holds an acceptance, batched writes, and lookups and listings that fan out
 * over the buckets a question concerns.
 */
import { shardOf } from '../dedup/shard';
import { errorName, log } from '../log';
import { type TraceItem, type TraceQuery, type TraceWrite, newestFirst } from './store';

const DAY_MS = 86_400_000;

export interface TraceSettings {
  traceRetentionDays: number;
  traceShards: number;
}

/** The UTC day (`YYYY-MM-DD`) of a time. */
export function dayOf(ms: number): string {
  return new Date(Math.floor(ms / DAY_MS) * DAY_MS).toISOString().slice(0, 10);
}

export function bucketName(acceptedAt: number, eventId: string, shards: number): string {
  return `trace:${dayOf(acceptedAt)}:${shardOf(eventId, shards)}`;
}

function stubFor(env: Env, name: string) {
  return env.DELIVERY_TRACE.get(env.DELIVERY_TRACE.idFromName(name));
}

/** When a bucket of this acceptance day may be deleted whole. */
export function bucketExpiry(acceptedAt: number, retentionDays: number): number {
  return (Math.floor(acceptedAt / DAY_MS) + 1 + retentionDays) * DAY_MS;
}

/** Day starts (ms) from the day of `to` back to the day of `from`, newest first. */
function daysBetween(from: number, to: number): number[] {
  const days: number[] = [];
  for (let d = Math.floor(to / DAY_MS); d >= Math.floor(from / DAY_MS); d--) days.push(d * DAY_MS);
  return days;
}

/** The oldest acceptance time the trace may still hold. */
export function retentionStart(now: number, s: TraceSettings): number {
  return (Math.floor(now / DAY_MS) - s.traceRetentionDays) * DAY_MS;
}

/**
 * Collects one consumer invocation's trace writes and sends them once per
 * bucket. A failed write is logged and dropped: the trace is observability,
 * never a reason to redeliver an event.
 */
export class TraceWriter {
  private readonly writes: TraceWrite[] = [];

  constructor(
    private readonly env: Env,
    private readonly settings: TraceSettings,
  ) {}

  add(w: TraceWrite): void {
    this.writes.push(w);
  }

  /** Buckets these acceptances would be written to (the consumer reserves one call each). */
  async flush(): Promise<void> {
    if (this.writes.length === 0) return;
    if (this.settings.traceRetentionDays === 0) {
      this.writes.length = 0;
      return;
    }
    const byBucket = new Map<string, { writes: TraceWrite[]; expires: number }>();
    for (const w of this.writes.splice(0)) {
      const name = bucketName(w.accepted_at, w.event_id, this.settings.traceShards);
      const b = byBucket.get(name) ?? { writes: [], expires: 0 };
      b.writes.push(w);
      b.expires = Math.max(b.expires, bucketExpiry(w.accepted_at, this.settings.traceRetentionDays));
      byBucket.set(name, b);
    }
    await Promise.all(
      [...byBucket].map(([name, b]) =>
        stubFor(this.env, name)
          .record(b.writes, b.expires)
          .catch((err: unknown) => log('warn', 'trace_write_failed', { bucket: name, writes: b.writes.length, error: errorName(err) })),
      ),
    );
  }
}

/** Every bucket that may hold `id`: one per retained day. */
function bucketsForId(id: string, s: TraceSettings, now: number): string[] {
  if (s.traceRetentionDays === 0) return [];
  const shard = shardOf(id, s.traceShards);
  return daysBetween(retentionStart(now, s), now).map((d) => `trace:${dayOf(d)}:${shard}`);
}

/** Every acceptance of `id` the trace holds, oldest first. */
export async function lookupEvent(env: Env, s: TraceSettings, id: string, now = Date.now()): Promise<TraceItem[]> {
  const found = await Promise.all(bucketsForId(id, s, now).map((name) => stubFor(env, name).lookup(id)));
  return found.flat().sort((a, b) => a.accepted_at - b.accepted_at);
}

/** Marks these dead-lettered deliveries discarded, in every bucket that may hold them. */
export async function markDiscarded(env: Env, s: TraceSettings, pairs: Array<{ event_id: string; destination: string }>, now = Date.now()): Promise<void> {
  if (pairs.length === 0) return;
  const byBucket = new Map<string, Array<{ event_id: string; destination: string }>>();
  for (const p of pairs) {
    for (const name of bucketsForId(p.event_id, s, now)) byBucket.set(name, [...(byBucket.get(name) ?? []), p]);
  }
  await Promise.all([...byBucket].map(([name, list]) => stubFor(env, name).discard(list)));
}

/**
 * One page of acceptances, newest first, over every bucket of the days the
 * query spans (bounded by the retention). Each bucket returns at most `limit`
 * items; the merge keeps the newest `limit`.
 */
export async function listEvents(env: Env, s: TraceSettings, q: TraceQuery, now = Date.now()): Promise<{ items: TraceItem[]; more: boolean }> {
  if (s.traceRetentionDays === 0) return { items: [], more: false };
  const from = Math.max(q.since ?? 0, retentionStart(now, s));
  const to = Math.min(q.until !== undefined ? q.until - 1 : now, q.before?.accepted_at ?? Number.POSITIVE_INFINITY, now);
  if (to < from) return { items: [], more: false };
  const names: string[] = [];
  for (const d of daysBetween(from, to)) for (let k = 0; k < s.traceShards; k++) names.push(`trace:${dayOf(d)}:${k}`);
  const pages = await Promise.all(names.map((name) => stubFor(env, name).list({ ...q, limit: q.limit + 1 })));
  const all = pages.flat().sort(newestFirst);
  return { items: all.slice(0, q.limit), more: all.length > q.limit };
}

/** Delivery counts by state over acceptances since `since` (the console's overview). */
export async function countStates(env: Env, s: TraceSettings, since: number, now = Date.now()): Promise<Record<string, number>> {
  if (s.traceRetentionDays === 0) return {};
  const names: string[] = [];
  for (const d of daysBetween(since, now)) for (let k = 0; k < s.traceShards; k++) names.push(`trace:${dayOf(d)}:${k}`);
  const counts = await Promise.all(names.map((name) => stubFor(env, name).counts(since)));
  const out: Record<string, number> = {};
  for (const c of counts) for (const [state, n] of Object.entries(c)) out[state] = (out[state] ?? 0) + n;
  return out;
}
