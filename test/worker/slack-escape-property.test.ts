/**
 * Property tests (fast-check, ≥ 3,000 runs each; a failure prints its seed
 * and shrunk counterexample) for what payload text can do in a Slack message:
 *
 *  - `literal` / `code` output, and a whole generic message whose fields,
 *    key, time and actor carry the text: no `<` or `>` (so no `<!…>`, `<@…>`,
 *    `<#…>`, `<http…|…>`), `&` only in `&amp;`/`&lt;`/`&gt;`, no live
 *    formatting (`*` `~` and backtick always between ZWSPs, `_` too unless
 *    inside a word), no broadcast word, no line break, and no control or
 *    format character except the escaper's ZWSP (and ZWJ inside emoji);
 *  - `literal` loses nothing but what cleaning removes;
 *  - a generated API key, JWT, URL or `name=value` with a secret parameter
 *    (camelCase names too), secret-named JSON member (whitespace around the
 *    colon too) or long random token, put into any string field of any
 *    catalog fixture (with arbitrary text around it), never appears in the
 *    message or in a digest.
 */
import type { ContextBlock, HeaderBlock, KnownBlock, SectionBlock } from '@slack/types';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { EVENT_TYPES, type UnknownEvent } from '../../src/events/catalog';
import {
  digestSampleLine,
  formatDigest,
  formatSlackMessage,
  keyFieldOf,
  type SlackFormatContext,
  type SlackMessage,
} from '../../src/destinations/slack/format';
import { code, literal } from '../../src/destinations/slack/format/escape';
import { redactSecrets, sanitize } from '../../src/destinations/slack/format/redact';
import { FIXTURES } from '../fixtures/events';

const RUNS = 3_000;
/** Generous: 3,000 runs take a few seconds, more on a busy machine. */
const TIMEOUT = 120_000;
const ZWSP = '\u200B';
const CTX: SlackFormatContext = { rule: 'security-alerts', destination: 'security' };

function event(type: string, data: unknown, extra: Record<string, unknown> = {}): UnknownEvent {
  return { id: 'event_TEST', event: type, created_at: '2026-11-20T10:00:00.000Z', data, ...extra } as UnknownEvent;
}

// ---------------------------------------------------------------------------
// Generators: arbitrary strings, biased towards what Slack or a reader would
// take for markup or layout.

const BIDI = ['\u202A', '\u202B', '\u202C', '\u202D', '\u202E', '\u2066', '\u2067', '\u2068', '\u2069'];
const FORMAT = ['\u200B', '\u200C', '\u200D', '\u200E', '\u200F', '\u2060', '\u2061', '\uFEFF', '\u00AD', '\u061C', '\u180E', '\u{E0041}', '\u{E007F}'];
const BREAKS = ['\n', '\r\n', '\r', '\t', '\v', '\f', '\u0085', '\u2028', '\u2029', '\u0000', '\u001B', '\u007F'];
const MARKUP = [
  '<', '>', '&', '!', '@', '#', '|', '*', '_', '~', '`', ':', '^',
  'http', 'https://', 'mailto:', '<!channel>', '<!here>', '<!everyone>', '<@U0ADMIN>', '<#C0GENERAL>', '<!subteam^S1>',
  '<https://evil.example|click>', '<http://x>', '@channel', '@here', '@everyone', '&lt;', '&gt;', '&amp;', '&#60;',
  '*Rule:*', 'Rule:', '```', '>>>', '_x_', '~x~', '*x*', '`x`',
];
const OTHER = ['a', 'Z', '0', ' ', '.', '-', '/', '?', '=', 'é', '👩\u200D💻', '🏳\uFE0F\u200D🌈', '👍🏽', 'ß', '中', 'token='];

const biasedUnit = fc.oneof(
  { weight: 5, arbitrary: fc.constantFrom(...MARKUP) },
  { weight: 2, arbitrary: fc.constantFrom(...BIDI, ...FORMAT, ...BREAKS) },
  { weight: 3, arbitrary: fc.constantFrom(...OTHER) },
  { weight: 3, arbitrary: fc.string({ unit: 'grapheme-ascii', minLength: 1, maxLength: 1 }) },
  { weight: 1, arbitrary: fc.string({ unit: 'binary', minLength: 1, maxLength: 1 }) },
  { weight: 1, arbitrary: fc.string({ unit: 'grapheme', minLength: 1, maxLength: 1 }) },
);

const hostile = fc.oneof(
  { weight: 6, arbitrary: fc.string({ unit: biasedUnit, maxLength: 40 }) },
  // Around the cut limits (100, 200, 300 characters).
  { weight: 1, arbitrary: fc.string({ unit: biasedUnit, minLength: 90, maxLength: 320 }) },
  { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 60 }) },
);

// ---------------------------------------------------------------------------
// Invariants of safe mrkdwn made from payload text

const SAFE_CODE_SPAN = /^`[A-Za-z0-9][A-Za-z0-9_.:/@+-]*`$/;
const EMOJI_ZWJ = /(?<=\p{Extended_Pictographic}[\uFE0F\u{1F3FB}-\u{1F3FF}]?)\u200D(?=\p{Extended_Pictographic})/gu;
const CONTROL_OR_FORMAT = /[\p{Cc}\p{Cf}\u2028\u2029]/u;
const BROADCAST = /(^|[^\p{L}\p{N}_.-])@(channel|here|everyone)\b/iu;
const LETTER_OR_DIGIT = /[\p{L}\p{N}]/u;

/** Markers that could format: `*` `~` backtick not between ZWSPs; `_` not between ZWSPs and not inside a word. */
function liveMarkers(text: string): string[] {
  const live: string[] = [];
  const chars = [...text];
  chars.forEach((c, i) => {
    if (!'*~`_'.includes(c)) return;
    const before = chars[i - 1] ?? '';
    const after = chars[i + 1] ?? '';
    if (before === ZWSP && after === ZWSP) return;
    if (c === '_' && LETTER_OR_DIGIT.test(before) && LETTER_OR_DIGIT.test(after)) return;
    live.push(`${c} at ${i} in ${JSON.stringify(text)}`);
  });
  return live;
}

/** `text` came from payload text through `literal` (or `code`, when not a code span). */
function expectInert(text: string): void {
  expect(text).not.toMatch(/[<>]/);
  expect(text).not.toMatch(/&(?!(?:amp|lt|gt);)/);
  expect(text).not.toMatch(/[\n\r\t\u2028\u2029]/);
  expect(text).not.toMatch(BROADCAST);
  expect(liveMarkers(text)).toEqual([]);
  // No control or format character, except ZWJ inside emoji and the escaper's own ZWSPs…
  expect(text.replace(EMOJI_ZWJ, '').replace(/\u200B/g, '')).not.toMatch(CONTROL_OR_FORMAT);
  // …which sit only around a marker or after the `@` of a broadcast word (none came from the payload).
  const ours = new RegExp(`${ZWSP}[*~\`_]${ZWSP}|@${ZWSP}(?=(?:channel|here|everyone)\\b)`, 'giu');
  expect(text.replace(ours, (m) => m.replace(/\u200B/g, ''))).not.toContain(ZWSP);
}

function expectInertCode(text: string): void {
  if (SAFE_CODE_SPAN.test(text)) return; // nothing inside a code span can format or link
  expectInert(text);
}

/** What a reader sees: escaping and ZWSPs undone. */
function reads(mrkdwn: string): string {
  return mrkdwn.replace(/\u200B/g, '').replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&amp;/g, '&');
}

describe('literal and code: properties', () => {
  it('property: literal output is inert mrkdwn', () => {
    fc.assert(
      fc.property(hostile, (s) => {
        expectInert(literal(s));
        expectInert(literal(s, 100));
      }),
      { numRuns: RUNS },
    );
  }, TIMEOUT);

  it('property: code output is a safe code span or inert mrkdwn', () => {
    fc.assert(
      fc.property(hostile, (s) => {
        expectInertCode(code(s));
        expectInertCode(code(s, 100));
      }),
      { numRuns: RUNS },
    );
  }, TIMEOUT);

  it('property: literal shows exactly the cleaned text (nothing else is lost or added)', () => {
    fc.assert(
      fc.property(hostile, (s) => {
        expect(reads(literal(s))).toBe(sanitize(s));
      }),
      { numRuns: RUNS },
    );
  }, TIMEOUT);

  it('property: cleaning is idempotent and leaves no bidi, format or line-break character (but emoji ZWJ)', () => {
    fc.assert(
      fc.property(hostile, (s) => {
        const once = sanitize(s);
        expect(sanitize(once)).toBe(once);
        expect(redactSecrets(once)).toBe(once);
        expect(once.replace(EMOJI_ZWJ, '')).not.toMatch(/[\p{Cc}\p{Cf}\u2028\u2029]/u);
      }),
      { numRuns: RUNS },
    );
  }, TIMEOUT);
});

// ---------------------------------------------------------------------------
// A whole generic message

const isSection = (b: KnownBlock): b is SectionBlock => b.type === 'section';
const isContext = (b: KnownBlock): b is ContextBlock => b.type === 'context';
const isHeader = (b: KnownBlock): b is HeaderBlock => b.type === 'header';

describe('a whole generic message carrying the text', () => {
  it('property: every payload-made part is inert; only our own scaffolding formats', () => {
    // Runs whose message has fields to check: blank text makes none (and
    // `list`, an array, is never a generic field), so the loop below may run
    // empty in one run, but not in most, and not when the text has a letter.
    let withFields = 0;
    fc.assert(
      fc.property(hostile, hostile, (s, t) => {
        const msg = formatSlackMessage(
          event('custom.thing', { a: s, b: t, [s.slice(0, 30) || 'k']: `${t} ${s}`, list: [s, t] }, {
            created_at: s,
            context: { actor: { name: t, source: s } },
          }),
          CTX,
        );
        expect(msg.blocks.map((b) => b.type)).toEqual(['header', 'section', 'context']);
        const header = msg.blocks.find(isHeader)!;
        expect(header.text.text).toBe('WorkOS event: custom.thing');

        const section = msg.blocks.find(isSection)!;
        expect(section.text?.text).toBe('`custom.thing`');
        const fields = section.fields?.length ?? 0;
        if (LETTER_OR_DIGIT.test(s) || LETTER_OR_DIGIT.test(t)) expect(fields, 'a field carries the text').toBeGreaterThan(0);
        if (fields > 0) withFields++;
        for (const f of section.fields ?? []) {
          const m = /^\*([^\n]*)\*\n([^\n]*)$/.exec(f.text);
          expect(m, `field ${JSON.stringify(f.text)}`).not.toBeNull();
          expectInert(m![1]!);
          expectInert(m![2]!);
        }

        const context = msg.blocks.find(isContext)!.elements.map((e) => ('text' in e ? e.text : ''));
        expect(context.slice(0, 3)).toEqual(['Rule: *security-alerts*', 'Destination: security', 'Event: `event_TEST`']);
        for (const text of context.slice(3)) {
          const m = /^(?:Time|By): ([\s\S]*)$/.exec(text);
          if (text.trim() === '') continue;
          expect(m, `context ${JSON.stringify(text)}`).not.toBeNull();
          expectInert(m![1]!);
        }

        expect(msg.text.startsWith('custom.thing · event_TEST · ')).toBe(true);
        expectInert(msg.text.slice('custom.thing · event_TEST · '.length));
      }),
      { numRuns: RUNS },
    );
    expect(withFields).toBeGreaterThan(RUNS / 2);
  }, TIMEOUT);
});

// ---------------------------------------------------------------------------
// Secrets, any formatter

const ALNUM = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';
const alnum = (min: number, max: number) =>
  fc.string({ unit: fc.constantFrom(...ALNUM), minLength: min, maxLength: max });
const b64url = (min: number, max: number) =>
  fc.string({ unit: fc.constantFrom(...ALNUM, '-', '_'), minLength: min, maxLength: max });

interface Secret {
  value: string;
  /** What must never be shown. */
  needle: string;
}

const apiKey: fc.Arbitrary<Secret> = fc
  .tuple(fc.constantFrom('sk_live_', 'sk_test_', 'rk_live_', 'whsec_'), alnum(8, 48))
  .map(([p, body]) => ({ value: p + body, needle: p + body }));

const jwt: fc.Arbitrary<Secret> = fc
  .tuple(b64url(7, 40), b64url(4, 80), b64url(0, 43))
  .map(([h, p, s]) => `eyJ${h}.${p}.${s}`)
  .map((v) => ({ value: v, needle: v }));

/** A secret parameter or member name: a secret word alone or after `-`/`_`, or glued in camelCase (`refreshToken`, `APIKey`). */
const secretName = fc.oneof(
  fc.constantFrom('token', 'code', 'key', 'secret', 'signature', 'password', 'access_token', 'api_key', 'sig', 'X-Amz-Signature'),
  fc
    .tuple(
      fc.constantFrom('refresh', 'access', 'auth', 'client', 'private', 'session', 'api', 'db', 'oauth2', 'webhook', 'API', 'X'),
      fc.constantFrom(
        'Token', 'Code', 'Key', 'Secret', 'Signature', 'Sig', 'Password', 'Passwd', 'Pwd', 'Auth', 'Session', 'Otp', 'Jwt',
        'Credentials', 'Verifier',
      ),
    )
    .map(([a, b]) => a + b),
);

const urlWithSecret: fc.Arbitrary<Secret> = fc
  .tuple(
    secretName,
    alnum(16, 40),
    fc.constantFrom('', '&lang=en', '#top', '&next=%2Fhome'),
    fc.constantFrom('?', '?page=2&', '#'),
  )
  .map(([name, v, tail, lead]) => ({ value: `https://app.example.com/p${lead}${name}=${v}${tail}`, needle: v }));

/** `name=value` in free text (after a space, bracket or comma, as in a log line). */
const paramWithSecret: fc.Arbitrary<Secret> = fc
  .tuple(fc.constantFrom(' ', '(', '{', ', ', ' ['), secretName, alnum(16, 40))
  .map(([lead, name, v]) => ({ value: `${lead}${name}=${v}`, needle: v }));

/** A secret-named member of a JSON body quoted in text, with or without whitespace around the colon. */
const WS = fc.constantFrom('', ' ', '  ', '\t', '\n', ' \r\n ');
const jsonWithSecret: fc.Arbitrary<Secret> = fc
  .tuple(secretName, WS, WS, alnum(16, 40), fc.boolean())
  .map(([name, a, b, v, first]) => ({
    value: first ? `{"${name}"${a}:${b}"${v}"}` : `{"error":"invalid_grant", "${name}"${a}:${b}"${v}", "state" : "x"}`,
    needle: v,
  }));

const randomToken: fc.Arbitrary<Secret> = fc
  .tuple(fc.constantFrom(...'ABCDEFGHIJKLMNOPQRSTUVWXYZ'), fc.constantFrom(...'abcdefghijklmnopqrstuvwxyz'), fc.constantFrom(...'0123456789'), alnum(29, 61))
  .map(([u, l, d, rest]) => `${rest.slice(0, 10)}${u}${l}${d}${rest.slice(10)}`)
  .map((v) => ({ value: v, needle: v }));

const secret = fc.oneof(apiKey, jwt, urlWithSecret, paramWithSecret, jsonWithSecret, randomToken);

/** Text around the secret: anything, with a visible separator (a secret glued into a word is not a secret shape). */
const around = fc.tuple(
  fc.string({ unit: biasedUnit, maxLength: 30 }),
  fc.constantFrom(' ', '\n', ': ', '(', '"', "'", ', ', '=', '<', '|', '\u202E '),
  fc.constantFrom(' ', '\n', ')', '"', "'", ', ', '.', '>', '|', ' \u2066'),
  fc.string({ unit: biasedUnit, maxLength: 30 }),
);

/** Every string path in `value`. */
function stringPaths(value: unknown, path: (string | number)[] = []): (string | number)[][] {
  if (typeof value === 'string') return [path];
  if (Array.isArray(value)) return value.flatMap((v, i) => stringPaths(v, [...path, i]));
  if (typeof value === 'object' && value !== null) return Object.entries(value).flatMap(([k, v]) => stringPaths(v, [...path, k]));
  return [];
}

function withString(value: unknown, path: readonly (string | number)[], s: string): unknown {
  if (path.length === 0) return s;
  const [head, ...rest] = path;
  if (Array.isArray(value)) return value.map((v, i) => (i === head ? withString(v, rest, s) : v));
  if (typeof value === 'object' && value !== null) {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, k === head ? withString(v, rest, s) : v]));
  }
  return value;
}

const PATHS = new Map(EVENT_TYPES.map((t) => [t, stringPaths(FIXTURES[t].data)]));

describe('secrets: properties', () => {
  it('property: a secret in any string field of any catalog event never shows, in the message or a digest', () => {
    fc.assert(
      fc.property(fc.constantFrom(...EVENT_TYPES), fc.nat(), secret, around, fc.boolean(), (type, pick, sec, [pre, l, r, post], all) => {
        const paths = PATHS.get(type)!;
        const text = `${pre}${l}${sec.value}${r}${post}`;
        const fixture = FIXTURES[type];
        // One string field, or every string field (so each formatter's shown fields all carry it).
        const data =
          all || paths.length === 0
            ? paths.reduce<unknown>((d, p) => withString(d, p, text), fixture.data)
            : withString(fixture.data, paths[pick % paths.length]!, text);
        const e = event(type, data, { context: { actor: { id: 'user_01H9J6DAK05TNE3GKRD0BTC6H0', name: text } } });
        const msg: SlackMessage = formatSlackMessage(e, CTX);
        expect(JSON.stringify(msg)).not.toContain(sec.needle);
        const key = keyFieldOf(e);
        if (key !== undefined) expect(key.value).not.toContain(sec.needle);
        const digest = formatDigest(
          [
            {
              type,
              count: 2,
              topValues: { field: key?.field ?? 'x', values: [{ value: key?.value ?? text, count: 1 }, { value: text, count: 1 }] },
              samples: [e, digestSampleLine(e)],
            },
          ],
          10,
          { destination: 'security', rules: ['r'] },
        );
        expect(JSON.stringify(digest)).not.toContain(sec.needle);
      }),
      { numRuns: RUNS },
    );
  }, TIMEOUT);

  it('property: a secret anywhere in a generic event never shows', () => {
    fc.assert(
      fc.property(secret, around, (sec, [pre, l, r, post]) => {
        const text = `${pre}${l}${sec.value}${r}${post}`;
        const msg = formatSlackMessage(
          event('custom.thing', { note: text, next: sec.value, [text.slice(0, 50)]: 'v', list: [text] }, { created_at: text }),
          CTX,
        );
        expect(JSON.stringify(msg)).not.toContain(sec.needle);
      }),
      { numRuns: RUNS },
    );
  }, TIMEOUT);
});
