/**
 * A minimal receiver for the router's HTTP destinations: plain `node:http`,
 * verified with the official WorkOS SDK, deduplicated on `Idempotency-Key`.
 *
 * What the router sends (README "Destinations" → http): `POST` of the exact
 * bytes WorkOS sent, `Content-Type: application/json`, `WorkOS-Signature`
 * re-signed in the WorkOS scheme with the destination's `signing_secret` (a
 * fresh `t` on every attempt), `Idempotency-Key: <event id>`,
 * `X-WorkOS-Event-Id`, `X-WorkOS-Event`, and `X-WorkOS-Stale: true` when the
 * event is out of date. 2xx means delivered; 408/429/5xx are retried; any other
 * status is permanent (the router dead-letters the delivery).
 *
 * Answers:
 *   200 {"status":"processed"}    verified, handled once
 *   200 {"status":"duplicate"}    an Idempotency-Key already handled (a router retry); an operator's
 *                                 replay (X-WorkOS-Replay: true) is handled again
 *   401 {"error":"…"}             missing or wrong signature (also too old: the SDK's 3-minute tolerance)
 *   400 {"error":"…"}             not JSON, or an Idempotency-Key that is not the signed event's id
 *   413, 405                      body too large, not a POST
 *   500 {"error":"handler_failed"} your handler threw: the router retries later
 *
 * Run it:  RECEIVER_SIGNING_SECRET=… PORT=8788 npx tsx examples/http-receiver/server.ts
 */
import { type IncomingMessage, type Server, type ServerResponse, createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { pathToFileURL } from 'node:url';
import { type Event, SignatureVerificationException, WorkOS } from '@workos-inc/node';

export interface ReceivedEvent {
  /** The `Idempotency-Key` header (the event id). */
  idempotencyKey: string;
  /** The event id from the verified body. */
  id: string;
  /** The event type from the verified body, e.g. "user.created". */
  type: string;
  /** `X-WorkOS-Stale: true`: out of date (a newer event about the same object or subject was routed, or the object was deleted). */
  stale: boolean;
  /** `X-WorkOS-Replay: true`: an operator sent it again (a dead-letter or event replay); handled again even if its key was seen. */
  replay: boolean;
  /** What `workos.webhooks.constructEvent` returned: the SDK's deserialised (camelCase) event; undefined for a type this SDK version does not know. */
  event: Event | undefined;
  /** The verified body as received. */
  raw: string;
  receivedAt: number;
}

export interface ReceiverOptions {
  /** The destination's signing secret: the value of the secret its `signing_secret` names in the router. */
  secret: string;
  /** Port to listen on; 0 (the default) picks a free one. */
  port?: number;
  /** Address to listen on (default 127.0.0.1). */
  host?: string;
  /** Your handler, called once per Idempotency-Key after verification. Throw to answer 500 (the router retries). */
  onEvent?: (received: ReceivedEvent) => void | Promise<void>;
  /** Idempotency keys remembered (oldest forgotten first; default 100,000). In memory only: a restart forgets them. */
  maxKeys?: number;
  /** Events kept in `processed`, newest last (default 1,000; 0 keeps none): each holds its body, up to 1.9 MB. */
  keepProcessed?: number;
  /** Largest body accepted (default 2 MiB; the router forwards at most 1.9 MB). */
  maxBodyBytes?: number;
  /** Signature tolerance in ms (default 180,000, the SDK's). */
  toleranceMs?: number;
  /** One JSON object per request outcome (default: a JSON line on stdout); never the secret or the signature. */
  log?: (line: Record<string, unknown>) => void;
  /** Webhook verification needs no API key, but the SDK client wants one (or a client id): WORKOS_API_KEY if set. */
  apiKey?: string;
}

export interface Receiver {
  /** e.g. http://127.0.0.1:40123 (any path accepts the router's POSTs). */
  url: string;
  port: number;
  /** The last events handled, in order (each Idempotency-Key once, unless replayed; at most `keepProcessed`). */
  processed: ReceivedEvent[];
  stats: { processed: number; duplicates: number; rejected: number; failed: number };
  close: () => Promise<void>;
}

const DEFAULT_MAX_KEYS = 100_000;
const DEFAULT_MAX_BODY = 2 * 1024 * 1024;

class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
  ) {
    super(code);
  }
}

export async function createReceiver(opts: ReceiverOptions): Promise<Receiver> {
  if (typeof opts.secret !== 'string' || opts.secret === '') throw new Error('createReceiver: secret is required');
  const workos = new WorkOS(opts.apiKey ?? process.env.WORKOS_API_KEY ?? 'sk_unused_webhook_verification_only');
  const maxKeys = opts.maxKeys ?? DEFAULT_MAX_KEYS;
  const keepProcessed = opts.keepProcessed ?? 1_000;
  const maxBody = opts.maxBodyBytes ?? DEFAULT_MAX_BODY;
  const tolerance = opts.toleranceMs ?? 180_000;
  const log = opts.log ?? ((line) => console.log(JSON.stringify(line)));

  /** Keys handled successfully (a Map keeps insertion order: the oldest is evicted first). */
  const seen = new Map<string, number>();
  /** Keys being handled right now: a concurrent copy waits for the first one's outcome. */
  const inFlight = new Map<string, Promise<void>>();
  const processed: ReceivedEvent[] = [];
  const stats = { processed: 0, duplicates: 0, rejected: 0, failed: 0 };

  const answer = (res: ServerResponse, status: number, body: Record<string, unknown>) => {
    res.writeHead(status, { 'Content-Type': 'application/json' });
    res.end(JSON.stringify(body));
  };

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    if (req.method === 'GET' && req.url === '/health') return answer(res, 200, { status: 'ok' });
    if (req.method !== 'POST') throw new HttpError(405, 'method_not_allowed');
    const raw = await readBody(req, maxBody);

    const sigHeader = header(req, 'workos-signature');
    if (sigHeader === undefined) throw new HttpError(401, 'missing_signature');
    let payload: Record<string, unknown>;
    try {
      const parsed: unknown = JSON.parse(raw);
      if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new Error('not an object');
      payload = parsed as Record<string, unknown>;
    } catch {
      throw new HttpError(400, 'invalid_json');
    }
    // The official SDK verifies the signature (HMAC-SHA256 over "<t>.<body>", within the tolerance).
    // It signs JSON.stringify(payload): WorkOS bodies, which the router forwards byte for byte, are in that form
    // (compact JSON). A body in any other form (spaces, \u escapes) would fail here with 401, which the router
    // dead-letters: log it apart, so it is not mistaken for a forgery.
    if (JSON.stringify(payload) !== raw) log({ msg: 'body_not_compact_json', bytes: raw.length });
    let event: Event | undefined;
    try {
      event = await workos.webhooks.constructEvent({ payload, sigHeader, secret: opts.secret, tolerance });
    } catch (err) {
      if (err instanceof SignatureVerificationException) throw new HttpError(401, 'invalid_signature');
      throw err;
    }
    const id = typeof payload.id === 'string' ? payload.id : '';
    const type = typeof payload.event === 'string' ? payload.event : '';
    // Headers are not covered by the signature: the key must be the signed event's id (the router always sends that).
    const idempotencyKey = header(req, 'idempotency-key') ?? id;
    if (idempotencyKey === '' || idempotencyKey !== id) throw new HttpError(400, 'idempotency_key_mismatch');

    // An operator's replay (the header is not signed: at worst it makes a signed, recent event be handled again).
    const replay = header(req, 'x-workos-replay') === 'true';
    if (seen.has(idempotencyKey) && !replay) {
      stats.duplicates += 1;
      log({ msg: 'duplicate', idempotency_key: idempotencyKey, event_type: type });
      return answer(res, 200, { status: 'duplicate', id });
    }
    const running = inFlight.get(idempotencyKey);
    if (running !== undefined) {
      // Same key, at the same time: answer as the first one ends (its failure fails this copy too: the router retries).
      await running;
      stats.duplicates += 1;
      log({ msg: 'duplicate', idempotency_key: idempotencyKey, event_type: type, concurrent: true });
      return answer(res, 200, { status: 'duplicate', id });
    }
    const received: ReceivedEvent = {
      idempotencyKey,
      id,
      type,
      stale: header(req, 'x-workos-stale') === 'true',
      replay,
      event,
      raw,
      receivedAt: Date.now(),
    };
    const work = (async () => {
      await opts.onEvent?.(received);
    })();
    inFlight.set(idempotencyKey, work);
    try {
      await work;
    } catch (err) {
      stats.failed += 1;
      log({ msg: 'handler_failed', idempotency_key: idempotencyKey, event_type: type, error: (err as Error).message });
      return answer(res, 500, { error: 'handler_failed' });
    } finally {
      inFlight.delete(idempotencyKey);
    }
    seen.set(idempotencyKey, received.receivedAt);
    if (seen.size > maxKeys) seen.delete(seen.keys().next().value as string);
    if (keepProcessed > 0) {
      processed.push(received);
      if (processed.length > keepProcessed) processed.splice(0, processed.length - keepProcessed);
    }
    stats.processed += 1;
    log({ msg: 'processed', idempotency_key: idempotencyKey, event_type: type, stale: received.stale, replay, sdk_event: event !== undefined });
    return answer(res, 200, { status: 'processed', id });
  }

  const server: Server = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      if (err instanceof HttpError) {
        if (err.status === 401 || err.status === 400) stats.rejected += 1;
        log({ msg: 'rejected', status: err.status, error: err.code });
        if (err.status === 413) res.setHeader('Connection', 'close');
        if (!res.headersSent) answer(res, err.status, { error: err.code });
        return;
      }
      stats.failed += 1;
      log({ msg: 'error', error: (err as Error).message });
      if (!res.headersSent) answer(res, 500, { error: 'internal_error' });
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 0, opts.host ?? '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const { port, address } = server.address() as AddressInfo;
  const host = address.includes(':') ? `[${address}]` : address;
  return {
    url: `http://${host}:${port}`,
    port,
    processed,
    stats,
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.close((err) => (err ? reject(err) : resolve()));
        server.closeAllConnections();
      }),
  };
}

function header(req: IncomingMessage, name: string): string | undefined {
  const v = req.headers[name];
  const s = Array.isArray(v) ? v[0] : v;
  return s === undefined || s === '' ? undefined : s;
}

function readBody(req: IncomingMessage, max: number): Promise<string> {
  const declared = Number(req.headers['content-length']);
  if (Number.isFinite(declared) && declared > max) return Promise.reject(new HttpError(413, 'payload_too_large'));
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      // Too large: answer now; the rest is read and dropped.
      if (size > max) return reject(new HttpError(413, 'payload_too_large'));
      chunks.push(c);
    });
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

// `npx tsx examples/http-receiver/server.ts`: run it standalone.
if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const secret = process.env.RECEIVER_SIGNING_SECRET;
  if (secret === undefined || secret === '') {
    console.error('Set RECEIVER_SIGNING_SECRET to the destination\'s signing secret (the value of the secret its signing_secret names).');
    process.exit(2);
  }
  const receiver = await createReceiver({
    secret,
    port: Number(process.env.PORT ?? 8788),
    host: process.env.HOST ?? '127.0.0.1',
    onEvent: (e) => {
      // Your application's work goes here. A stale event is older than what you already have: skip it.
      if (e.stale) return;
    },
  });
  console.log(`Receiving on ${receiver.url} (POST any path; GET /health)`);
  const stop = () => void receiver.close().finally(() => process.exit(0));
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
}
