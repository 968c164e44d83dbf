/**
 * A loopback HTTP server playing the downstream services: records every
 * request (method, path, headers, exact body bytes) and answers with
 * programmable statuses. Used by the end-to-end tests, the demo and benchmarks.
 */
import { type IncomingHttpHeaders, type Server, createServer } from 'node:http';

export interface SinkRequest {
  at: number;
  method: string;
  path: string;
  headers: IncomingHttpHeaders;
  body: Buffer;
  /** The status the sink answered, once written (absent: not answered yet, or the connection was closed instead). */
  status?: number;
  /** True when the client's connection closed before the sink's answer was fully written. */
  clientGone?: boolean;
}

export type Responder = (req: SinkRequest) => {
  status: number;
  body?: string;
  headers?: Record<string, string>;
  /** Answer only after this many milliseconds (a slow or hung service). */
  delayMs?: number;
  /** Close the connection without answering (after `delayMs`, if given). */
  destroy?: boolean;
};

export interface Sink {
  url: string;
  requests: SinkRequest[];
  /** Set the answer for a path, query string ignored (default: 200 "ok"). */
  respond: (path: string, responder: Responder) => void;
  /** Resolves when `predicate` holds over the recorded requests (polling). */
  waitFor: (predicate: (reqs: SinkRequest[]) => boolean, timeoutMs?: number) => Promise<void>;
  onRequest?: (req: SinkRequest) => void;
  close: () => Promise<void>;
}

export async function startSink(): Promise<Sink> {
  const responders = new Map<string, Responder>();
  const requests: SinkRequest[] = [];
  const sink = {} as Sink;
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const record: SinkRequest = {
        at: Date.now(),
        method: req.method ?? 'GET',
        path: req.url ?? '/',
        headers: req.headers,
        body: Buffer.concat(chunks),
      };
      requests.push(record);
      sink.onRequest?.(record);
      const fallback: Responder = () => ({ status: 200, body: 'ok' });
      const answer = (responders.get(record.path.split('?')[0] as string) ?? fallback)(record);
      res.on('close', () => {
        if (!res.writableFinished) record.clientGone = true;
      });
      const reply = () => {
        if (answer.destroy === true) {
          req.socket.destroy();
          return;
        }
        if (res.destroyed) {
          record.clientGone = true;
          return;
        }
        record.status = answer.status;
        res.writeHead(answer.status, { 'Content-Type': 'text/plain', ...answer.headers });
        res.end(answer.body ?? '');
      };
      if (answer.delayMs !== undefined && answer.delayMs > 0) {
        res.on('error', () => undefined); // the client may be gone by then
        setTimeout(reply, answer.delayMs);
      } else reply();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const addr = server.address();
  const port = typeof addr === 'object' && addr !== null ? addr.port : 0;
  Object.assign(sink, {
    url: `http://127.0.0.1:${port}`,
    requests,
    respond: (path: string, responder: Responder) => responders.set(path, responder),
    waitFor: async (predicate: (reqs: SinkRequest[]) => boolean, timeoutMs = 30_000) => {
      const deadline = Date.now() + timeoutMs;
      while (!predicate(requests)) {
        if (Date.now() > deadline) throw new Error(`sink: condition not met within ${timeoutMs} ms (${requests.length} requests seen)`);
        await new Promise((r) => setTimeout(r, 100));
      }
    },
    close: () => new Promise<void>((r) => server.close(() => r())),
  });
  return sink;
}
