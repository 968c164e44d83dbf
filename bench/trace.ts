/**
 * `trace`: how fast the delivery trace answers the console's questions over a
 * week of traffic at 10 events/s (6.05 million acceptances, 9.1 million
 * delivery rows), against the same questions over one hour of traffic (the
 * baseline) in the same run.
 *
 * The router runs under bench/workerd/trace/index.js (src/index.ts unchanged,
 * plus a `seed()` on the trace buckets that writes synthetic rows with SQL
 * alone); every query goes through the real `GET /admin/events` routes over
 * HTTP, so the fan-out over day buckets is included.
 */
import { type RouterProcess, startRouter } from '../scripts/lib/dev-server';
import { type Table, type Target, Progress, printTable, step } from './lib/report';
import type { BenchContext, BenchOutput } from './lib/types';
import { copyWranglerConfig } from './lib/workerd';
import { fmt, percentile } from './lib/stats';

const DAY = 86_400_000;
const STEP_MS = 100; // 10 events/s
const TOKEN = 'bench-admin-token';
const CHUNK = 100_000;

interface Query {
  name: string;
  path: (now: number) => string;
}

const iso = (ms: number) => new Date(ms).toISOString();

const QUERIES: Query[] = [
  { name: 'newest page (50), no filter', path: () => '/admin/events?limit=50' },
  { name: 'destination + state (warehouse, dead_lettered)', path: () => '/admin/events?destination=warehouse&state=dead_lettered&limit=50' },
  { name: 'state only (retrying)', path: () => '/admin/events?state=retrying&limit=50' },
  { name: 'type pattern (dsync.*)', path: () => '/admin/events?type=dsync.*&limit=50' },
  { name: 'rare type (vault.data.read, 1 in 20)', path: () => '/admin/events?type=vault.data.read&limit=50' },
  { name: 'absent type (organization_role.*: full scan)', path: () => '/admin/events?type=organization_role.*&limit=50' },
  {
    name: '2-hour window 3 days ago, crm, retrying',
    path: (now) => `/admin/events?destination=crm&state=retrying&since=${iso(now - 3 * DAY)}&until=${iso(now - 3 * DAY + 2 * 3_600_000)}&limit=50`,
  },
  { name: 'no match (unknown destination)', path: () => '/admin/events?destination=nowhere&limit=50' },
  { name: 'one event by id (5 days old)', path: () => '/admin/events/__ID__' },
];

async function seed(r: RouterProcess, from: number, to: number, progress: Progress): Promise<{ events: number; rows: number }> {
  let events = 0;
  let rows = 0;
  for (let day = Math.floor(from / DAY) * DAY; day < to; day += DAY) {
    const lo = Math.max(from, day);
    const hi = Math.min(to, day + DAY);
    let first = Math.ceil((lo - from) / STEP_MS);
    const last = Math.ceil((hi - from) / STEP_MS);
    const bucket = `trace:${iso(day).slice(0, 10)}:0`;
    while (first < last) {
      const count = Math.min(CHUNK, last - first);
      const res = await fetch(`${r.url}/__bench/seed?bucket=${bucket}&from=${from + first * STEP_MS}&step=${STEP_MS}&first=${first}&count=${count}`);
      if (!res.ok) throw new Error(`seed failed: ${res.status} ${await res.text()}`);
      rows += ((await res.json()) as { written: number }).written;
      events += count;
      first += count;
      progress.update(events);
    }
  }
  return { events, rows };
}

async function timeQueries(r: RouterProcess, now: number, idOld: string, rounds: number): Promise<Map<string, { ms: number[]; items: number }>> {
  const out = new Map<string, { ms: number[]; items: number }>();
  for (const q of QUERIES) out.set(q.name, { ms: [], items: 0 });
  // Rounds interleave the queries so that none benefits from running alone.
  for (let round = -2; round < rounds; round++) {
    for (const q of QUERIES) {
      const path = q.path(now).replace('__ID__', idOld);
      const started = performance.now();
      const res = await fetch(`${r.url}${path}`, { headers: { Authorization: `Bearer ${TOKEN}` } });
      const text = await res.text();
      const ms = performance.now() - started;
      if (res.status !== 200 && !(res.status === 404 && path.includes('/events/event_'))) throw new Error(`${path}: ${res.status} ${text.slice(0, 200)}`);
      if (round < 0) continue;
      const entry = out.get(q.name) as { ms: number[]; items: number };
      entry.ms.push(ms);
      const body = JSON.parse(text) as { items?: unknown[]; deliveries?: unknown[] };
      entry.items = body.items?.length ?? (body.deliveries !== undefined ? 1 : 0);
    }
  }
  return out;
}

async function runOnce(label: string, spanMs: number, rounds: number) {
  const cfg = copyWranglerConfig({ main: 'bench/workerd/trace/index.js' });
  step(`${label}: starting the router with the trace bench entry`);
  const router = {
    destinations: [
      { name: 'crm', type: 'http', url: 'http://127.0.0.1:9/crm' },
      { name: 'warehouse', type: 'http', url: 'http://127.0.0.1:9/warehouse' },
    ],
    rules: [{ name: 'r1', events: ['*'], to: ['crm', 'warehouse'] }],
  };
  const r = await startRouter({ timeoutMs: 60_000, config: cfg.path, vars: { ADMIN_TOKEN: TOKEN, WORKOS_WEBHOOK_SECRET: 'bench', ROUTER: router } });
  try {
    const now = Date.now();
    const from = now - spanMs;
    const total = Math.ceil(spanMs / STEP_MS);
    const progress = new Progress(`${label}: seeding ${fmt(total)} acceptances`, total);
    const seeded = await seed(r, from, now, progress);
    progress.done(`${fmt(seeded.rows)} delivery rows`);
    // An event about 5 days old (or the oldest, for the short span).
    const idIndex = Math.max(0, Math.ceil((Math.max(from, now - 5 * DAY) - from) / STEP_MS));
    const idOld = `event_${String(idIndex).padStart(26, '0')}`;
    step(`${label}: timing ${QUERIES.length} query shapes × ${rounds} rounds`);
    const timings = await timeQueries(r, now, idOld, rounds);
    return { label, seeded, timings };
  } finally {
    await r.stop();
    cfg.cleanup();
  }
}

export async function runTrace(ctx: BenchContext): Promise<BenchOutput> {
  const rounds = ctx.quick ? 8 : 30;
  const baseline = await runOnce('1 hour', 3_600_000, rounds);
  const week = await runOnce('1 week', 7 * DAY, rounds);
  const rows = QUERIES.map((q) => {
    const b = baseline.timings.get(q.name) as { ms: number[]; items: number };
    const w = week.timings.get(q.name) as { ms: number[]; items: number };
    const p95w = percentile(w.ms, 95);
    return [q.name, fmt(percentile(b.ms, 50), 1), fmt(percentile(b.ms, 95), 1), fmt(percentile(w.ms, 50), 1), fmt(p95w, 1), `${(p95w / Math.max(0.1, percentile(b.ms, 95))).toFixed(2)}×`, w.items];
  });
  const table: Table = {
    title: `GET /admin/events over one hour vs one week of traffic at 10 events/s (${rounds} rounds per query, after 2 warm-up rounds)`,
    columns: ['query', '1 hour p50 ms', '1 hour p95 ms', '1 week p50 ms', '1 week p95 ms', 'week p95 ÷ hour p95', 'items (week)'],
    rows,
    note: `Week: ${fmt(week.seeded.events)} acceptances, ${fmt(Math.round(week.seeded.events * 1.5))} delivery rows (${fmt(week.seeded.rows)} rows written with their index entries) in 8 day buckets (trace_shards = 1); hour: ${fmt(baseline.seeded.events)} acceptances. Times are round trips over HTTP to wrangler dev on loopback, including the fan-out to every retained day bucket.`,
  };
  printTable(table);
  const worst = Math.max(...QUERIES.map((q) => percentile((week.timings.get(q.name) as { ms: number[] }).ms, 95)));
  const targets: Target[] = [{ what: 'GET /admin/events p95 over a week at 10 events/s (every query shape)', target: '< 500 ms', measured: `${fmt(worst, 1)} ms (worst shape)`, met: worst < 500 }];
  return {
    tables: [table],
    targets,
    findings: [],
    raw: { rounds, baseline: { seeded: baseline.seeded, timings: Object.fromEntries(baseline.timings) }, week: { seeded: week.seeded, timings: Object.fromEntries(week.timings) } },
  };
}
