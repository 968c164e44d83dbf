/**
 * The admin API (bearer `ADMIN_TOKEN`): status and dead letters.
 * Responses carry identifiers and counts only, never payloads.
 */
import { Hono } from 'hono';
import { RECONCILE_ENQUEUE_FAILED, ROUTER_DESTINATION, deadLetterStub } from '../deadletters/store';
import { admitEvent } from '../ingest/admit';
import { ApiError } from '../http/errors';
import { constantTimeEqual } from '../webhook/signature';
import { loadConfig } from '../config/load';
import { reconcilerStub } from '../reconcile/reconciler';
import { errorName } from '../log';
import { stringBinding } from '../env';
import { ledgerStub, shardKeyOf } from '../dedup/shard';
import type { UnknownEvent } from '../events/catalog';
import { type RouterMessage, fitsInline, utf8Length } from '../queue/message';

export const adminRoutes = new Hono<{ Bindings: Env }>();

adminRoutes.use('*', async (c, next) => {
  const expected = stringBinding(c.env, 'ADMIN_TOKEN');
  if (expected === undefined) {
    throw new ApiError(403, 'admin_disabled', 'The admin API is disabled: set the ADMIN_TOKEN secret to enable it.');
  }
  const token = bearerToken(c.req.header('authorization'));
  if (!(await sameSecret(token, expected))) {
    throw new ApiError(401, 'unauthorized', 'A valid bearer token is required.', { 'WWW-Authenticate': 'Bearer' });
  }
  await next();
});

adminRoutes.get('/status', async (c) => {
  const loaded = loadConfig(c.env);
  const [deadLetters, reconcile] = await Promise.all([deadLetterStub(c.env).count(), reconcilerStub(c.env).status()]);
  return c.json({
    status: 'ok',
    config: loaded.ok
      ? { valid: true, rules: loaded.config.rules.length, destinations: loaded.config.destinations.size, warnings: loaded.warnings }
      : { valid: false, problems: loaded.problems },
    dead_letters: deadLetters,
    reconcile,
  });
});

/** Starts a reconciliation run now; `{ "range_start": "<ISO time>" }` backfills from that time. */
adminRoutes.post('/reconcile', async (c) => {
  if (stringBinding(c.env, 'WORKOS_API_KEY') === undefined) {
    throw new ApiError(409, 'reconcile_disabled', 'Reconciliation is off: set the WORKOS_API_KEY secret to enable it.');
  }
  let rangeStart: string | undefined;
  const text = await c.req.text();
  if (text.trim() !== '') {
    let body: unknown;
    try {
      body = JSON.parse(text);
    } catch {
      throw new ApiError(400, 'invalid_request', 'The body must be JSON, e.g. {"range_start": "2026-11-01T00:00:00Z"}.');
    }
    const rs = (body as { range_start?: unknown } | null)?.range_start;
    if (rs !== undefined) {
      if (typeof rs !== 'string' || Number.isNaN(Date.parse(rs))) {
        throw new ApiError(400, 'invalid_request', 'range_start must be an ISO 8601 time.');
      }
      rangeStart = new Date(rs).toISOString();
    }
  }
  const report = await reconcilerStub(c.env).run({ trigger: 'admin', ...(rangeStart !== undefined ? { rangeStart } : {}) });
  if (report.status === 'disabled') {
    throw new ApiError(409, 'reconcile_disabled', 'Reconciliation is off: set the WORKOS_API_KEY secret to enable it.');
  }
  return c.json(report);
});

adminRoutes.get('/dead-letters', async (c) => {
  const limit = Number(c.req.query('limit') ?? '100');
  const after = Number(c.req.query('after') ?? '0');
  if (!Number.isInteger(limit) || !Number.isInteger(after) || limit < 1 || after < 0) {
    throw new ApiError(400, 'invalid_request', 'limit and after must be positive whole numbers.');
  }
  const items = await deadLetterStub(c.env).list(limit, after);
  return c.json({ items, next_after: items.length > 0 ? items[items.length - 1]?.seq : null });
});

/**
 * Replays one dead letter: its destination gets the event again through the
 * normal delivery path (fresh attempts). The record leaves the store only once
 * the replay is enqueued.
 */
adminRoutes.post('/dead-letters/:seq/replay', async (c) => {
  const seq = parseSeq(c.req.param('seq'));
  const loaded = loadConfig(c.env);
  if (!loaded.ok) throw new ApiError(500, 'config_invalid', 'The router configuration is invalid; see the Worker logs.');
  const store = deadLetterStub(c.env);
  const record = await store.take(seq);
  if (record === null) throw new ApiError(404, 'not_found', 'No dead letter with that seq.');
  let event: UnknownEvent;
  try {
    event = JSON.parse(record.body) as UnknownEvent;
  } catch {
    await store.restore(record);
    throw new ApiError(409, 'not_replayable', `This dead letter has no event body to replay (reason: ${record.reason}); delete it instead.`);
  }
  if (record.reason === RECONCILE_ENQUEUE_FAILED) {
    // Never accepted: admit it through the dedup ledger like a webhook, so a
    // copy that arrived meanwhile is not delivered twice.
    const result = await admitEvent(c.env, loaded.config.settings, event, record.body, utf8Length(record.body), record.source ?? 'reconcile');
    if (result.status === 'unavailable' || result.status === 'in_progress') {
      await store.restore(record);
      throw new ApiError(503, 'temporarily_unavailable', 'The replay could not be enqueued; the dead letter was kept.');
    }
    return c.json({ status: result.status === 'accepted' ? 'replayed' : 'duplicate', event_id: record.event_id, destination: record.destination });
  }
  try {
    const message: RouterMessage = {
      v: 1,
      id: record.event_id,
      type: record.event_type,
      created_at: event.created_at,
      source: record.source ?? 'webhook',
      accepted_at: Date.now(),
    };
    // A record the router itself could not route (`(router)`) is routed again
    // by the rules in force now; any other goes to its own destination.
    if (record.destination !== ROUTER_DESTINATION) message.pending = { [record.destination]: { attempts: 0, rules: record.rules } };
    if (record.stale === true) message.stale = true;
    if (!fitsInline(message, record.body, utf8Length(record.body))) {
      const settings = loaded.config.settings;
      const { name, stub } = ledgerStub(c.env, shardKeyOf(event), settings.dedupShards);
      const retentionMs = settings.dedupRetentionDays * 86_400_000;
      const until = Date.now() + retentionMs;
      await stub.storeBody(record.event_id, record.body, until);
      message.body_ref = { shard: name, until };
    } else message.body = record.body;
    await c.env.EVENTS_QUEUE.send(message, { contentType: 'json' });
  } catch (err) {
    await store.restore(record);
    throw new ApiError(503, 'temporarily_unavailable', `The replay could not be enqueued (${errorName(err).split(':')[0]}); the dead letter was kept.`);
  }
  return c.json({ status: 'replayed', event_id: record.event_id, destination: record.destination });
});

/** Deletes one dead letter without replaying it. */
adminRoutes.delete('/dead-letters/:seq', async (c) => {
  const seq = parseSeq(c.req.param('seq'));
  if (!(await deadLetterStub(c.env).remove(seq))) throw new ApiError(404, 'not_found', 'No dead letter with that seq.');
  return c.json({ status: 'deleted', seq });
});

/** A dead letter's seq from the path: digits only (no sign, exponent, hex or blanks), at least 1. */
function parseSeq(param: string): number {
  const seq = /^[0-9]{1,15}$/.test(param) ? Number(param) : Number.NaN;
  if (!Number.isSafeInteger(seq) || seq < 1) throw new ApiError(400, 'invalid_request', 'seq must be a positive whole number.');
  return seq;
}

/** The token of an `Authorization: Bearer <token>` header; the scheme is case-insensitive (RFC 9110), blanks around the token are tolerated. */
function bearerToken(header: string | undefined): string {
  const match = /^[ \t]*bearer[ \t]+(.*)$/i.exec(header ?? '');
  return match?.[1]?.trim() ?? '';
}

/** Constant-time comparison of two secrets (hash both to equal lengths, compare digests). */
async function sameSecret(a: string, b: string): Promise<boolean> {
  const enc = new TextEncoder();
  const [da, db] = await Promise.all([crypto.subtle.digest('SHA-256', enc.encode(a)), crypto.subtle.digest('SHA-256', enc.encode(b))]);
  return constantTimeEqual(new Uint8Array(da), new Uint8Array(db)) && a.length > 0;
}
