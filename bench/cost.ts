/**
 * `cost`: billable operations per accepted event, counted on a real run, with
 * 1 and with 5 http destinations; then the cost per million events at
 * Cloudflare's published prices.
 *
 * The router runs under bench/workerd/instrumented/index.js (a bench-only
 * entry re-exporting src/index.ts with counting wrappers; src is unchanged)
 * through a copy of wrangler.toml whose only change is `main`. Counts are
 * cross-checked with the structured log lines ({"msg":"webhook"},
 * {"msg":"delivered"}) and with the sink's request count.
 */
import { resolve } from 'node:path';
import { type RouterProcess, startRouter } from '../scripts/lib/dev-server';
import { startSink } from '../scripts/lib/sink';
import { BENCH_SECRET, EventSource, routerToSink, signedHeaders } from './lib/events';
import { ROOT } from './lib/machine';
import { type Table, type Target, Progress, printTable, step } from './lib/report';
import type { BenchContext, BenchOutput } from './lib/types';
import { copyWranglerConfig, cpuDelta, findWranglerGroup, groupCpu } from './lib/workerd';
import { fmt, pct, sleep } from './lib/stats';

/** Prices as published (USD), per unit stated; see PRICE_SOURCES. Included monthly allowances are not subtracted. */
export const PRICES = {
  workersRequestPerM: 0.3,
  workersCpuMsPerM: 0.02,
  doRequestPerM: 0.15,
  doGbSecondPerM: 12.5,
  doMemoryGb: 0.128, // 128 MB per object, as in Cloudflare's own duration examples (128 MB / 1 GB)
  sqliteRowsWrittenPerM: 1.0,
  sqliteRowsReadPerM: 0.001,
  queueOperationPerM: 0.4,
  workersLogsPerM: 0.6,
} as const;

export const PRICE_SOURCES = [
  'Workers Standard: "+$0.30 per additional million" requests, "+$0.02 per additional million CPU milliseconds" — https://developers.cloudflare.com/workers/platform/pricing/ (page last updated 2026-07-07)',
  'Durable Objects: requests "+ $0.15/million" ("Includes HTTP requests, RPC sessions, WebSocket messages, and alarm invocations"; "Every RPC method call on a Durable Objects stub is its own RPC session and therefore a single billed request"), duration "+ $12.50/million GB-s" at 128 MB per object; SQLite storage: rows read "+ $0.001 / million rows", rows written "+ $1.00 / million rows", "Deletes are counted as rows written", "Each setAlarm() is billed as a single row written" — https://developers.cloudflare.com/durable-objects/platform/pricing/ (page last updated 2026-06-19; nothing there on DROP TABLE or deleteAll())',
  'Queues: "+ $0.40/million operations", "An operation is counted for each 64 KB of data that is written, read, or deleted", 3 per delivered message — https://developers.cloudflare.com/queues/platform/pricing/ (page last updated 2026-04-21)',
  'Workers Logs: "20 million included per month +$0.60 per additional million" log events on Workers Paid — https://developers.cloudflare.com/workers/observability/logs/workers-logs/#pricing (page last updated 2026-08-11; the docs source says that from 2026-12-01 Workers Logs moves to Cloudflare Observability pricing, not found here)',
];

/**
 * Hosted webhook gateways, for comparison (list prices per event or message; plan
 * fees apart). Read from API Evangelist's transcriptions of the vendors' pricing
 * pages (github.com/api-evangelist/hookdeck and /svix, plans/*-plans-pricing.yml,
 * both read 2026-09-20): no first-hand copy of the pages was reachable from here.
 */
export const GATEWAYS = {
  /** Hookdeck Event Gateway: "$1.00 per additional 100k" events, "as low as $0.33 per 100k"; Team plan "Starts at $39 /month". */
  hookdeckPerM: 10,
  hookdeckLowestPerM: 3.3,
  hookdeckTeamMonthly: 39,
  /** Svix: "$0.0001 per msg" past the included 50,000; Professional "from $ 490 / month". */
  svixPerM: 100,
  svixProMonthly: 490,
} as const;

export const GATEWAY_SOURCES =
  'Hookdeck: "$1.00 per additional 100k" events ("as low as $0.33 per 100k"), Team plan from $39/month with 10,000 events and 5 events/s per destination included; its docs: "When receiving a request from a source with multiple connections, Hookdeck creates a separate event for each connection", so a webhook routed to N destinations is N events — hookdeck.com/pricing and hookdeck.com/docs/events. Svix: "$0.0001 per msg" past 50,000 a month, Professional from $490/month — svix.com/pricing (a sending service; its Ingest product\'s price was not found). Both prices from API Evangelist\'s transcriptions of those pages read 2026-09-20 (github.com/api-evangelist/hookdeck, /svix), not from the pages themselves';

type Counters = {
  fetchInvocations: Record<string, number>;
  scheduledInvocations: number;
  queueInvocations: Record<string, number>;
  queueMessagesReceived: Record<string, number>;
  doCalls: Record<string, number>;
  doIncoming: Record<string, number>;
  queueSends: Record<string, number>;
  queueMessagesSent: Record<string, number>;
  queueMessageBytes: Record<string, number>;
  queueMessageChunks: Record<string, number>;
  httpSubrequests: Record<string, number>;
  sqlRowsRead: number;
  sqlRowsWritten: number;
  sqlStatements: number;
  doActiveMs: number;
  traceRowsExpired: number;
  /** storage.kv put/delete and get calls by object kind (folded into sqlRowsWritten / sqlRowsRead and sqlByStatement). */
  kvWrites: Record<string, number>;
  kvReads: Record<string, number>;
  /** storage.setAlarm() calls by object kind (also folded into sqlRowsWritten and sqlByStatement: billed as a row written each). */
  setAlarms: Record<string, number>;
  sqlByStatement: Record<string, { calls: number; rowsRead: number; rowsWritten: number }>;
};

/** Merges counter snapshots (objects of numbers / maps of numbers) by addition; `sign` -1 subtracts. */
function add(into: Record<string, unknown>, from: Record<string, unknown>, sign = 1): void {
  for (const [k, v] of Object.entries(from)) {
    if (typeof v === 'number') into[k] = ((into[k] as number | undefined) ?? 0) + sign * v;
    else if (v !== null && typeof v === 'object') {
      const target = (into[k] ??= {}) as Record<string, unknown>;
      add(target, v as Record<string, unknown>, sign);
    }
  }
}

async function readCounters(url: string): Promise<{ isolates: number; total: Counters }> {
  const res = await fetch(`${url}/__bench/counters?shards=16`);
  const json = (await res.json()) as { isolates: number; snapshots: { counters: Counters }[] };
  const total = {} as Record<string, unknown>;
  for (const s of json.snapshots) add(total, s.counters as unknown as Record<string, unknown>);
  return { isolates: json.isolates, total: total as unknown as Counters };
}

function diff(after: Counters, before: Counters): Counters {
  const out = {} as Record<string, unknown>;
  add(out, after as unknown as Record<string, unknown>);
  add(out, before as unknown as Record<string, unknown>, -1);
  return out as unknown as Counters;
}

const sum = (m: Record<string, number> | undefined, pred: (k: string) => boolean = () => true) =>
  Object.entries(m ?? {}).reduce((a, [k, v]) => (pred(k) ? a + v : a), 0);

interface PerEvent {
  workerRequests: number;
  consumerInvocations: number;
  doRequests: number;
  doRequestsFromWebhook: number;
  internalQueueMessages: number;
  /** Internal messages handed to the consumer, redeliveries included (each is a queue read). */
  internalDeliveries: number;
  queueOperations: number;
  httpSubrequests: number;
  webhookSubrequests: number;
  doSubrequests: number;
  consumerSubrequests: number;
  sqlRowsWritten: number;
  sqlRowsRead: number;
  doActiveMs: number;
  localCpuMs: number;
  meanMessageBytes: number;
}

function perEvent(c: Counters, events: number, cpuMs: number): PerEvent {
  const internal = (k: string) => k.endsWith('EVENTS_QUEUE');
  const messages = sum(c.queueMessagesSent, internal);
  const chunks = sum(c.queueMessageChunks, internal);
  const received = sum(c.queueMessagesReceived, (k) => k === 'workos-router-events');
  const doRequests = sum(c.doIncoming);
  // Queues bill a write and a delete per message and a read per delivery attempt, per 64 KB chunk.
  const chunksPerMessage = messages > 0 ? chunks / messages : 1;
  return {
    workerRequests: sum(c.fetchInvocations, (k) => k.startsWith('POST /webhooks')) / events,
    consumerInvocations: sum(c.queueInvocations) / events,
    doRequests: doRequests / events,
    doRequestsFromWebhook: sum(c.doCalls, (k) => k.startsWith('webhook')) / events,
    internalQueueMessages: messages / events,
    internalDeliveries: received / events,
    queueOperations: (2 * chunks + received * chunksPerMessage) / events,
    httpSubrequests: sum(c.httpSubrequests) / events,
    webhookSubrequests: sum(c.doCalls, (k) => k.startsWith('webhook')) / events,
    doSubrequests: sum(c.queueSends, (k) => k.startsWith('ledger DO')) / events,
    consumerSubrequests: (sum(c.httpSubrequests) + sum(c.queueSends, (k) => k.startsWith('consumer')) + sum(c.doCalls, (k) => k.startsWith('consumer'))) / events,
    sqlRowsWritten: c.sqlRowsWritten / events,
    sqlRowsRead: c.sqlRowsRead / events,
    doActiveMs: c.doActiveMs / events,
    localCpuMs: cpuMs / events,
    meanMessageBytes: messages > 0 ? sum(c.queueMessageBytes, internal) / messages : 0,
  };
}

interface Costs {
  workersRequests: number;
  consumerInvocations: number;
  workersCpu: number;
  doRequests: number;
  doDuration: number;
  sqlite: number;
  queues: number;
  total: number;
}

/** USD per million events. */
function costs(p: PerEvent): Costs {
  const c = {
    workersRequests: p.workerRequests * PRICES.workersRequestPerM,
    consumerInvocations: p.consumerInvocations * PRICES.workersRequestPerM,
    workersCpu: p.localCpuMs * PRICES.workersCpuMsPerM,
    doRequests: p.doRequests * PRICES.doRequestPerM,
    doDuration: (p.doActiveMs / 1000) * PRICES.doMemoryGb * PRICES.doGbSecondPerM,
    sqlite: p.sqlRowsWritten * PRICES.sqliteRowsWrittenPerM + p.sqlRowsRead * PRICES.sqliteRowsReadPerM,
    queues: p.queueOperations * PRICES.queueOperationPerM,
    total: 0,
  };
  c.total = c.workersRequests + c.consumerInvocations + c.workersCpu + c.doRequests + c.doDuration + c.sqlite + c.queues;
  return c;
}

interface RunFigures {
  destinations: number;
  /** consumer_subrequest_budget when set in ROUTER (else the default). */
  budget: number | null;
  /** The lean settings: trace_retention_days = 0 and log_level = "warn". */
  lean: boolean;
  events: number;
  accepted: number;
  duplicates: number;
  isolates: number;
  sinkRequests: number;
  logWebhookLines: number;
  /** Structured log lines the router printed per accepted event (Workers Logs bills per line past the included volume). */
  logLinesPerEvent: number;
  /** Per accepted event, the end of its life: sweep deletes (ledger), trace rows removed with their bucket. */
  expiry: { rowsWritten: number; traceRowsExpired: number; doRequests: number };
  logDeliveredLines: number;
  counters: Counters;
  duplicateCounters: Counters;
  cpuMs: Record<string, number>;
  perEvent: PerEvent;
  perDuplicate: PerEvent;
  costs: Costs;
  /** Reconciliation reading these events back from the Events API (the first run only). */
  reconcile: ReconcileFigures | null;
}

/** What reading the accepted events back from the Events API costs (every event already in the ledger: duplicates). */
interface ReconcileFigures {
  runs: number;
  /** Events read over all runs (each run reads every accepted event). */
  reads: number;
  pages: number;
  recovered: number;
  /** Per run: requests and rows the run pays whatever it reads. */
  perRun: { doRequests: number; kvRowsWritten: number };
  /** Per event read. */
  perRead: {
    doRequests: number;
    ledgerRequests: number;
    sqlRowsRead: number;
    sqlRowsWritten: number;
    eventsApiRequests: number;
    queueMessages: number;
    doActiveMs: number;
    localCpuMs: number;
  };
}

/** Events API reads per event at the defaults: once new, then in each run whose 120 s overlap still covers it (one run a minute). */
const READS_PER_EVENT_AT_DEFAULTS = 3;

/** USD per million events: reading each `reads` times. */
function reconcileCost(rc: ReconcileFigures, reads = READS_PER_EVENT_AT_DEFAULTS): number {
  const p = rc.perRead;
  return (
    reads *
    (p.doRequests * PRICES.doRequestPerM +
      (p.doActiveMs / 1000) * PRICES.doMemoryGb * PRICES.doGbSecondPerM +
      p.sqlRowsWritten * PRICES.sqliteRowsWrittenPerM +
      p.sqlRowsRead * PRICES.sqliteRowsReadPerM +
      p.localCpuMs * PRICES.workersCpuMsPerM)
  );
}

/** Rows the delivery trace wrote per accepted event (its statements name a trace table). */
function traceRowsWritten(r: RunFigures): number {
  return Object.entries(r.counters.sqlByStatement ?? {})
    .filter(([sql]) => /\btrace(_\w+)?\b/.test(sql))
    .reduce((acc, [, v]) => acc + v.rowsWritten, 0) / Math.max(1, r.accepted);
}

/** USD per million accepted events over their whole life: accept, deliver, expire and sweep, log lines. */
function wholeLife(r: RunFigures): number {
  return r.costs.total + (r.expiry.rowsWritten + r.expiry.traceRowsExpired) * PRICES.sqliteRowsWrittenPerM + logEventsPerEvent(r) * PRICES.workersLogsPerM;
}

/**
 * Workers Logs events per accepted event: the structured lines, plus one
 * invocation log per Worker invocation (the webhook request, each consumer
 * batch), as the Workers Logs page counts them. Invocations of the Durable
 * Objects are left out: the page does not say whether they write one.
 */
function logEventsPerEvent(r: RunFigures): number {
  return r.logLinesPerEvent + r.perEvent.workerRequests + r.perEvent.consumerInvocations;
}

/** SQLite rows written per accepted event over its whole life (accept, deliver, expire), the delivery trace aside. */
function rowsWholeLifeWithoutTrace(r: RunFigures): number {
  return r.perEvent.sqlRowsWritten - traceRowsWritten(r) + r.expiry.rowsWritten;
}

async function runOnce(
  destinations: number,
  budget: number | null,
  lean: boolean,
  events: number,
  duplicates: number,
  sinkUrl: string,
  sinkCount: (prefix: string) => number,
  api: { events: object[] } | null = null,
): Promise<RunFigures> {
  const cfg = copyWranglerConfig({ main: 'bench/workerd/instrumented/index.js' });
  const prefix = `/cost${destinations}${budget === null ? '' : `b${budget}`}${lean ? 'l' : ''}/d`;
  const settings: Record<string, number | string> = {
    ...(budget === null ? {} : { consumer_subrequest_budget: budget }),
    ...(lean ? { trace_retention_days: 0, log_level: 'warn' } : {}),
    // Reconciliation reads every event the run sends, on each run (an overlap longer than the run).
    ...(api !== null ? { reconcile_overlap_seconds: 3600, reconcile_since: new Date(Date.now() - 60_000).toISOString() } : {}),
  };
  step(`${destinations} destination(s)${budget === null ? '' : `, consumer_subrequest_budget ${budget}`}${lean ? ', trace off, log_level warn' : ''}: starting the instrumented router`);
  let r: RouterProcess;
  try {
    r = await startRouter({
      timeoutMs: 60_000,
      config: cfg.path,
      ...(api !== null ? { args: ['--test-scheduled'] } : {}),
      vars: {
        WORKOS_WEBHOOK_SECRET: BENCH_SECRET,
        ROUTER: routerToSink(sinkUrl, destinations, prefix, settings),
        ...(api !== null ? { WORKOS_API_KEY: 'sk_bench_reconcile', WORKOS_API_BASE_URL: sinkUrl } : {}),
      },
    });
  } catch (err) {
    cfg.cleanup();
    throw err;
  }
  try {
    const url = `${r.url}/webhooks/workos`;
    const pgrp = findWranglerGroup(r.port);
    const outputStart = r.output().length;
    const before = await readCounters(r.url);
    const cpuBefore = pgrp === null ? {} : groupCpu(pgrp);
    const source = new EventSource();
    const bodies: string[] = [];
    let accepted = 0;
    const progress = new Progress(`${destinations} dest: ${events} events`, events);
    // Open loop at 100 events/s.
    const inflight: Promise<void>[] = [];
    const start = Date.now();
    for (let i = 0; i < events; i++) {
      const wait = start + i * 10 - Date.now();
      if (wait > 0) await sleep(wait);
      const e = source.next();
      bodies.push(e.body);
      inflight.push(
        fetch(url, { method: 'POST', headers: signedHeaders(e.body), body: e.body })
          .then((res) => res.text())
          .then((t) => {
            if (t.includes('"accepted"')) accepted++;
          }),
      );
      if (i % 20 === 0) progress.update(i);
    }
    await Promise.all(inflight);
    const deadline = Date.now() + 30_000;
    while (sinkCount(prefix) < accepted * destinations && Date.now() < deadline) await sleep(100);
    await sleep(1500); // a wrong extra delivery or retry would show up here
    progress.done(`${sinkCount(prefix)} deliveries`);
    const cpuMs = pgrp === null ? {} : cpuDelta(cpuBefore, groupCpu(pgrp));
    const afterUnique = await readCounters(r.url);
    const output = r.output().slice(outputStart);
    // Duplicates: resend already-accepted events (fresh signatures).
    let dupAnswers = 0;
    for (let i = 0; i < duplicates; i++) {
      const body = bodies[i % bodies.length] as string;
      const t = await (await fetch(url, { method: 'POST', headers: signedHeaders(body), body })).text();
      if (t.includes('"duplicate"')) dupAnswers++;
    }
    await sleep(500);
    const afterDup = await readCounters(r.url);
    const reconcile = api === null ? null : await measureReconcile(r, pgrp, bodies, api, afterDup.total, accepted);
    const beforeExpiry = reconcile === null ? afterDup : await readCounters(r.url);
    // The rest of each event's life: its rows expire and the sweeps delete them.
    const day = new Date().toISOString().slice(0, 10);
    await fetch(`${r.url}/__bench/expire?shards=16&bucket=trace:${day}:0`);
    const afterExpiry = await readCounters(r.url);
    const expiryCounters = diff(afterExpiry.total, beforeExpiry.total);
    const logLines = (output.match(/\{"level":"/g) ?? []).length;
    const counters = diff(afterUnique.total, before.total);
    const duplicateCounters = diff(afterDup.total, afterUnique.total);
    const cpuTotal = (cpuMs.workerd ?? 0);
    const pe = perEvent(counters, accepted, cpuTotal);
    return {
      destinations,
      budget,
      lean,
      events,
      accepted,
      duplicates: dupAnswers,
      isolates: afterDup.isolates,
      sinkRequests: sinkCount(prefix),
      logWebhookLines: (output.match(/"msg":"webhook"/g) ?? []).length,
      logLinesPerEvent: logLines / Math.max(1, accepted),
      expiry: {
        rowsWritten: expiryCounters.sqlRowsWritten / Math.max(1, accepted),
        traceRowsExpired: expiryCounters.traceRowsExpired / Math.max(1, accepted),
        doRequests: sum(expiryCounters.doIncoming) / Math.max(1, accepted),
      },
      logDeliveredLines: (output.match(/"msg":"delivered"/g) ?? []).length,
      counters,
      duplicateCounters,
      cpuMs,
      perEvent: pe,
      perDuplicate: perEvent(duplicateCounters, Math.max(1, dupAnswers), 0),
      costs: costs(pe),
      reconcile,
    };
  } finally {
    await r.stop();
    cfg.cleanup();
  }
}

/**
 * Reconciliation over the events just accepted: the loopback Events API
 * serves them all (as WorkOS would, ascending), and two cron runs read every
 * one (the overlap covers the whole run), each a duplicate in the ledger.
 * Counted from the runs' start to their `reconcile_run` log lines.
 */
async function measureReconcile(
  r: RouterProcess,
  pgrp: number | null,
  bodies: string[],
  api: { events: object[] },
  before: Counters,
  accepted: number,
): Promise<ReconcileFigures> {
  api.events = bodies
    .map((b) => ({ object: 'event', ...(JSON.parse(b) as { id: string; created_at: string }) }))
    .sort((a, b) => Date.parse(a.created_at) - Date.parse(b.created_at) || (a.id < b.id ? -1 : 1));
  const runs = 2;
  const cpuBefore = pgrp === null ? {} : groupCpu(pgrp);
  const reports: { pages: number; read: number; reread: number; recovered: number }[] = [];
  for (let i = 0; i < runs; i++) {
    const from = r.output().length;
    await fetch(`${r.url}/__scheduled`);
    const deadline = Date.now() + 60_000;
    let line: string | undefined;
    while (line === undefined && Date.now() < deadline) {
      line = r.output().slice(from).split('\n').find((l) => l.includes('"msg":"reconcile_run"'));
      if (line === undefined) await sleep(100);
    }
    if (line === undefined) throw new Error('reconciliation run did not finish within 60 s');
    reports.push(JSON.parse(line.slice(line.indexOf('{'))) as (typeof reports)[number]);
  }
  const cpu = pgrp === null ? {} : cpuDelta(cpuBefore, groupCpu(pgrp));
  const c = diff((await readCounters(r.url)).total, before);
  const reads = reports.reduce((a, x) => a + x.read + x.reread, 0);
  if (reads !== runs * accepted) throw new Error(`reconciliation read ${reads} events, expected ${runs * accepted}`);
  const reconcilerRows = c.kvWrites?.reconciler ?? 0;
  const ledgerRequests = sum(c.doIncoming, (k) => k.startsWith('DedupLedger.admit'));
  const perRunRequests = sum(c.doIncoming, (k) => k.startsWith('Reconciler.')) + sum(c.doCalls, (k) => k.startsWith('reconciler DO: ALERTS'));
  return {
    runs,
    reads,
    pages: reports.reduce((a, x) => a + x.pages, 0),
    recovered: reports.reduce((a, x) => a + x.recovered, 0),
    perRun: { doRequests: perRunRequests / runs, kvRowsWritten: reconcilerRows / runs },
    perRead: {
      doRequests: ledgerRequests / reads,
      ledgerRequests: ledgerRequests / reads,
      sqlRowsRead: c.sqlRowsRead / reads,
      sqlRowsWritten: (c.sqlRowsWritten - reconcilerRows) / reads,
      eventsApiRequests: sum(c.httpSubrequests, (k) => k.endsWith('/events')) / reads,
      queueMessages: sum(c.queueMessagesSent) / reads,
      doActiveMs: c.doActiveMs / reads,
      localCpuMs: (cpu.workerd ?? 0) / reads,
    },
  };
}

export async function runCost(ctx: BenchContext): Promise<BenchOutput> {
  // 1,000 events: the ledger's once-a-day bookkeeping per shard (a day table created and a row saying when to drop it,
  // for each of 16 shards) is then about 0.05 rows per event; still more than real traffic pays (0.0005 at 100,000
  // events a day), so an upper bound.
  const events = ctx.quick ? 100 : 1000;
  const duplicates = ctx.quick ? 20 : 50;
  const sink = await startSink();
  const sinkCount = (prefix: string) => sink.requests.filter((q) => q.path.startsWith(prefix)).length;
  // The WorkOS Events API, played by the sink: `range_start` / `after` / `limit` over the events the run accepted.
  const api = { events: [] as object[] };
  sink.respond('/events', (req) => {
    const q = new URL(req.path, 'http://x').searchParams;
    const list = api.events as { id: string; created_at: string }[];
    const after = q.get('after');
    const rangeStart = q.get('range_start');
    let from = 0;
    if (after !== null) from = list.findIndex((e) => e.id === after) + 1;
    else if (rangeStart !== null) {
      from = list.findIndex((e) => Date.parse(e.created_at) >= Date.parse(rangeStart));
      if (from < 0) from = list.length;
    }
    const limit = Number(q.get('limit'));
    const data = list.slice(from, from + limit);
    const more = from + limit < list.length;
    return {
      status: 200,
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ object: 'list', data, list_metadata: { before: null, after: more ? (data[data.length - 1]?.id ?? null) : null } }),
    };
  });
  const runs: RunFigures[] = [];
  try {
    for (const [d, budget, lean] of [
      [1, null, false],
      [5, null, false],
      [5, 100, false],
      [1, null, true],
    ] as const) {
      runs.push(await runOnce(d, budget, lean, events, duplicates, sink.url, sinkCount, runs.length === 0 ? api : null));
    }
  } finally {
    await sink.close();
  }

  const colName = (r: RunFigures) =>
    `${r.destinations} destination${r.destinations > 1 ? 's' : ''}${r.budget === null ? '' : `, budget ${r.budget}`}${r.lean ? ', lean' : ''}`;
  const f = (n: number, digits = 2) => (Number.isInteger(n) ? fmt(n) : n.toFixed(digits));
  const opsTable: Table = {
    title: `Operations per accepted event (${events} unique events per run, at 100 events/s)`,
    columns: ['per accepted event', ...runs.map(colName), 'billed as'],
    rows: [
      ['Worker requests (POST /webhooks/workos)', ...runs.map((r) => f(r.perEvent.workerRequests)), 'Workers request'],
      ['queue consumer invocations (batches)', ...runs.map((r) => f(r.perEvent.consumerInvocations, 3)), 'Workers CPU (see findings)'],
      ['Durable Object requests (RPC calls received)', ...runs.map((r) => f(r.perEvent.doRequests)), 'DO request'],
      ['internal queue messages (EVENTS_QUEUE)', ...runs.map((r) => f(r.perEvent.internalQueueMessages)), '—'],
      ['internal messages handed to the consumer (redeliveries included)', ...runs.map((r) => f(r.perEvent.internalDeliveries)), '—'],
      ['queue operations (write + delete per message, read per delivery; per 64 KB)', ...runs.map((r) => f(r.perEvent.queueOperations)), 'Queues operation'],
      ['mean internal message size (bytes)', ...runs.map((r) => fmt(r.perEvent.meanMessageBytes)), '—'],
      ['subrequests from the webhook invocation (DO RPC)', ...runs.map((r) => f(r.perEvent.webhookSubrequests)), 'not billed'],
      ['subrequests from the Durable Object (queue send)', ...runs.map((r) => f(r.perEvent.doSubrequests)), 'not billed'],
      ['subrequests from the consumer (HTTP deliveries + queue/DO calls)', ...runs.map((r) => f(r.perEvent.consumerSubrequests)), 'not billed'],
      ['SQLite rows written (accept and deliver)', ...runs.map((r) => f(r.perEvent.sqlRowsWritten)), 'DO storage'],
      ['  + at expiry: sweep deletes (ledger, bodies, ordering)', ...runs.map((r) => f(r.expiry.rowsWritten)), 'DO storage'],
      ['  + at expiry: trace rows removed with their day bucket (deleteAll; counted as rows)', ...runs.map((r) => f(r.expiry.traceRowsExpired)), 'DO storage (assumed per row)'],
      ['SQLite rows written, whole life', ...runs.map((r) => f(r.perEvent.sqlRowsWritten + r.expiry.rowsWritten + r.expiry.traceRowsExpired)), 'DO storage'],
      ['  of which the delivery trace (written + removed with its bucket)', ...runs.map((r) => f(traceRowsWritten(r) + r.expiry.traceRowsExpired)), 'DO storage'],
      ['SQLite rows written, whole life, trace aside (trace_retention_days = 0)', ...runs.map((r) => f(rowsWholeLifeWithoutTrace(r))), 'DO storage'],
      ['structured log lines', ...runs.map((r) => f(r.logLinesPerEvent)), 'Workers Logs (per line past the included volume)'],
      ['  + invocation logs (webhook request, consumer batches)', ...runs.map((r) => f(r.perEvent.workerRequests + r.perEvent.consumerInvocations)), 'Workers Logs'],
      ['SQLite rows read', ...runs.map((r) => f(r.perEvent.sqlRowsRead)), 'DO storage'],
      ['Durable Object active wall time (ms)', ...runs.map((r) => f(r.perEvent.doActiveMs)), 'DO duration (GB-s)'],
      ['local workerd CPU (ms, whole pipeline)', ...runs.map((r) => f(r.perEvent.localCpuMs)), 'proxy for Workers CPU'],
    ],
    note: 'Counted by the instrumented entry over the unique-event phase only (counter snapshots before and after). Subrequests are limited per invocation but not billed. "budget 100" = the same 5 destinations with ROUTER consumer_subrequest_budget = 100 instead of the default 45. "lean" = 1 destination with trace_retention_days = 0 (no delivery trace, so no console history) and log_level = "warn".',
  };
  const first = runs[0] as RunFigures;
  const sqlTable: Table = {
    title: 'SQLite work per accepted event, by statement (1 destination)',
    columns: ['statement', 'calls/event', 'rows read/event', 'rows written/event'],
    rows: Object.entries(first.counters.sqlByStatement ?? {})
      .map(([sql, v]) => [sql, (v.calls / first.accepted).toFixed(2), (v.rowsRead / first.accepted).toFixed(2), (v.rowsWritten / first.accepted).toFixed(2)] as (string | number)[])
      .filter((row) => row[1] !== '0.00')
      .sort((a, b) => Number(b[3]) - Number(a[3])),
    note: 'rowsRead / rowsWritten of each statement\'s cursor, as the runtime reports them (index entries written count as rows written, which is how SQLite-backed Durable Objects are billed).',
  };
  const dupTable: Table = {
    title: `Per duplicate delivery (an accepted event resent; ${duplicates} per run)`,
    columns: ['per duplicate', ...runs.map(colName)],
    rows: [
      ['Worker requests', ...runs.map((r) => f(r.perDuplicate.workerRequests))],
      ['Durable Object requests', ...runs.map((r) => f(r.perDuplicate.doRequests))],
      ['internal queue messages', ...runs.map((r) => f(r.perDuplicate.internalQueueMessages))],
      ['HTTP deliveries', ...runs.map((r) => f(r.perDuplicate.httpSubrequests))],
      ['SQLite rows read / written', ...runs.map((r) => `${f(r.perDuplicate.sqlRowsRead)} / ${f(r.perDuplicate.sqlRowsWritten)}`)],
    ],
  };
  const checkTable: Table = {
    title: 'Cross-checks (independent of the counting wrappers)',
    columns: ['', ...runs.map(colName)],
    rows: [
      ['events sent / answered "accepted"', ...runs.map((r) => `${r.events} / ${r.accepted}`)],
      ['{"msg":"webhook"} log lines (unique phase)', ...runs.map((r) => fmt(r.logWebhookLines))],
      ['{"msg":"delivered"} log lines', ...runs.map((r) => fmt(r.logDeliveredLines))],
      ['requests received by the sink', ...runs.map((r) => fmt(r.sinkRequests))],
      ['expected deliveries (accepted × destinations)', ...runs.map((r) => fmt(r.accepted * r.destinations))],
      ['duplicates answered "duplicate"', ...runs.map((r) => `${r.duplicates} / ${duplicates}`)],
      ['isolates the counters came from', ...runs.map((r) => fmt(r.isolates))],
    ],
  };
  const money = (n: number) => `$${n < 0.01 ? n.toFixed(4) : n.toFixed(3)}`;
  const costTable: Table = {
    title: 'Cost per million accepted events (USD, at published prices, before included allowances)',
    columns: ['item', ...runs.map(colName)],
    rows: [
      ['Workers requests (webhooks)', ...runs.map((r) => money(r.costs.workersRequests))],
      ['consumer invocations, if billed as requests (upper bound)', ...runs.map((r) => money(r.costs.consumerInvocations))],
      ['Workers CPU at the local workerd CPU/event (upper bound)', ...runs.map((r) => money(r.costs.workersCpu))],
      ['Durable Object requests', ...runs.map((r) => money(r.costs.doRequests))],
      ['Durable Object duration (active wall time × 128 MB)', ...runs.map((r) => money(r.costs.doDuration))],
      ['SQLite rows written + read (accept and deliver)', ...runs.map((r) => money(r.costs.sqlite))],
      ['SQLite rows written at expiry (sweeps, trace buckets)', ...runs.map((r) => money((r.expiry.rowsWritten + r.expiry.traceRowsExpired) * PRICES.sqliteRowsWrittenPerM))],
      ['Workers Logs (structured lines and invocation logs)', ...runs.map((r) => money(logEventsPerEvent(r) * PRICES.workersLogsPerM))],
      ['Queues operations', ...runs.map((r) => money(r.costs.queues))],
      ['total', ...runs.map((r) => money(r.costs.total))],
      ['total, whole life (expiry and log lines included)', ...runs.map((r) => money(wholeLife(r)))],
      ['for comparison: Hookdeck at its list price, one event per destination (as low as)', ...runs.map((r) => `${money(r.destinations * GATEWAYS.hookdeckPerM)} (${money(r.destinations * GATEWAYS.hookdeckLowestPerM)})`)],
      ['for comparison: Svix, one message per webhook', ...runs.map(() => money(GATEWAYS.svixPerM))],
    ],
    note: `Prices: ${PRICE_SOURCES.join(' · ')}. Quoted from stored copies of those pages (their "last updated" dates above; looked up on ${new Date().toISOString().slice(0, 10)} without live access, so a page may have changed since); the $5/month Workers Paid minimum and the monthly included usage are not subtracted. Hosted gateways (list price per event or message, before plan fees): ${GATEWAY_SOURCES}.`,
  };
  const rc = (runs[0] as RunFigures).reconcile;
  const reconcileTable: Table | null =
    rc === null
      ? null
      : {
          title: `Reconciliation (WORKOS_API_KEY set): per event read back from the Events API (${rc.runs} cron runs reading all ${fmt(rc.reads / rc.runs)} accepted events, ${rc.pages} pages; 1 destination)`,
          columns: ['per event read', 'measured', 'billed as'],
          rows: [
            ['Durable Object requests (ledger: one per shard a page meets)', f(rc.perRead.ledgerRequests, 3), 'DO request'],
            ['Events API requests (one per 100 events)', f(rc.perRead.eventsApiRequests, 3), 'not billed (subrequest)'],
            ['SQLite rows read', f(rc.perRead.sqlRowsRead), 'DO storage'],
            ['SQLite rows written', f(rc.perRead.sqlRowsWritten, 3), 'DO storage'],
            ['queue messages (events recovered)', f(rc.perRead.queueMessages, 3), 'Queues operation'],
            ['Durable Object active wall time (ms)', f(rc.perRead.doActiveMs, 3), 'DO duration (GB-s)'],
            ['local workerd CPU (ms)', f(rc.perRead.localCpuMs, 3), 'proxy for Workers CPU'],
            ['per run, whatever it reads: Durable Object requests (the reconciler, alerts)', f(rc.perRun.doRequests), 'DO request'],
            ['per run: the reconciler\'s own rows written (position, totals, last run)', f(rc.perRun.kvRowsWritten), 'DO storage'],
            [`cost per million events, each read ${READS_PER_EVENT_AT_DEFAULTS} times`, money(reconcileCost(rc)), 'USD'],
          ],
          note: `Every event read was already accepted by its webhook (a duplicate in the ledger: ${rc.recovered} recovered). At the defaults (a cron run a minute, reconcile_overlap_seconds = 120) each event is read about ${READS_PER_EVENT_AT_DEFAULTS} times: once new, then by the runs whose overlap still covers it. Full pages of 100 events: at low volume a page meets fewer shards but holds fewer events, so a read costs up to one ledger request.`,
        };
  const tables = [opsTable, sqlTable, dupTable, checkTable, costTable, ...(reconcileTable !== null ? [reconcileTable] : [])];
  for (const t of tables) printTable(t);

  const targets: Target[] = [];
  for (const r of runs.filter((x) => x.budget === null && !x.lean)) {
    targets.push({
      // Issue 15: ≤ 1 + (Slack destinations ÷ batch size). These destinations are http, so ≤ 1. What the consumer adds per
      // batch (the registry's read and report, the trace write) is in the findings.
      what: `Durable Object requests per accepted event, ${r.destinations} http destination(s)`,
      target: '≤ 1 + Slack destinations ÷ batch = 1',
      measured: f(r.perEvent.doRequests),
      met: r.perEvent.doRequests <= 1.0001,
    });
    targets.push({
      // Issue 15: one write per accepted event — ledger row, ordering record where the event names an object, and every
      // sweep, counted to the end of the event's life. The delivery trace (console) is reported apart: it is optional.
      what: `SQLite rows written per accepted event, whole life, trace aside, ${r.destinations} destination(s)`,
      target: '≤ 2.0',
      measured: f(rowsWholeLifeWithoutTrace(r)),
      met: rowsWholeLifeWithoutTrace(r) <= 2.0001,
    });
    targets.push({
      what: `internal queue messages per accepted event, ${r.destinations} destination(s)`,
      target: '≤ 1',
      measured: f(r.perEvent.internalQueueMessages),
      met: r.perEvent.internalQueueMessages <= 1.0001,
    });
  }
  const [one, five, fiveBudget, lean] = runs as [RunFigures, RunFigures, RunFigures, RunFigures];
  const stmt = Object.entries(one.counters.sqlByStatement ?? {}).map(([sql, v]) => ({ sql, w: v.rowsWritten / one.accepted, calls: v.calls / one.accepted }));
  const written = (prefix: string) => stmt.filter((x) => x.sql.startsWith(prefix)).reduce((acc, x) => acc + x.w, 0);
  const perCall = (prefix: string) => {
    const m = stmt.filter((x) => x.sql.startsWith(prefix));
    const calls = m.reduce((acc, x) => acc + x.calls, 0);
    return calls > 0 ? m.reduce((acc, x) => acc + x.w, 0) / calls : 0;
  };
  const findings: string[] = [
    `Per accepted event, 1 destination / 5 destinations: ${f(one.perEvent.workerRequests)} / ${f(five.perEvent.workerRequests)} Worker request; ${f(one.perEvent.doRequests)} / ${f(five.perEvent.doRequests)} Durable Object requests (the ledger's admit RPC — duplicate check, out-of-order check, enqueue and its one row inside the object — plus, once per consumer batch, the destination registry's read of the paused set and open circuits, its report of outcomes, and the delivery trace's write); ${f(one.perEvent.internalQueueMessages)} / ${f(five.perEvent.internalQueueMessages)} internal queue message (${f(one.perEvent.queueOperations)} / ${f(five.perEvent.queueOperations)} queue operations, redeliveries included). HTTP deliveries are subrequests of the consumer (${f(one.perEvent.httpSubrequests)} / ${f(five.perEvent.httpSubrequests)} per event), not billed. The counts agree with the structured logs and the sink's request count (cross-checks).`,
    (() => {
      const redeliveries = five.perEvent.internalDeliveries - five.perEvent.internalQueueMessages;
      const fixed = fiveBudget.perEvent.internalDeliveries - fiveBudget.perEvent.internalQueueMessages;
      const cause =
        'the consumer\'s budget of HTTP deliveries per invocation (ROUTER consumer_subrequest_budget, default 45, within Workers Free\'s 50 requests to the Internet; its calls to Cloudflare services are budgeted apart) is smaller than max_batch_size 10 × 5 http destinations = 50';
      if (five.perEvent.internalQueueMessages > 1.0001) {
        return `Target missed with 5 destinations: ${f(five.perEvent.internalQueueMessages)} internal messages per event. Cause: ${cause}, so each full batch delivers what fits and re-enqueues the rest as follow-up messages (+${pct(five.perEvent.internalQueueMessages - 1)} queue writes; those deliveries also wait for another batch). With consumer_subrequest_budget = 100 the same run writes ${f(fiveBudget.perEvent.internalQueueMessages)} message per event. Either raise the budget on Workers Paid (which allows far more subrequests per invocation) or keep max_batch_size ≤ floor(budget ÷ http destinations): 9 for 5 at the default budget.`;
      }
      return `With 5 destinations the router writes ${f(five.perEvent.internalQueueMessages)} internal message per event (target met), but ${cause}: a message whose fan-out no longer fits the batch's remaining budget is handed back for redelivery (${f(redeliveries)} redeliveries per event here, ${f(fiveBudget.perEvent.internalDeliveries - fiveBudget.perEvent.internalQueueMessages)} with consumer_subrequest_budget = 100). Each redelivery costs a queue read operation (${f(five.perEvent.queueOperations)} vs ${f(fiveBudget.perEvent.queueOperations)} operations per event), another consumer invocation (${f(five.perEvent.consumerInvocations, 3)} vs ${f(fiveBudget.perEvent.consumerInvocations, 3)} per event) and delays that event's deliveries by a batch; it also uses up one of the message's max_retries (100) attempts, so a long backlog could push an event to the dead-letter queue without any delivery having failed. ${fixed < redeliveries ? 'Raising the budget removes them' : 'The budget setting did not change this here'}; so does keeping max_batch_size ≤ floor(budget ÷ http destinations), 9 for 5 at the default budget.`;
    })(),
    `The largest line is SQLite rows written: ${f(one.perEvent.sqlRowsWritten)} per event = ${money(one.costs.sqlite)} per million events at $1.00 per million rows, about ${Math.round((100 * one.costs.sqlite) / one.costs.total)}% of the total and ${fmt(one.costs.sqlite / Math.max(1e-9, one.costs.doRequests), 0)}× the Durable Object requests. By statement: the ledger row ${f(written('INSERT OR REPLACE INTO ledger_d'))} per event (written once, after the enqueue: there is no claim before it and no commit after it; test/delivery/ledger-crash-integration.test.ts shows that a crash between enqueue and row is at-least-once with or without a claim), the out-of-order record ${f(perCall('INSERT OR REPLACE INTO objects'))} row per call for the ${Math.round(100 * stmt.filter((x) => x.sql.startsWith('INSERT OR REPLACE INTO objects')).reduce((acc, x) => acc + x.calls, 0))}% of events that name an object, and the delivery trace ${f(traceRowsWritten(one))} (its row and its event-id index entry per destination). At expiry the ledger drops a whole UTC day of rows with one DROP TABLE, which the runtime counts as 0 rows written (a DELETE of the same rows counts one per row: measured both ways in workerd; Cloudflare's pricing page says deletes are counted as rows written and says nothing of DROP TABLE, so this rests on the runtime's own counter, the one the SQL API reports). What the sweep still writes is ordering records deleted one by one and the day's bookkeeping row. The destination registry writes a healthy destination's success counts once per 10 s (HEALTH_FLUSH_MS) instead of once per consumer batch: at 100 events/s that took ${f(written('INSERT INTO destinations'))} rows per event (it was 0.1 per destination at batches of 10). Whole life, trace aside: ${f(rowsWholeLifeWithoutTrace(one))} rows per event with 1 destination, ${f(rowsWholeLifeWithoutTrace(five))} with 5 (target ≤ 2.0); the trace adds ${f(traceRowsWritten(one) + one.expiry.traceRowsExpired)} / ${f(traceRowsWritten(five) + five.expiry.traceRowsExpired)} (its bucket's deleteAll is counted as one row per trace row: not measurable locally, so assumed). Rows read (${f(one.perEvent.sqlRowsRead)} per event) cost next to nothing.`,
    (() => {
      const perBatch = (r: RunFigures) => (r.perEvent.doRequests - 1) / Math.max(1e-9, r.perEvent.consumerInvocations);
      return `Durable Object requests: ${f(one.perEvent.doRequests)} per event with 1 destination and ${f(five.perEvent.doRequests)} with 5, against the issue's ≤ 1 + Slack destinations ÷ batch size (1 here: these destinations are http; Slack destinations already get one hand-off per batch): missed by ${f(perBatch(one), 1)} / ${f(perBatch(five), 1)} requests per consumer batch — the destination registry's read of the paused set and open circuits before the batch, its report after it, and the delivery trace's write. They cost ${money((one.perEvent.doRequests - 1) * PRICES.doRequestPerM)} per million events with 1 destination. Kept on purpose: the read is what makes a pause or an opened circuit hold the very next batch everywhere (a cached copy would keep delivering to a paused destination for as long as it lived), the report is what opens a circuit, and the write is the console's record of each delivery; with trace_retention_days = 0 the write goes. Larger batches divide them: at max_batch_size 10 they are 0.2–0.3 per event.`;
    })(),
    (() => {
      const ratio = (r: RunFigures, gw: number) => `${fmt(gw / Math.max(1e-9, wholeLife(r)), 1)}×`;
      return `Against hosted gateways at the same volume (list prices per event or message, plan fees apart; see the note under the cost table for sources and their dates): Hookdeck bills one event per destination a webhook reaches, $10 per million at list ($3.30 at its lowest rate): ${money(GATEWAYS.hookdeckPerM)} and ${money(5 * GATEWAYS.hookdeckPerM)} per million webhooks for 1 and 5 destinations, ${ratio(one, GATEWAYS.hookdeckPerM)} and ${ratio(five, 5 * GATEWAYS.hookdeckPerM)} ours with the trace on (${money(wholeLife(one))}, ${money(wholeLife(five))}), plus $39/month for its Team plan; Svix bills $100 per million messages (${ratio(one, GATEWAYS.svixPerM)} ours with 1 destination) plus $490/month for Professional, and is built for sending webhooks rather than receiving them. Hookdeck dedups within a window of at most an hour, neither reconciles from the WorkOS Events API, and both see every payload.`;
    })(),
    `Log events: ${f(logEventsPerEvent(one))} per accepted event with 1 destination and ${f(logEventsPerEvent(five))} with 5 (the structured lines — the webhook's and one per delivery — plus an invocation log per webhook request and per consumer batch), ${money(logEventsPerEvent(one) * PRICES.workersLogsPerM)} and ${money(logEventsPerEvent(five) * PRICES.workersLogsPerM)} per million past Workers Logs' included 20 million a month. ROUTER log_level = "warn" drops the structured lines of every event that is accepted and delivered (${money(one.logLinesPerEvent * PRICES.workersLogsPerM)} / ${money(five.logLinesPerEvent * PRICES.workersLogsPerM)} per million; warnings and errors are still written), and wrangler.toml's [observability.logs] invocation_logs = false the invocation logs.`,
    `Lean configuration, measured (1 destination, trace_retention_days = 0, log_level = "warn"): ${f(lean.perEvent.doRequests)} Durable Object requests per event (the trace write gone: the registry's read and report per batch remain), ${f(lean.perEvent.sqlRowsWritten + lean.expiry.rowsWritten)} SQLite rows written over the whole life, ${f(lean.logLinesPerEvent)} structured log lines, ${money(wholeLife(lean))} per million events whole life against ${money(wholeLife(one))} with the defaults. What it gives up: the console's delivery history and \`GET /admin/events\`, and the per-event lines in the logs (warnings and errors stay).`,
    `Queue consumer invocations: ${f(one.perEvent.consumerInvocations, 3)} per event (mean batch ${fmt(1 / Math.max(1e-9, one.perEvent.consumerInvocations), 1)}). The Workers pricing page bills inbound requests and CPU time and is not explicit about consumer invocations, so the table prices them as requests, an upper bound; they scale with batches, not destinations.`,
    `CPU and duration are upper-bound estimates: "local workerd CPU" is the whole local workerd process's CPU time per event (${f(one.perEvent.localCpuMs)} ms with 1 destination, ${f(five.perEvent.localCpuMs)} ms with 5), which includes the runtime's HTTP handling, the local queue broker and SQLite I/O that production does not bill as Worker CPU; Durable Object duration is the objects' measured active wall time (${f(one.perEvent.doActiveMs)} ms per event locally). Even as upper bounds they are small next to the rows written.`,
    ...(rc === null
      ? []
      : [
          `Reconciliation, when on (WORKOS_API_KEY set), reads every event back from the Events API, about ${READS_PER_EVENT_AT_DEFAULTS} times at the defaults. A page's events now go to the ledger in one request per shard they fall in: ${f(rc.perRead.ledgerRequests, 3)} Durable Object requests per event read here (full pages, 16 shards), where each event read was one request before (one admit RPC per event, by construction). At ${READS_PER_EVENT_AT_DEFAULTS} reads that adds ${money(reconcileCost(rc))} per million events (${pct(reconcileCost(rc) / Math.max(1e-9, wholeLife(one)))} of the whole-life total with 1 destination); one request per event read would have added ${money(READS_PER_EVENT_AT_DEFAULTS * PRICES.doRequestPerM)} in requests alone. Each run also costs ${f(rc.perRun.doRequests)} Durable Object request(s) and ${f(rc.perRun.kvRowsWritten)} rows written in the reconciler (${fmt(rc.pages / rc.runs)} pages a run here: the position and the newest event read are written after each page, the status once a run), plus a cron invocation: about ${money(43_200 * (rc.perRun.doRequests * PRICES.doRequestPerM + rc.perRun.kvRowsWritten * PRICES.sqliteRowsWrittenPerM + PRICES.workersRequestPerM) / 1e6)} a month at one such run a minute (a quiet minute's run reads one page and writes fewer).`,
        ]),
    `A duplicate costs one Worker request and one Durable Object request (one SELECT: ${f(one.perDuplicate.sqlRowsRead)} row read, nothing written), no queue message and no delivery.`,
  ];
  return {
    tables: [opsTable, sqlTable, costTable, ...(reconcileTable !== null ? [reconcileTable] : []), dupTable, checkTable],
    targets,
    findings,
    raw: { events, duplicates, prices: PRICES, priceSources: PRICE_SOURCES, gateways: GATEWAYS, gatewaySources: GATEWAY_SOURCES, runs },
  };
}
