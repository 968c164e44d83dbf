/**
 * Admin console sign-in session: the trust boundary for the console's cookie.
 *
 * What a valid cookie proves: whoever holds it was issued it by this router,
 * after typing the current `ADMIN_TOKEN`, less than its TTL ago. Nothing else
 * is stored: the cookie is self-contained and verified on every request.
 *
 * `router_console=v1.<expiresAtMs>.<sid>.<sig>`
 *
 * - `sig` = base64url HMAC-SHA256 over `v1.<expiresAtMs>.<sid>` (the exact
 *   text), keyed with HMAC-SHA256(ADMIN_TOKEN, "workos-event-router console
 *   session v1"): the token itself is never the MAC key, and rotating the
 *   token invalidates every session.
 * - Parsing is strict: 4 parts, canonical decimal expiry, canonical
 *   base64url (so no second spelling of a signature verifies), ≤ 512 chars.
 * - The signature is checked (constant time, `crypto.subtle.verify`) before
 *   the expiry is believed; expiry is checked after.
 * - Verification never throws: typed failure reasons inside, callers show a
 *   generic "sign in again" outside.
 *
 * CSRF: double-submit token (`router_csrf` cookie repeated as form field
 * `csrf`), compared in constant time. Cookies are `Path=/console; HttpOnly;
 * Secure; SameSite=Strict`.
 *
 * Web Crypto only: the Worker runs without `nodejs_compat`.
 */

export const SESSION_COOKIE = 'router_console';
export const CSRF_COOKIE = 'router_csrf';
export const SESSION_TTL_SECONDS = 8 * 3600;

export interface Session {
  /** 16 random bytes, base64url (22 chars). */
  sid: string;
  /** ms since epoch; the session is expired from this instant on. */
  expiresAt: number;
}

export type SessionFailure = 'missing' | 'malformed' | 'bad_signature' | 'expired';

export type SessionResult = { ok: true; session: Session } | { ok: false; reason: SessionFailure };

const VERSION = 'v1';
const KEY_LABEL = 'workos-event-router console session v1';
const MAX_VALUE_LENGTH = 512;
/** Canonical decimal: no sign, no leading zero, at most 16 digits (then checked to be a safe integer). */
const EXPIRES = /^[1-9][0-9]{0,15}$/;
/** 16 bytes base64url, unpadded; the last char carries 2 bits of data and 4 zero bits. */
const SID = /^[A-Za-z0-9_-]{21}[AQgw]$/;
/** 32 bytes base64url, unpadded; the last char carries 4 bits of data and 2 zero bits. */
const SIG = /^[A-Za-z0-9_-]{42}[AEIMQUYcgkosw048]$/;
/** 32 bytes base64url, unpadded (equality is all that is checked, so canonical form does not matter). */
const CSRF = /^[A-Za-z0-9_-]{43}$/;
/** RFC 6265 cookie-octet. */
const COOKIE_OCTETS = /^[\x21\x23-\x2B\x2D-\x3A\x3C-\x5B\x5D-\x7E]*$/;
/** RFC 6265 token (cookie name). */
const COOKIE_NAME = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

const encoder = new TextEncoder();

/** Issues a session cookie value. Throws (programmer error) on an empty token or a bad clock / TTL. */
export async function createSession(
  adminToken: string,
  nowMs: number,
  ttlSeconds: number = SESSION_TTL_SECONDS,
): Promise<{ value: string; session: Session }> {
  if (adminToken.length === 0) throw new TypeError('createSession: empty admin token');
  if (!Number.isSafeInteger(ttlSeconds) || ttlSeconds <= 0) throw new RangeError('createSession: ttlSeconds must be a positive integer');
  const expiresAt = Math.trunc(nowMs) + ttlSeconds * 1000;
  if (!Number.isSafeInteger(expiresAt) || !EXPIRES.test(String(expiresAt))) throw new RangeError('createSession: bad clock');
  const sid = base64url(crypto.getRandomValues(new Uint8Array(16)));
  const signed = `${VERSION}.${expiresAt}.${sid}`;
  const key = await sessionKey(adminToken);
  const sig = base64url(new Uint8Array(await crypto.subtle.sign('HMAC', key, encoder.encode(signed))));
  return { value: `${signed}.${sig}`, session: { sid, expiresAt } };
}

/** Verifies a session cookie value. Never throws. */
export async function verifySession(adminToken: string, value: string | undefined, nowMs: number): Promise<SessionResult> {
  try {
    if (value === undefined || value.length === 0) return { ok: false, reason: 'missing' };
    const parsed = parseSessionValue(value);
    if (parsed === null) return { ok: false, reason: 'malformed' };
    // No token, no session: an empty token cannot sign anything.
    if (typeof adminToken !== 'string' || adminToken.length === 0) return { ok: false, reason: 'bad_signature' };
    const key = await sessionKey(adminToken);
    const valid = await crypto.subtle.verify('HMAC', key, parsed.sig, encoder.encode(parsed.signed));
    if (!valid) return { ok: false, reason: 'bad_signature' };
    // Only an authenticated expiry is believed; a clock that is not a number fails closed.
    if (!Number.isFinite(nowMs) || nowMs >= parsed.expiresAt) return { ok: false, reason: 'expired' };
    return { ok: true, session: { sid: parsed.sid, expiresAt: parsed.expiresAt } };
  } catch {
    // Web Crypto failing is not the caller's input being valid.
    return { ok: false, reason: 'bad_signature' };
  }
}

interface ParsedSession {
  signed: string;
  expiresAt: number;
  sid: string;
  sig: Uint8Array<ArrayBuffer>;
}

function parseSessionValue(value: string): ParsedSession | null {
  if (value.length > MAX_VALUE_LENGTH) return null;
  const parts = value.split('.');
  if (parts.length !== 4) return null;
  const [version, expiresText, sid, sigText] = parts as [string, string, string, string];
  if (version !== VERSION || !EXPIRES.test(expiresText) || !SID.test(sid) || !SIG.test(sigText)) return null;
  const expiresAt = Number(expiresText);
  if (!Number.isSafeInteger(expiresAt)) return null;
  const sig = base64urlDecode(sigText);
  if (sig === null || sig.length !== 32) return null;
  return { signed: `${version}.${expiresText}.${sid}`, expiresAt, sid, sig };
}

/** HMAC key derived from the admin token; the token is never used as the session MAC key itself. */
async function sessionKey(adminToken: string): Promise<CryptoKey> {
  const root = await crypto.subtle.importKey('raw', encoder.encode(adminToken), { name: 'HMAC', hash: 'SHA-256' }, false, ['sign']);
  const derived = await crypto.subtle.sign('HMAC', root, encoder.encode(KEY_LABEL));
  return crypto.subtle.importKey('raw', derived, { name: 'HMAC', hash: 'SHA-256' }, false, ['sign', 'verify']);
}

// ---------------------------------------------------------------------------
// Cookies

/**
 * Reads one cookie's value from a `Cookie` header. The first cookie of that
 * name wins (browsers send the most specific path first). Surrounding spaces
 * are ignored and one pair of double quotes is removed. Undefined when absent,
 * or when that first value is not made of RFC 6265 cookie-octets. Never throws.
 */
export function readCookie(header: string | undefined, name: string): string | undefined {
  if (typeof header !== 'string' || typeof name !== 'string' || name.length === 0) return undefined;
  for (const pair of header.split(';')) {
    const eq = pair.indexOf('=');
    if (eq < 0) continue;
    if (pair.slice(0, eq).trim() !== name) continue;
    let v = pair.slice(eq + 1).trim();
    if (v.length >= 2 && v.startsWith('"') && v.endsWith('"')) v = v.slice(1, -1);
    return COOKIE_OCTETS.test(v) ? v : undefined;
  }
  return undefined;
}

const ATTRIBUTES = 'Path=/console; HttpOnly; Secure; SameSite=Strict';

/** `Set-Cookie` value for a session. */
export function sessionCookie(value: string, ttlSeconds: number): string {
  return setCookie(SESSION_COOKIE, value, ttlSeconds);
}

/** `Set-Cookie` value that removes a console cookie. */
export function clearedCookie(name: string): string {
  return setCookie(name, '', 0);
}

/** `Set-Cookie` value for the CSRF token. */
export function csrfCookie(token: string, ttlSeconds: number): string {
  return setCookie(CSRF_COOKIE, token, ttlSeconds);
}

/** Refuses (throws) anything that would let a value write its own attributes. */
function setCookie(name: string, value: string, maxAge: number): string {
  if (!COOKIE_NAME.test(name)) throw new TypeError('cookie name is not an RFC 6265 token');
  if (!COOKIE_OCTETS.test(value)) throw new TypeError('cookie value is not made of RFC 6265 cookie-octets');
  if (!Number.isSafeInteger(maxAge) || maxAge < 0) throw new RangeError('Max-Age must be a non-negative integer');
  return `${name}=${value}; ${ATTRIBUTES}; Max-Age=${maxAge}`;
}

// ---------------------------------------------------------------------------
// CSRF (double submit)

/** 32 random bytes, base64url (43 chars). */
export function newCsrfToken(): string {
  return base64url(crypto.getRandomValues(new Uint8Array(32)));
}

/** True only when both are present, well-formed and equal (constant time over the 43 chars). */
export function csrfMatches(cookieToken: string | undefined, formToken: string | undefined): boolean {
  if (typeof cookieToken !== 'string' || typeof formToken !== 'string') return false;
  if (!CSRF.test(cookieToken) || !CSRF.test(formToken)) return false;
  let diff = 0;
  for (let i = 0; i < cookieToken.length; i++) diff |= cookieToken.charCodeAt(i) ^ formToken.charCodeAt(i);
  return diff === 0;
}

// ---------------------------------------------------------------------------
// base64url (unpadded)

function base64url(bytes: Uint8Array): string {
  let binary = '';
  for (const b of bytes) binary += String.fromCharCode(b);
  return btoa(binary).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

/** Decodes text already checked against a base64url pattern; null if atob refuses it. */
function base64urlDecode(text: string): Uint8Array<ArrayBuffer> | null {
  try {
    const binary = atob(text.replace(/-/g, '+').replace(/_/g, '/'));
    const out = new Uint8Array(binary.length);
    for (let i = 0; i < binary.length; i++) out[i] = binary.charCodeAt(i);
    return out;
  } catch {
    return null;
  }
}
