/**
 * `burst`: WorkOS's initial directory sync as a destination meets it — 5,000
 * `dsync.user.created` sent to the router at once (WorkOS does not rate-limit
 * deliveries), one HTTP destination with `max_per_second = 10`. Measured at
 * the receiver: the most requests in any one-second window (sliding), how
 * long the backlog takes to drain, and that each event arrives exactly once.
 * Baseline in the same run: the same burst to a destination without a limit.
 */
import { writeFileSync } from 'node:fs';
import { type RouterProcess, startRouter } from '../scripts/lib/dev-server';
import { type Sink, startSink } from '../scripts/lib/sink';
import { BENCH_SECRET, EventSource, postEvents } from './lib/events';
import { type Table, type Target, Progress, printTable, step } from './lib/report';
import type { BenchContext, BenchOutput } from './lib/types';
import { fmt, sleep } from './lib/stats';

function maxInWindow(times: number[], ms: number): number {
  const t = [...times].sort((a, b) => a - b);
  let best = 0;
  for (let i = 0, j = 0; i < t.length; i++) {
    while ((t[i] as number) - (t[j] as number) >= ms) j++;
    best = Math.max(best, i - j + 1);
  }
  return best;
}

interface Run {
  label: string;
  events: number;
  accepted: number;
  delivered: number;
  duplicates: number;
  maxPerSecond: number;
  /** The same, on the router's clock (the signature's t: when each request was sent). */
  maxPerSecondSent: number;
  drainSeconds: number;
}

async function runOnce(label: string, events: number, limit: number | null, sink: Sink, path: string): Promise<Run> {
  step(`${label}: starting the router`);
  // Signed, so each request carries the time the router sent it (WorkOS-Signature t=): the same window is also
  // measured on the sender's clock, which tells the limiter's spacing apart from jitter on the way to the receiver.
  const destination: Record<string, unknown> = { name: 'crm', type: 'http', url: `${sink.url}${path}`, max_attempts: 20, retry_delay_seconds: 1, signing_secret: 'BURST_SIGNING_SECRET' };
  if (limit !== null) destination.max_per_second = limit;
  const r: RouterProcess = await startRouter({
    timeoutMs: 60_000,
    vars: { WORKOS_WEBHOOK_SECRET: BENCH_SECRET, BURST_SIGNING_SECRET: 'burst-receiver-secret', ROUTER: { destinations: [destination], rules: [{ name: 'sync', events: ['dsync.user.created'], to: ['crm'] }] } },
  });
  try {
    const source = new EventSource(['dsync.user.created']);
    const ids = new Set<string>();
    let accepted = 0;
    const started = Date.now();
    const progress = new Progress(`${label}: sending ${fmt(events)} at once`, events);
    // "At once": 100 requests in flight at a time, as fast as the router answers.
    await postEvents(r.url, source, events, 100, (e, answer, sent) => {
      ids.add(e.id);
      if (answer.includes('"accepted"')) accepted++;
      if (sent % 100 === 0) progress.update(sent);
    });
    progress.done(`${accepted} accepted in ${((Date.now() - started) / 1000).toFixed(1)} s`);
    const arrived = () => sink.requests.filter((q) => q.path === path && q.status !== undefined && q.status < 300);
    const wait = new Progress(`${label}: waiting for the receiver`, accepted);
    const deadline = Date.now() + (limit === null ? 120_000 : (accepted / limit) * 1000 * 2 + 120_000);
    let dumped = Date.now();
    while (new Set(arrived().map((q) => q.headers['x-workos-event-id'])).size < accepted && Date.now() < deadline) {
      wait.update(new Set(arrived().map((q) => q.headers['x-workos-event-id'])).size);
      if (process.env.BURST_DEBUG !== undefined && Date.now() - dumped > 20_000) {
        writeFileSync(`/tmp/burst-${limit ?? 'open'}.log`, r.output());
        dumped = Date.now();
      }
      await sleep(1000);
    }
    await sleep(3000); // a repeat would show up here
    const reqs = arrived().filter((q) => ids.has(String(q.headers['x-workos-event-id'])));
    const unique = new Set(reqs.map((q) => q.headers['x-workos-event-id']));
    wait.done(`${unique.size} delivered`);
    const times = reqs.map((q) => q.at);
    const sentTimes = reqs.map((q) => Number(/t=(\d+)/.exec(String(q.headers['workos-signature'] ?? ''))?.[1])).filter((t) => Number.isFinite(t));
    return {
      label,
      events,
      accepted,
      delivered: unique.size,
      duplicates: reqs.length - unique.size,
      maxPerSecond: maxInWindow(times, 1000),
      maxPerSecondSent: maxInWindow(sentTimes, 1000),
      drainSeconds: times.length > 0 ? (Math.max(...times) - started) / 1000 : 0,
    };
  } finally {
    writeFileSync(`/tmp/burst-${limit ?? 'open'}.log`, r.output());
    await r.stop();
  }
}

export async function runBurst(ctx: BenchContext): Promise<BenchOutput> {
  const events = Number(process.env.BURST_EVENTS ?? '') || (ctx.quick ? 500 : 5_000);
  const sink = await startSink();
  sink.respond('/limited', () => ({ status: 204 }));
  sink.respond('/open', () => ({ status: 204 }));
  let runs: Run[];
  try {
    runs = process.env.BURST_ONLY_LIMITED !== undefined ? [await runOnce("max_per_second = 10", events, 10, sink, "/limited")] : [await runOnce("no limit (baseline)", events, null, sink, "/open"), await runOnce("max_per_second = 10", events, 10, sink, "/limited")];
  } finally {
    await sink.close();
  }
  const table: Table = {
    title: `${fmt(events)} dsync.user.created at once, one HTTP destination (measured at the receiver)`,
    columns: ['destination', 'accepted', 'delivered (unique)', 'repeats', 'most in any 1 s window (receiver)', 'most in any 1 s window (sent, router clock)', 'drained after (s)'],
    rows: runs.map((r) => [r.label, r.accepted, r.delivered, r.duplicates, r.maxPerSecond, r.maxPerSecondSent, r.drainSeconds.toFixed(1)]),
    note: 'Repeats would be at-least-once redeliveries (receivers deduplicate on Idempotency-Key); the limited run should take about events ÷ 10 × 1.05 seconds.',
  };
  printTable(table);
  const limited = runs[runs.length - 1] as Run;
  const targets: Target[] = [
    { what: 'max_per_second = 10: most requests in any one-second window at the receiver', target: '≤ 10.5', measured: String(limited.maxPerSecond), met: limited.maxPerSecond <= 10.5 },
    { what: 'max_per_second = 10: every accepted event delivered, none dropped', target: `${limited.accepted}`, measured: String(limited.delivered), met: limited.delivered === limited.accepted },
  ];
  return { tables: [table], targets, findings: [], raw: { runs } };
}
