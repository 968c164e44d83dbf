/**
 * Secrets by VALUE in Slack messages: whatever field carries them (known to a
 * family formatter, unknown to the generic one, free text, digest top values
 * and samples), API keys, JWTs, PEM blocks, long random tokens and URLs with
 * token parameters never reach Slack; ordinary ids and emails stay readable.
 *
 * Secret-looking test values are assembled at run time (no literal key in the
 * source for scanners to flag); none of them is real.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { EVENT_TYPES, type EventType, type UnknownEvent } from '../../src/events/catalog';
import {
  digestSampleLine,
  formatDigest,
  formatSlackMessage,
  keyFieldOf,
  type DigestGroup,
  type SlackFormatContext,
  type SlackMessage,
} from '../../src/destinations/slack/format';
import { code, literal } from '../../src/destinations/slack/format/escape';
import { isSensitiveKey } from '../../src/destinations/slack/format/read';
import { specFor } from '../../src/destinations/slack/format/specs';
import { REDACTED, redactSecrets, sanitize } from '../../src/destinations/slack/format/redact';
import { FIXTURES } from '../fixtures/events';

const CTX: SlackFormatContext = { rule: 'security-alerts', destination: 'security' };

function event(type: string, data: unknown, extra: Record<string, unknown> = {}): UnknownEvent {
  return { id: 'event_TEST', event: type, created_at: '2026-11-20T10:00:00.000Z', data, ...extra } as UnknownEvent;
}

// ---------------------------------------------------------------------------
// Test secrets: `value` is what a payload carries, `needles` what must never show.

const j = (...parts: string[]) => parts.join('');
const STRIPE_LIVE = j('sk_', 'live_', '51HqLyjWDarjtT1zdp7dcXYZ0TESTONLY4eC39');
const WORKOS_TEST = j('sk_', 'test_', 'a2V5XzAxSDZFOVBaMkpQNUpIWkY3V0dQUzVWQk1WOSxKZGROVGhC');
const WHSEC = j('whsec_', 'MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw');
const JWT_HEADER = 'eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9';
const JWT_PAYLOAD = 'eyJzdWIiOiJ1c2VyXzAxSDlKNkRBSyIsImV4cCI6MTc5MDAwMDAwMH0';
const JWT_SIG = 'k3Jq9sVbN0pXw7LmT2aQz5YcR8uF1dGhE4iK6oP';
const JWT = j(JWT_HEADER, '.', JWT_PAYLOAD, '.', JWT_SIG);
const URL_TOKEN = 'Zm9vYmFyLWludml0ZS10b2tlbi0xMjM0NTY';
const URL_CODE = 'p7QmV2xR9tLk';
const URL_SIG = 'c2lnbmF0dXJlLXZhbHVl';
const RANDOM_TOKEN = 'Q7xV2mK9pL4sT8wZ1bN6cR3dF5gH0jAe4Ty8uIo'; // 40 characters
const PEM_BODY = 'MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7';
const PEM = j('-----BEGIN ', 'PRIVATE KEY-----\n', PEM_BODY, '\n-----END PRIVATE KEY-----');
const BEARER = 'ya29A0ARrdaM8kq3Lz';

interface TestSecret {
  name: string;
  value: string;
  needles: string[];
}

const SECRETS: TestSecret[] = [
  { name: 'Stripe-style live key', value: STRIPE_LIVE, needles: [STRIPE_LIVE, STRIPE_LIVE.slice(8)] },
  { name: 'WorkOS-style test key', value: WORKOS_TEST, needles: [WORKOS_TEST.slice(8)] },
  { name: 'webhook secret', value: WHSEC, needles: [WHSEC.slice(6)] },
  { name: 'JWT', value: JWT, needles: [JWT, JWT_PAYLOAD, JWT_SIG] },
  {
    name: 'invitation URL with token',
    value: `https://app.example.com/invite/accept?token=${URL_TOKEN}&lang=en`,
    needles: [URL_TOKEN],
  },
  {
    name: 'OAuth callback with code and state',
    value: `https://app.example.com/callback?state=xyz&code=${URL_CODE}`,
    needles: [URL_CODE],
  },
  {
    name: 'signed URL',
    value: `https://files.example.com/export.csv?expires=1790000000&sig=${URL_SIG}`,
    needles: [URL_SIG],
  },
  { name: 'fragment access_token', value: `https://app.example.com/#access_token=${URL_TOKEN}`, needles: [URL_TOKEN] },
  { name: 'URL user info', value: `postgres://admin:${URL_CODE}@db.example.com/app`, needles: [URL_CODE] },
  { name: 'long random token', value: RANDOM_TOKEN, needles: [RANDOM_TOKEN] },
  { name: 'PEM private key', value: PEM, needles: [PEM_BODY] },
  { name: 'bearer token', value: `Authorization: Bearer ${BEARER}`, needles: [BEARER] },
];

function expectNone(msg: SlackMessage, secret: TestSecret): void {
  const json = JSON.stringify(msg);
  for (const n of secret.needles) expect(json, `${secret.name} shown`).not.toContain(n);
}

/** Every string in `value` (at any depth) with `f` applied. */
function mapStrings(value: unknown, f: (s: string) => string): unknown {
  if (typeof value === 'string') return f(value);
  if (Array.isArray(value)) return value.map((v) => mapStrings(v, f));
  if (typeof value === 'object' && value !== null) {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, mapStrings(v, f)]));
  }
  return value;
}

const WORKOS_ID = /\b[a-z][a-z0-9]*(?:_[a-z0-9]+)*_[0-9A-HJKMNP-TV-Z]{26}\b/g;
const EMAIL = /[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}/g;

/** The WorkOS ids and emails a message shows. */
function idsAndEmails(msg: SlackMessage): string[] {
  const json = JSON.stringify(msg);
  return [...new Set([...(json.match(WORKOS_ID) ?? []), ...(json.match(EMAIL) ?? [])])];
}

// ---------------------------------------------------------------------------

describe('redactSecrets', () => {
  it.each(SECRETS.map((s) => [s.name, s] as const))('%s: redacted, alone and inside free text', (_n, secret) => {
    for (const text of [secret.value, `see ${secret.value} (urgent)`, `"${secret.value}"`, `x\n${secret.value}\ty`]) {
      const out = redactSecrets(text);
      for (const n of secret.needles) expect(out).not.toContain(n);
      expect(out).toContain(REDACTED);
      expect(redactSecrets(out)).toBe(out); // idempotent
    }
  });

  it('keeps the rest of a URL readable', () => {
    expect(redactSecrets(`https://app.example.com/reset?token=${URL_TOKEN}&lang=en#top`)).toBe(
      'https://app.example.com/reset?token=[redacted]&lang=en#top',
    );
    expect(redactSecrets('https://x.example/cb?X-Amz-Signature=abc123&X-Amz-Expires=60&api_key=k1')).toBe(
      'https://x.example/cb?X-Amz-Signature=[redacted]&X-Amz-Expires=60&api_key=[redacted]',
    );
    expect(redactSecrets('https://x.example/?client_secret=s3&password=p&pwd=q&key=k&secret=s&signature=g&sig=h')).toBe(
      'https://x.example/?client_secret=[redacted]&password=[redacted]&pwd=[redacted]&key=[redacted]' +
        '&secret=[redacted]&signature=[redacted]&sig=[redacted]',
    );
    expect(redactSecrets('postgres://admin:hunter2@db.example.com/app')).toBe(
      'postgres://admin:[redacted]@db.example.com/app',
    );
    expect(redactSecrets('IdP said {"error":"invalid_grant","code":"Zq81x","refresh_token":"r1"}')).toBe(
      'IdP said {"error":"invalid_grant","code":"[redacted]","refresh_token":"[redacted]"}',
    );
    expect(redactSecrets(`key: ${STRIPE_LIVE}, hook: ${WHSEC}.`)).toBe('key: [redacted], hook: [redacted].');
    expect(redactSecrets(`${PEM} and more`)).toBe('[redacted] and more');
    expect(redactSecrets(j('-----BEGIN ', 'RSA PRIVATE KEY----- MIIEow… (cut)'))).toBe('[redacted]');
  });

  it('JSON members with whitespace around the colon are redacted (the pre-checks let them through)', () => {
    expect(redactSecrets('{"password" : "hunter2"}')).toBe('{"password" : "[redacted]"}');
    expect(redactSecrets('IdP error {"client_secret" : "s3cr3tvalue"}')).toBe('IdP error {"client_secret" : "[redacted]"}');
    expect(redactSecrets('{"error": "invalid_grant", "refresh_token"\t:\t"r1", "code"  :  481516}')).toBe(
      '{"error": "invalid_grant", "refresh_token"\t:\t"[redacted]", "code"  :  [redacted]}',
    );
    expect(redactSecrets('{"api_key"\n: "k1"}')).toBe('{"api_key"\n: "[redacted]"}');
    // Harmless members keep their value, with or without spaces.
    expect(redactSecrets('{"error" : "invalid_grant", "state" : "xyz"}')).toBe('{"error" : "invalid_grant", "state" : "xyz"}');
  });

  it('a secret JSON string value cut before its closing quote is redacted to the end of the text', () => {
    expect(redactSecrets('IdP said {"error":"invalid_grant", "access_token" : "r1abc')).toBe(
      'IdP said {"error":"invalid_grant", "access_token" : "[redacted]',
    );
    expect(redactSecrets('{"refreshToken":"r1abc more text')).toBe('{"refreshToken":"[redacted]');
    expect(redactSecrets('{"password":"ends in a backslash\\')).toBe('{"password":"[redacted]');
    // A harmless member cut the same way stays as it is.
    expect(redactSecrets('{"state" : "xyz and more')).toBe('{"state" : "xyz and more');
  });

  it('camelCase secret names are redacted by value (name=value and JSON members)', () => {
    const names = [
      'refreshToken', 'authToken', 'privateKey', 'clientSecret', 'sessionToken', 'apiKey', 'authCode', 'APIKey',
      'oauth2Token', 'dbPassword', 'webhookSignature', 'codeVerifier',
    ];
    for (const name of names) {
      expect(redactSecrets(`${name}=abc`), name).toBe(`${name}=[redacted]`);
      expect(redactSecrets(`see https://x.example/cb?lang=en&${name}=abc#top`), name).toBe(
        `see https://x.example/cb?lang=en&${name}=[redacted]#top`,
      );
      expect(redactSecrets(`form[${name}]=abc&page=2`), name).toBe(`form[${name}]=[redacted]&page=2`);
      expect(redactSecrets(`{"${name}":"abc","ok":"yes"}`), name).toBe(`{"${name}":"[redacted]","ok":"yes"}`);
      expect(redactSecrets(`{"${name}" : 123456}`), name).toBe(`{"${name}" : [redacted]}`);
    }
  });

  it('camelCase: a name that merely contains a secret word, or is about one, keeps its value', () => {
    const keep = [
      'monkey=banana', 'keyboard=qwerty', 'barcode=4006381333931', 'passkey=enabled', 'hotkeys=on', 'keyId=k1',
      'apiKeyName=primary', 'sessionId=s1', 'tokenizerVersion=2', 'authorName=Priya', 'Keyboard=azerty',
      '{"keyId":"k1","sessionId":"s1","authorName":"Priya","tokenCount":3}',
    ];
    for (const k of keep) expect(redactSecrets(k)).toBe(k);
  });

  it('keeps WorkOS ids, UUIDs, emails, dates, IPs, user agents and ordinary words', () => {
    const keep = [
      'user_01H9J6DAK05TNE3GKRD0BTC6H0',
      'directory_user_01M7WG4CS4WYZQ869NYXMFC3WJ',
      'org_01H7SS34ZSYKP6HGNX3JYF5MB6',
      'saml_session_01M7WBT4926S1MSHFNXFVCMH2H',
      'conn_01H7W6V0NJ165NSC47F6Z2MBGQ-org_01H7SS34ZSYKP6HGNX3JYF5MB6',
      'event_01M7W9Z2K2CGSBZFBE98WHQQH1',
      'api_key_01M7W3NHWMJQ9170KYR6E0FQE0',
      '550e8400-e29b-41d4-a716-446655440000',
      'priya.raman@example.com',
      'first_last+tag@example.co.uk',
      '2026-11-20T10:00:00.000Z',
      '203.0.113.58',
      '2001:db8::1',
      'Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0',
      'authentication_method_not_allowed',
      'superapp-domain-verification-k7q2rz',
      'Quarterly_Report_2024_Final_Version',
      'https://app.example.com/settings?tab=members&page=2',
      'Investigating a billing export issue reported in ticket #4821.',
      'The code is wrong; the token expired; ask for a new key.',
    ];
    for (const k of keep) expect(redactSecrets(k)).toBe(k);
  });

  it('no catalog fixture string is changed (no false positives on realistic data)', () => {
    const seen: string[] = [];
    for (const type of EVENT_TYPES) mapStrings(FIXTURES[type], (s) => (seen.push(s), s));
    expect(seen.length).toBeGreaterThan(1000);
    for (const s of seen) expect(sanitize(s)).toBe(s);
  });

  it('literal and code redact before cutting: a secret across the limit is not cut into a visible piece', () => {
    const text = `${'x '.repeat(140)}${RANDOM_TOKEN}${RANDOM_TOKEN}`;
    const out = literal(text, 300);
    expect(out).not.toContain(RANDOM_TOKEN.slice(0, 15));
    expect(code(`${'y'.repeat(80)} ${JWT}`, 100)).not.toContain(JWT_HEADER.slice(0, 15));
    // A very long value is cleaned only near the limit, still without cutting a secret in two.
    const long = `${'word '.repeat(900)}${JWT} ${'z'.repeat(10_000)}`;
    expect(literal(long, 4_600)).not.toContain(JWT_HEADER.slice(0, 12));
    expect(literal(long, 300).length).toBeLessThanOrEqual(300);
  });
});

// ---------------------------------------------------------------------------

describe('every catalog formatter redacts secrets in free text', () => {
  it.each(EVENT_TYPES.map((t) => [t] as const))('%s', (type: EventType) => {
    const data = FIXTURES[type].data as Record<string, unknown>;
    const clean = formatSlackMessage(event(type, data, { context: FIXTURES[type].context }), CTX);
    const keep = idsAndEmails(clean);
    for (const secret of SECRETS) {
      // Appended to every string field (ids and emails keep their text in front)…
      const appended = mapStrings(data, (s) => `${s} ${secret.value}`);
      const context = mapStrings(FIXTURES[type].context ?? {}, (s) => `${s} ${secret.value}`);
      const msg = formatSlackMessage(event(type, appended, { context }), CTX);
      expectNone(msg, secret);
      expect(JSON.stringify(msg)).toContain(REDACTED);
      for (const k of keep) expect(JSON.stringify(msg), `${k} hidden by ${secret.name}`).toContain(k);
      // …and as the whole value.
      expectNone(formatSlackMessage(event(type, mapStrings(data, () => secret.value)), CTX), secret);
    }
  });

  it('the impersonation reason: the URL stays, its token does not', () => {
    const data = FIXTURES['session.created'].data;
    const reason = `Customer sent https://app.example.com/reset?token=${URL_TOKEN}&lang=en, checking it`;
    const msg = formatSlackMessage(event('session.created', { ...data, impersonator: { ...data.impersonator, reason } }), CTX);
    const json = JSON.stringify(msg);
    expect(json).not.toContain(URL_TOKEN);
    expect(json).toContain('https://app.example.com/reset?token=[redacted]&amp;lang=en, checking it');
    expect(json).toContain('dana.whitfield@example.org');
  });
});

describe('the generic formatter (unknown event types)', () => {
  const data = {
    note: `key is ${STRIPE_LIVE}`,
    api_key: STRIPE_LIVE,
    next: `https://app.example.com/next?token=${URL_TOKEN}`,
    session: JWT,
    webhook: WHSEC,
    blob: RANDOM_TOKEN,
    user_id: 'user_01H9J6DAK05TNE3GKRD0BTC6H0',
    email: 'priya.raman@example.com',
  };

  it('shows no secret, by name or by value; ids, emails and the readable part of URLs stay', () => {
    const msg = formatSlackMessage(event('custom.thing', data), CTX);
    const json = JSON.stringify(msg);
    for (const s of SECRETS) for (const n of s.needles) expect(json).not.toContain(n);
    expect(json).not.toContain('api_key'); // a sensitive name: not even the label
    expect(json).toContain('key is [redacted]');
    expect(json).toContain('https://app.example.com/next?token=[redacted]');
    expect(json).toContain('user_01H9J6DAK05TNE3GKRD0BTC6H0');
    expect(json).toContain('priya.raman@example.com');
  });

  it('a JSON body with spaces before the colon, quoted in an error message, shows no secret', () => {
    const generic = JSON.stringify(
      formatSlackMessage(event('custom.thing', { message: 'IdP error {"client_secret" : "s3cr3tvalue"}' }), CTX),
    );
    expect(generic).not.toContain('s3cr3tvalue');
    expect(generic).toContain('IdP error');
    expect(generic).toContain('[redacted]');
    const data = FIXTURES['authentication.sso_failed'].data;
    const failed = JSON.stringify(
      formatSlackMessage(
        event('authentication.sso_failed', { ...data, error: { ...data.error, message: 'IdP said {"refreshToken" : "r3fr3shv4l"}' } }),
        CTX,
      ),
    );
    expect(failed).not.toContain('r3fr3shv4l');
    expect(failed).toContain('IdP said');
  });

  it('a secret as a field name, as the event type or id, or in the actor name is redacted too', () => {
    const msg = formatSlackMessage(
      event(STRIPE_LIVE, { [RANDOM_TOKEN]: 'x', ok: 'visible' }, { id: JWT, created_at: WHSEC, context: { actor: { name: JWT } } }),
      CTX,
    );
    const json = JSON.stringify(msg);
    for (const n of [STRIPE_LIVE, RANDOM_TOKEN, JWT_PAYLOAD, JWT_SIG, WHSEC.slice(6)]) expect(json).not.toContain(n);
    expect(json).toContain('visible');
  });
});

describe('digests', () => {
  const injected = EVENT_TYPES.slice(0, 30).map((t) =>
    event(t, mapStrings(FIXTURES[t].data, (s) => `${s} ${STRIPE_LIVE} https://x.example/?token=${URL_TOKEN} ${JWT}`)),
  );

  function digest(samples: (UnknownEvent | string)[][], values: string[][]): SlackMessage {
    const groups: DigestGroup[] = samples.map((s, i) => ({
      type: EVENT_TYPES[i]!,
      count: 2,
      topValues: { field: 'email', values: (values[i] ?? []).map((value) => ({ value, count: 1 })) },
      samples: s,
    }));
    return formatDigest(groups, 60, { destination: 'security', rules: ['r'] });
  }

  it('samples (events or their stored lines) and top values show no secret', () => {
    const keyValues = injected.map((e) => [keyFieldOf(e)?.value ?? '', STRIPE_LIVE, `a@example.com ${JWT}`]);
    for (const k of keyValues) expect(k[0]).not.toContain(URL_TOKEN); // key values are cleaned before they are counted
    for (const msg of [
      digest(injected.map((e) => [e]), keyValues),
      digest(injected.map((e) => [digestSampleLine(e)]), keyValues),
    ]) {
      const json = JSON.stringify(msg);
      for (const n of [STRIPE_LIVE, URL_TOKEN, JWT_PAYLOAD, JWT_SIG]) expect(json).not.toContain(n);
      expect(json).toContain('a@example.com [redacted]');
      expect(json).toContain('user_01');
    }
  });

  it('a stored line is checked again: no `<`, no control characters, no secret', () => {
    const forged = `• <!channel> <https://evil.example|click> ${STRIPE_LIVE} a\u202Eexe.txt\nRule: *x*`;
    const msg = digest([[forged]], [[]]);
    const section = JSON.stringify(msg.blocks[2]);
    expect(section).not.toMatch(/<!channel>|<https/);
    expect(section).toContain('&lt;!channel&gt;');
    expect(section).not.toContain(STRIPE_LIVE);
    expect(section).not.toContain('\u202E');
    expect(section).toContain('aexe.txt Rule:');
    // A line made by digestSampleLine is used as is.
    const line = digestSampleLine(event('user.created', FIXTURES['user.created'].data));
    expect(JSON.stringify(digest([[line]], [[]]).blocks[2])).toContain(JSON.stringify(line).slice(1, -1));
  });
});

// ---------------------------------------------------------------------------
// Secrets by NAME: short values (no telling shape) under a secret-looking name.

describe('sensitive field names (generic formatter)', () => {
  /** The value under `name`, alone with a visible sibling, as an event type without a dedicated formatter shows it. */
  function shown(name: string, value: string): boolean {
    const json = JSON.stringify(formatSlackMessage(event('custom.thing', { [name]: value, ok: 'visible-sibling' }), CTX));
    expect(json).toContain('visible-sibling');
    return json.includes(value);
  }

  const SENSITIVE_NAMES = [
    // One word each…
    'key', 'keys', 'secret', 'token', 'password', 'passwd', 'pwd', 'passphrase', 'credential', 'credentials',
    'signature', 'private', 'auth', 'authorization', 'Authorization', 'cookie', 'session', 'otp', 'pin', 'ssn',
    'apikey', 'jwt', 'bearer', 'salt', 'hash',
    // …inside a longer name, in any casing…
    'encryption_key', 'license_key', 'accessToken', 'clientSecret', 'apiKey', 'APIKey', 'privateKey', 'PRIVATE_KEY',
    'x-api-key', 'X-Auth-Token', 'sessionCookie', 'set-cookie', 'user_pwd', 'dbPasswd', 'refresh-token', 'idToken',
    'mfa_otp', 'card-pin', 'customer_ssn', 'webhookSignature', 'auth_header', 'bearer_value', 'password_hash',
    'session_data', 'privateNote', 'oauth2Token', 'accesstoken', 'clientsecret',
    // …and every name hidden before.
    'code', 'passcode', 'totp', 'key_material', 'plaintext', 'obfuscated_value', 'raw_attributes', 'qr_code', 'uri',
    'client_secret', 'api_key', 'access_key', 'signing_key', 'session_key', 'verification_token', 'magic_auth_code',
    'accept_invitation_url', 'password_reset_url', 'magic_link', 'redirect_uri', 'token_id', 'secret_name',
    'password_changed',
    // URLs and links, plural too, in any casing.
    'redirect_uris', 'callback_urls', 'links', 'href', 'hrefs', 'redirectUris', 'callbackUrls', 'logoUrls', 'image-links',
    'urls', 'uris', 'REDIRECT_URIS',
    // Plurals of secret words, recovery codes and PKCE's verifier.
    'codes', 'recovery_codes', 'backupCodes', 'code_verifier', 'codeVerifier', 'hashes', 'signatures', 'sessions', 'pins',
    'otps', 'salts', 'jwts', 'passcodes',
  ];

  it.each(SENSITIVE_NAMES.map((n) => [n]))('%s: hidden', (name) => {
    expect(isSensitiveKey(name)).toBe(true);
    expect(shown(name, 'hush42x')).toBe(false);
  });

  it('short values under key, accessToken and clientSecret never show (the reported case)', () => {
    const json = JSON.stringify(
      formatSlackMessage(event('custom.thing', { key: 'sk-abc123short', accessToken: 'tok123', clientSecret: 's3cr3t', id: 'thing_1' }), CTX),
    );
    for (const v of ['sk-abc123short', 'tok123', 's3cr3t']) expect(json).not.toContain(v);
    for (const label of ['accessToken', 'clientSecret']) expect(json).not.toContain(label);
    expect(json).toContain('thing_1');
  });

  const ORDINARY_NAMES = [
    'id', 'object', 'organization_id', 'email', 'state', 'type', 'domain', 'name', 'directory_id', 'created_at',
    'updated_at', 'user_id', 'status', 'description', 'slug', 'provider', 'ip_address', 'user_agent', 'external_id',
    'verification_prefix', 'access_type', 'client_id', 'connection_type', 'firstName', 'job-title',
    // Vault: `kv_name` names the stored object; the `key_*` names are about a key, never its material.
    'kv_name', 'key_id', 'key_ids', 'key_name', 'key_provider', 'keyId', 'apiKeyName',
    // About a session or an auth method, not the credential itself.
    'auth_method', 'session_id', 'sessionId', 'session_expires_at',
    // Words that merely contain a sensitive one.
    'monkey', 'keyboard', 'pinned', 'spin', 'hashtag', 'author', 'authentication_method', 'privacy', 'tokenizer_version',
    'linked', 'link_count', 'linkedin_id',
  ];

  it.each(ORDINARY_NAMES.map((n) => [n]))('%s: shown', (name) => {
    expect(isSensitiveKey(name)).toBe(false);
    expect(shown(name, 'plain-value-7')).toBe(true);
  });

  it('no path a family formatter reads is refused (error.code is shown on purpose)', () => {
    for (const type of EVENT_TYPES) {
      const spec = specFor(type);
      const paths = [...(spec.subject ?? []), ...spec.facts.flatMap((f) => (typeof f.path === 'string' ? [f.path] : f.path))];
      for (const path of paths) {
        if (path === 'error.code') continue;
        expect(path.split('.').filter(isSensitiveKey), `${type}: ${path}`).toEqual([]);
      }
    }
  });

  it('vault messages still show the object name and the key name, id and context', () => {
    const created = JSON.stringify(formatSlackMessage(event('vault.data.created', FIXTURES['vault.data.created'].data), CTX));
    const { kv_name, key_id } = FIXTURES['vault.data.created'].data;
    expect(created).toContain(kv_name);
    expect(created).toContain(key_id);
    expect(created).toContain('Key context');
    const kek = JSON.stringify(formatSlackMessage(event('vault.kek.created', FIXTURES['vault.kek.created'].data), CTX));
    expect(kek).toContain('acme-production-kek');
  });

  // Property: a name made of ordinary words plus one sensitive word, in any casing.
  const SENSITIVE_WORDS = [
    'key', 'secret', 'token', 'password', 'passwd', 'pwd', 'credential', 'credentials', 'signature', 'private',
    'auth', 'authorization', 'cookie', 'session', 'otp', 'pin', 'ssn', 'apikey', 'jwt', 'bearer', 'salt', 'hash',
  ];
  /** Neither sensitive nor "about a secret" (`id`, `name`, `at`…), nor ending a hidden-by-suffix name (`code`, `url`). */
  const PLAIN_WORDS = [
    'user', 'access', 'client', 'data', 'value', 'primary', 'my', 'encryption', 'license', 'db', 'x', 'new', 'old',
    'api', 'refresh', 'webhook', 'org', 'customer', 'backup', 'raw', 'current', 'signing', 'master', 'temp',
  ];
  const cap = (w: string) => w.charAt(0).toUpperCase() + w.slice(1);
  const CASINGS: Record<string, (words: string[]) => string> = {
    snake: (w) => w.join('_'),
    kebab: (w) => w.join('-'),
    camel: (w) => w[0]! + w.slice(1).map(cap).join(''),
    pascal: (w) => w.map(cap).join(''),
    screaming: (w) => w.join('_').toUpperCase(),
  };
  const casing = fc.constantFrom(...Object.keys(CASINGS));
  const plainWords = fc.array(fc.constantFrom(...PLAIN_WORDS), { maxLength: 3 });
  const value = fc.stringMatching(/^[a-z0-9]{4,10}$/).map((v) => `hush${v}`);

  it('property: a name with a sensitive word, in any casing, hides its value', () => {
    fc.assert(
      fc.property(plainWords, fc.constantFrom(...SENSITIVE_WORDS), plainWords, casing, value, (before, word, after, c, v) => {
        const name = CASINGS[c]!([...before, word, ...after]);
        expect(isSensitiveKey(name), name).toBe(true);
        expect(shown(name, v), name).toBe(false);
      }),
      { numRuns: 1_000 },
    );
  }, 120_000);

  it('property: a name of ordinary words only, in any casing, shows its value', () => {
    fc.assert(
      fc.property(fc.array(fc.constantFrom(...PLAIN_WORDS), { minLength: 1, maxLength: 4 }), casing, value, (words, c, v) => {
        const name = CASINGS[c]!(words);
        expect(isSensitiveKey(name), name).toBe(false);
        expect(shown(name, v), name).toBe(true);
      }),
      { numRuns: 1_000 },
    );
  }, 120_000);
});
