/**
 * Cloudflare Access in front of the admin console: the trust boundary for
 * the `Cf-Access-Jwt-Assertion` header.
 *
 * What a valid assertion proves: Cloudflare Access, for this team
 * (`iss` = `https://<team domain>`) and this Access application (`aud`),
 * authenticated the caller, and the token has not expired. Checking the
 * header ourselves (rather than trusting that Access sits in front) means a
 * request that reaches the Worker some other way (workers.dev, a route
 * without the Access application) is refused.
 *
 * - Signatures: RS256 only (the `alg` allow-list stops `none` / HS256
 *   confusion), keys from `https://<team domain>/cdn-cgi/access/certs`,
 *   fetched by jose and cached per isolate per team domain.
 * - `exp` and `sub` are required (jose alone would accept a token without
 *   `exp` for ever).
 * - Garbage (not three base64url parts, too long) is refused before any key
 *   is fetched: an attacker cannot make the Worker fetch by sending junk.
 * - Never throws: every jose error is mapped, exhaustively by error code, to
 *   a typed reason inside; callers show one generic error outside.
 */
import { createRemoteJWKSet, errors, jwtVerify } from 'jose';
import type { JWTVerifyGetKey, RemoteJWKSet } from 'jose';

export type AccessFailure =
  | 'missing'
  | 'malformed'
  | 'bad_signature'
  | 'expired'
  | 'wrong_audience'
  | 'wrong_issuer'
  | 'keys_unavailable'
  | 'invalid';

export interface AccessIdentity {
  /** The user's email; null for service tokens, which have none. */
  email: string | null;
  /** Access's user id (an empty string for service tokens). */
  sub: string;
}

export type AccessResult = { ok: true; identity: AccessIdentity } | { ok: false; reason: AccessFailure };

/** Access assertions are about 1–2 KB; anything far larger is not one. */
const MAX_TOKEN_LENGTH = 8192;
const COMPACT_JWS = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/;
const LABEL = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;

/**
 * "team.cloudflareaccess.com" or "https://team.cloudflareaccess.com/" →
 * "team.cloudflareaccess.com" (lower-cased, surrounding blanks ignored).
 * Null for anything else: another scheme, a port, a path, credentials, a
 * single label, an IP address.
 */
export function normalizeTeamDomain(value: string): string | null {
  if (typeof value !== 'string') return null;
  let host = value.trim().toLowerCase();
  if (host.startsWith('https://')) host = host.slice('https://'.length);
  if (host.endsWith('/')) host = host.slice(0, -1);
  if (host.length === 0 || host.length > 253) return null;
  const labels = host.split('.');
  if (labels.length < 2 || !labels.every((l) => LABEL.test(l))) return null;
  // A top-level label of digits only is an IPv4 address, not a team domain.
  if (/^[0-9]+$/.test(labels[labels.length - 1] ?? '')) return null;
  return host;
}

/** Remote key sets, per isolate per team domain (the team domain comes from configuration: a handful at most). */
const keySets = new Map<string, RemoteJWKSet>();
const KEY_SET_LIMIT = 16;

function keySetFor(teamDomain: string): RemoteJWKSet {
  let set = keySets.get(teamDomain);
  if (set === undefined) {
    if (keySets.size >= KEY_SET_LIMIT) keySets.clear();
    set = createRemoteJWKSet(new URL(`https://${teamDomain}/cdn-cgi/access/certs`));
    keySets.set(teamDomain, set);
  }
  return set;
}

/** Raised by our key resolver when the team's keys could not be obtained (network, HTTP status, JSON, JWKS shape). */
class KeysUnavailable extends Error {
  constructor(cause: unknown) {
    super('Access keys unavailable', { cause });
    this.name = 'KeysUnavailable';
  }
}

/**
 * The remote key set, with its failures split in two: "no key of the team
 * matches this token" stays a jose error (the token's fault); anything else
 * while resolving keys is the key source's fault.
 */
function resolverFor(teamDomain: string): JWTVerifyGetKey {
  const set = keySetFor(teamDomain);
  return async (header, token) => {
    try {
      return await set(header, token);
    } catch (err) {
      if (err instanceof errors.JWKSNoMatchingKey || err instanceof errors.JWKSMultipleMatchingKeys) throw err;
      throw new KeysUnavailable(err);
    }
  };
}

/** Verifies a `Cf-Access-Jwt-Assertion` value. Never throws. */
export async function verifyAccessJwt(token: string | undefined, opts: { teamDomain: string; aud: string }): Promise<AccessResult> {
  try {
    if (token === undefined || token.trim().length === 0) return { ok: false, reason: 'missing' };
    if (token.length > MAX_TOKEN_LENGTH || !COMPACT_JWS.test(token)) return { ok: false, reason: 'malformed' };
    const teamDomain = normalizeTeamDomain(opts.teamDomain);
    // A configuration that cannot verify anything fails closed, without a fetch.
    if (teamDomain === null || typeof opts.aud !== 'string' || opts.aud.trim().length === 0) return { ok: false, reason: 'invalid' };
    const { payload } = await jwtVerify(token, resolverFor(teamDomain), {
      issuer: `https://${teamDomain}`,
      audience: opts.aud,
      algorithms: ['RS256'],
      requiredClaims: ['exp', 'sub'],
    });
    if (typeof payload.sub !== 'string') return { ok: false, reason: 'invalid' };
    const email = typeof payload['email'] === 'string' ? payload['email'] : null;
    return { ok: true, identity: { email, sub: payload.sub } };
  } catch (err) {
    return { ok: false, reason: failureOf(err) };
  }
}

function failureOf(err: unknown): AccessFailure {
  if (err instanceof KeysUnavailable) return 'keys_unavailable';
  if (!(err instanceof errors.JOSEError)) return 'invalid';
  const code = err.code;
  return isJoseErrorCode(code) ? reasonForCode(code, err) : 'invalid';
}

const JOSE_ERROR_CODES: Record<errors.JOSEErrorCode, true> = {
  ERR_JOSE_ALG_NOT_ALLOWED: true,
  ERR_JOSE_GENERIC: true,
  ERR_JOSE_NOT_SUPPORTED: true,
  ERR_JWE_DECRYPTION_FAILED: true,
  ERR_JWE_INVALID: true,
  ERR_JWK_INVALID: true,
  ERR_JWKS_INVALID: true,
  ERR_JWKS_MULTIPLE_MATCHING_KEYS: true,
  ERR_JWKS_NO_MATCHING_KEY: true,
  ERR_JWKS_TIMEOUT: true,
  ERR_JWS_INVALID: true,
  ERR_JWS_SIGNATURE_VERIFICATION_FAILED: true,
  ERR_JWT_CLAIM_VALIDATION_FAILED: true,
  ERR_JWT_EXPIRED: true,
  ERR_JWT_INVALID: true,
};

function isJoseErrorCode(code: string): code is errors.JOSEErrorCode {
  return Object.hasOwn(JOSE_ERROR_CODES, code);
}

/** Every jose error code, mapped (the `never` check fails the build if jose adds one). */
function reasonForCode(code: errors.JOSEErrorCode, err: errors.JOSEError): AccessFailure {
  switch (code) {
    case 'ERR_JWT_EXPIRED':
      return 'expired';
    case 'ERR_JWT_CLAIM_VALIDATION_FAILED': {
      const claim = err instanceof errors.JWTClaimValidationFailed ? err.claim : undefined;
      if (claim === 'aud') return 'wrong_audience';
      if (claim === 'iss') return 'wrong_issuer';
      // nbf in the future, exp / sub missing or not of the right type, …
      return 'invalid';
    }
    case 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED':
    // No key of this team has the token's kid: not signed by the team.
    case 'ERR_JWKS_NO_MATCHING_KEY':
    // alg none / HS256 / anything but RS256: not an acceptable signature.
    case 'ERR_JOSE_ALG_NOT_ALLOWED':
      return 'bad_signature';
    case 'ERR_JWS_INVALID':
    case 'ERR_JWT_INVALID':
      return 'malformed';
    // Normally caught by the resolver wrapper as KeysUnavailable; mapped here too.
    case 'ERR_JWKS_TIMEOUT':
    case 'ERR_JWKS_INVALID':
    case 'ERR_JWK_INVALID':
      return 'keys_unavailable';
    // No kid and several team keys (Access tokens always carry a kid).
    case 'ERR_JWKS_MULTIPLE_MATCHING_KEYS':
    case 'ERR_JOSE_NOT_SUPPORTED':
    case 'ERR_JOSE_GENERIC':
    case 'ERR_JWE_DECRYPTION_FAILED':
    case 'ERR_JWE_INVALID':
      return 'invalid';
    default: {
      const unreachable: never = code;
      return unreachable;
    }
  }
}
