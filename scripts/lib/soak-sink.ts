/**
 * The soak run's downstream services, on the loopback sink:
 *
 * - `/healthy`: always 200; checks that every body is byte-identical to what
 *   was sent and that its re-signature verifies.
 * - `/flaky`: fails a fraction of requests at random — 500, 503, 429 with
 *   `Retry-After: 1`, or a hang past the router's timeout. A hung request is
 *   NEVER answered 2xx (it gets a 504 once the router has given up), so every
 *   2xx the sink gives is one the router could see, and "extra" stays a true
 *   measure. During an optional outage window it refuses every request
 *   (closes the connection without answering).
 * - `/slack`: a Slack incoming webhook; fails a fraction of posts with 503,
 *   and counts the events in every message it accepts (one event, or a digest
 *   whose "N ×" counts are read from the message).
 *
 * Every request is indexed by (destination, event id) as it arrives, so
 * polling for drain is cheap.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import type { Plan } from './soak-plan';
import type { Sink, SinkRequest } from './sink';

export const HTTP_DESTINATIONS = ['healthy', 'flaky'] as const;
export type HttpDestinationName = (typeof HTTP_DESTINATIONS)[number];

export type FlakyFault = 'http_500' | 'http_503' | 'http_429' | 'hang' | 'outage';

/** How the flaky destination's failures split (weights; scaled to the failure rate). */
const FAULT_WEIGHTS: readonly [FlakyFault, number][] = [
  ['http_500', 0.3],
  ['http_503', 0.27],
  ['http_429', 0.27],
  ['hang', 0.16],
];

export interface SinkCall {
  req: SinkRequest;
  fault?: FlakyFault;
}

export interface SlackPost {
  req: SinkRequest;
  ok: boolean;
  kind: 'single' | 'digest' | 'unparsed';
  /** Events counted in the message. */
  events: number;
  perType: Map<string, number>;
  /** Event ids named in the message (all of them for a single-event message; samples for a digest). */
  ids: string[];
}

export interface SoakSinkOptions {
  failRate: number;
  slackFailRate: number;
  /** The flaky destination's timeout_ms; a hang lasts this long plus `hangExtraMs`. */
  timeoutMs: number;
  hangExtraMs: number;
  /** Outage window, ms since epoch (set once sending starts). */
  outage?: { from: number; to: number };
  healthySigningSecret: string;
  rng: () => number;
  /** Ids answered 200 without faults (the sentinel). */
  alwaysOk: Set<string>;
}

export interface SoakSinkState {
  /** `${destination} ${eventId}` → calls in arrival order. */
  calls: Map<string, SinkCall[]>;
  slackPosts: SlackPost[];
  faults: Record<FlakyFault, number>;
  /** Healthy-destination requests whose body differed from what was sent / whose signature did not verify. */
  bodyMismatches: string[];
  badSignatures: string[];
  /** Requests carrying a forged id (header or body), by path. */
  forgedHits: { path: string; id: string }[];
  /** Requests the sink could not attribute (no event id header on an HTTP destination, unknown path). */
  unattributed: number;
  staleMarked: number;
  options: SoakSinkOptions;
}

export const key = (destination: string, id: string): string => `${destination} ${id}`;

const EVENT_ID = /event_[0-9A-Z]{26}/g;

export function installSoakSink(sink: Sink, plan: Plan, options: SoakSinkOptions): SoakSinkState {
  const state: SoakSinkState = {
    calls: new Map(),
    slackPosts: [],
    faults: { http_500: 0, http_503: 0, http_429: 0, hang: 0, outage: 0 },
    bodyMismatches: [],
    badSignatures: [],
    forgedHits: [],
    unattributed: 0,
    staleMarked: 0,
    options,
  };
  const record = (destination: string, req: SinkRequest, fault?: FlakyFault): string | undefined => {
    const id = req.headers['x-workos-event-id'];
    if (typeof id !== 'string') {
      state.unattributed++;
      return undefined;
    }
    if (plan.forgedIds.has(id)) state.forgedHits.push({ path: req.path, id });
    if (req.headers['x-workos-stale'] === 'true') state.staleMarked++;
    const k = key(destination, id);
    const list = state.calls.get(k) ?? [];
    list.push(fault === undefined ? { req } : { req, fault });
    state.calls.set(k, list);
    return id;
  };

  sink.respond('/healthy', (req) => {
    const id = record('healthy', req);
    if (id !== undefined) {
      const sent = plan.byId.get(id);
      const body = req.body.toString('utf8');
      if (sent !== undefined && sent.body !== body) state.bodyMismatches.push(id);
      if (!verifies(req, body, options.healthySigningSecret)) state.badSignatures.push(id);
    }
    return { status: 200, body: 'ok' };
  });

  sink.respond('/flaky', (req) => {
    const id = req.headers['x-workos-event-id'];
    const fault = typeof id === 'string' && options.alwaysOk.has(id) ? undefined : chooseFault(options, Date.now());
    record('flaky', req, fault);
    if (fault !== undefined) state.faults[fault]++;
    switch (fault) {
      case undefined:
        return { status: 200, body: 'ok' };
      case 'http_500':
        return { status: 500, body: 'internal error' };
      case 'http_503':
        return { status: 503, body: 'unavailable' };
      case 'http_429':
        return { status: 429, body: 'slow down', headers: { 'Retry-After': '1' } };
      case 'hang':
        // Never a 2xx: by the time this is written the router has given up.
        return { status: 504, body: 'hung', delayMs: options.timeoutMs + options.hangExtraMs };
      case 'outage':
        return { status: 503, destroy: true };
    }
  });

  sink.respond('/slack', (req) => {
    const text = req.body.toString('utf8');
    for (const id of text.match(EVENT_ID) ?? []) if (plan.forgedIds.has(id)) state.forgedHits.push({ path: req.path, id });
    const ok = options.rng() >= options.slackFailRate;
    state.slackPosts.push({ req, ok, ...parseSlackMessage(text) });
    return ok ? { status: 200, body: 'ok' } : { status: 503, body: 'service_unavailable' };
  });

  return state;
}

function chooseFault(options: SoakSinkOptions, now: number): FlakyFault | undefined {
  if (options.outage !== undefined && now >= options.outage.from && now < options.outage.to) return 'outage';
  let r = options.rng();
  if (r >= options.failRate) return undefined;
  r /= options.failRate;
  const total = FAULT_WEIGHTS.reduce((s, [, w]) => s + w, 0);
  let acc = 0;
  for (const [fault, weight] of FAULT_WEIGHTS) {
    acc += weight / total;
    if (r < acc) return fault;
  }
  return 'http_500';
}

/** Does the re-signature (`t=…, v1=…`, HMAC-SHA256 of "t.body") verify with the destination's secret? */
function verifies(req: SinkRequest, body: string, secret: string): boolean {
  const header = req.headers['workos-signature'];
  if (typeof header !== 'string') return false;
  const t = /t=(\d+)/.exec(header)?.[1];
  const v1 = /v1=([0-9a-f]{64})/.exec(header)?.[1];
  if (t === undefined || v1 === undefined) return false;
  const mac = createHmac('sha256', secret).update(`${t}.`).update(body).digest();
  return timingSafeEqual(mac, Buffer.from(v1, 'hex'));
}

/**
 * Events counted in one Slack message. A single-event message's fallback text
 * is "<type> · <event id> · <time>"; a digest's is "N WorkOS events in the
 * last S s: a × type, b × type…", and its second block says "*N events* of
 * *M types*" (see src/destinations/slack/format/). The digest's total comes
 * from the block; the per-type counts from the text, and must add up to it.
 */
export function parseSlackMessage(text: string): Omit<SlackPost, 'req' | 'ok'> {
  let message: { text?: unknown; blocks?: unknown };
  try {
    message = JSON.parse(text) as { text?: unknown; blocks?: unknown };
  } catch {
    return { kind: 'unparsed', events: 0, perType: new Map(), ids: [] };
  }
  const fallback = typeof message.text === 'string' ? message.text : '';
  const blockTexts = Array.isArray(message.blocks)
    ? message.blocks.map((b: unknown) => {
        const t = (b as { text?: { text?: unknown } } | null)?.text?.text;
        return typeof t === 'string' ? t : '';
      })
    : [];
  const ids = [...new Set(text.match(EVENT_ID) ?? [])];
  const digestTotal = blockTexts.map((t) => /\*([\d,]+) events?\* of \*[\d,]+ types?\*/.exec(t)).find((m) => m !== null);
  if (digestTotal !== undefined && digestTotal !== null) {
    const total = Number((digestTotal[1] as string).replace(/,/g, ''));
    const perType = new Map<string, number>();
    const list = fallback.slice(fallback.indexOf(': ') + 2);
    for (const m of list.matchAll(/([\d,]+) × ([^,…]+)/g)) {
      const type = (m[2] as string).replace(/\u200B/g, '').trim();
      perType.set(type, (perType.get(type) ?? 0) + Number((m[1] as string).replace(/,/g, '')));
    }
    return { kind: 'digest', events: total, perType, ids };
  }
  const single = /^(?:.* )?([a-z_.]+) · (event_[0-9A-Z]{26}) · /.exec(fallback.replace(/\u200B/g, ''));
  if (single !== null) {
    return { kind: 'single', events: 1, perType: new Map([[single[1] as string, 1]]), ids: [single[2] as string] };
  }
  return { kind: 'unparsed', events: 0, perType: new Map(), ids };
}

export function is2xx(call: SinkCall): boolean {
  return call.req.status !== undefined && call.req.status >= 200 && call.req.status < 300;
}
