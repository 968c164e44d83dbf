/**
 * The soak run (`npm run soak`, and test/e2e/soak-e2e.test.ts): realistic
 * WorkOS traffic with retries, bursts and forgeries against a real
 * `wrangler dev`, with faulty destinations behind it; waits until every
 * accepted event is positively accounted for (delivered with a 2xx or
 * dead-lettered, at every destination that owes it), then measures what each
 * destination saw.
 */
import { execFileSync } from 'node:child_process';
import { cpSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { makeEvent, newEventId } from '../../test/fixtures/events';
import { type RouterProcess, startRouter } from './dev-server';
import { type Sink, startSink } from './sink';
import { workosSignature } from './sign';
import { writeSoakJson } from './soak-report';
import { FORGED_EXPECTED, type ForgedKind, type Job, type Plan, type ValidEvent, buildPlan, seededRandom } from './soak-plan';
import {
  type FlakyFault,
  HTTP_DESTINATIONS,
  type HttpDestinationName,
  type SinkCall,
  type SoakSinkState,
  installSoakSink,
  is2xx,
  key,
} from './soak-sink';

export interface SoakOptions {
  /** Unique valid events. */
  events: number;
  /** Concurrent requests to the router (a burst counts as one). */
  concurrency: number;
  /** Unique events per second (0: as fast as `concurrency` allows). */
  rate: number;
  resendFraction: number;
  burstFraction: number;
  burstSize: number;
  forgedFraction: number;
  /** Fraction of the flaky destination's requests that fail. */
  failRate: number;
  /** Fraction of Slack posts answered 503. */
  slackFailRate: number;
  /** Seconds of total refusal at the flaky destination (0: none)… */
  outageSeconds: number;
  /** …starting this many seconds after sending starts. */
  outageAtSeconds: number;
  maxAttempts: number;
  retryDelaySeconds: number;
  /** The flaky destination's timeout_ms (a hang lasts this plus 1 s). */
  timeoutMs: number;
  /** Seconds to wait for the drain after the last request was answered (0: derived from the retry settings). */
  drainTimeoutSeconds: number;
  seed: number;
  /** Where the JSON result goes (undefined: not written). */
  outFile?: string;
  /** Print wrangler's output. */
  echo: boolean;
  /** Save wrangler's whole output (the router's logs) here at the end. */
  routerLogFile?: string;
  /**
   * Run the router from a copy of src/ and wrangler.toml taken at start
   * (default), so that edits to the working tree during a long run do not
   * make `wrangler dev` reload it mid-run (a reload drops the local queue's
   * in-memory messages and timers). false: run the tree in place.
   */
  snapshot: boolean;
  /** Progress lines (default: stderr). */
  log: (line: string) => void;
  signal?: AbortSignal;
}

export const DEFAULTS: Omit<SoakOptions, 'log' | 'seed'> = {
  events: 2000,
  concurrency: 8,
  rate: 0,
  resendFraction: 0.2,
  burstFraction: 0.01,
  burstSize: 10,
  forgedFraction: 0.05,
  failRate: 0.3,
  slackFailRate: 0.1,
  outageSeconds: 0,
  outageAtSeconds: 10,
  maxAttempts: 12,
  retryDelaySeconds: 1,
  timeoutMs: 1000,
  drainTimeoutSeconds: 0,
  echo: false,
  snapshot: true,
};

const ROOT = resolve(new URL('../..', import.meta.url).pathname);
const WEBHOOK_SECRET = 'whsec_soak_local_only';
const ADMIN_TOKEN = 'soak-admin-token';
const HEALTHY_SIGNING_SECRET = 'soak_healthy_signing_secret';
const HANG_EXTRA_MS = 1000;
/** A valid send answered 409/503 or not at all is retried like WorkOS would, this many times. */
const INGEST_RETRIES = 8;
/** After drain: how long the router's logs may take to agree with the sink (attempts logged = calls seen). */
const SETTLE_TIMEOUT_MS = 120_000;
const POLL_MS = 1000;
/** Problems listed in detail (with sink calls and router log lines); the rest are counted. */
const MAX_PROBLEMS = 200;
/** Log lines that mean a message will be redelivered by the platform (at-least-once by design; README). */
const REDELIVERY_ERRORS = new Set(['follow_up_enqueue_failed', 'dead_letter_store_failed', 'follow_up_body_store_failed', 'adapter_error']);

// ---------------------------------------------------------------------------
// Result

export interface DestinationFigures {
  owed: number;
  delivered: number;
  deadLettered: number;
  lost: number;
  extra: number;
  callsAfterSuccess: number;
  calls: number;
  maxAttempts: number;
  /** 2xx answers whose connection the router had already closed (it may not have seen them). */
  twoXxClientGone: number;
  /** Answered 2xx by the destination and yet dead-lettered (the router did not see the 2xx). */
  deliveredAndDeadLettered: number;
}

export interface Problem {
  kind: 'lost' | 'extra' | 'calls_after_success' | 'delivered_and_dead_lettered' | 'double_accept' | 'forged' | 'slack' | 'integrity' | 'not_accepted';
  eventId: string;
  destination?: string;
  detail: string;
  /** Sink calls for (event, destination): ms since start, status (or "no answer"), fault, whether the router had gone. */
  calls?: string[];
  /** The router's log records about the event. */
  log?: Record<string, unknown>[];
  deadLetters?: DeadLetter[];
}

export interface DeadLetter {
  seq: number;
  event_id: string;
  event_type: string;
  destination: string;
  reason: string;
  last_status: number | null;
  attempts: number;
}

export interface SoakResult {
  ok: boolean;
  failures: string[];
  options: Omit<SoakOptions, 'log' | 'signal'>;
  /** The commit the router's source was taken at, and the files of src/ and wrangler.toml that differed from it. */
  source: { commit: string | null; modified: string[] };
  traffic: {
    uniqueEvents: number;
    requests: number;
    accepted: number;
    duplicates: number;
    expectedDuplicates: number;
    bursts: number;
    resends: number;
    ingestRetries: number;
    ingestStatuses: Record<string, number>;
    /** Valid sends answered other than 200 accepted/duplicate (first 50): what came back. */
    unexpectedAnswers: { eventId: string; status: number | null; body: string }[];
    notAccepted: number;
    doubleAccepted: number;
  };
  forged: {
    sent: number;
    rejected: number;
    /** Answers by status and code. */
    outcomes: Record<string, number>;
    rejectedOtherwise: Record<string, number>;
    byKind: Record<string, number>;
    reachingAnyone: number;
  };
  destinations: Record<HttpDestinationName, DestinationFigures>;
  faults: Record<FlakyFault, number>;
  slack: {
    routed: number;
    counted: number;
    deadLettered: number;
    messages: number;
    singles: number;
    digests: number;
    failedPosts: number;
    unparsed: number;
    typeMismatches: string[];
    singleIdsRepeated: number;
    /** Closest two messages the channel shows (posts answered 2xx), and closest two posts of any outcome. */
    minGapMs: number | null;
    minGapAllPostsMs: number | null;
  };
  integrity: { bodyMismatches: number; badSignatures: number; staleMarked: number; unattributed: number };
  latency: { samples: number; p50: number; p95: number; p99: number; max: number };
  timing: { sendingMs: number; /** Events first delivered to the healthy destination per second, from the start of sending. */ deliveryRate: number; drained: boolean; drainMs: number; settleMs: number; totalMs: number; drainTimeoutMs: number };
  router: {
    reloads: number;
    /** Consumer invocations of the router's queue, from wrangler dev's own lines (one at a time locally). */
    batches: { count: number; meanSize: number; meanMs: number; p50Ms: number; p95Ms: number; atLeastTimeoutShare: number; busySeconds: number };
    errorLogs: Record<string, number>; failureReasons: Record<string, number>; redeliveryErrors: number; logsConsistent: boolean; inconsistent: string[] };
  /** How many problems were found; the first MAX_PROBLEMS are listed in detail. */
  problemsTotal: number;
  problemCounts: Record<string, number>;
  problems: Problem[];
}

// ---------------------------------------------------------------------------

export function worstCaseBackoffSeconds(maxAttempts: number, base: number): number {
  let total = 0;
  for (let n = 1; n < maxAttempts; n++) total += Math.min(43_200, base * 2 ** (n - 1));
  return total;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

function percentile(values: number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))] as number;
}

function bump(map: Record<string, number>, k: string, by = 1): void {
  map[k] = (map[k] ?? 0) + by;
}

interface IngestRecord {
  accepted: number;
  acceptedAt?: number;
  duplicates: number;
}

type LogRecord = Record<string, unknown>;

const ANSI = /\u001b\[[0-9;]*m/g;

function parseLogs(output: string): LogRecord[] {
  const out: LogRecord[] = [];
  for (const raw of output.split('\n')) {
    const at = raw.indexOf('{"level"');
    if (at === -1) continue;
    // wrangler colours warnings and errors even with NO_COLOR set: drop the escape codes.
    const line = raw.slice(at).replace(ANSI, '');
    try {
      out.push(JSON.parse(line.slice(0, line.lastIndexOf('}') + 1)) as LogRecord);
    } catch {
      // a line cut by the relay
    }
  }
  return out;
}

export async function runSoak(input: Partial<SoakOptions> & { log?: (line: string) => void; seed?: number }): Promise<SoakResult> {
  const opts: SoakOptions = { ...DEFAULTS, seed: Math.floor(Math.random() * 2 ** 31), log: (l) => process.stderr.write(`${l}\n`), ...input };
  const t0 = Date.now();
  const say = opts.log;
  const checkAbort = () => {
    if (opts.signal?.aborted === true) throw new Error('soak: aborted');
  };
  const plan = buildPlan({
    events: opts.events,
    resendFraction: opts.resendFraction,
    burstFraction: opts.burstFraction,
    forgedFraction: opts.forgedFraction,
    secret: WEBHOOK_SECRET,
    seed: opts.seed,
  });
  const faultRng = seededRandom(opts.seed ^ 0x5eed);
  const sentinelIds = new Set<string>();
  let sink: Sink | undefined;
  let router: RouterProcess | undefined;
  let snapshot: { config: string; dir: string } | undefined;
  let source: { commit: string | null; modified: string[] } = { commit: null, modified: [] };
  try {
    sink = await startSink();
    const sinkState = installSoakSink(sink, plan, {
      failRate: opts.failRate,
      slackFailRate: opts.slackFailRate,
      timeoutMs: opts.timeoutMs,
      hangExtraMs: HANG_EXTRA_MS,
      healthySigningSecret: HEALTHY_SIGNING_SECRET,
      rng: faultRng,
      alwaysOk: sentinelIds,
    });
    const retry = { max_attempts: opts.maxAttempts, retry_delay_seconds: opts.retryDelaySeconds };
    say(`soak: ${opts.events} events, seed ${opts.seed}; starting wrangler dev${opts.snapshot ? ' (from a copy of src/ and wrangler.toml)' : ''}…`);
    source = sourceProvenance();
    if (opts.snapshot) snapshot = snapshotSource();
    router = await startRouter({
      echo: opts.echo,
      ...(snapshot !== undefined ? { config: snapshot.config } : {}),
      vars: {
        WORKOS_WEBHOOK_SECRET: WEBHOOK_SECRET,
        ADMIN_TOKEN,
        SOAK_HEALTHY_SIGNING_SECRET: HEALTHY_SIGNING_SECRET,
        ROUTER: {
          destinations: [
            { name: 'healthy', type: 'http', url: `${sink.url}/healthy`, signing_secret: 'SOAK_HEALTHY_SIGNING_SECRET', timeout_ms: 10_000, ...retry },
            { name: 'flaky', type: 'http', url: `${sink.url}/flaky`, timeout_ms: opts.timeoutMs, ...retry },
            { name: 'slack', type: 'slack', url: `${sink.url}/slack`, digest_window_seconds: 1, ...retry },
          ],
          rules: [
            { name: 'everything', events: ['*'], to: ['healthy', 'flaky'] },
            { name: 'failed-logins', events: ['authentication.*_failed'], to: ['slack'] },
          ],
        },
      },
    });
    const url = `${router.url}/webhooks/workos`;
    const routerRef = router;

    // --- Sending -----------------------------------------------------------
    const ingest = new Map<string, IngestRecord>(plan.events.map((e) => [e.id, { accepted: 0, duplicates: 0 }]));
    const statuses: Record<string, number> = {};
    const forgedOutcomes: Record<string, number> = {};
    const forgedRejectedOtherwise: Record<string, number> = {};
    const forgedByKind: Record<string, number> = {};
    let forgedAccepted = 0;
    let requests = 0;
    let ingestRetries = 0;

    const unexpectedAnswers: { eventId: string; status: number | null; body: string }[] = [];
    const post = async (body: string, headers: Record<string, string>): Promise<{ status: number; code: string; text: string }> => {
      requests++;
      try {
        const res = await fetch(url, { method: 'POST', headers: { 'Content-Type': 'application/json', ...headers }, body });
        const text = await res.text();
        let code = `http_${res.status}`;
        try {
          const json = JSON.parse(text) as { status?: unknown; error?: unknown };
          code = typeof json.status === 'string' ? json.status : typeof json.error === 'string' ? json.error : code;
        } catch {
          // not JSON
        }
        return { status: res.status, code, text };
      } catch (err) {
        const cause = (err as { cause?: { code?: string } }).cause?.code;
        return { status: 0, code: `no_answer${cause !== undefined ? ` (${cause})` : ''}`, text: '' };
      }
    };

    const sendValid = async (e: ValidEvent): Promise<void> => {
      for (let attempt = 0; ; attempt++) {
        const answer = await post(e.body, { 'WorkOS-Signature': workosSignature(e.body, WEBHOOK_SECRET) });
        const at = Date.now();
        bump(statuses, answer.status === 0 ? answer.code : `${answer.status} ${answer.code}`);
        const rec = ingest.get(e.id) as IngestRecord;
        if (answer.status === 200 && answer.code === 'accepted') {
          rec.accepted++;
          rec.acceptedAt ??= at;
          return;
        }
        if (answer.status === 200 && answer.code === 'duplicate') {
          rec.duplicates++;
          return;
        }
        if (unexpectedAnswers.length < 50) unexpectedAnswers.push({ eventId: e.id, status: answer.status === 0 ? null : answer.status, body: answer.text.slice(0, 200) });
        const retryable = answer.status === 0 || answer.status === 409 || answer.status >= 500;
        if (!retryable || attempt >= INGEST_RETRIES) return;
        ingestRetries++;
        await sleep(1000);
      }
    };

    const sendForged = async (job: Extract<Job, { kind: 'forged' }>): Promise<void> => {
      const f = job.forged;
      bump(forgedByKind, f.kind);
      const answer = await post(f.body, f.headers());
      const outcome = answer.status === 0 ? answer.code : `${answer.status} ${answer.code}`;
      bump(forgedOutcomes, outcome);
      if (answer.status === 200) forgedAccepted++;
      if (answer.status !== 401 || answer.code !== FORGED_EXPECTED[f.kind as ForgedKind]) bump(forgedRejectedOtherwise, `${f.kind}: ${outcome}`);
    };

    const firstDone = new Map<string, Promise<void>>();
    const runJob = async (job: Job): Promise<void> => {
      switch (job.kind) {
        case 'first': {
          const e = job.event;
          const p = e.burst ? Promise.all(Array.from({ length: opts.burstSize }, () => sendValid(e))).then(() => undefined) : sendValid(e);
          firstDone.set(e.id, p);
          return p;
        }
        case 'resend':
          await firstDone.get(job.event.id);
          return sendValid(job.event);
        case 'forged':
          return sendForged(job);
      }
    };

    const sendStart = Date.now();
    if (opts.outageSeconds > 0) {
      sinkState.options.outage = { from: sendStart + opts.outageAtSeconds * 1000, to: sendStart + (opts.outageAtSeconds + opts.outageSeconds) * 1000 };
    }
    say(`soak: router up (${((sendStart - t0) / 1000).toFixed(0)} s); sending ${plan.jobs.length} jobs${opts.rate > 0 ? ` at ${opts.rate} events/s` : ''}…`);
    const inFlight = new Set<Promise<void>>();
    let lastProgress = Date.now();
    let done = 0;
    for (const job of plan.jobs) {
      checkAbort();
      if (opts.rate > 0) {
        const due = sendStart + (job.at / opts.rate) * 1000;
        const wait = due - Date.now();
        if (wait > 0) await sleep(wait);
      }
      while (inFlight.size >= opts.concurrency) await Promise.race(inFlight);
      const p: Promise<void> = runJob(job).finally(() => {
        inFlight.delete(p);
        done++;
      });
      inFlight.add(p);
      if (Date.now() - lastProgress > 5000) {
        lastProgress = Date.now();
        say(`  sending: ${done}/${plan.jobs.length} jobs, ${requests} requests, ${((Date.now() - sendStart) / 1000).toFixed(0)} s`);
      }
    }
    await Promise.all(inFlight);
    const sendEnd = Date.now();
    const requestsSent = requests;
    say(`soak: sent ${requests} requests in ${((sendEnd - sendStart) / 1000).toFixed(1)} s; waiting for the drain…`);

    // --- Drain: every accepted event accounted for at every destination ----
    const acceptedEvents = plan.events.filter((e) => (ingest.get(e.id) as IngestRecord).accepted > 0);
    const outstanding = new Set<string>();
    for (const e of acceptedEvents) for (const d of HTTP_DESTINATIONS) outstanding.add(key(d, e.id));
    const slackRouted = acceptedEvents.filter((e) => e.slack);
    const deadLetters = new Map<string, DeadLetter[]>();
    const allDeadLetters: DeadLetter[] = [];
    let dlCursor = 0;
    const pollDeadLetters = async (): Promise<void> => {
      for (;;) {
        const res = await fetch(`${routerRef.url}/admin/dead-letters?limit=500&after=${dlCursor}`, { headers: { Authorization: `Bearer ${ADMIN_TOKEN}` } });
        if (!res.ok) throw new Error(`GET /admin/dead-letters answered ${res.status}`);
        const page = (await res.json()) as { items: DeadLetter[] };
        for (const d of page.items) {
          allDeadLetters.push(d);
          const k = key(d.destination, d.event_id);
          deadLetters.set(k, [...(deadLetters.get(k) ?? []), d]);
          dlCursor = Math.max(dlCursor, d.seq);
        }
        if (page.items.length < 500) return;
      }
    };
    const has2xx = (k: string): boolean => (sinkState.calls.get(k) ?? []).some(is2xx);
    const slackCounted = () => sinkState.slackPosts.filter((p) => p.ok).reduce((s, p) => s + p.events, 0);
    const slackDeadLettered = () => allDeadLetters.filter((d) => d.destination === 'slack').length;
    const drainTimeoutMs =
      (opts.drainTimeoutSeconds > 0 ? opts.drainTimeoutSeconds : worstCaseBackoffSeconds(opts.maxAttempts, opts.retryDelaySeconds) + 300) * 1000;
    let drained = false;
    lastProgress = Date.now();
    while (Date.now() - sendEnd < drainTimeoutMs) {
      checkAbort();
      await pollDeadLetters();
      for (const k of outstanding) if (has2xx(k) || deadLetters.has(k)) outstanding.delete(k);
      const slackDone = slackCounted() + slackDeadLettered() >= slackRouted.length;
      if (outstanding.size === 0 && slackDone) {
        drained = true;
        break;
      }
      if (Date.now() - lastProgress > 10_000) {
        lastProgress = Date.now();
        const byDest = HTTP_DESTINATIONS.map((d) => `${d} ${[...outstanding].filter((k) => k.startsWith(`${d} `)).length}`).join(', ');
        say(`  draining (${((Date.now() - sendEnd) / 1000).toFixed(0)} s): owed ${byDest}; slack ${slackCounted()}+${slackDeadLettered()} dead/${slackRouted.length}`);
      }
      await sleep(POLL_MS);
    }
    const drainEnd = Date.now();
    say(drained ? `soak: drained ${((drainEnd - sendEnd) / 1000).toFixed(1)} s after the last request` : `soak: NOT drained within ${drainTimeoutMs / 1000} s`);

    // --- Settle: the router has nothing left in flight ------------------------
    // A sentinel through the queue (every destination answers it 200), then the
    // router's own log must account for exactly the calls each destination saw,
    // with no retry still scheduled.
    let logs: LogRecord[] = [];
    let consistent = false;
    let inconsistent: string[] = [];
    if (drained) {
      const sentinel = makeEvent('user.updated', { id: newEventId() });
      sentinelIds.add(sentinel.id);
      const sentinelBody = JSON.stringify(sentinel);
      await post(sentinelBody, { 'WorkOS-Signature': workosSignature(sentinelBody, WEBHOOK_SECRET) });
      const settleStart = Date.now();
      while (Date.now() - settleStart < SETTLE_TIMEOUT_MS) {
        checkAbort();
        const sentinelSeen = HTTP_DESTINATIONS.every((d) => has2xx(key(d, sentinel.id)));
        if (sentinelSeen) {
          logs = parseLogs(routerRef.output());
          inconsistent = logInconsistencies(logs, sinkState, acceptedEvents);
          if (inconsistent.length === 0) {
            consistent = true;
            break;
          }
        }
        await sleep(POLL_MS);
      }
      await pollDeadLetters();
    }
    if (!consistent) logs = parseLogs(routerRef.output());
    const settleEnd = Date.now();

    // --- Figures ---------------------------------------------------------------
    const problems: Problem[] = [];
    const logIndex = new Map<string, LogRecord[]>();
    for (const r of logs) {
      if (typeof r.event_id !== 'string') continue;
      const list = logIndex.get(r.event_id) ?? [];
      list.push(r);
      logIndex.set(r.event_id, list);
    }
    const logsFor = (id: string) => logIndex.get(id) ?? [];
    const describeCalls = (calls: SinkCall[]) =>
      calls.map((c) => `+${c.req.at - sendStart} ms ${c.req.status ?? 'no answer'}${c.fault !== undefined ? ` (${c.fault})` : ''}${c.req.clientGone === true ? ' [router gone]' : ''}`);

    const destinations = {} as Record<HttpDestinationName, DestinationFigures>;
    for (const d of HTTP_DESTINATIONS) {
      const f: DestinationFigures = { owed: acceptedEvents.length, delivered: 0, deadLettered: 0, lost: 0, extra: 0, callsAfterSuccess: 0, calls: 0, maxAttempts: 0, twoXxClientGone: 0, deliveredAndDeadLettered: 0 };
      for (const e of acceptedEvents) {
        const k = key(d, e.id);
        const calls = sinkState.calls.get(k) ?? [];
        const oks = calls.filter(is2xx);
        const dls = deadLetters.get(k) ?? [];
        f.calls += calls.length;
        f.maxAttempts = Math.max(f.maxAttempts, calls.length);
        f.twoXxClientGone += oks.filter((c) => c.req.clientGone === true).length;
        if (oks.length > 0) f.delivered++;
        if (dls.length > 0) f.deadLettered++;
        const firstOk = calls.findIndex(is2xx);
        const after = firstOk === -1 ? 0 : calls.length - firstOk - 1;
        f.callsAfterSuccess += after;
        if (oks.length === 0 && dls.length === 0) {
          f.lost++;
          problems.push({ kind: 'lost', eventId: e.id, destination: d, detail: `${e.type}: accepted, never answered 2xx at ${d} nor dead-lettered`, calls: describeCalls(calls), log: logsFor(e.id), deadLetters: dls });
        }
        if (oks.length > 1) {
          f.extra += oks.length - 1;
          problems.push({ kind: 'extra', eventId: e.id, destination: d, detail: `${e.type}: ${oks.length} answers 2xx at ${d}`, calls: describeCalls(calls), log: logsFor(e.id), deadLetters: dls });
        } else if (after > 0) {
          problems.push({ kind: 'calls_after_success', eventId: e.id, destination: d, detail: `${e.type}: ${after} call(s) after the 2xx at ${d}`, calls: describeCalls(calls), log: logsFor(e.id) });
        }
        if (oks.length > 0 && dls.length > 0) {
          f.deliveredAndDeadLettered++;
          problems.push({ kind: 'delivered_and_dead_lettered', eventId: e.id, destination: d, detail: `${e.type}: delivered at ${d} AND dead-lettered (${dls.map((x) => x.reason).join(', ')})`, calls: describeCalls(calls), log: logsFor(e.id), deadLetters: dls });
        }
      }
      destinations[d] = f;
    }

    // Ingest
    let accepted = 0;
    let duplicates = 0;
    let doubleAccepted = 0;
    for (const e of plan.events) {
      const rec = ingest.get(e.id) as IngestRecord;
      accepted += rec.accepted;
      duplicates += rec.duplicates;
      if (rec.accepted > 1) {
        doubleAccepted++;
        problems.push({ kind: 'double_accept', eventId: e.id, detail: `${e.type}: answered "accepted" ${rec.accepted} times`, log: logsFor(e.id) });
      }
      if (rec.accepted === 0) problems.push({ kind: 'not_accepted', eventId: e.id, detail: `${e.type}: never answered "accepted"`, log: logsFor(e.id) });
    }
    const bursts = plan.events.filter((e) => e.burst).length;
    const resends = plan.events.filter((e) => e.resend).length;

    // Forged
    const forgedInLogs = logs.filter((r) => typeof r.event_id === 'string' && plan.forgedIds.has(r.event_id));
    const forgedInDeadLetters = allDeadLetters.filter((d) => plan.forgedIds.has(d.event_id));
    const forgedReaching = sinkState.forgedHits.length + forgedInDeadLetters.length + forgedInLogs.length + forgedAccepted;
    for (const h of sinkState.forgedHits) problems.push({ kind: 'forged', eventId: h.id, destination: h.path, detail: 'a forged event reached a destination' });
    for (const r of forgedInLogs) problems.push({ kind: 'forged', eventId: String(r.event_id), detail: `a forged event got past verification: ${JSON.stringify(r)}` });
    const forgedRejected = plan.forged.length - Object.values(forgedRejectedOtherwise).reduce((s, n) => s + n, 0);

    // Slack
    const okPosts = sinkState.slackPosts.filter((p) => p.ok);
    const counted = slackCounted();
    const routedPerType = new Map<string, number>();
    for (const e of slackRouted) routedPerType.set(e.type, (routedPerType.get(e.type) ?? 0) + 1);
    const countedPerType = new Map<string, number>();
    for (const p of okPosts) for (const [t, n] of p.perType) countedPerType.set(t, (countedPerType.get(t) ?? 0) + n);
    const slackDlPerType = new Map<string, number>();
    for (const d of allDeadLetters) if (d.destination === 'slack') slackDlPerType.set(d.event_type, (slackDlPerType.get(d.event_type) ?? 0) + 1);
    const typeMismatches: string[] = [];
    for (const t of new Set([...routedPerType.keys(), ...countedPerType.keys()])) {
      const want = routedPerType.get(t) ?? 0;
      const got = (countedPerType.get(t) ?? 0) + (slackDlPerType.get(t) ?? 0);
      if (want !== got) typeMismatches.push(`${t}: routed ${want}, counted ${countedPerType.get(t) ?? 0} + dead-lettered ${slackDlPerType.get(t) ?? 0}`);
    }
    for (const p of okPosts) {
      const sum = [...p.perType.values()].reduce((s, n) => s + n, 0);
      if (p.kind === 'digest' && sum !== p.events) typeMismatches.push(`a digest says ${p.events} events but its per-type counts add to ${sum}`);
    }
    const singleIds = new Map<string, number>();
    for (const p of okPosts) if (p.kind === 'single') for (const id of p.ids) singleIds.set(id, (singleIds.get(id) ?? 0) + 1);
    const singleIdsRepeated = [...singleIds.values()].filter((n) => n > 1).length;
    for (const [id, n] of singleIds) if (n > 1) problems.push({ kind: 'slack', eventId: id, destination: 'slack', detail: `posted alone ${n} times`, log: logsFor(id) });
    const minGap = (times: number[]): number | null => {
      const sorted = [...times].sort((a, b) => a - b);
      let gap: number | null = null;
      for (let i = 1; i < sorted.length; i++) gap = Math.min(gap ?? Number.POSITIVE_INFINITY, (sorted[i] as number) - (sorted[i - 1] as number));
      return gap;
    };
    const minGapMs = minGap(okPosts.map((p) => p.req.at));
    const minGapAllPostsMs = minGap(sinkState.slackPosts.map((p) => p.req.at));
    const slackDl = slackDeadLettered();
    if (counted + slackDl !== slackRouted.length) {
      problems.push({ kind: 'slack', eventId: '-', destination: 'slack', detail: `routed ${slackRouted.length}, counted in messages ${counted}, dead-lettered ${slackDl}` });
    }

    // Integrity
    for (const id of sinkState.bodyMismatches) problems.push({ kind: 'integrity', eventId: id, destination: 'healthy', detail: 'body differs from the bytes sent' });
    for (const id of sinkState.badSignatures) problems.push({ kind: 'integrity', eventId: id, destination: 'healthy', detail: 're-signature does not verify' });

    // Latency: the 200 "accepted" at ingest → the first 2xx at the healthy destination.
    const latencies: number[] = [];
    for (const e of acceptedEvents) {
      const at = (ingest.get(e.id) as IngestRecord).acceptedAt;
      const first = (sinkState.calls.get(key('healthy', e.id)) ?? []).find(is2xx);
      if (at !== undefined && first !== undefined) latencies.push(first.req.at - at);
    }

    // Router logs
    const errorLogs: Record<string, number> = {};
    const failureReasons: Record<string, number> = {};
    for (const r of logs) {
      if (r.level === 'error' && typeof r.msg === 'string') bump(errorLogs, r.msg);
      if (r.msg === 'delivery_failed') bump(failureReasons, `${String(r.destination)}: ${String(r.reason)}`);
      if (r.msg === 'slack_delivery_failed') bump(failureReasons, `slack outbox: ${String(r.reason)}`);
    }
    const redeliveryErrors = Object.entries(errorLogs)
      .filter(([m]) => REDELIVERY_ERRORS.has(m))
      .reduce((s, [, n]) => s + n, 0);

    const output = routerRef.output();
    const reloads = (output.match(/Reloading local server/g) ?? []).length;
    // wrangler dev's line per consumer invocation: "QUEUE workos-router-events <acked>/<size> (<ms>ms)".
    const batchSizes: number[] = [];
    const batchMs: number[] = [];
    for (const m of output.matchAll(/QUEUE workos-router-events (\d+)\/(\d+) \((\d+)ms\)/g)) {
      batchSizes.push(Number(m[2]));
      batchMs.push(Number(m[3]));
    }
    const batches = {
      count: batchMs.length,
      meanSize: batchSizes.reduce((a, b) => a + b, 0) / Math.max(1, batchSizes.length),
      meanMs: batchMs.reduce((a, b) => a + b, 0) / Math.max(1, batchMs.length),
      p50Ms: percentile(batchMs, 50),
      p95Ms: percentile(batchMs, 95),
      atLeastTimeoutShare: batchMs.filter((x) => x >= opts.timeoutMs).length / Math.max(1, batchMs.length),
      busySeconds: batchMs.reduce((a, b) => a + b, 0) / 1000,
    };
    const healthyOk = acceptedEvents.flatMap((e) => (sinkState.calls.get(key('healthy', e.id)) ?? []).filter(is2xx).map((c) => c.req.at));
    const deliveryRate = healthyOk.length / Math.max(0.001, (healthyOk.reduce((a, b) => Math.max(a, b), sendStart) - sendStart) / 1000);
    const failures: string[] = [];
    if (reloads > 0) failures.push(`wrangler dev reloaded the router ${reloads} time(s) mid-run (source files changed), which drops the local queue's in-memory messages: the run is not valid`);
    const lost = destinations.healthy.lost + destinations.flaky.lost;
    const extra = destinations.healthy.extra + destinations.flaky.extra;
    if (!drained) failures.push(`did not drain within ${drainTimeoutMs / 1000} s`);
    if (lost !== 0) failures.push(`lost ${lost}`);
    if (extra !== 0) failures.push(`extra ${extra}`);
    if (forgedReaching !== 0) failures.push(`forged events reaching someone: ${forgedReaching}`);
    if (doubleAccepted !== 0) failures.push(`event ids accepted more than once: ${doubleAccepted}`);
    if (acceptedEvents.length !== plan.events.length) failures.push(`valid events never accepted: ${plan.events.length - acceptedEvents.length}`);
    if (counted + slackDl !== slackRouted.length || typeMismatches.length > 0 || singleIdsRepeated > 0) {
      failures.push(`slack: routed ${slackRouted.length}, counted ${counted} + dead-lettered ${slackDl}${typeMismatches.length > 0 ? `; ${typeMismatches.length} per-type mismatch(es)` : ''}`);
    }
    if (sinkState.bodyMismatches.length + sinkState.badSignatures.length > 0) {
      failures.push(`integrity: ${sinkState.bodyMismatches.length} body mismatch(es), ${sinkState.badSignatures.length} bad signature(s)`);
    }

    const result: SoakResult = {
      ok: failures.length === 0,
      failures,
      options: {
        events: opts.events,
        concurrency: opts.concurrency,
        rate: opts.rate,
        resendFraction: opts.resendFraction,
        burstFraction: opts.burstFraction,
        burstSize: opts.burstSize,
        forgedFraction: opts.forgedFraction,
        failRate: opts.failRate,
        slackFailRate: opts.slackFailRate,
        outageSeconds: opts.outageSeconds,
        outageAtSeconds: opts.outageAtSeconds,
        maxAttempts: opts.maxAttempts,
        retryDelaySeconds: opts.retryDelaySeconds,
        timeoutMs: opts.timeoutMs,
        drainTimeoutSeconds: drainTimeoutMs / 1000,
        seed: opts.seed,
        ...(opts.outFile !== undefined ? { outFile: opts.outFile } : {}),
        ...(opts.routerLogFile !== undefined ? { routerLogFile: opts.routerLogFile } : {}),
        echo: opts.echo,
        snapshot: opts.snapshot,
      },
      source,
      traffic: {
        uniqueEvents: plan.events.length,
        requests: requestsSent,
        accepted,
        duplicates,
        expectedDuplicates: resends + bursts * (opts.burstSize - 1),
        bursts,
        resends,
        ingestRetries,
        ingestStatuses: statuses,
        unexpectedAnswers,
        notAccepted: plan.events.length - acceptedEvents.length,
        doubleAccepted,
      },
      forged: { sent: plan.forged.length, rejected: forgedRejected, outcomes: forgedOutcomes, rejectedOtherwise: forgedRejectedOtherwise, byKind: forgedByKind, reachingAnyone: forgedReaching },
      destinations,
      faults: sinkState.faults,
      slack: {
        routed: slackRouted.length,
        counted,
        deadLettered: slackDl,
        messages: okPosts.length,
        singles: okPosts.filter((p) => p.kind === 'single').length,
        digests: okPosts.filter((p) => p.kind === 'digest').length,
        failedPosts: sinkState.slackPosts.length - okPosts.length,
        unparsed: okPosts.filter((p) => p.kind === 'unparsed').length,
        typeMismatches,
        singleIdsRepeated,
        minGapMs,
        minGapAllPostsMs,
      },
      integrity: {
        bodyMismatches: sinkState.bodyMismatches.length,
        badSignatures: sinkState.badSignatures.length,
        staleMarked: sinkState.staleMarked,
        unattributed: sinkState.unattributed,
      },
      latency: { samples: latencies.length, p50: percentile(latencies, 50), p95: percentile(latencies, 95), p99: percentile(latencies, 99), max: latencies.length > 0 ? Math.max(...latencies) : Number.NaN },
      timing: { sendingMs: sendEnd - sendStart, deliveryRate, drained, drainMs: drainEnd - sendEnd, settleMs: settleEnd - drainEnd, totalMs: Date.now() - t0, drainTimeoutMs },
      router: { reloads, batches, errorLogs, failureReasons, redeliveryErrors, logsConsistent: consistent, inconsistent: inconsistent.slice(0, 50) },
      problemsTotal: problems.length,
      problemCounts: problems.reduce<Record<string, number>>((acc, p) => {
        acc[p.kind] = (acc[p.kind] ?? 0) + 1;
        return acc;
      }, {}),
      problems: problems.slice(0, MAX_PROBLEMS),
    };
    if (opts.outFile !== undefined) writeSoakJson(result, opts.outFile, new Date(t0));
    return result;
  } finally {
    if (opts.routerLogFile !== undefined && router !== undefined) writeFileSync(opts.routerLogFile, router.output());
    await router?.stop();
    await sink?.close();
    if (snapshot !== undefined) rmSync(snapshot.dir, { recursive: true, force: true });
  }
}

/** Which source the router ran from: the commit, and files of src/, wrangler.toml or router.json that differed from it. */
function sourceProvenance(): { commit: string | null; modified: string[] } {
  const git = (args: string[]) => execFileSync('git', args, { cwd: ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
  try {
    const commit = git(['rev-parse', 'HEAD']).trim();
    const modified = git(['status', '--porcelain', '--', 'src', 'wrangler.toml', 'router.json'])
      .split('\n')
      .filter((l) => l.trim() !== '')
      .map((l) => l.slice(3));
    return { commit, modified };
  } catch {
    return { commit: null, modified: [] };
  }
}

/** A private copy of what wrangler builds the router from (node_modules linked, not copied). */
function snapshotSource(): { config: string; dir: string } {
  const dir = mkdtempSync(join(tmpdir(), 'soak-src-'));
  cpSync(resolve(ROOT, 'src'), join(dir, 'src'), { recursive: true });
  // router.json: the Worker imports it (the routing config bundled when larger than ROUTER may hold).
  for (const file of ['wrangler.toml', 'router.json', 'package.json', 'tsconfig.json']) cpSync(resolve(ROOT, file), join(dir, file));
  symlinkSync(resolve(ROOT, 'node_modules'), join(dir, 'node_modules'), 'dir');
  return { config: join(dir, 'wrangler.toml'), dir };
}

/**
 * Does the router's log account for exactly the calls each HTTP destination
 * saw, with no retry still scheduled? Every attempt logs one of `delivered`,
 * `delivery_failed` (a retry is scheduled) or, for the last one, a
 * `dead_letter` record. Returns what disagrees (empty: settled).
 */
function logInconsistencies(logs: LogRecord[], sinkState: SoakSinkState, events: ValidEvent[]): string[] {
  const logged = new Map<string, { attempts: number; lastFailed: boolean }>();
  for (const r of logs) {
    if (typeof r.event_id !== 'string' || typeof r.destination !== 'string') continue;
    if (r.msg !== 'delivered' && r.msg !== 'delivery_failed' && r.msg !== 'dead_letter') continue;
    if (r.destination === 'slack') continue;
    const k = key(r.destination, r.event_id);
    const s = logged.get(k) ?? { attempts: 0, lastFailed: false };
    // The attempt that dead-letters logs `dead_letter` instead of `delivery_failed`; a record
    // made by the platform-DLQ consumer (`consumer_retries_exhausted`) stands for no call.
    if (r.msg !== 'dead_letter' || r.reason !== 'consumer_retries_exhausted') s.attempts++;
    s.lastFailed = r.msg === 'delivery_failed';
    logged.set(k, s);
  }
  const out: string[] = [];
  for (const e of events) {
    for (const d of HTTP_DESTINATIONS) {
      const k = key(d, e.id);
      const calls = (sinkState.calls.get(k) ?? []).length;
      const s = logged.get(k) ?? { attempts: 0, lastFailed: false };
      if (s.attempts !== calls || s.lastFailed) out.push(`${k}: sink saw ${calls} call(s), router logged ${s.attempts} attempt(s)${s.lastFailed ? ', last one failed (retry scheduled)' : ''}`);
    }
  }
  return out;
}
