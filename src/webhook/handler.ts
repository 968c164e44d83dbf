/**
 * POST /webhooks/workos: read the raw body (capped) → verify the signature →
 * check the envelope → admit through the dedup ledger (which enqueues) →
 * answer. One structured log line per request; never a secret, signature or
 * payload content.
 */
import type { Context } from 'hono';
import { notifyAlerts } from '../alerts/notifier';
import { loadConfig, reportNotConfigured } from '../config/load';
import { settingMax } from '../config/router-config';
import { admitEvent } from '../ingest/admit';
import { stringBinding } from '../env';
import { isCatalogEventType } from '../events/catalog';
import { type ErrorCode, errorResponse } from '../http/errors';
import { log, logOnce } from '../log';
import { count, flushCounters } from '../metrics/counters';
import { readBodyCapped } from './body';
import { parseEnvelope } from './envelope';
import { type SignatureFailure, parseSecretList, verifyWorkOSSignature } from './signature';

const SIGNATURE_MESSAGES: Record<SignatureFailure, string> = {
  missing_signature: 'The WorkOS-Signature header is missing.',
  malformed_signature: 'The WorkOS-Signature header is malformed.',
  timestamp_out_of_tolerance: 'The signature timestamp is outside the accepted window.',
  signature_mismatch: 'The signature does not match the payload.',
};

/** Runs `work` after the response when the runtime gives an execution context (it always does in production). */
function background(c: Context<{ Bindings: Env }>, work: Promise<void>): void {
  try {
    c.executionCtx.waitUntil(work);
  } catch {
    void work;
  }
}

/** Requests from outside the allowlist, per isolate (logged once a minute at most, with the count). */
let outside = { count: 0, loggedAt: 0 };
function countOutsideAllowlist(mode: 'log' | 'enforce'): void {
  outside.count++;
  count('source_ip_outside_allowlist_total', { mode });
  const now = Date.now();
  if (now - outside.loggedAt >= 60_000) {
    log('warn', 'source_ip_outside_allowlist', { mode, count: outside.count });
    outside = { count: 0, loggedAt: now };
  }
}

/** When this isolate last told the alerts that ROUTER is invalid (at most once a minute). */
let configInvalidSignaledAt = 0;

/**
 * Tells the alerts that ROUTER is invalid, at most once a minute per isolate,
 * and only for a request WorkOS signed: an unsigned one stores nothing and
 * reaches no one (SECURITY.md). The response does not depend on it.
 */
async function signalConfigInvalid(c: Context<{ Bindings: Env }>, secrets: string[]): Promise<void> {
  if (Date.now() - configInvalidSignaledAt < 60_000) return;
  const header = c.req.header('workos-signature');
  if (header === undefined) return;
  // While ROUTER is invalid its own limits are unknown: the widest it may set.
  const body = await readBodyCapped(c.req.raw, settingMax('maxBodyBytes'));
  if (!body.ok) return;
  const verified = await verifyWorkOSSignature({ header, body: body.bytes, secrets, toleranceSeconds: settingMax('signatureToleranceSeconds') });
  if (!verified.ok || Date.now() - configInvalidSignaledAt < 60_000) return;
  configInvalidSignaledAt = Date.now();
  // After the response (never delaying or changing it); best effort, as every alert.
  background(c, notifyAlerts(c.env, [{ kind: 'config_invalid' }]).catch(() => undefined));
}

export async function handleWebhook(c: Context<{ Bindings: Env }>): Promise<Response> {
  const started = Date.now();
  const fields: Record<string, unknown> = {};
  const done = (res: Response, outcome: string): Response => {
    count('webhook_requests_total', { outcome });
    background(c, flushCounters(c.env));
    log(res.status >= 500 ? 'error' : res.status >= 400 ? 'warn' : 'info', 'webhook', {
      ...fields,
      outcome,
      status: res.status,
      duration_ms: Date.now() - started,
    });
    return res;
  };
  const fail = (status: number, code: ErrorCode, message: string): Response => done(errorResponse(status, code, message), code);

  const env = c.env;
  const secrets = parseSecretList(stringBinding(env, 'WORKOS_WEBHOOK_SECRET'));
  if (secrets.length === 0) {
    reportNotConfigured();
    return fail(500, 'not_configured', 'The router has no webhook secret configured.');
  }
  const loaded = loadConfig(env);
  if (!loaded.ok) {
    // Announced from here too: with the queue empty, no consumer batch would ever be held to say it.
    await signalConfigInvalid(c, secrets);
    return fail(500, 'config_invalid', 'The router configuration is invalid; see the Worker logs.');
  }
  const settings = loaded.config.settings;

  // Defence in depth, before the body is read: signatures stay the primary defence.
  const allow = settings.sourceAllowlist;
  if (allow !== null) {
    const ip = c.req.header('cf-connecting-ip');
    if (!allow.matches(ip)) {
      countOutsideAllowlist(allow.mode);
      if (allow.mode === 'enforce') return fail(403, 'source_not_allowed', 'Requests from this address are not accepted.');
      fields.source_ip_outside_allowlist = true;
    }
  }

  const body = await readBodyCapped(c.req.raw, settings.maxBodyBytes);
  if (!body.ok) return fail(413, 'payload_too_large', `The request body exceeds ${settings.maxBodyBytes} bytes.`);

  const verified = await verifyWorkOSSignature({
    header: c.req.header('workos-signature') ?? null,
    body: body.bytes,
    secrets,
    toleranceSeconds: settings.signatureToleranceSeconds,
  });
  if (!verified.ok) return fail(401, verified.reason, SIGNATURE_MESSAGES[verified.reason]);

  const envelope = parseEnvelope(body.bytes);
  if (!envelope.ok) return fail(400, envelope.reason, envelope.message);
  const event = envelope.event;
  fields.event_id = event.id;
  fields.event_type = event.event;
  if (!isCatalogEventType(event.event)) {
    logOnce(`unknown-type:${event.event}`, 'warn', 'unknown_event_type', { event_type: event.event });
  }

  const result = await admitEvent(env, loaded.config, event, envelope.text, body.bytes.byteLength, 'webhook');
  if (result.status === 'accepted' && result.stale === true) fields.stale = true;
  switch (result.status) {
    case 'accepted':
    case 'duplicate':
      return done(c.json({ status: result.status, id: event.id }, 200), result.status);
    case 'in_progress':
      return fail(409, 'in_progress', 'This event is still being accepted; retry shortly.');
    case 'unavailable':
      return fail(503, 'temporarily_unavailable', 'The event could not be stored; retry later.');
    default: {
      const never: never = result;
      throw new Error(`unexpected admit result ${JSON.stringify(never)}`);
    }
  }
}
