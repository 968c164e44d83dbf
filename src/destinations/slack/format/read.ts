/**
 * Defensive reading and rendering of unvalidated payload values.
 *
 * Every string rendered here goes through `literal` or `code`, which clean it
 * (invisible characters, line breaks, secrets by value: see `./redact`) before
 * cutting it to its length limit.
 *
 * Nothing here throws on odd input: a value that is missing, `null` or empty
 * renders as nothing; a value of an unexpected type renders the way the
 * generic formatter renders any value (`renderAny`).
 */
import { code, literal } from './escape';

export type Json = Record<string, unknown>;

export function isRecord(value: unknown): value is Json {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/**
 * Field names whose values are never shown, at any depth, whatever the event:
 * tokens, one-time codes, secrets, passwords, key material, session and auth
 * data, and URLs / links, singular or plural (WorkOS URLs such as
 * `accept_invitation_url` or `password_reset_url` embed tokens; `redirect_uris`,
 * `callbackUrls`, `links`, `href`). Also raw IdP attributes, which may carry
 * anything.
 *
 * A name is split into lower-case words first (`accessToken`, `access-token`,
 * `ACCESS_TOKEN` and `access_token` are all `access` + `token`), then it is
 * sensitive when:
 *  - the words, joined by `_`, are one of `SENSITIVE_EXACT` or match
 *    `SENSITIVE_PATTERN` (e.g. `password_reset_url`, `magic_auth_code`,
 *    `token_id`); or
 *  - any word is one of `SENSITIVE_WORDS` (`key`, `encryption_key`,
 *    `clientSecret`, `X-Auth-Token`, `sessionCookie`…), or a glued one ends in
 *    a long secret word (`accesstoken`, `clientsecret`), unless the LAST word
 *    says the value is about the secret, not the secret itself
 *    (`METADATA_WORDS`: `key_id`, `key_name`, `key_context`, `session_id`,
 *    `auth_method`, `session_expires_at`…).
 * Names without such a word stay visible: `kv_name` (a vault object's name),
 * `id`, `email`, `state`, `domain`, `organization_id`…
 */
const SENSITIVE_EXACT = new Set([
  'token',
  'code',
  'secret',
  'password',
  'passcode',
  'otp',
  'totp',
  'pin',
  'hash',
  'salt',
  'signature',
  'cookie',
  'authorization',
  'credentials',
  'private_key',
  'key_material',
  'plaintext',
  'obfuscated_value',
  'raw_attributes',
  'qr_code',
  'uri',
]);
const SENSITIVE_PATTERN =
  /(^|_)(token|tokens|secret|secrets|password|passwords|passcodes?|otps?|codes?|urls?|uris?|links?|hrefs?|jwt|cookie|hash|signature|credential|credentials|apikey|(api|access|secret|signing|private|client|session)_?key)$|^(secret|password|token)_/;
/** A name with one of these words is sensitive (unless it ends in a `METADATA_WORDS` word). */
const SENSITIVE_WORDS = new Set([
  'key',
  'keys',
  'apikey',
  'secret',
  'secrets',
  'token',
  'tokens',
  'password',
  'passwords',
  'passwd',
  'pwd',
  'passphrase',
  'passcode',
  'credential',
  'credentials',
  'signature',
  'sig',
  'private',
  'privatekey',
  'auth',
  'authorization',
  'cookie',
  'cookies',
  'session',
  'otp',
  'totp',
  'pin',
  'ssn',
  'jwt',
  'bearer',
  'salt',
  'hash',
  // Plurals (a list of them is as secret as one), and PKCE's code_verifier.
  'signatures',
  'sigs',
  'sessions',
  'otps',
  'totps',
  'pins',
  'jwts',
  'salts',
  'hashes',
  'passcodes',
  'passphrases',
  'verifier',
]);
/** A single glued word ending in one of these is sensitive too (`accesstoken`, `clientsecret`). */
const SENSITIVE_SUFFIX = /(token|tokens|secret|secrets|password|passwords|passwd|credential|credentials|apikey|privatekey)$/;
/** Last words naming something about a secret, not the secret: `key_id`, `session_id`, `auth_method`, `key_context`. */
const METADATA_WORDS = new Set(['id', 'ids', 'name', 'names', 'type', 'method', 'provider', 'context', 'at', 'count', 'status']);

/** Paths that look sensitive but are not (shown on purpose). */
const NOT_SENSITIVE = new Set(['error.code']);

/** `accessToken`, `X-Api-Key`, `APIKey2` → `['access', 'token']`, `['x', 'api', 'key']`, `['api', 'key', '2']`. */
function wordsOf(key: string): string[] {
  return key
    .replace(/([A-Z])(?=[A-Z][a-z])/g, '$1_')
    .replace(/([a-z0-9])(?=[A-Z])/g, '$1_')
    .replace(/([A-Za-z])(?=[0-9])/g, '$1_')
    .replace(/([0-9])(?=[A-Za-z])/g, '$1_')
    .toLowerCase()
    .split(/[^a-z0-9]+/)
    .filter((w) => w !== '');
}

export function isSensitiveKey(key: string): boolean {
  const lower = key.toLowerCase();
  if (SENSITIVE_EXACT.has(lower) || SENSITIVE_PATTERN.test(lower)) return true;
  const words = wordsOf(key);
  const joined = words.join('_');
  if (SENSITIVE_EXACT.has(joined) || SENSITIVE_PATTERN.test(joined)) return true;
  if (!words.some((w) => SENSITIVE_WORDS.has(w) || SENSITIVE_SUFFIX.test(w))) return false;
  const last = words[words.length - 1]!;
  return !METADATA_WORDS.has(last);
}

/** The value at a dot path, or `undefined`; never reads through a sensitive key. */
export function at(data: unknown, path: string): unknown {
  const segments = path.split('.');
  if (!NOT_SENSITIVE.has(path) && segments.some(isSensitiveKey)) return undefined;
  let cur: unknown = data;
  for (const seg of segments) {
    if (!isRecord(cur) || !Object.prototype.hasOwnProperty.call(cur, seg)) return undefined;
    cur = cur[seg];
  }
  return cur;
}

/** How a fact's value is rendered. */
export type Kind =
  | 'text' // escaped literal text (cut at 300 chars)
  | 'long' // same, cut at 1,000 chars (error messages)
  | 'id' // identifier: code span when safe
  | 'bool' // Yes / No
  | 'num' // a finite number
  | 'list' // array of scalars (or of objects, via `item`)
  | 'keys' // names of an object's keys (e.g. `previous_attributes`)
  | 'pairs'; // `key: value` for an object's scalar members (e.g. `key_context`)

const MAX_TEXT = 300;
const MAX_LONG = 1_000;
const MAX_ITEMS = 10;

/** A rendering that came out empty (the value was only invisible characters) is no value. */
function nonEmpty(rendered: string): string | undefined {
  return rendered.trim() === '' ? undefined : rendered;
}

function isBlank(value: unknown): boolean {
  return value === undefined || value === null || (typeof value === 'string' && value.trim() === '');
}

function scalarText(value: unknown): string | undefined {
  if (typeof value === 'string') return value;
  if (typeof value === 'number' || typeof value === 'bigint') return String(value);
  if (typeof value === 'boolean') return value ? 'true' : 'false';
  return undefined;
}

function renderList(items: readonly string[], one: (s: string) => string): string {
  const shown = items.slice(0, MAX_ITEMS).map(one).join(', ');
  return items.length > MAX_ITEMS ? `${shown} +${items.length - MAX_ITEMS} more` : shown;
}

/**
 * The generic formatter's rendering of any value: scalars as escaped text,
 * arrays of scalars as a list, other arrays and objects as a size only
 * (their contents are never dumped).
 */
export function renderAny(value: unknown): string | undefined {
  if (isBlank(value)) return undefined;
  const s = scalarText(value);
  if (s !== undefined) return nonEmpty(literal(s, MAX_TEXT));
  if (Array.isArray(value)) {
    const scalars = value.map(scalarText);
    if (scalars.every((x): x is string => x !== undefined)) {
      return value.length === 0 ? undefined : renderList(scalars, (x) => literal(x, 100));
    }
    return `(${value.length} items)`;
  }
  if (isRecord(value)) return `(object, ${Object.keys(value).length} fields)`;
  return undefined;
}

/** Render `value` as `kind`; on a type mismatch, as `renderAny` would. */
export function render(value: unknown, kind: Kind = 'text', item?: string): string | undefined {
  if (isBlank(value)) return undefined;
  switch (kind) {
    case 'text':
    case 'long':
      if (typeof value === 'string') return nonEmpty(literal(value, kind === 'long' ? MAX_LONG : MAX_TEXT));
      break;
    case 'id':
      if (typeof value === 'string') return nonEmpty(code(value, MAX_TEXT));
      break;
    case 'bool':
      if (typeof value === 'boolean') return value ? 'Yes' : 'No';
      break;
    case 'num':
      if (typeof value === 'number' && Number.isFinite(value)) return String(value);
      break;
    case 'list':
      if (Array.isArray(value)) {
        const texts = value
          .map((v) => (item !== undefined ? at(v, item) : v))
          .map(scalarText)
          .filter((x): x is string => x !== undefined && x !== '');
        return texts.length === 0 ? undefined : renderList(texts, (x) => code(x, 100));
      }
      break;
    case 'keys':
      if (isRecord(value)) {
        const keys = Object.keys(value).filter((k) => !isSensitiveKey(k));
        return keys.length === 0 ? undefined : renderList(keys, (k) => literal(k, 100));
      }
      break;
    case 'pairs':
      if (isRecord(value)) {
        const pairs = Object.entries(value)
          .filter(([k]) => !isSensitiveKey(k))
          .map(([k, v]) => [k, scalarText(v)] as const)
          .filter((p): p is readonly [string, string] => p[1] !== undefined)
          .map(([k, v]) => `${literal(k, 60)}: ${code(v, 100)}`);
        if (pairs.length === 0) return undefined;
        const shown = pairs.slice(0, MAX_ITEMS).join(', ');
        return pairs.length > MAX_ITEMS ? `${shown} +${pairs.length - MAX_ITEMS} more` : shown;
      }
      break;
  }
  return renderAny(value);
}

/** A scalar at `path` as a plain (unescaped) string, for summaries and digest keys. */
export function textAt(data: unknown, path: string): string | undefined {
  const v = at(data, path);
  const s = scalarText(v);
  return s === undefined || s.trim() === '' ? undefined : s;
}
