/**
 * Input validation at the router's edges: the webhook envelope's `id` and
 * `event`, event-name globs against odd names, and the ROUTER config's
 * secret hygiene. Example tests pin the exact messages; property tests
 * (fast-check, ≥ 1,000 runs each; a failure prints its seed and shrunk
 * counterexample) check the invariants on generated input.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { type BindingLookup, parseRouterConfig } from '../../src/config/router-config';
import { Matcher, globToRegExp } from '../../src/routing/matcher';
import { envelopeProblem, parseEnvelope } from '../../src/webhook/envelope';
import { postWebhook, sampleEvent } from '../helpers/webhook';

const RUNS = 1000;

const ID_CHARS = 'The event "id" must contain only printable ASCII characters without spaces (0x21–0x7E).';
const EVENT_CHARS = 'The event "event" must contain only printable ASCII characters without spaces (0x21–0x7E).';
const ID_LONG = 'The event "id" must be at most 256 characters long.';
const EVENT_LONG = 'The event "event" must be at most 256 characters long.';

const envelope = (overrides: Record<string, unknown> = {}) => ({ id: 'event_01HXYZ', event: 'user.created', data: {}, created_at: '2026-11-20T10:00:00.000Z', ...overrides });
const utf8 = new TextEncoder();

/** The rule, written independently of the implementation: 1–256 characters, each 0x21–0x7E. */
function isValidToken(s: string): boolean {
  if (s.length < 1 || s.length > 256) return false;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x21 || c > 0x7e) return false;
  }
  return true;
}

// ---------------------------------------------------------------------------

describe('envelope: id and event are printable ASCII without spaces', () => {
  it.each([
    ['a newline', 'event_01\nX'],
    ['a carriage return', 'event_01\rX'],
    ['NUL', 'event_01\u0000X'],
    ['a space', 'event_01 X'],
    ['a tab', 'event_01\tX'],
    ['DEL', 'event_01\u007fX'],
    ['a non-ASCII letter', 'event_01é'],
    ['a non-breaking space', 'event_01\u00a0X'],
    ['a line separator', 'event_01\u2028X'],
    ['an emoji', 'event_01🙂'],
    ['a lone surrogate', 'event_01\ud800'],
  ])('rejects an id holding %s, without echoing it', (_label, id) => {
    expect(envelopeProblem(envelope({ id }))).toBe(ID_CHARS);
    expect(parseEnvelope(utf8.encode(JSON.stringify(envelope({ id }))))).toEqual({ ok: false, reason: 'invalid_event', message: ID_CHARS });
  });

  it.each([
    ['a newline', 'user.created\n'],
    ['a space', 'user created'],
    ['NUL', 'user.created\u0000'],
    ['a non-ASCII letter', 'user.créated'],
  ])('rejects an event type holding %s', (_label, event) => {
    expect(envelopeProblem(envelope({ event }))).toBe(EVENT_CHARS);
  });

  it('accepts 256 characters and rejects 257 (id and event)', () => {
    expect(envelopeProblem(envelope({ id: 'e'.repeat(256), event: 'x'.repeat(256) }))).toBeNull();
    expect(envelopeProblem(envelope({ id: 'e'.repeat(257) }))).toBe(ID_LONG);
    expect(envelopeProblem(envelope({ event: 'x'.repeat(257) }))).toBe(EVENT_LONG);
  });

  it('accepts every printable ASCII character from ! to ~', () => {
    const all = Array.from({ length: 0x7e - 0x21 + 1 }, (_, i) => String.fromCharCode(0x21 + i)).join('');
    expect(envelopeProblem(envelope({ id: all, event: all }))).toBeNull();
  });

  it('keeps the existing messages for a missing or empty id / event', () => {
    expect(envelopeProblem(envelope({ id: '' }))).toBe('The event must have a non-empty string "id".');
    expect(envelopeProblem(envelope({ id: 7 }))).toBe('The event must have a non-empty string "id".');
    expect(envelopeProblem(envelope({ event: '' }))).toBe('The event must have a non-empty string "event".');
    expect(envelopeProblem(envelope({ event: null }))).toBe('The event must have a non-empty string "event".');
  });

  it('checks id before event', () => {
    expect(envelopeProblem(envelope({ id: 'a b', event: 'c d' }))).toBe(ID_CHARS);
  });
});

describe('POST /webhooks/workos: a signed event whose id or event is not printable ASCII', () => {
  it.each([
    ['id', 'a newline', 'event_01HXYZ\nforged log line', ID_CHARS],
    ['id', 'a carriage return', 'event_01HXYZ\r', ID_CHARS],
    ['id', 'NUL', 'event_01HXYZ\u0000', ID_CHARS],
    ['id', 'a space', 'event_01HXYZ ', ID_CHARS],
    ['id', 'a non-ASCII character', 'event_01HXYZé', ID_CHARS],
    ['id', '257 characters', `event_${'A'.repeat(251)}`, ID_LONG],
    ['event', 'a newline', 'user.created\nuser.deleted', EVENT_CHARS],
  ])('answers 400 invalid_event for an %s holding %s', async (field, _label, value, message) => {
    const res = await postWebhook(sampleEvent({ [field]: value }));
    expect(res.status).toBe(400);
    expect(res.headers.get('content-type')).toMatch(/application\/json/);
    expect(await res.json()).toEqual({ error: 'invalid_event', message });
  });

  it('accepts a signed event whose id is 256 printable ASCII characters', async () => {
    const id = `event_${crypto.randomUUID().replace(/-/g, '')}_${'!~'.repeat(200)}`.slice(0, 256);
    const res = await postWebhook(sampleEvent({ id }));
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ status: 'accepted', id });
  });
});

// ---------------------------------------------------------------------------

describe('globs: * matches any character, line terminators included', () => {
  it.each([
    [['*'], 'a\nb'],
    [['*'], '\n'],
    [['user.*'], 'user.x\ny'],
    [['user.*'], 'user.\r\n'],
    [['user.*'], 'user.x\u2028y'],
    [['*.created'], 'user\n.created'],
    [['a*b'], 'a\nb'],
  ])('%j selects %j', (patterns, type) => {
    expect(Matcher.namesMatch(patterns, type)).toBe(true);
    expect(globToRegExp(patterns[0] as string).test(type)).toBe(true);
  });

  it('an exclusion glob also covers names holding a newline', () => {
    expect(Matcher.namesMatch(['*', '!user.*'], 'user.x\ny')).toBe(false);
    expect(Matcher.namesMatch(['!user.*'], 'user.x\ny')).toBe(false);
    expect(Matcher.namesMatch(['!user.*'], 'org\n.created')).toBe(true);
  });

  it('the compiled matcher routes (and excludes) such names like namesMatch', () => {
    const m = new Matcher([
      { name: 'users', events: ['user.*'], where: [], to: ['crm'] },
      { name: 'all-but-users', events: ['*', '!user.*'], where: [], to: ['audit'] },
    ]);
    const ev = (event: string) => ({ id: 'e', event, created_at: '', data: {} });
    expect(m.match(ev('user.x\ny')).destinations).toEqual(['crm']);
    expect(m.match(ev('org\nx')).destinations).toEqual(['audit']);
  });

  it('literal parts still match exactly: no newline slips past the anchors', () => {
    expect(Matcher.namesMatch(['user.created'], 'user.created\n')).toBe(false);
    expect(Matcher.namesMatch(['user.*'], '\nuser.created')).toBe(false);
    expect(Matcher.namesMatch(['*.created'], 'user.created\n')).toBe(false);
    expect(globToRegExp('user.created').test('user\ncreated')).toBe(false);
  });

  it('property: * matches any string, and prefix.* any string after the prefix', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary', maxLength: 40 }), fc.string({ unit: 'binary', maxLength: 40 }), (a, b) => {
        expect(Matcher.namesMatch(['*'], a)).toBe(true);
        expect(Matcher.namesMatch(['user.*'], `user.${a}`)).toBe(true);
        expect(Matcher.namesMatch(['user.*_failed'], `user.${a}_failed`)).toBe(true);
        expect(Matcher.namesMatch(['!user.*'], `user.${a}${b}`)).toBe(false);
      }),
      { numRuns: RUNS },
    );
  });
});

// ---------------------------------------------------------------------------
// Property tests: the envelope

/** A string of mostly valid token characters, with boundary characters mixed in, 0–300 long (across the 256 limit). */
const tokenCandidate = (() => {
  const valid = fc.integer({ min: 0x21, max: 0x7e }).map((c) => String.fromCharCode(c));
  const boundary = fc.constantFrom(' ', '\u0000', '\t', '\n', '\r', '\u001f', '\u007f', '\u0080', '\u00a0', 'é', '\u2028', '\ufeff', '🙂');
  const surrogate = fc.integer({ min: 0xd800, max: 0xdfff }).map((c) => String.fromCharCode(c));
  const rare = fc.oneof(boundary, surrogate, fc.string({ unit: 'binary', minLength: 1, maxLength: 1 }));
  const unit = fc.oneof({ arbitrary: valid, weight: 40 }, { arbitrary: rare, weight: 1 });
  return fc.oneof(
    fc.string({ unit, minLength: 0, maxLength: 20 }),
    fc.string({ unit, minLength: 250, maxLength: 262 }),
    fc.string({ unit: valid, minLength: 0, maxLength: 300 }),
    fc.string({ unit: 'binary', maxLength: 30 }),
  );
})();

describe('envelope properties', () => {
  it('property: acceptance of id ⇔ 1–256 characters of 0x21–0x7E', () => {
    fc.assert(
      fc.property(tokenCandidate, (id) => {
        const value = envelope({ id });
        const problem = envelopeProblem(value);
        expect(problem === null).toBe(isValidToken(id));
        // Through the bytes too (JSON.stringify escapes lone surrogates, so they survive the round trip).
        const parsed = parseEnvelope(utf8.encode(JSON.stringify(value)));
        expect(parsed.ok).toBe(isValidToken(id));
        if (!parsed.ok) expect(parsed).toEqual({ ok: false, reason: 'invalid_event', message: problem });
      }),
      { numRuns: RUNS * 2 },
    );
  });

  it('property: acceptance of event ⇔ 1–256 characters of 0x21–0x7E', () => {
    fc.assert(
      fc.property(tokenCandidate, (event) => {
        expect(envelopeProblem(envelope({ event })) === null).toBe(isValidToken(event));
        expect(parseEnvelope(utf8.encode(JSON.stringify(envelope({ event })))).ok).toBe(isValidToken(event));
      }),
      { numRuns: RUNS * 2 },
    );
  });

  it('property: the problem never echoes the offending id or event', () => {
    fc.assert(
      fc.property(tokenCandidate, fc.boolean(), (value, asId) => {
        const marked = `MARK${value}`;
        const problem = envelopeProblem(envelope(asId ? { id: marked } : { event: marked }));
        if (problem !== null) expect(problem).not.toContain('MARK');
      }),
      { numRuns: RUNS },
    );
  });

  const REASONS = new Set(['invalid_json', 'invalid_event']);
  const checkResult = (r: ReturnType<typeof parseEnvelope>) => {
    if (r.ok) {
      expect(isValidToken(r.event.id) && isValidToken(r.event.event)).toBe(true);
      expect(typeof r.text).toBe('string');
    } else {
      expect(REASONS.has(r.reason)).toBe(true);
      expect(typeof r.message).toBe('string');
      expect(r.message.length).toBeGreaterThan(10);
    }
  };

  it('property: envelopeProblem never throws on any value and returns null or a sentence', () => {
    fc.assert(
      fc.property(fc.oneof(fc.anything(), fc.jsonValue(), envelopeLike()), (value) => {
        const p = envelopeProblem(value);
        expect(p === null || (typeof p === 'string' && p.length > 10)).toBe(true);
      }),
      { numRuns: RUNS },
    );
  });

  it('property: parseEnvelope never throws on JSON values and returns ok or invalid_json / invalid_event', () => {
    fc.assert(
      fc.property(fc.oneof(fc.jsonValue(), envelopeLike()), (value) => {
        const r = parseEnvelope(utf8.encode(JSON.stringify(value)));
        checkResult(r);
        // Valid JSON never yields invalid_json.
        if (!r.ok) expect(r.reason).toBe('invalid_event');
      }),
      { numRuns: RUNS },
    );
  });

  it('property: parseEnvelope never throws on arbitrary bytes', () => {
    const nearlyJson = envelopeLike().chain((v) => {
      const bytes = utf8.encode(JSON.stringify(v));
      return fc.tuple(fc.nat({ max: bytes.length }), fc.integer({ min: 0, max: 255 })).map(([at, b]) => {
        const copy = bytes.slice();
        if (at < copy.length) copy[at] = b;
        return copy;
      });
    });
    fc.assert(
      fc.property(fc.oneof(fc.uint8Array({ maxLength: 512 }), nearlyJson), (bytes) => {
        checkResult(parseEnvelope(bytes));
      }),
      { numRuns: RUNS },
    );
  });
});

/** Objects shaped like an envelope, each field either plausible or arbitrary. */
function envelopeLike(): fc.Arbitrary<Record<string, unknown>> {
  return fc.record(
    {
      id: fc.oneof(tokenCandidate, fc.jsonValue()),
      event: fc.oneof(fc.constantFrom('user.created', 'dsync.group.user_added'), tokenCandidate, fc.jsonValue()),
      data: fc.oneof(fc.dictionary(fc.string(), fc.jsonValue(), { maxKeys: 3 }), fc.jsonValue()),
      created_at: fc.oneof(fc.constant('2026-11-20T10:00:00.000Z'), fc.jsonValue()),
      context: fc.oneof(fc.constant(undefined), fc.constant(null), fc.jsonValue()),
    },
    { requiredKeys: [] },
  );
}

// ---------------------------------------------------------------------------
// Property tests: ROUTER

/** A secret-looking marker placed only where secret material goes: looked-up values, header values, and values pasted into a secret's name field. */
const MARKER = 'sk_live_MARKER7f3aSECRET';
const QUEUE_BINDING = { send: async () => undefined, sendBatch: async () => undefined };

const secretValue = fc.oneof(
  fc.constantFrom(
    `https://hooks.example.test/${MARKER}`,
    `http://hooks.example.test/${MARKER}`,
    `http://127.0.0.1:9/${MARKER}`,
    `http://user:${MARKER}@hooks.example.test/`,
    `ftp://hooks.example.test/${MARKER}`,
    `not a url ${MARKER}`,
    MARKER,
    `whsec_${MARKER}`,
    `javascript:alert("${MARKER}")`,
  ),
  fc.tuple(fc.string({ unit: 'binary', maxLength: 10 }), fc.string({ unit: 'binary', maxLength: 10 })).map(([a, b]) => `${a}${MARKER}${b}`),
);

const plausibleScalar = fc.constantFrom(
  'crm',
  'ops',
  'http',
  'slack',
  'queue',
  'Q',
  'EVENTS_QUEUE',
  'EVENTS_DLQ',
  'URL_SECRET',
  'SIGNING_SECRET',
  'https://crm.example.test/hook',
  'http://crm.example.test/hook',
  'http://localhost:8787/x',
  '<!here>',
  'user.*',
  'user.created',
  true,
  false,
  0,
  10,
  '30',
);
const anyJson = fc.jsonValue({ maxDepth: 2 });
const fieldValue = fc.oneof({ arbitrary: plausibleScalar, weight: 4 }, { arbitrary: anyJson, weight: 1 });

const headerValue = fc.oneof(
  fc.tuple(fc.string({ unit: 'binary-ascii', maxLength: 12 }), fc.string({ unit: 'binary-ascii', maxLength: 12 })).map(([a, b]) => `${a}${MARKER}${b}`),
  fc.constantFrom(`Bearer ${MARKER}`, `${MARKER}\u0000`, `${MARKER}\r\nX-Injected: 1`, `${MARKER}\u007f`, `\t${MARKER}`, `${MARKER}${'x'.repeat(8200)}`),
);
const headers = fc.dictionary(fc.oneof(fc.constantFrom('X-Team', 'Authorization', 'Host', 'Bad Name'), fc.string({ maxLength: 8 })), headerValue, { maxKeys: 3 });

const destination = fc
  .record(
    {
      name: fc.oneof(fc.constantFrom('crm', 'ops', 'sec', 'audit'), fieldValue),
      type: fc.oneof({ arbitrary: fc.constantFrom('http', 'slack', 'queue'), weight: 6 }, { arbitrary: fieldValue, weight: 1 }),
      url: fieldValue,
      // A name, or a secret's value pasted into the name field (the field names sound like they hold the value).
      url_secret: fc.oneof(fc.constant('URL_SECRET'), fieldValue, secretValue),
      allow_http: fieldValue,
      signing_secret: fc.oneof(fc.constant('SIGNING_SECRET'), fieldValue, secretValue),
      headers: fc.oneof({ arbitrary: headers, weight: 4 }, { arbitrary: fieldValue, weight: 1 }),
      queue: fieldValue,
      timeout_ms: fieldValue,
      max_attempts: fieldValue,
      mention: fieldValue,
      title: fieldValue,
    },
    { requiredKeys: [] },
  );

const routerConfig = fc.record(
  {
    destinations: fc.oneof({ arbitrary: fc.array(destination, { maxLength: 4 }), weight: 6 }, { arbitrary: anyJson, weight: 1 }),
    rules: fc.oneof(
      {
        arbitrary: fc.array(
          fc.record(
            {
              name: fc.oneof(fc.constantFrom('r1', 'r2'), fieldValue),
              events: fc.oneof(fc.array(fc.oneof(fc.constantFrom('user.*', '*', '!dsync.*', 'user.created'), fieldValue), { maxLength: 3 }), fieldValue),
              to: fc.oneof(fc.array(fc.oneof(fc.constantFrom('crm', 'ops', 'sec', 'audit'), fieldValue), { maxLength: 3 }), fieldValue),
              where: fc.oneof(fc.dictionary(fc.constantFrom('data.organization_id', 'event', 'data..x'), anyJson, { maxKeys: 2 }), fieldValue),
              stale: fieldValue,
            },
            { requiredKeys: [] },
          ),
          { maxLength: 3 },
        ),
        weight: 6,
      },
      { arbitrary: anyJson, weight: 1 },
    ),
    dedup_shards: fieldValue,
    reconcile_since: fieldValue,
  },
  { requiredKeys: [] },
);

/** Every name resolves: to a marker-bearing secret value, a queue binding, or nothing. */
const lookupArb: fc.Arbitrary<BindingLookup> = fc
  .tuple(secretValue, secretValue, fc.constantFrom<unknown>(QUEUE_BINDING, undefined, MARKER))
  .map(([urlSecret, signing, other]) => (name: string) => (name === 'URL_SECRET' ? urlSecret : name === 'SIGNING_SECRET' ? signing : name === 'Q' ? QUEUE_BINDING : other));

const NOT_JSON = /^ROUTER: not valid JSON( \(at position \d+\))?$/;

describe('ROUTER properties', () => {
  it('property: parseRouterConfig never throws on arbitrary JSON values, strings or shaped configs', () => {
    const input = fc.oneof(fc.jsonValue(), fc.string({ unit: 'binary' }), fc.json(), routerConfig, routerConfig.map((c) => JSON.stringify(c)));
    fc.assert(
      fc.property(input, lookupArb, fc.boolean(), (raw, lookup, checkBindings) => {
        const r = parseRouterConfig(raw, lookup, { checkBindings });
        expect(Array.isArray(r.warnings)).toBe(true);
        if (!r.ok) expect(r.problems.length).toBeGreaterThan(0);
      }),
      { numRuns: RUNS },
    );
  });

  it('property: no problem or warning contains a secret value or header value', () => {
    fc.assert(
      fc.property(routerConfig, lookupArb, fc.boolean(), (cfg, lookup, asJson) => {
        const r = parseRouterConfig(asJson ? JSON.stringify(cfg) : cfg, lookup);
        const text = JSON.stringify([r.ok ? [] : r.problems, r.warnings]);
        expect(text).not.toContain(MARKER);
        expect(text).not.toContain('MARKER7f3a');
      }),
      { numRuns: RUNS },
    );
  });

  it('property: a JSON ROUTER with a key written twice in one object is refused, naming the key\'s path (JSON.parse would keep only the last); one without is not', () => {
    const key = fc.constantFrom('rules', 'destinations', 'name', 'to', 'events', 'url', 'where', 'x_y');
    const doubled = fc.tuple(fc.json(), key, fc.boolean(), fc.nat({ max: 8 })).map(([json, k, nest, spaces]) => {
      const pad = ' '.repeat(spaces);
      const inner = `{${pad}"${k}"${pad}:${pad}1,${pad}"other":${json},"${k}":${pad}${json}${pad}}`;
      return { text: nest ? `{"destinations":[{"a":1},${inner}]}` : inner, path: nest ? `destinations[1].${k}` : k };
    });
    fc.assert(
      fc.property(doubled, ({ text, path }) => {
        const r = parseRouterConfig(text, () => undefined);
        expect(r.ok).toBe(false);
        if (!r.ok) expect(r.problems).toEqual([`ROUTER: ${path} is written twice (JSON would keep only the last)`]);
      }),
      { numRuns: RUNS },
    );
    // Any JSON text JSON.stringify writes has no repeated key: never refused for one.
    fc.assert(
      fc.property(fc.oneof(fc.jsonValue(), routerConfig), (v) => {
        const r = parseRouterConfig(JSON.stringify(v) ?? 'null', () => undefined);
        if (!r.ok) expect(r.problems.join('\n')).not.toContain('written twice');
      }),
      { numRuns: RUNS },
    );
  });

  it('a repeated key whose name is not a config name is not quoted (it may be a pasted value)', () => {
    const r = parseRouterConfig('{"rules":[],"headers":{"sk_live_x y":"a","sk_live_x y":"b"}}', () => undefined);
    expect(r).toMatchObject({ ok: false, problems: ['ROUTER: a key is written twice in one object (JSON would keep only the last)'] });
  });

  it('property: a JSON string that does not parse is reported without any of its text', () => {
    // A config holding the marker, serialized, then damaged: cut short, or one character replaced.
    const damaged = fc.tuple(routerConfig, fc.nat(), fc.string({ unit: 'binary-ascii', minLength: 1, maxLength: 1 }), fc.boolean()).map(([cfg, n, ch, cut]) => {
      const text = JSON.stringify({ ...cfg, note: MARKER });
      const at = n % text.length;
      return cut ? text.slice(0, at) : text.slice(0, at) + ch + text.slice(at + 1);
    });
    const input = fc.oneof(damaged, fc.string({ unit: 'binary' }).map((s) => `${s}${MARKER}`), fc.string({ unit: 'binary' }).map((s) => `{"x": "${MARKER}", ${s}`));
    fc.assert(
      fc.property(input, (raw) => {
        let parses = true;
        try {
          JSON.parse(raw);
        } catch {
          parses = false;
        }
        fc.pre(!parses && raw !== '');
        const r = parseRouterConfig(raw, () => undefined);
        expect(r.ok).toBe(false);
        if (r.ok) return;
        expect(r.problems).toHaveLength(1);
        const problem = r.problems[0] as string;
        expect(problem).toMatch(NOT_JSON);
        expect(problem).not.toContain('MARKER');
        const at = /at position (\d+)/.exec(problem);
        if (at !== null) expect(Number(at[1])).toBeLessThanOrEqual(raw.length);
      }),
      { numRuns: RUNS },
    );
  });
});

describe('config problems never quote a URL or a credential put where a name belongs', () => {
  const HOOK = 'https://hooks.slack.com/services/T0001/B0002/LEAKEDHOOKSECRET';
  const lookup: BindingLookup = () => undefined;

  it('alerts.to, a rule\'s to, a destination\'s type and queue, mention rules and event patterns: described, not shown; a name-like typo still shown with its suggestion', () => {
    const r = parseRouterConfig(
      {
        destinations: [
          { name: 'crm', type: 'http', url: 'https://crm.example.com/in' },
          { name: 'q', type: 'queue', queue: 'xoxb-LEAKEDHOOKSECRET' },
          { name: 'odd', type: HOOK },
          { name: 'ops', type: 'slack', url: 'https://hooks.slack.com/services/T1/B1/ok', mention: { rules: ['whsec_LEAKEDHOOKSECRET'] } },
        ],
        rules: [
          { name: 'a', events: ['user.*'], to: [HOOK] },
          { name: 'b', events: [HOOK], to: ['crmm'] },
        ],
        alerts: { to: [HOOK] },
      },
      lookup,
    );
    expect(r.ok).toBe(false);
    const text = [...(r.ok ? [] : r.problems), ...r.warnings].join('\n');
    expect(text).not.toContain('LEAKEDHOOKSECRET');
    expect(text).not.toContain('hooks.slack.com/services/T0001');
    expect(text).toContain('(a value that is not a name, not shown)');
    expect(text).toContain('unknown destination "crmm" (did you mean "crm"?)');
  });
});
