/**
 * The downstream services, played at the network edge: outbound `fetch` from
 * the Worker (consumer, outboxes) is answered here and recorded as plain data.
 * Unknown URLs answer 200, so deliveries that other tests left in the queue
 * drain quietly; assertions look only at their own event ids.
 */
import { vi } from 'vitest';
import { until } from './until';

export interface Received {
  url: string;
  method: string;
  headers: Headers;
  body: string;
  /** ms since epoch when the request reached the sink. */
  at: number;
}

export type SinkHandler = (req: Request, received: Received) => Response | Promise<Response>;

export class Sink {
  readonly received: Received[] = [];
  private readonly handlers = new Map<string, SinkHandler>();
  private readonly prefixes = new Map<string, SinkHandler>();

  /** Installs the fetch spy (call in beforeEach; vi.restoreAllMocks removes it). */
  install(): this {
    vi.spyOn(globalThis, 'fetch').mockImplementation(async (input, init) => {
      const req = new Request(input as RequestInfo, init);
      const body = await req.clone().text();
      const received: Received = { url: req.url, method: req.method, headers: new Headers(req.headers), body, at: Date.now() };
      this.received.push(received);
      const handler = this.handlers.get(req.url) ?? [...this.prefixes].find(([prefix]) => req.url.startsWith(prefix))?.[1];
      return handler !== undefined ? handler(req, received) : new Response('ok');
    });
    return this;
  }

  on(url: string, handler: SinkHandler): this {
    this.handlers.set(url, handler);
    return this;
  }

  /** Answers every URL starting with `prefix` (an exact `on` wins). */
  onPrefix(prefix: string, handler: SinkHandler): this {
    this.prefixes.set(prefix, handler);
    return this;
  }

  reset(): this {
    this.handlers.clear();
    this.prefixes.clear();
    this.received.length = 0;
    return this;
  }

  /** Requests about one event (by the router's X-WorkOS-Event-Id header, else by the id appearing in the body). */
  about(eventId: string, url?: string): Received[] {
    return this.received.filter(
      (r) => (url === undefined || r.url === url) && (r.headers.get('x-workos-event-id') === eventId || r.body.includes(eventId)),
    );
  }

  until(check: () => boolean, what: string, timeoutMs = 15_000): Promise<void> {
    return until(check, what, timeoutMs);
  }
}
