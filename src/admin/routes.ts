/**
 * The admin API (bearer `ADMIN_TOKEN`): status and dead letters.
 * Responses carry identifiers and counts only, never payloads.
 */
import { Hono } from 'hono';
import { bodyLimit } from 'hono/body-limit';
import { destinationRoutes } from './destinations';
import { eventRoutes } from './events';
import { metricsRoutes } from './metrics';
import { deadLetterStub } from '../deadletters/store';
import { ApiError } from '../http/errors';
import { sameSecret } from '../http/same-secret';
import { loadConfig } from '../config/load';
import { routerSource } from '../config/source';
import { reconcilerStub } from '../reconcile/reconciler';
import { stringBinding } from '../env';
import { audit } from '../log';
import { parseIsoTime } from '../config/iso-time';
import { suggest } from '../config/router-config';
import { type DeadLetterJob, isObject, parseBulkRequest, parseIdempotencyKey, quoted } from './bulk';

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

/** Admin requests are small JSON documents (a bulk filter, a replay's selection): a larger body is refused before it is read whole. */
export const ADMIN_BODY_LIMIT_BYTES = 64 * 1024;

adminRoutes.use(
  '*',
  bodyLimit({
    maxSize: ADMIN_BODY_LIMIT_BYTES,
    onError: () => {
      throw new ApiError(413, 'payload_too_large', `The request body is larger than ${ADMIN_BODY_LIMIT_BYTES / 1024} KB; admin requests are small JSON documents.`);
    },
  }),
);

adminRoutes.get('/status', async (c) => {
  const loaded = loadConfig(c.env);
  const source = routerSource(c.env).origin;
  const store = deadLetterStub(c.env);
  const [deadLetters, jobs, reconcile] = await Promise.all([store.count(), store.jobs(), reconcilerStub(c.env).status()]);
  return c.json({
    status: 'ok',
    config: loaded.ok
      ? { valid: true, source, rules: loaded.config.rules.length, destinations: loaded.config.destinations.size, warnings: loaded.warnings }
      : { valid: false, source, problems: loaded.problems, warnings: loaded.warnings },
    dead_letters: deadLetters,
    dead_letter_jobs: jobs,
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
    // A misspelt field would otherwise run an ordinary reconciliation, answered 200 as if the backfill had run.
    if (!isObject(body)) throw new ApiError(400, 'invalid_request', 'The body must be a JSON object, e.g. {"range_start": "2026-11-01T00:00:00Z"}, or empty.');
    for (const key of Object.keys(body)) {
      if (key !== 'range_start') throw new ApiError(400, 'invalid_request', `Unknown field ${quoted(key)}${suggest(key, ['range_start'])}: the body takes "range_start" only.`);
    }
    const rs = body.range_start;
    if (rs !== undefined) {
      // Strictly ISO 8601 with a zone (Date.parse would take "1" as 2001, and roll 2026-02-30 over to March).
      const ms = typeof rs === 'string' ? parseIsoTime(rs) : null;
      if (ms === null) {
        throw new ApiError(400, 'invalid_request', 'range_start must be an ISO 8601 time with a zone, e.g. "2026-11-01T00:00:00Z".');
      }
      rangeStart = new Date(ms).toISOString();
    }
  }
  const report = await reconcilerStub(c.env).run({ trigger: 'admin', ...(rangeStart !== undefined ? { rangeStart } : {}) });
  if (report.status === 'disabled') {
    throw new ApiError(409, 'reconcile_disabled', 'Reconciliation is off: set the WORKOS_API_KEY secret to enable it.');
  }
  return c.json(report);
});

adminRoutes.get('/dead-letters', async (c) => {
  // Digits only, as for a seq (Number() would take "1e2", "0x64", "+5" and an empty value).
  const limitText = c.req.query('limit') ?? '100';
  const afterText = c.req.query('after') ?? '0';
  // Any number of digits: a large limit is capped (500 a page), a large after finds nothing after it.
  const limit = /^[0-9]+$/.test(limitText) ? Math.min(Number(limitText), 500) : Number.NaN;
  const after = /^[0-9]+$/.test(afterText) ? Math.min(Number(afterText), Number.MAX_SAFE_INTEGER) : Number.NaN;
  if (!Number.isInteger(limit) || !Number.isInteger(after) || limit < 1 || after < 0) {
    throw new ApiError(400, 'invalid_request', 'limit and after must be positive whole numbers.');
  }
  const items = await deadLetterStub(c.env).list(limit, after);
  return c.json({ items, next_after: items.length > 0 ? items[items.length - 1]?.seq : null });
});

/**
 * Replays one dead letter: its destination gets the event again through the
 * normal delivery path (fresh attempts; see src/admin/replay.ts). The store
 * replays it from inside and removes it only once the replay is enqueued.
 */
adminRoutes.post('/dead-letters/:seq/replay', async (c) => {
  const seq = parseSeq(c.req.param('seq'));
  const outcome = await deadLetterStub(c.env).replayOne(seq);
  switch (outcome.status) {
    case 'replayed':
    case 'duplicate':
      return c.json({ status: outcome.status, event_id: outcome.event_id, destination: outcome.destination });
    case 'not_found':
      throw new ApiError(404, 'not_found', 'No dead letter with that seq.');
    case 'busy':
      throw new ApiError(409, 'in_progress', 'A bulk replay job is enqueuing this dead letter right now; list it again in a moment.');
    case 'not_replayable':
      throw new ApiError(
        409,
        'not_replayable',
        outcome.why === 'destination_removed'
          ? 'This dead letter\'s destination is no longer in the configuration; add it back to replay, or delete the dead letter.'
          : `This dead letter has no event body to replay (reason: ${outcome.reason}); delete it instead.`,
      );
    case 'config_invalid':
      throw new ApiError(500, 'config_invalid', 'The router configuration is invalid; see the Worker logs.');
    case 'unavailable':
      throw new ApiError(503, 'temporarily_unavailable', `The replay could not be enqueued (${outcome.error}); the dead letter was kept.`);
    default: {
      const never: never = outcome;
      throw new Error(`unexpected replay outcome ${JSON.stringify(never)}`);
    }
  }
});

/**
 * Bulk actions on the dead letters a filter selects (src/admin/bulk.ts):
 * `200` when finished within the request (or a dry run), `202` with the job
 * while it goes on in the background (`GET /admin/dead-letters/jobs/<id>`,
 * `GET /admin/status`). An `Idempotency-Key` makes a retried request return
 * its first job instead of starting another.
 */
for (const action of ['replay', 'discard'] as const) {
  adminRoutes.post(`/dead-letters/${action}`, async (c) => {
    const key = parseIdempotencyKey(c.req.header('idempotency-key'));
    const request = parseBulkRequest(await c.req.text());
    // No new replay job while ROUTER is invalid; a repeated key still gets its first job.
    const refuseNew = action === 'replay' && !request.dry_run && !loadConfig(c.env).ok;
    const result = await deadLetterStub(c.env).startJob(action, request, request.dry_run ? null : key, refuseNew);
    if (result.kind === 'config_invalid') throw new ApiError(500, 'config_invalid', 'The router configuration is invalid; see the Worker logs.');
    const verb = action === 'replay' ? 'replayed' : 'discarded';
    if (result.kind === 'dry_run') return c.json({ action, dry_run: true, matched: result.matched, [verb]: 0 });
    if (result.kind === 'key_reused') {
      throw new ApiError(422, 'idempotency_key_reused', `This Idempotency-Key was already used by job ${result.job_id} for a different request; use a new key.`);
    }
    const { job } = result;
    const body = { action, matched: job.matched, [verb]: job.done, failed: job.failed, job, ...(result.kind === 'existing' ? { repeated: true } : {}) };
    if (job.state !== 'running') return c.json(body, 200);
    c.header('Location', `/admin/dead-letters/jobs/${job.id}`);
    return c.json(body, 202);
  });
}

/** One bulk job's progress. */
adminRoutes.get('/dead-letters/jobs/:id', async (c) => {
  const job: DeadLetterJob | null = await deadLetterStub(c.env).job(c.req.param('id'));
  if (job === null) throw new ApiError(404, 'not_found', 'No dead-letter job with that id.');
  return c.json(job);
});

/** Deletes one dead letter without replaying it. */
adminRoutes.delete('/dead-letters/:seq', async (c) => {
  const seq = parseSeq(c.req.param('seq'));
  const removed = await deadLetterStub(c.env).remove(seq);
  if (removed === 'not_found') throw new ApiError(404, 'not_found', 'No dead letter with that seq.');
  if (removed === 'busy') throw new ApiError(409, 'in_progress', 'A replay of this dead letter is being enqueued right now; list it again in a moment.');
  audit('dead_letter_deleted', { seq });
  return c.json({ status: 'deleted', seq });
});

/** A dead letter's seq from the path: digits only (no sign, exponent, hex or blanks), at least 1. */
function parseSeq(param: string): number {
  const seq = /^0*[0-9]{1,15}$/.test(param) ? Number(param) : Number.NaN;
  if (!Number.isSafeInteger(seq) || seq < 1) throw new ApiError(400, 'invalid_request', 'seq must be a positive whole number.');
  return seq;
}

/** The token of an `Authorization: Bearer <token>` header; the scheme is case-insensitive (RFC 9110), blanks around the token are tolerated. */
function bearerToken(header: string | undefined): string {
  const match = /^[ \t]*bearer[ \t]+(.*)$/i.exec(header ?? '');
  return match?.[1]?.trim() ?? '';
}

/** Destinations: state and health, pause and resume (src/admin/destinations.ts). */
adminRoutes.route('/destinations', destinationRoutes);
/** The delivery trace: one event, a filtered page, replays to a destination (src/admin/events.ts). */
adminRoutes.route('/events', eventRoutes);
/** Counters and gauges in the Prometheus text format (src/admin/metrics.ts). */
adminRoutes.route('/metrics', metricsRoutes);
