/**
 * The soak run's figures as tables (terminal) and as bench/results/soak.json
 * (the same shape as every benchmark result, see bench/lib/report.ts).
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { machineInfo } from '../../bench/lib/machine';
import { type BenchResult, type Table, type Target, printTable, printTargets } from '../../bench/lib/report';
import type { SoakResult } from './soak-runner';

export const SOAK_TITLE = 'Soak: fault injection over a real wrangler dev (retries, bursts, forgeries, failing and hanging destinations, Slack digests)';

export function soakMethod(o: SoakResult['options']): string {
  const pc = (f: number) => `${Math.round(f * 100)} %`;
  return (
    `N unique events of mixed catalog types; ${pc(o.resendFraction)} re-sent later with a fresh signature timestamp, ${pc(o.burstFraction)} first sent as ${o.burstSize} concurrent copies, ${pc(o.forgedFraction)} extra forged requests (wrong secret, stale or future t, tampered body, missing header; ids never sent validly). ` +
    `Rules route every event to two HTTP destinations on a loopback sink (healthy; flaky: ~${pc(o.failRate)} of requests answered 500, 503, 429 with Retry-After: 1, or hung past timeout_ms and then never answered 2xx${o.outageSeconds > 0 ? `, plus a ${o.outageSeconds} s outage refusing every connection` : ''}) and authentication.*_failed also to Slack (the sink answers ${pc(o.slackFailRate)} of posts 503 and reads the event counts of every message it accepts). ` +
    'Drain is detected positively (every accepted event answered 2xx or dead-lettered at each destination, polling the sink and GET /admin/dead-letters), then a sentinel and the router\'s own logs confirm nothing is left in flight. ' +
    'lost = accepted, never answered 2xx and not dead-lettered; extra = a second 2xx answer for one (event, destination).'
  );
}

const n = (v: number) => v.toLocaleString('en-US');
const ms = (v: number) => (Number.isFinite(v) ? `${n(Math.round(v))} ms` : 'n/a');
const s = (v: number) => `${(v / 1000).toFixed(1)} s`;

export function soakTargets(r: SoakResult): Target[] {
  const lost = r.destinations.healthy.lost + r.destinations.flaky.lost;
  const extra = r.destinations.healthy.extra + r.destinations.flaky.extra;
  const slackOff = r.slack.counted + r.slack.deadLettered - r.slack.routed;
  return [
    { what: 'lost (accepted, never 2xx nor dead-lettered), HTTP destinations', target: '0', measured: n(lost), met: lost === 0 },
    { what: 'extra (second 2xx for one event and destination)', target: '0', measured: n(extra), met: extra === 0 },
    { what: 'forged requests reaching anyone', target: '0', measured: n(r.forged.reachingAnyone), met: r.forged.reachingAnyone === 0 },
    { what: 'drained (positively detected) within the timeout', target: `≤ ${n(r.timing.drainTimeoutMs / 1000)} s`, measured: r.timing.drained ? s(r.timing.drainMs) : 'no', met: r.timing.drained },
    {
      what: 'Slack: events counted in messages + dead-lettered = events routed to Slack',
      target: n(r.slack.routed),
      measured: `${n(r.slack.counted)} + ${n(r.slack.deadLettered)}${slackOff !== 0 ? ` (${slackOff > 0 ? '+' : ''}${slackOff})` : ''}`,
      met: slackOff === 0 && r.slack.typeMismatches.length === 0,
    },
  ];
}

export function soakTables(r: SoakResult): Table[] {
  const t = r.traffic;
  const h = r.destinations.healthy;
  const f = r.destinations.flaky;
  const slackLost = Math.max(0, r.slack.routed - r.slack.counted - r.slack.deadLettered);
  const slackExtra = Math.max(0, r.slack.counted + r.slack.deadLettered - r.slack.routed);
  const otherStatuses = Object.entries(t.ingestStatuses)
    .filter(([k]) => k !== '200 accepted' && k !== '200 duplicate')
    .map(([k, v]) => `${k}: ${v}`)
    .join(', ');
  const forgedOther = Object.entries(r.forged.rejectedOtherwise)
    .map(([k, v]) => `${k}: ${v}`)
    .join(', ');
  return [
    {
      title: 'Traffic',
      columns: ['', 'count', 'expected'],
      rows: [
        ['unique valid events', n(t.uniqueEvents), ''],
        ['requests sent (valid, re-sent, burst copies, forged, ingest retries)', n(t.requests), ''],
        ['answered 200 accepted', n(t.accepted), n(t.uniqueEvents)],
        ['answered 200 duplicate', n(t.duplicates), n(t.expectedDuplicates)],
        [`… of which re-sends (fresh t) / bursts of ${r.options.burstSize} concurrent copies`, `${n(t.resends)} / ${n(t.bursts)}`, ''],
        ['forged requests sent / rejected with the expected 401', `${n(r.forged.sent)} / ${n(r.forged.rejected)}`, n(r.forged.sent)],
        ['forged reaching anyone (sink, dead letters, router past verification)', n(r.forged.reachingAnyone), '0'],
        ['valid sends retried (409 / 5xx / no answer)', n(t.ingestRetries), ''],
      ],
      note: [otherStatuses !== '' ? `Other ingest answers: ${otherStatuses}.` : '', forgedOther !== '' ? `Forged requests not answered as expected: ${forgedOther}.` : '']
        .filter((x) => x !== '')
        .join(' ') || undefined,
    },
    {
      title: 'Deliveries per destination',
      columns: ['destination', 'owed', 'delivered (2xx)', 'dead-lettered', 'lost', 'extra', 'calls after success', 'calls', 'max attempts / event'],
      rows: [
        ['healthy (http)', n(h.owed), n(h.delivered), n(h.deadLettered), n(h.lost), n(h.extra), n(h.callsAfterSuccess), n(h.calls), n(h.maxAttempts)],
        ['flaky (http, ~30 % failures)', n(f.owed), n(f.delivered), n(f.deadLettered), n(f.lost), n(f.extra), n(f.callsAfterSuccess), n(f.calls), n(f.maxAttempts)],
        ['slack (events)', n(r.slack.routed), n(r.slack.counted), n(r.slack.deadLettered), n(slackLost), n(slackExtra), '', n(r.slack.messages + r.slack.failedPosts), ''],
      ],
      note: `Slack: ${n(r.slack.messages)} messages accepted (${n(r.slack.singles)} single, ${n(r.slack.digests)} digests), ${n(r.slack.failedPosts)} posts answered 503 and retried; closest two accepted messages ${r.slack.minGapMs === null ? 'n/a' : ms(r.slack.minGapMs)} apart (any two posts: ${r.slack.minGapAllPostsMs === null ? 'n/a' : ms(r.slack.minGapAllPostsMs)}).${r.slack.typeMismatches.length > 0 ? ` Per-type mismatches: ${r.slack.typeMismatches.join('; ')}.` : ''} Stale-marked deliveries (X-WorkOS-Stale): ${n(r.integrity.staleMarked)}; bodies differing from what was sent: ${n(r.integrity.bodyMismatches)}; re-signatures not verifying: ${n(r.integrity.badSignatures)}.`,
    },
    {
      title: 'Faults injected at the flaky destination, and what the router logged',
      columns: ['fault', 'count'],
      rows: [
        ['500', n(r.faults.http_500)],
        ['503', n(r.faults.http_503)],
        ['429 (Retry-After: 1)', n(r.faults.http_429)],
        [`hang (${n(r.options.timeoutMs + 1000)} ms, then 504; timeout_ms ${n(r.options.timeoutMs)})`, n(r.faults.hang)],
        [`outage (connection closed)${r.options.outageSeconds > 0 ? `, ${r.options.outageSeconds} s from +${r.options.outageAtSeconds} s` : ''}`, n(r.faults.outage)],
        ...Object.entries(r.router.failureReasons)
          .sort((a, b) => a[0].localeCompare(b[0]))
          .map(([k, v]): [string, string] => [`router: delivery_failed ${k}`, n(v)]),
      ],
      note: `${r.router.reloads > 0 ? `wrangler dev reloaded the router ${r.router.reloads} time(s) mid-run: INVALID RUN. ` : ''}Router error-level log lines: ${Object.entries(r.router.errorLogs).map(([k, v]) => `${k} ${v}`).join(', ') || 'none'}. Router log consistent with the sink after drain (attempts logged = calls seen, no retry pending): ${r.router.logsConsistent ? 'yes' : 'NO'}.`,
    },
    {
      title: 'Timing',
      columns: ['', 'value'],
      rows: [
        ['sending', s(r.timing.sendingMs)],
        ['time to drain (last request answered → every delivery accounted for)', r.timing.drained ? s(r.timing.drainMs) : `not drained in ${s(r.timing.drainTimeoutMs)}`],
        ['accept→deliver p50 (200 at ingest → first 2xx at healthy)', ms(r.latency.p50)],
        ['accept→deliver p95', ms(r.latency.p95)],
        ['accept→deliver p99 / max', `${ms(r.latency.p99)} / ${ms(r.latency.max)}`],
        ['delivery rate (first 2xx at healthy per second, from the start of sending)', `${r.timing.deliveryRate.toFixed(1)} events/s`],
        [
          'consumer invocations (wrangler dev runs one at a time): count, mean size',
          `${n(r.router.batches.count)}, ${r.router.batches.meanSize.toFixed(1)} messages`,
        ],
        [
          'consumer invocation duration p50 / p95; share ≥ timeout_ms',
          `${ms(r.router.batches.p50Ms)} / ${ms(r.router.batches.p95Ms)}; ${Math.round(r.router.batches.atLeastTimeoutShare * 100)} %`,
        ],
        ['whole run (start of wrangler dev → stop)', s(r.timing.totalMs)],
      ],
      note: `Settings: max_attempts ${r.options.maxAttempts}, retry_delay_seconds ${r.options.retryDelaySeconds}, flaky timeout_ms ${r.options.timeoutMs}, Slack digest_window_seconds 1; ${r.options.rate > 0 ? `${r.options.rate} events/s` : `as fast as ${r.options.concurrency} concurrent requests allow`}; seed ${r.options.seed}; router source ${r.source === undefined || r.source.commit === null ? 'unknown' : `${r.source.commit.slice(0, 7)}${r.source.modified.length > 0 ? ` + ${r.source.modified.length} uncommitted file(s)` : ''}`}.`,
    },
  ];
}

export function soakFindings(r: SoakResult): string[] {
  const out: string[] = [];
  out.push(r.ok ? 'Every check passed.' : `FAILED: ${r.failures.join('; ')}.`);
  if (r.router.batches.count > 0) {
    out.push(
      `Locally, wrangler dev's queue broker hands the consumer one batch at a time, and a batch settles only when its slowest delivery does: ${Math.round(r.router.batches.atLeastTimeoutShare * 100)} % of the ${n(r.router.batches.count)} invocations lasted at least timeout_ms (${n(r.options.timeoutMs)} ms; a hung request holds its whole batch), so the consumer delivered ~${r.timing.deliveryRate.toFixed(0)} events/s and, ` +
        `with events sent ${r.options.rate > 0 ? `at ${r.options.rate}/s` : 'as fast as ingest allows'}, accept→deliver measures the backlog (p50 ${ms(r.latency.p50)}) rather than the router's own path. On Cloudflare, consumer invocations run concurrently (autoscaling); \`npm run bench -- latency\` measures the path without faults.`,
    );
  }
  if (r.problemsTotal > 0) {
    out.push(
      `Problems recorded (${n(r.problemsTotal)}; the first ${n(r.problems.length)} in detail in raw.problems): ${Object.entries(r.problemCounts)
        .map(([k, v]) => `${k} ${v}`)
        .join(', ')}.`,
    );
  }
  const both = r.destinations.healthy.deliveredAndDeadLettered + r.destinations.flaky.deliveredAndDeadLettered;
  if (both > 0) out.push(`${both} delivery(ies) answered 2xx by the destination and yet dead-lettered (the router did not see the 2xx).`);
  const unexpected = r.traffic.unexpectedAnswers;
  if (unexpected.length > 0) {
    const bodies = new Map<string, number>();
    for (const u of unexpected) {
      const k = `${u.status ?? 'no answer'}${u.body !== '' ? ` "${u.body.slice(0, 120)}"` : ''}`;
      bodies.set(k, (bodies.get(k) ?? 0) + 1);
    }
    out.push(
      `${unexpected.length} valid send(s) answered other than 200 (retried like WorkOS would, after 1 s): ${[...bodies.entries()].map(([k, v]) => `${v} × ${k}`).join('; ')}.`,
    );
  }
  if (r.destinations.healthy.twoXxClientGone + r.destinations.flaky.twoXxClientGone > 0) {
    out.push(`${r.destinations.healthy.twoXxClientGone + r.destinations.flaky.twoXxClientGone} 2xx answer(s) were written after the router had closed the connection (it may not have seen them).`);
  }
  return out;
}

export function toBenchResult(r: SoakResult, startedAt: Date): BenchResult {
  const machine = machineInfo();
  machine.date = startedAt.toISOString();
  return {
    name: 'soak',
    title: SOAK_TITLE,
    method: soakMethod(r.options),
    machine,
    durationMs: r.timing.totalMs,
    targets: soakTargets(r),
    tables: soakTables(r),
    findings: soakFindings(r),
    raw: r,
  };
}

export function writeSoakJson(r: SoakResult, path: string, startedAt: Date): void {
  mkdirSync(dirname(path), { recursive: true });
  // JSON has no NaN: figures that could not be measured are written as null.
  writeFileSync(path, `${JSON.stringify(toBenchResult(r, startedAt), (_k, v: unknown) => (typeof v === 'number' && !Number.isFinite(v) ? null : v), 2)}\n`);
}

export function printSoak(r: SoakResult): void {
  for (const t of soakTables(r)) printTable(t);
  printTargets(soakTargets(r));
  for (const line of soakFindings(r)) process.stdout.write(`\n  ${line}`);
  process.stdout.write('\n');
  const shown = r.problems.slice(0, 20);
  if (shown.length > 0) {
    process.stdout.write(`\n  First ${shown.length} of ${r.problemsTotal} problem(s):\n`);
    for (const p of shown) {
      process.stdout.write(`  - [${p.kind}] ${p.eventId}${p.destination !== undefined ? ` @ ${p.destination}` : ''}: ${p.detail}\n`);
      for (const c of p.calls ?? []) process.stdout.write(`      sink: ${c}\n`);
      for (const l of (p.log ?? []).slice(0, 20)) process.stdout.write(`      log: ${JSON.stringify(l)}\n`);
      for (const d of p.deadLetters ?? []) process.stdout.write(`      dead letter: ${JSON.stringify(d)}\n`);
    }
  }
}
