/**
 * The soak run's traffic: N unique, realistic events of mixed catalog types
 * (some sent first as a burst of concurrent copies), re-sends of a fraction of
 * them later with a fresh signature timestamp (what WorkOS retries look like),
 * and forged requests with ids of their own that are never sent validly.
 *
 * Everything random comes from one seeded generator, so a plan is
 * reproducible from its seed (timing, of course, is not).
 */
import { EVENT_TYPES, type EventType } from '../../src/events/catalog';
import { makeEvent, newEventId } from '../../test/fixtures/events';
import { workosSignature } from './sign';

/** mulberry32: a small, fast, seeded PRNG returning floats in [0, 1). */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function pick<T>(rng: () => number, items: readonly T[]): T {
  return items[Math.floor(rng() * items.length)] as T;
}

/** Event types the soak config also routes to Slack (`authentication.*_failed`). */
export const SLACK_PATTERN = 'authentication.*_failed';
export function routedToSlack(type: string): boolean {
  return type.startsWith('authentication.') && type.endsWith('_failed');
}

export interface ValidEvent {
  index: number;
  id: string;
  type: string;
  /** The exact bytes sent (and re-sent). */
  body: string;
  slack: boolean;
  /** First sent as `burstSize` concurrent copies. */
  burst: boolean;
  /** Re-sent once later (fresh signature timestamp). */
  resend: boolean;
}

export const FORGED_KINDS = ['wrong_secret', 'stale_timestamp', 'future_timestamp', 'tampered_body', 'missing_header'] as const;
export type ForgedKind = (typeof FORGED_KINDS)[number];

/** The rejection each kind of forgery must get (README, HTTP API). */
export const FORGED_EXPECTED: Record<ForgedKind, string> = {
  wrong_secret: 'signature_mismatch',
  stale_timestamp: 'timestamp_out_of_tolerance',
  future_timestamp: 'timestamp_out_of_tolerance',
  tampered_body: 'signature_mismatch',
  missing_header: 'missing_signature',
};

export interface ForgedRequest {
  id: string;
  type: string;
  kind: ForgedKind;
  /** The body as sent. */
  body: string;
  /** Signature header (signed at send time, so timestamps are relative to then). */
  headers: () => Record<string, string>;
}

export type Job =
  | { kind: 'first'; at: number; event: ValidEvent }
  | { kind: 'resend'; at: number; event: ValidEvent }
  | { kind: 'forged'; at: number; forged: ForgedRequest };

export interface PlanOptions {
  events: number;
  resendFraction: number;
  burstFraction: number;
  forgedFraction: number;
  secret: string;
  seed: number;
}

export interface Plan {
  events: ValidEvent[];
  forged: ForgedRequest[];
  /** In sending order; `at` is a position in units of unique events (fractional), for pacing. */
  jobs: Job[];
  byId: Map<string, ValidEvent>;
  forgedIds: Set<string>;
}

/** Objects per id prefix: events about one object share its ordering key (so some arrive stale), and spread over shards. */
const OBJECTS_PER_PREFIX = 100;
/** A resend follows its first send by this many unique events (uniform). */
const RESEND_GAP_MIN = 5;
const RESEND_GAP_MAX = 300;
/** How far outside the default 180 s tolerance the stale/future timestamps are. */
const SKEW_MS = 10 * 60_000;
const FORGED_SECRET = 'whsec_soak_forger_not_the_secret';

export function buildPlan(opts: PlanOptions): Plan {
  const rng = seededRandom(opts.seed);
  const types: readonly EventType[] = EVENT_TYPES;
  const events: ValidEvent[] = [];
  for (let i = 0; i < opts.events; i++) {
    const type = pick(rng, types);
    const event = makeEvent(type) as unknown as { id: string; event: string; data: Record<string, unknown> };
    const dataId = event.data.id;
    if (typeof dataId === 'string') {
      const prefix = dataId.includes('_') ? dataId.slice(0, dataId.lastIndexOf('_')) : 'object';
      event.data.id = `${prefix}_01SOAK${String(Math.floor(rng() * OBJECTS_PER_PREFIX)).padStart(20, '0')}`;
    }
    events.push({ index: i, id: event.id, type, body: JSON.stringify(event), slack: routedToSlack(type), burst: false, resend: false });
  }
  const chooseFraction = (fraction: number, min: number): ValidEvent[] => {
    const n = Math.min(events.length, Math.max(min, Math.round(events.length * fraction)));
    const pool = [...events];
    for (let i = pool.length - 1; i > 0; i--) {
      const j = Math.floor(rng() * (i + 1));
      [pool[i], pool[j]] = [pool[j] as ValidEvent, pool[i] as ValidEvent];
    }
    return pool.slice(0, n);
  };
  for (const e of chooseFraction(opts.resendFraction, 0)) e.resend = true;
  for (const e of chooseFraction(opts.burstFraction, opts.burstFraction > 0 ? 1 : 0)) e.burst = true;

  const forgedCount = Math.round(opts.events * opts.forgedFraction);
  const forged: ForgedRequest[] = [];
  for (let i = 0; i < forgedCount; i++) {
    const kind = FORGED_KINDS[i % FORGED_KINDS.length] as ForgedKind;
    // Half of them are types the rules also send to Slack: had one got through, every destination would show it.
    const type: EventType = rng() < 0.5 ? 'authentication.password_failed' : pick(rng, types);
    const event = makeEvent(type, { id: newEventId() });
    const signed = JSON.stringify(event);
    const secret = opts.secret;
    let body = signed;
    let headers: () => Record<string, string>;
    switch (kind) {
      case 'wrong_secret':
        headers = () => ({ 'WorkOS-Signature': workosSignature(signed, FORGED_SECRET) });
        break;
      case 'stale_timestamp':
        headers = () => ({ 'WorkOS-Signature': workosSignature(signed, secret, Date.now() - SKEW_MS) });
        break;
      case 'future_timestamp':
        headers = () => ({ 'WorkOS-Signature': workosSignature(signed, secret, Date.now() + SKEW_MS) });
        break;
      case 'tampered_body':
        // Signed with the real secret, then altered in flight (still a valid event envelope).
        body = signed.replace('"data":{', '"data":{"tampered":true,');
        headers = () => ({ 'WorkOS-Signature': workosSignature(signed, secret) });
        break;
      case 'missing_header':
        headers = () => ({});
        break;
    }
    forged.push({ id: event.id, type, kind, body, headers });
  }

  const jobs: Job[] = [];
  for (const e of events) {
    jobs.push({ kind: 'first', at: e.index, event: e });
    if (e.resend) {
      const gap = RESEND_GAP_MIN + rng() * (RESEND_GAP_MAX - RESEND_GAP_MIN);
      jobs.push({ kind: 'resend', at: Math.min(events.length, e.index + gap), event: e });
    }
  }
  for (const f of forged) jobs.push({ kind: 'forged', at: rng() * events.length, forged: f });
  jobs.sort((a, b) => a.at - b.at);
  return {
    events,
    forged,
    jobs,
    byId: new Map(events.map((e) => [e.id, e])),
    forgedIds: new Set(forged.map((f) => f.id)),
  };
}
