/**
 * Unique, realistic WorkOS events for the load benchmarks: one template per
 * catalog type from makeEvent (test/fixtures/events.ts), each request getting
 * a fresh ULID-shaped id (newEventId) and being signed at send time, so the
 * signature timestamp is always fresh (the router's tolerance is 180 s).
 */
import { EVENT_TYPES } from '../../src/events/catalog';
import { workosSignature } from '../../scripts/lib/sign';
import { makeEvent, newEventId } from '../../test/fixtures/events';

export const BENCH_SECRET = 'whsec_bench_0123456789abcdef';

interface Template {
  type: string;
  id: string;
  text: string;
}

export class EventSource {
  private readonly templates: Template[];
  private i = 0;

  constructor(types: readonly string[] = EVENT_TYPES) {
    this.templates = types.map((type) => {
      const e = makeEvent(type as (typeof EVENT_TYPES)[number]);
      return { type, id: e.id, text: JSON.stringify(e) };
    });
  }

  /** A new event (next type in turn) with a unique id; `extra` is spliced into its data when given. */
  next(extra?: Record<string, unknown>): { id: string; type: string; body: string } {
    const t = this.templates[this.i++ % this.templates.length] as Template;
    const id = newEventId();
    let body = t.text.replace(t.id, id);
    if (extra !== undefined) {
      const e = JSON.parse(body) as { data: Record<string, unknown> };
      Object.assign(e.data, extra);
      body = JSON.stringify(e);
    }
    return { id, type: t.type, body };
  }
}

export function signedHeaders(body: string, secret = BENCH_SECRET): Record<string, string> {
  return { 'content-type': 'application/json', 'workos-signature': workosSignature(body, secret) };
}

/**
 * Sends `count` new signed events from `source` to the router's webhook
 * endpoint, `inFlight` requests at a time, as fast as it answers; `each` sees
 * every event with the answer's body and how many were sent so far.
 */
export async function postEvents(
  routerUrl: string,
  source: EventSource,
  count: number,
  inFlight: number,
  each?: (event: { id: string; body: string }, answer: string, sent: number) => void,
): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: inFlight }, async () => {
      while (next < count) {
        next++;
        const e = source.next();
        const res = await fetch(`${routerUrl}/webhooks/workos`, { method: 'POST', headers: signedHeaders(e.body), body: e.body });
        each?.(e, await res.text(), next);
      }
    }),
  );
}

/** ROUTER config: every event to `count` http destinations on the sink (paths /d0, /d1, …). */
export function routerToSink(sinkUrl: string, count = 1, prefix = '/d', settings: Record<string, number | string> = {}): unknown {
  const destinations = Array.from({ length: count }, (_, k) => ({ name: `dest${k}`, type: 'http', url: `${sinkUrl}${prefix}${k}` }));
  return { ...settings, destinations, rules: [{ name: 'everything', events: ['*'], to: destinations.map((d) => d.name) }] };
}
