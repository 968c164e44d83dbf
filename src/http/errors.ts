/**
 * The one error type of the HTTP surface, and its JSON body:
 * `{ "error": "<code>", "message": "<human sentence>" }`.
 */
import type { Context } from 'hono';
import { HTTPException } from 'hono/http-exception';
import type { ContentfulStatusCode } from 'hono/utils/http-status';
import { errorName, log } from '../log';

export type ErrorCode =
  | 'missing_signature'
  | 'malformed_signature'
  | 'timestamp_out_of_tolerance'
  | 'signature_mismatch'
  | 'not_configured'
  | 'config_invalid'
  | 'payload_too_large'
  | 'invalid_json'
  | 'invalid_event'
  | 'in_progress'
  | 'temporarily_unavailable'
  | 'method_not_allowed'
  | 'not_found'
  | 'unauthorized'
  | 'admin_disabled'
  | 'invalid_request'
  | 'reconcile_disabled'
  | 'not_replayable'
  | 'idempotency_key_reused'
  | 'source_not_allowed'
  | 'internal_error';

export class ApiError extends HTTPException {
  constructor(
    status: ContentfulStatusCode,
    readonly code: ErrorCode,
    message: string,
    readonly headers: Record<string, string> = {},
    /** Fields the body carries besides `error` and `message` (what a partly done request did). */
    readonly extra: Record<string, unknown> = {},
  ) {
    super(status, { message });
  }
}

export function errorResponse(status: number, code: ErrorCode, message: string, headers: Record<string, string> = {}, extra: Record<string, unknown> = {}): Response {
  return new Response(JSON.stringify({ ...extra, error: code, message }), {
    status,
    headers: { 'Content-Type': 'application/json; charset=utf-8', ...headers },
  });
}

export function onError(err: Error, c: Context): Response {
  if (err instanceof ApiError) return errorResponse(err.status, err.code, err.message, err.headers, err.extra);
  log('error', 'unhandled_error', { path: new URL(c.req.url).pathname, error: errorName(err) });
  return errorResponse(500, 'internal_error', 'The router hit an unexpected error.');
}
