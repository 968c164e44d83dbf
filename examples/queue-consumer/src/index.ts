/**
 * Example downstream Worker: consumes the `workos-audit` queue the router's
 * queue destination sends to, and mirrors WorkOS users and directory users
 * into an app's own users API (`USERS_API_URL`).
 *
 * It depends on the router only for types and one small guard:
 * `workos-event-router/events` (package.json `exports`). Every message is
 * acknowledged or retried on its own outcome:
 *
 * - malformed body            → ack (retrying cannot fix it), `error` log line
 * - type unknown to this build → ack, `info` log line (WorkOS added a type)
 * - stale (`"stale": true`)    → ack without applying it: the router already
 *                                routed a newer event for the same object,
 *                                and applying this one would roll it back
 * - handled type               → PUT / DELETE on the users API; 2xx (and 404
 *                                for a delete) ack, 408/429/5xx or a network
 *                                error retry with backoff, other 4xx ack + log
 * - any other catalog type     → ack
 *
 * Delivery is at least once: a message may arrive twice. PUT and DELETE by id
 * are idempotent, so a repeat is harmless; key anything else on `event.id`.
 */
import { type RoutedEvent, parseRoutedMessage } from 'workos-event-router/events';

export interface Env {
  /** Base URL of the app's users API, e.g. `https://users.internal.example.com`. */
  USERS_API_URL: string;
  /** Optional bearer token for that API (`wrangler secret put USERS_API_TOKEN`). */
  USERS_API_TOKEN?: string;
}

/** What the consumer does with one event (pure: decided from the event alone). */
export type Action =
  | { kind: 'put'; path: string; body: Record<string, unknown> }
  | { kind: 'delete'; path: string }
  | { kind: 'skip'; why: 'stale' | 'not_handled' };

/**
 * The narrowing: each `case` sees its own payload type (`e.data` is a
 * `DirectoryUserResponse` for `dsync.user.*`, a `UserResponse` for `user.*`),
 * checked at compile time.
 */
export function actionFor(e: RoutedEvent): Action {
  switch (e.event) {
    case 'dsync.user.created':
    case 'dsync.user.updated':
      if (e.stale === true) return { kind: 'skip', why: 'stale' };
      return {
        kind: 'put',
        path: `/directory-users/${encodeURIComponent(e.data.id)}`,
        body: {
          directory_id: e.data.directory_id,
          organization_id: e.data.organization_id,
          email: e.data.email,
          first_name: e.data.first_name,
          last_name: e.data.last_name,
          active: e.data.state === 'active',
          updated_at: e.data.updated_at,
        },
      };
    case 'user.created':
    case 'user.updated':
      if (e.stale === true) return { kind: 'skip', why: 'stale' };
      return {
        kind: 'put',
        path: `/users/${encodeURIComponent(e.data.id)}`,
        body: {
          email: e.data.email,
          email_verified: e.data.email_verified,
          first_name: e.data.first_name,
          last_name: e.data.last_name,
          updated_at: e.data.updated_at,
        },
      };
    // The router never marks a deletion stale; no `stale` check needed.
    case 'dsync.user.deleted':
      return { kind: 'delete', path: `/directory-users/${encodeURIComponent(e.data.id)}` };
    case 'user.deleted':
      return { kind: 'delete', path: `/users/${encodeURIComponent(e.data.id)}` };
    default:
      // Every other catalog type: routed here by the router's rules, not needed by this app.
      return { kind: 'skip', why: 'not_handled' };
  }
}

export default {
  async queue(batch: MessageBatch<unknown>, env: Env): Promise<void> {
    // Concurrently: each message is acked or retried on its own outcome.
    await Promise.all(batch.messages.map((message) => handleMessage(message, env)));
  },
} satisfies ExportedHandler<Env>;

async function handleMessage(message: Message<unknown>, env: Env): Promise<void> {
  const parsed = parseRoutedMessage(message.body);
  if (!parsed.ok) {
    log('error', 'malformed_message', { message_id: message.id, reason: parsed.reason });
    message.ack();
    return;
  }
  if (!parsed.known) {
    log('info', 'unknown_event_type', { event_id: parsed.event.id, event_type: parsed.event.event });
    message.ack();
    return;
  }
  const e = parsed.event;
  const action = actionFor(e);
  if (action.kind === 'skip') {
    if (action.why === 'stale') log('info', 'stale_skipped', { event_id: e.id, event_type: e.event });
    message.ack();
    return;
  }
  const outcome = await call(env, action, e.id);
  if (outcome === 'ok') {
    message.ack();
  } else if (outcome === 'retry') {
    const delaySeconds = Math.min(3600, 10 * 2 ** Math.max(0, message.attempts - 1));
    log('warn', 'retrying', { event_id: e.id, event_type: e.event, attempts: message.attempts, delay_seconds: delaySeconds });
    message.retry({ delaySeconds });
  } else {
    log('error', 'rejected', { event_id: e.id, event_type: e.event, status: outcome.status });
    message.ack();
  }
}

async function call(
  env: Env,
  action: Exclude<Action, { kind: 'skip' }>,
  eventId: string,
): Promise<'ok' | 'retry' | { status: number }> {
  const headers = new Headers({ 'Idempotency-Key': eventId });
  if (env.USERS_API_TOKEN) headers.set('Authorization', `Bearer ${env.USERS_API_TOKEN}`);
  const url = env.USERS_API_URL.replace(/\/+$/, '') + action.path;
  if (action.kind === 'put') headers.set('Content-Type', 'application/json');
  const body = action.kind === 'put' ? JSON.stringify(action.body) : null;
  let res: Response;
  try {
    res = await fetch(url, { method: action.kind.toUpperCase(), headers, body, signal: AbortSignal.timeout(10_000) });
  } catch {
    return 'retry';
  }
  await res.body?.cancel().catch(() => undefined);
  if (res.ok || (action.kind === 'delete' && res.status === 404)) return 'ok';
  if (res.status === 408 || res.status === 429 || res.status >= 500) return 'retry';
  return { status: res.status };
}

function log(level: 'info' | 'warn' | 'error', msg: string, fields: Record<string, unknown>): void {
  console[level === 'info' ? 'log' : level](JSON.stringify({ level, msg, ...fields }));
}
