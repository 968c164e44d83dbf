import { env } from 'cloudflare:workers';
import fc from 'fast-check';
import { parse as parseToml } from 'smol-toml';
import { describe, expect, it } from 'vitest';
import {
  ALERT_KINDS,
  CIRCUIT_DEFAULTS,
  type ConfigResult,
  type HttpDestination,
  type QueueDestination,
  type Rule,
  type RouterConfig,
  type SlackDestination,
  DEFAULT_TIMEOUT_MS,
  RETRY_DEFAULTS,
  SETTINGS_SPEC,
  parseRouterConfig,
  suggest,
} from '../../src/config/router-config';
import { EVENT_TYPES } from '../../src/events/catalog';
import { WORKERS_ROUTER } from './router';

// ---------------------------------------------------------------------------
// Helpers

const CRM = 'https://crm.example.test/workos';
const OPS = 'https://ops.example.test/hook';
const SLACK = 'https://hooks.slack.test/services/T000/B000/XXXX';

/** A queue producer stand-in: anything with a send() function. */
const QUEUE_BINDING = { send: async () => undefined, sendBatch: async () => undefined };

type Bindings = Record<string, unknown>;

function lookupFrom(bindings: Bindings) {
  return (name: string): unknown => bindings[name];
}

function parse(raw: unknown, bindings: Bindings = {}, opts: { checkBindings?: boolean } = {}): ConfigResult {
  return parseRouterConfig(raw, lookupFrom(bindings), opts);
}

function ok(raw: unknown, bindings: Bindings = {}, opts: { checkBindings?: boolean } = {}): { config: RouterConfig; warnings: string[] } {
  const r = parse(raw, bindings, opts);
  if (!r.ok) throw new Error(`expected a valid config, got problems:\n${r.problems.join('\n')}`);
  return { config: r.config, warnings: r.warnings };
}

function problems(raw: unknown, bindings: Bindings = {}, opts: { checkBindings?: boolean } = {}): string[] {
  const r = parse(raw, bindings, opts);
  if (r.ok) throw new Error('expected problems, but the config is valid');
  return r.problems;
}

/** Problems of a config holding just this destination (no rules: so no cascade from `to`). */
function destProblems(dest: unknown, bindings: Bindings = {}): string[] {
  return problems({ destinations: [dest] }, bindings);
}

/** The parsed destination of a config holding just this destination, used by one rule. */
function destOf(dest: Record<string, unknown>, bindings: Bindings = {}, opts: { checkBindings?: boolean } = {}) {
  const { config } = ok({ destinations: [dest], rules: [{ name: 'r', events: ['user.created'], to: [dest.name] }] }, bindings, opts);
  return config.destinations.get(dest.name as string);
}

/** Problems of a config with one valid http destination "crm" and this rule. */
function ruleProblems(rule: unknown, extraRules: unknown[] = []): string[] {
  return problems({ destinations: [{ name: 'crm', type: 'http', url: CRM }], rules: [rule, ...extraRules] });
}

function whereProblems(where: unknown): string[] {
  return ruleProblems({ name: 'r', events: ['user.created'], where, to: ['crm'] });
}

const http = (name: string, extra: Record<string, unknown> = {}) => ({ name, type: 'http', url: `${CRM}/${name}`, ...extra });
const rule = (name: string, to: unknown[], extra: Record<string, unknown> = {}) => ({ name, events: ['user.created'], to, ...extra });

const DEFAULT_SETTINGS = {
  signatureToleranceSeconds: 180,
  maxBodyBytes: 1_048_576,
  dedupShards: 16,
  dedupRetentionDays: 30,
  claimLeaseSeconds: 30,
  consumerSubrequestBudget: 45,
  reconcileMaxPages: 5,
  reconcileOverlapSeconds: 120,
  deadLetterRetentionDays: 30,
  traceRetentionDays: 7,
  traceShards: 1,
  consoleShowPayloads: false,
  logLevel: 'info',
  sourceAllowlist: null,
};

// A complete, valid configuration exercising every destination type.
const FULL = {
  signature_tolerance_seconds: 300,
  dedup_shards: 32,
  destinations: [
    { name: 'crm', type: 'http', url: CRM, signing_secret: 'CRM_SIGNING_SECRET', headers: { 'X-Team': 'growth' }, max_attempts: 3, retry_delay_seconds: 10, timeout_ms: 2000 },
    { name: 'ops', type: 'http', url_secret: 'OPS_URL' },
    { name: 'security', type: 'slack', url_secret: 'SLACK_URL', title: 'Security', mention: { text: '<!here>', rules: ['failed-logins'] } },
    { name: 'audit', type: 'queue', queue: 'AUDIT' },
  ],
  rules: [
    { name: 'users', events: ['user.*'], to: ['crm', 'ops'] },
    { name: 'failed-logins', events: ['authentication.*_failed'], to: ['security'], stale: 'drop' },
    { name: 'dsync', events: ['dsync.*', '!dsync.group.updated'], where: { 'data.organization_id': ['org_1', 'org_2'] }, to: ['audit', 'crm'] },
  ],
};
const FULL_BINDINGS: Bindings = { CRM_SIGNING_SECRET: 'crm-secret', OPS_URL: OPS, SLACK_URL: SLACK, AUDIT: QUEUE_BINDING };

// ---------------------------------------------------------------------------

describe('parseRouterConfig: input forms', () => {
  it('accepts a complete table config with every destination type and no warnings', () => {
    const { config, warnings } = ok(FULL, FULL_BINDINGS);
    expect(warnings).toEqual([]);
    expect(config.settings).toMatchObject({ ...DEFAULT_SETTINGS, signatureToleranceSeconds: 300, dedupShards: 32 });
    expect([...config.destinations.keys()]).toEqual(['crm', 'ops', 'security', 'audit']);
    expect(config.rules.map((r) => r.name)).toEqual(['users', 'failed-logins', 'dsync']);
    expect(config.rules.map((r) => r.stale)).toEqual(['deliver', 'drop', 'deliver']);
    expect(config.destinations.get('crm')).toEqual({
      name: 'crm',
      type: 'http',
      url: CRM,
      signingSecret: 'crm-secret',
      headers: { 'X-Team': 'growth' },
      timeoutMs: 2000,
      retry: { maxAttempts: 3, retryDelaySeconds: 10 },
      circuit: CIRCUIT_DEFAULTS,
      maxPerSecond: null,
    } satisfies HttpDestination);
    expect(config.destinations.get('ops')).toMatchObject({ type: 'http', url: OPS });
    expect(config.destinations.get('security')).toMatchObject({
      name: 'security',
      type: 'slack',
      url: SLACK,
      title: 'Security',
      mention: { text: '<!here>', rules: ['failed-logins'], events: [] },
      timeoutMs: DEFAULT_TIMEOUT_MS,
      retry: RETRY_DEFAULTS,
    } satisfies Partial<SlackDestination>);
    expect(config.destinations.get('audit')).toEqual({ name: 'audit', type: 'queue', queue: 'AUDIT', retry: RETRY_DEFAULTS, circuit: CIRCUIT_DEFAULTS, maxPerSecond: null } satisfies QueueDestination);
    expect(config.matcher.match({ id: 'e', event: 'dsync.user.created', created_at: '', data: { organization_id: 'org_2' } }).destinations).toEqual([
      'audit',
      'crm',
    ]);
  });

  it('accepts a JSON string of the same shape, with the same result', () => {
    const fromTable = ok(FULL, FULL_BINDINGS);
    const fromJson = ok(JSON.stringify(FULL), FULL_BINDINGS);
    expect(fromJson.warnings).toEqual(fromTable.warnings);
    expect(fromJson.config.settings).toEqual(fromTable.config.settings);
    expect([...fromJson.config.destinations.entries()]).toEqual([...fromTable.config.destinations.entries()]);
    expect(fromJson.config.rules.map((r) => ({ ...r, where: r.where.map((c) => c.path) }))).toEqual(
      fromTable.config.rules.map((r) => ({ ...r, where: r.where.map((c) => c.path) })),
    );
  });

  it('accepts pretty-printed JSON (whitespace and newlines)', () => {
    const { config } = ok(JSON.stringify(FULL, null, 2), FULL_BINDINGS);
    expect(config.rules).toHaveLength(3);
  });

  it('validates a JSON string just like a table (problems by path)', () => {
    const raw = JSON.stringify({ destinations: [http('crm')], rules: [rule('a', ['crm']), rule('b', ['crm2'])] });
    expect(problems(raw)).toEqual(['rules[1].to[0]: unknown destination "crm2" (did you mean "crm"?)']);
  });

  it('accepts a TOML table as wrangler delivers it (quoted dotted where keys stay paths)', () => {
    const toml = `
signature_tolerance_seconds = 120

[[destinations]]
name = "crm"
type = "http"
url_secret = "CRM_URL"
signing_secret = "CRM_SIGNING_SECRET"
headers = { "X-Team" = "growth" }

[[destinations]]
name = "audit"
type = "queue"
queue = "AUDIT"

[[rules]]
name = "directory-sync"
events = ["dsync.*", "!dsync.group.updated"]
to = ["crm", "audit"]

[rules.where]
"data.organization_id" = ["org_1", "org_2"]
"data.state" = { not = "inactive" }
`;
    const { config, warnings } = ok(parseToml(toml), { CRM_URL: CRM, CRM_SIGNING_SECRET: 's', AUDIT: QUEUE_BINDING });
    expect(warnings).toEqual([]);
    expect(config.settings.signatureToleranceSeconds).toBe(120);
    expect(config.rules[0]?.where.map((c) => c.path)).toEqual(['data.organization_id', 'data.state']);
  });

  it('reports an unquoted dotted TOML key in where (a nested table) as an unknown operator', () => {
    const toml = `
[[destinations]]
name = "crm"
type = "http"
url = "${CRM}"

[[rules]]
name = "r"
events = ["user.created"]
to = ["crm"]
where = { data.organization_id = "org_1" }
`;
    expect(problems(parseToml(toml))).toEqual(['rules[0].where["data"].organization_id: unknown operator (use prefix, suffix, exists or not)']);
  });

  it('accepts the workers project\'s ROUTER (the routing wrangler.toml ships) with the real bindings', () => {
    const bindings = env as unknown as Bindings;
    const { config } = ok(WORKERS_ROUTER, bindings);
    expect(config.destinations.get('audit')).toMatchObject({ type: 'queue', queue: 'AUDIT_QUEUE' });
  });

  it.each([
    ['undefined', undefined],
    ['null', null],
    ['an empty string', ''],
  ])('reports a missing ROUTER (%s)', (_label, raw) => {
    expect(parse(raw)).toEqual({ ok: false, problems: ['ROUTER: missing (define [vars.ROUTER] in wrangler.toml, or write a larger config in router.json)'], warnings: [] });
  });

  it.each([
    ['{', 1],
    ['{"rules": [}', 11],
    ['not json', 1],
    ['   ', 3],
    ["{'rules': []}", 1],
    ['{"rules": [],}', 13],
    ['{"rules": [1,]}', 13],
    ['{"rules": [] } x', 15],
    ['{"a": tru}', 9],
  ])('reports an invalid JSON string %j with the error position only', (raw, at) => {
    expect(problems(raw)).toEqual([`ROUTER: not valid JSON (at position ${at})`]);
  });

  // V8's SyntaxError message quotes the input, which may hold a secret: it must never reach a problem.
  it.each([
    ['a bare secret', 'sk_live_SECRETVALUE', 0],
    ['a secret in an unterminated string', '{"url": "https://x.test/?token=sk_live_SECRETVALUE', 50],
    ['a secret before a syntax error', '{"url": "sk_live_SECRETVALUE" oops}', 30],
    ['a secret after a syntax error', '{"rules": [} "sk_live_SECRETVALUE"', 11],
    ['a secret with a trailing comma', '{"headers": {"Authorization": "Bearer sk_live_SECRETVALUE",}}', 59],
  ])('reports invalid JSON without echoing any of the input (%s)', (_label, raw, at) => {
    const r = parse(raw);
    expect(r).toEqual({ ok: false, problems: [`ROUTER: not valid JSON (at position ${at})`], warnings: [] });
    expect(JSON.stringify(r)).not.toContain('SECRETVALUE');
    expect(JSON.stringify(r)).not.toContain('sk_live');
  });

  it.each([
    ['a JSON array', '[]'],
    ['a JSON number', '42'],
    ['a JSON string', '"destinations"'],
    ['JSON null', 'null'],
    ['an array', []],
    ['a number', 42],
    ['a boolean', true],
  ])('reports a ROUTER that is not a table: %s', (_label, raw) => {
    expect(problems(raw)).toEqual(['ROUTER: must be a table (object)']);
  });
});

describe('parseRouterConfig: settings knobs', () => {
  it('applies every default to an empty table', () => {
    const { config, warnings } = ok({});
    expect(config.settings).toEqual(DEFAULT_SETTINGS);
    expect(config.destinations.size).toBe(0);
    expect(config.rules).toEqual([]);
    expect(warnings).toEqual(['rules: no rules; every event will be accepted and reported as unrouted']);
  });

  // The README's knobs table ("Knobs ([vars.ROUTER])"), row by row: default and range.
  // Every knob is listed, so a new or changed setting fails here until the table is updated too.
  it('SETTINGS_SPEC defaults and ranges match the documented knobs table', () => {
    expect(Object.fromEntries(SETTINGS_SPEC.map((s) => [s.key, { def: s.def, min: s.min, max: s.max }]))).toEqual({
      signature_tolerance_seconds: { def: 180, min: 1, max: 3600 },
      max_body_bytes: { def: 1_048_576, min: 1024, max: 1_900_000 },
      dedup_shards: { def: 16, min: 1, max: 1024 },
      dedup_retention_days: { def: 30, min: 4, max: 90 },
      claim_lease_seconds: { def: 30, min: 5, max: 600 },
      consumer_subrequest_budget: { def: 45, min: 8, max: 1000 },
      reconcile_max_pages: { def: 5, min: 1, max: 40 },
      reconcile_overlap_seconds: { def: 120, min: 0, max: 3600 },
      dead_letter_retention_days: { def: 30, min: 1, max: 365 },
      trace_retention_days: { def: 7, min: 0, max: 90 },
      trace_shards: { def: 1, min: 1, max: 64 },
    });
  });

  it('circuit: on by default; a table with failures and cooldown_seconds, or false; validated', () => {
    const dest = (circuit: unknown) => {
      const r = parseRouterConfig({ destinations: [{ name: 'q', type: 'queue', queue: 'Q', circuit }], rules: [] }, () => ({ send() {}, sendBatch() {} }));
      return r.ok ? r.config.destinations.get('q')?.circuit : r.problems;
    };
    expect(dest(undefined)).toEqual({ failures: 20, cooldownSeconds: 60 });
    expect(dest(false)).toBeNull();
    expect(dest({ failures: 5 })).toEqual({ failures: 5, cooldownSeconds: 60 });
    expect(dest({ failures: 5, cooldown_seconds: 10 })).toEqual({ failures: 5, cooldownSeconds: 10 });
    expect(dest({ failures: 0 })).toEqual([expect.stringContaining('destinations[0].circuit.failures: must be a whole number from 1 to 10000')]);
    expect(dest({ cooldown_seconds: 901 })).toEqual([expect.stringContaining('destinations[0].circuit.cooldown_seconds: must be a whole number from 1 to 900')]);
    expect(dest({ failure: 5 })).toEqual(['destinations[0].circuit.failure: unknown field (use failures, cooldown_seconds)']);
    expect(dest('on')).toEqual(['destinations[0].circuit: must be a table { failures = 20, cooldown_seconds = 60 } or false']);
  });

  it('max_per_second: HTTP and queue destinations only, 1–1000', () => {
    const http = (v: unknown) => parseRouterConfig({ destinations: [{ name: 'h', type: 'http', url: 'https://h.example.test/', max_per_second: v }], rules: [] }, () => undefined);
    const okHttp = http(10);
    expect(okHttp.ok && okHttp.config.destinations.get('h')?.maxPerSecond).toBe(10);
    const bad = http(0);
    expect(bad.ok ? [] : bad.problems).toEqual([expect.stringContaining('destinations[0].max_per_second: must be a whole number from 1 to 1000')]);
    const slack = parseRouterConfig({ destinations: [{ name: 's', type: 'slack', url: 'https://hooks.slack.com/services/T/B/X', max_per_second: 5 }], rules: [] }, () => undefined);
    expect(slack.ok ? [] : slack.problems).toEqual([expect.stringContaining('destinations[0].max_per_second: unknown field for a slack destination')]);
  });

  it('alerts: Slack destinations only, known kinds, validated interval and console_url', () => {
    const dests = [
      { name: 'ops', type: 'slack', url: 'https://hooks.slack.com/services/T/B/X' },
      { name: 'crm', type: 'http', url: 'https://crm.example.test/' },
    ];
    const parse = (alerts: unknown) => parseRouterConfig({ destinations: dests, rules: [], alerts }, () => undefined);
    const ok1 = parse({ to: ['ops'] });
    expect(ok1.ok && ok1.config.alerts).toEqual({ to: ['ops'], on: [...ALERT_KINDS], minIntervalSeconds: 300, consoleUrl: null });
    const ok2 = parse({ to: ['ops'], on: ['dead_letter', 'circuit_open'], min_interval_seconds: 60, console_url: 'https://router.example.com/' });
    expect(ok2.ok && ok2.config.alerts).toEqual({ to: ['ops'], on: ['dead_letter', 'circuit_open'], minIntervalSeconds: 60, consoleUrl: 'https://router.example.com' });
    const problems = (alerts: unknown) => {
      const r = parse(alerts);
      return r.ok ? [] : r.problems;
    };
    expect(problems({ to: ['crm'] })).toEqual(['alerts.to[0]: "crm" is a http destination; alerts go to Slack destinations']);
    expect(problems({ to: ['opz'] })).toEqual([expect.stringContaining('alerts.to[0]: unknown destination "opz"')]);
    expect(problems({ to: [] })).toEqual(['alerts.to: name at least one Slack destination']);
    expect(problems({ to: ['ops'], on: ['dead_letters'] })).toEqual([expect.stringContaining('alerts.on[0]: unknown kind "dead_letters"')]);
    expect(problems({ to: ['ops'], min_interval_seconds: 5 })).toEqual([expect.stringContaining('alerts.min_interval_seconds: must be a whole number from 10 to 86400')]);
    expect(problems({ to: ['ops'], console_url: 'javascript:alert(1)' })).toEqual([expect.stringContaining('alerts.console_url')]);
    expect(problems({ to: ['ops'], channel: '#ops' })).toEqual([expect.stringContaining('alerts.channel: unknown field')]);
    expect(problems('yes')).toEqual(['alerts: must be a table ([vars.ROUTER.alerts])']);
  });

  it('console_show_payloads: false by default, a boolean only', () => {
    expect(ok({ console_show_payloads: true }).config.settings.consoleShowPayloads).toBe(true);
    for (const bad of ['true', 1, null]) {
      const r = parseRouterConfig({ console_show_payloads: bad }, () => undefined);
      expect(r.ok).toBe(false);
      if (!r.ok) expect(r.problems).toContain('console_show_payloads: must be true or false');
    }
  });

  it('reconcile_since: a strict ISO 8601 date, or date and time with its zone (Date.parse would take "1" as 2001 and roll 30 February into March)', () => {
    expect(ok({ reconcile_since: '2026-11-01T08:30:00Z' }).config.settings.reconcileSince).toBe('2026-11-01T08:30:00.000Z');
    expect(ok({ reconcile_since: '2026-11-01' }).config.settings.reconcileSince).toBe('2026-11-01T00:00:00.000Z');
    expect(ok({ reconcile_since: '2026-11-01T10:30:00+02:00' }).config.settings.reconcileSince).toBe('2026-11-01T08:30:00.000Z');
    for (const bad of ['1', '2026-02-30T00:00:00Z', 'March 1 2026', '2026-11-01T08:30:00', '2026-13-01', '', 20261101, null]) {
      const r = parseRouterConfig({ reconcile_since: bad }, () => undefined);
      expect(r.ok, String(bad)).toBe(false);
      if (!r.ok) expect(r.problems).toEqual(['reconcile_since: must be an ISO 8601 date, or a date and time with its zone, e.g. "2026-11-01T00:00:00Z"']);
    }
  });

  it('log_level: "info" by default; "info", "warn" or "error" only', () => {
    expect(ok({}).config.settings.logLevel).toBe('info');
    for (const level of ['info', 'warn', 'error'] as const) expect(ok({ log_level: level }).config.settings.logLevel).toBe(level);
    for (const bad of ['debug', 'WARN', 'warning', 2, true, null, '']) {
      const r = parseRouterConfig({ log_level: bad }, () => undefined);
      expect(r.ok).toBe(false);
      if (!r.ok) expect(r.problems).toEqual(['log_level: must be "info", "warn" or "error"']);
    }
  });

  describe.each(SETTINGS_SPEC.map((s) => [s.key, s] as const))('%s', (key, spec) => {
    const message = `${key}: must be a whole number from ${spec.min} to ${spec.max}`;

    it('accepts the bounds', () => {
      expect(ok({ [key]: spec.min }).config.settings[spec.field]).toBe(spec.min);
      expect(ok({ [key]: spec.max }).config.settings[spec.field]).toBe(spec.max);
    });

    it('accepts a string of digits ("30" style)', () => {
      expect(ok({ [key]: String(spec.min) }).config.settings[spec.field]).toBe(spec.min);
      expect(ok({ [key]: String(spec.max) }).config.settings[spec.field]).toBe(spec.max);
    });

    it.each([
      ['below the minimum', spec.min - 1],
      ['above the maximum', spec.max + 1],
      ['a fraction', spec.min + 0.5],
      ['negative', -1],
      ['a string below the minimum', String(spec.min - 1)],
      ['a string above the maximum', String(spec.max + 1)],
      ['a non-numeric string', 'lots'],
      ['a signed string', `+${spec.min}`],
      ['a padded string', ` ${spec.min}`],
      ['a decimal string', `${spec.min}.0`],
      ['an exponent string', '1e3'],
      ['an empty string', ''],
      ['a boolean', true],
      ['null', null],
      ['a list', [spec.min]],
      ['NaN', Number.NaN],
      ['Infinity', Number.POSITIVE_INFINITY],
    ])('rejects %s, naming the key and range', (_label, value) => {
      expect(problems({ [key]: value })).toEqual([message]);
    });
  });

  it('accepts "30" for claim_lease_seconds as the number 30', () => {
    const { config } = ok({ claim_lease_seconds: '30' });
    expect(config.settings.claimLeaseSeconds).toBe(30);
    expect(typeof config.settings.claimLeaseSeconds).toBe('number');
  });

  it('reports every out-of-range knob, not just the first', () => {
    expect(problems({ dedup_shards: 0, dedup_retention_days: 3, max_body_bytes: 2_000_000 })).toEqual([
      'max_body_bytes: must be a whole number from 1024 to 1900000',
      'dedup_shards: must be a whole number from 1 to 1024',
      'dedup_retention_days: must be a whole number from 4 to 90',
    ]);
  });
});

describe('parseRouterConfig: top level', () => {
  it.each([
    ['destination', 'ROUTER.destination: unknown field (did you mean "destinations"?)'],
    ['rule', 'ROUTER.rule: unknown field (did you mean "rules"?)'],
    ['dedup_shard', 'ROUTER.dedup_shard: unknown field (did you mean "dedup_shards"?)'],
    ['signature_tolerance_second', 'ROUTER.signature_tolerance_second: unknown field (did you mean "signature_tolerance_seconds"?)'],
    ['signature_tolerance', 'ROUTER.signature_tolerance: unknown field'],
    ['max_body_byte', 'ROUTER.max_body_byte: unknown field (did you mean "max_body_bytes"?)'],
    ['consumer_subrequest_budgets', 'ROUTER.consumer_subrequest_budgets: unknown field (did you mean "consumer_subrequest_budget"?)'],
    ['webhook_secret', 'ROUTER.webhook_secret: unknown field'],
    ['zzz', 'ROUTER.zzz: unknown field'],
  ])('reports an unknown top-level field %j with a did-you-mean when close', (key, message) => {
    expect(problems({ [key]: 1 })).toEqual([message]);
  });

  it.each([
    ['a table', { name: 'crm' }],
    ['a string', 'crm'],
    ['a number', 3],
  ])('reports destinations that is %s, not a list', (_label, value) => {
    expect(problems({ destinations: value })).toEqual(['destinations: must be a list ([[vars.ROUTER.destinations]])']);
  });

  it.each([
    ['a table', { name: 'r' }],
    ['a string', 'r'],
    ['a boolean', false],
  ])('reports rules that is %s, not a list', (_label, value) => {
    expect(problems({ rules: value })).toEqual(['rules: must be a list ([[vars.ROUTER.rules]])']);
  });

  it('reports every problem at once, each named by its path', () => {
    const p = problems({
      dedup_shard: 4,
      claim_lease_seconds: 1,
      destinations: [http('crm'), { name: 'crm', type: 'http', url: 'nope' }, 'x', { name: 'q', type: 'queue', queue: 'MISSING' }],
      rules: [rule('a', ['crm']), rule('a', ['crm']), rule('b', ['crm2']), { name: 'c', events: [], to: ['crm'] }],
    });
    expect(p).toEqual([
      'ROUTER.dedup_shard: unknown field (did you mean "dedup_shards"?)',
      'claim_lease_seconds: must be a whole number from 5 to 600',
      'destinations[1].url: must be an absolute http(s) URL',
      'destinations[2]: must be a table',
      'destinations[3].queue: no queue producer binding named "MISSING" (declare it in [[queues.producers]])',
      'rules[1].name: duplicate rule name "a"',
      'rules[2].to[0]: unknown destination "crm2" (did you mean "crm"?)',
      'rules[3].events: required: a non-empty list of event names or patterns',
    ]);
  });

  it('returns warnings alongside problems when the config is invalid', () => {
    const r = parse({ destinations: [http('crm'), http('spare')], rules: [{ name: 'r', events: ['user.create'], to: ['crm', 'nope'] }] });
    expect(r.ok).toBe(false);
    expect(r.warnings).toEqual(
      expect.arrayContaining([
        'rules[0].events[0]: "user.create" is not a known WorkOS event type (did you mean "user.created"?)',
        'destinations: "spare" is not used by any rule',
      ]),
    );
  });
});

describe('parseRouterConfig: destinations (common)', () => {
  it.each([
    ['a string', 'crm'],
    ['a number', 1],
    ['a list', [{ name: 'crm' }]],
    ['null', null],
    ['a boolean', true],
  ])('reports a destination that is %s, not a table', (_label, d) => {
    expect(destProblems(d)).toEqual(['destinations[0]: must be a table']);
  });

  const BAD_NAME = 'destinations[0].name: required; letters, digits, "_", "-" or "." (at most 64)';

  it.each([
    ['missing', undefined],
    ['empty', ''],
    ['a number', 42],
    ['starting with "-"', '-crm'],
    ['starting with "."', '.crm'],
    ['starting with "_"', '_crm'],
    ['with a space', 'my crm'],
    ['with a slash', 'crm/1'],
    ['with a colon', 'crm:1'],
    ['non-ASCII', 'crmé'],
    ['65 characters', 'a'.repeat(65)],
  ])('reports a bad destination name (%s)', (_label, name) => {
    expect(destProblems({ name, type: 'http', url: CRM })).toEqual([BAD_NAME]);
  });

  it.each([['a'], ['CRM'], ['9lives'], ['crm.eu-west_1'], ['a'.repeat(64)]])('accepts destination name %j', (name) => {
    expect(destOf({ name, type: 'http', url: CRM })?.name).toBe(name);
  });

  it('reports a duplicate destination name at the later index', () => {
    const p = problems({ destinations: [http('crm'), http('ops'), { name: 'crm', type: 'queue', queue: 'Q' }], rules: [rule('r', ['crm', 'ops'])] }, { Q: QUEUE_BINDING });
    expect(p).toEqual(['destinations[2].name: duplicate destination name "crm"']);
  });

  it.each([
    ['an unknown string', 'sqs', 'destinations[0].type: unknown type "sqs" (use "queue", "http" or "slack")'],
    ['differently cased', 'HTTP', 'destinations[0].type: unknown type "HTTP" (use "queue", "http" or "slack")'],
    ['a number', 1, 'destinations[0].type: unknown type 1 (use "queue", "http" or "slack")'],
  ])('reports a destination type that is %s', (_label, type, message) => {
    expect(destProblems({ name: 'x', type, url: CRM })).toEqual([message]);
  });

  it('reports a missing destination type', () => {
    const p = destProblems({ name: 'x', url: CRM });
    expect(p).toHaveLength(1);
    expect(p[0]).toMatch(/^destinations\[0\]\.type: unknown type .*\(use "queue", "http" or "slack"\)$/);
  });

  it.each([
    ['queue', { name: 'q', type: 'queue', queue: 'Q', url: CRM }, 'destinations[0].url: unknown field for a queue destination'],
    ['queue', { name: 'q', type: 'queue', queue: 'Q', queu: 'Q' }, 'destinations[0].queu: unknown field for a queue destination (did you mean "queue"?)'],
    ['queue', { name: 'q', type: 'queue', queue: 'Q', timeout_ms: 100 }, 'destinations[0].timeout_ms: unknown field for a queue destination'],
    ['queue', { name: 'q', type: 'queue', queue: 'Q', headers: {} }, 'destinations[0].headers: unknown field for a queue destination'],
    ['http', { name: 'h', type: 'http', url: CRM, mention: '<!here>' }, 'destinations[0].mention: unknown field for a http destination'],
    ['http', { name: 'h', type: 'http', url: CRM, title: 'x' }, 'destinations[0].title: unknown field for a http destination'],
    ['http', { name: 'h', type: 'http', url: CRM, queue: 'Q' }, 'destinations[0].queue: unknown field for a http destination'],
    ['http', { name: 'h', type: 'http', url: CRM, header: {} }, 'destinations[0].header: unknown field for a http destination (did you mean "headers"?)'],
    ['http', { name: 'h', type: 'http', url: CRM, max_attempt: 3 }, 'destinations[0].max_attempt: unknown field for a http destination (did you mean "max_attempts"?)'],
    ['http', { name: 'h', type: 'http', url: CRM, signing_secrets: 'S' }, 'destinations[0].signing_secrets: unknown field for a http destination (did you mean "signing_secret"?)'],
    ['slack', { name: 's', type: 'slack', url: SLACK, headers: {} }, 'destinations[0].headers: unknown field for a slack destination'],
    ['slack', { name: 's', type: 'slack', url: SLACK, signing_secret: 'S' }, 'destinations[0].signing_secret: unknown field for a slack destination'],
    ['slack', { name: 's', type: 'slack', url: SLACK, titel: 'x' }, 'destinations[0].titel: unknown field for a slack destination (did you mean "title"?)'],
    ['slack', { name: 's', type: 'slack', url: SLACK, mentions: '<!here>' }, 'destinations[0].mentions: unknown field for a slack destination (did you mean "mention"?)'],
  ])('reports an unknown field for a %s destination', (_type, d, message) => {
    expect(destProblems(d, { Q: QUEUE_BINDING, S: 'secret' })).toEqual([message]);
  });

  it('applies retry and timeout defaults', () => {
    expect(destOf(http('crm'))).toEqual({ name: 'crm', type: 'http', url: `${CRM}/crm`, headers: {}, timeoutMs: 10_000, retry: { maxAttempts: 10, retryDelaySeconds: 30 }, circuit: { failures: 20, cooldownSeconds: 60 }, maxPerSecond: null });
    expect(destOf({ name: 's', type: 'slack', url: SLACK })).toMatchObject({ name: 's', type: 'slack', url: SLACK, timeoutMs: 10_000, retry: { maxAttempts: 10, retryDelaySeconds: 30 }, circuit: { failures: 20, cooldownSeconds: 60 }, maxPerSecond: null });
    expect(destOf({ name: 'q', type: 'queue', queue: 'Q' }, { Q: QUEUE_BINDING })).toEqual({ name: 'q', type: 'queue', queue: 'Q', retry: { maxAttempts: 10, retryDelaySeconds: 30 }, circuit: { failures: 20, cooldownSeconds: 60 }, maxPerSecond: null });
  });

  it('accepts string numbers for destination knobs', () => {
    expect(destOf(http('crm', { max_attempts: '3', retry_delay_seconds: '60', timeout_ms: '500' }))).toMatchObject({
      timeoutMs: 500,
      retry: { maxAttempts: 3, retryDelaySeconds: 60 },
    });
    expect(destOf({ name: 'q', type: 'queue', queue: 'Q', max_attempts: '1' }, { Q: QUEUE_BINDING })).toMatchObject({ retry: { maxAttempts: 1 } });
  });

  it.each([
    ['max_attempts', 0, 'destinations[0].max_attempts: must be a whole number from 1 to 100'],
    ['max_attempts', 101, 'destinations[0].max_attempts: must be a whole number from 1 to 100'],
    ['max_attempts', 2.5, 'destinations[0].max_attempts: must be a whole number from 1 to 100'],
    ['retry_delay_seconds', 0, 'destinations[0].retry_delay_seconds: must be a whole number from 1 to 43200'],
    ['retry_delay_seconds', 43_201, 'destinations[0].retry_delay_seconds: must be a whole number from 1 to 43200'],
    ['retry_delay_seconds', 'soon', 'destinations[0].retry_delay_seconds: must be a whole number from 1 to 43200'],
    ['timeout_ms', 99, 'destinations[0].timeout_ms: must be a whole number from 100 to 60000'],
    ['timeout_ms', 60_001, 'destinations[0].timeout_ms: must be a whole number from 100 to 60000'],
    ['timeout_ms', '-5', 'destinations[0].timeout_ms: must be a whole number from 100 to 60000'],
  ])('reports http %s = %j out of range', (key, value, message) => {
    expect(destProblems(http('crm', { [key]: value }))).toEqual([message]);
  });

  it('reports slack timeout_ms out of range and queue max_attempts out of range', () => {
    expect(destProblems({ name: 's', type: 'slack', url: SLACK, timeout_ms: 60_001 })).toEqual(['destinations[0].timeout_ms: must be a whole number from 100 to 60000']);
    expect(destProblems({ name: 'q', type: 'queue', queue: 'Q', max_attempts: 0 }, { Q: QUEUE_BINDING })).toEqual([
      'destinations[0].max_attempts: must be a whole number from 1 to 100',
    ]);
  });

  it('reports problems of several fields of one destination together', () => {
    expect(destProblems({ name: 'bad name', type: 'http', url: 'nope', timeout_ms: 5, colour: 'red' })).toEqual([
      'destinations[0].name: required; letters, digits, "_", "-" or "." (at most 64)',
      'destinations[0].colour: unknown field for a http destination',
      'destinations[0].url: must be an absolute http(s) URL',
      'destinations[0].timeout_ms: must be a whole number from 100 to 60000',
    ]);
  });
});

describe('parseRouterConfig: queue destinations', () => {
  const queue = (extra: Record<string, unknown> = {}) => ({ name: 'audit', type: 'queue', queue: 'AUDIT', ...extra });

  it.each([
    ['missing', undefined],
    ['empty', ''],
    ['a number', 5],
    ['a table', { binding: 'AUDIT' }],
  ])('reports a queue binding name that is %s', (_label, q) => {
    expect(destProblems(queue({ queue: q }), { AUDIT: QUEUE_BINDING })).toEqual([
      'destinations[0].queue: required: the name of a producer binding declared in [[queues.producers]]',
    ]);
  });

  it.each([
    ['lookup returns undefined', undefined],
    ['the binding is a string (a var or secret)', 'AUDIT'],
    ['the binding has no send()', { sendBatch: () => undefined }],
    ['send is not a function', { send: 'yes' }],
    ['the binding is null', null],
  ])('reports a missing queue producer binding when %s', (_label, binding) => {
    expect(destProblems(queue(), { AUDIT: binding })).toEqual([
      'destinations[0].queue: no queue producer binding named "AUDIT" (declare it in [[queues.producers]])',
    ]);
  });

  it('accepts a binding object having send()', () => {
    expect(destOf(queue(), { AUDIT: { send: () => undefined } })).toEqual({ name: 'audit', type: 'queue', queue: 'AUDIT', retry: RETRY_DEFAULTS, circuit: CIRCUIT_DEFAULTS, maxPerSecond: null });
  });

  it('accepts a real queue producer binding from the Worker env', () => {
    expect(destOf(queue({ queue: 'AUDIT_QUEUE' }), env as unknown as Bindings)).toMatchObject({ type: 'queue', queue: 'AUDIT_QUEUE' });
  });

  it('looks up the binding by the configured name', () => {
    const asked: string[] = [];
    parseRouterConfig({ destinations: [queue()], rules: [rule('r', ['audit'])] }, (n) => {
      asked.push(n);
      return QUEUE_BINDING;
    });
    expect(asked).toEqual(['AUDIT']);
  });

  it('skips the binding check with checkBindings: false, but still requires the name', () => {
    expect(destOf(queue(), {}, { checkBindings: false })).toMatchObject({ queue: 'AUDIT' });
    expect(problems({ destinations: [queue({ queue: '' })] }, {}, { checkBindings: false })).toEqual([
      'destinations[0].queue: required: the name of a producer binding declared in [[queues.producers]]',
    ]);
  });

  // The real bindings exist (they are the router's own), so only an explicit check catches the loop.
  it.each([
    ['EVENTS_QUEUE', 'destinations[0].queue: "EVENTS_QUEUE" is the router\'s own queue; routing to it would loop'],
    ['EVENTS_DLQ', 'destinations[0].queue: "EVENTS_DLQ" is the router\'s own dead-letter queue; routing to it would loop'],
  ])('rejects the router\'s own queue binding %s', (binding, message) => {
    const cfg = { destinations: [queue({ queue: binding })] };
    expect(problems(cfg, env as unknown as Bindings)).toEqual([message]);
    expect(problems(cfg, {}, { checkBindings: false })).toEqual([message]);
  });

  it('matches the router\'s own bindings by exact name only', () => {
    expect(destProblems(queue({ queue: 'events_queue' }))).toEqual([
      'destinations[0].queue: no queue producer binding named "events_queue" (declare it in [[queues.producers]])',
    ]);
    expect(destOf(queue({ queue: 'EVENTS_QUEUE_ARCHIVE' }), { EVENTS_QUEUE_ARCHIVE: QUEUE_BINDING })).toMatchObject({ queue: 'EVENTS_QUEUE_ARCHIVE' });
  });
});

describe('parseRouterConfig: http destinations', () => {
  it('reports both url and url_secret', () => {
    expect(destProblems({ name: 'crm', type: 'http', url: CRM, url_secret: 'CRM_URL' }, { CRM_URL: CRM })).toEqual([
      'destinations[0]: set exactly one of url or url_secret',
    ]);
  });

  it('reports neither url nor url_secret', () => {
    expect(destProblems({ name: 'crm', type: 'http' })).toEqual(['destinations[0]: set exactly one of url or url_secret']);
  });

  it('resolves url_secret to the secret value', () => {
    expect(destOf({ name: 'crm', type: 'http', url_secret: 'CRM_URL' }, { CRM_URL: CRM })).toMatchObject({ url: CRM });
  });

  it.each([
    ['unset', undefined],
    ['an empty string', ''],
    ['not a string (a binding)', QUEUE_BINDING],
  ])('reports a url_secret naming a secret that is %s, naming the secret', (_label, value) => {
    expect(destProblems({ name: 'crm', type: 'http', url_secret: 'CRM_URL' }, { CRM_URL: value })).toEqual([
      'destinations[0].url_secret: secret "CRM_URL" is not set (wrangler secret put CRM_URL)',
    ]);
  });

  it.each([
    ['empty', ''],
    ['a number', 7],
    ['a list', ['CRM_URL']],
  ])('reports a url_secret that is %s', (_label, value) => {
    expect(destProblems({ name: 'crm', type: 'http', url_secret: value })).toEqual(['destinations[0].url_secret: must be the name of a secret']);
  });

  it.each([
    ['not a URL', 'not a url?token=SEKRET-TOKEN'],
    ['relative', '/hooks/SEKRET-TOKEN'],
    ['schemeless', 'crm.example.test/SEKRET-TOKEN'],
    ['ftp', 'ftp://crm.example.test/SEKRET-TOKEN'],
    ['javascript', 'javascript:alert("SEKRET-TOKEN")'],
    ['a data URL', 'data:text/plain,SEKRET-TOKEN'],
  ])('reports an invalid URL read from url_secret (%s) without echoing the secret value', (_label, value) => {
    const p = destProblems({ name: 'crm', type: 'http', url_secret: 'CRM_URL' }, { CRM_URL: value });
    expect(p).toEqual(['destinations[0].url_secret: must be an absolute http(s) URL']);
    expect(p.join('\n')).not.toContain('SEKRET');
  });

  it.each([
    ['not a URL', 'not a url?token=SEKRET-TOKEN'],
    ['schemeless', 'crm.example.test/SEKRET-TOKEN'],
    ['ftp', 'ftp://crm.example.test/SEKRET-TOKEN'],
    ['ws', 'wss://crm.example.test/SEKRET-TOKEN'],
    ['a number', 443],
    ['empty', ''],
  ])('reports an invalid url (%s) without echoing the value', (_label, value) => {
    const p = destProblems({ name: 'crm', type: 'http', url: value });
    expect(p).toEqual(['destinations[0].url: must be an absolute http(s) URL']);
    expect(p.join('\n')).not.toContain('SEKRET');
  });

  it.each([['https://crm.example.test/hook?x=1'], ['http://localhost:8787/sink'], ['HTTPS://CRM.EXAMPLE.TEST/']])('accepts url %j', (url) => {
    expect(destOf({ name: 'crm', type: 'http', url })).toMatchObject({ url });
  });

  const HTTPS_ONLY_URL = 'destinations[0].url: must use https:// (http:// is allowed only for loopback hosts or with allow_http = true)';
  const HTTPS_ONLY_SECRET = 'destinations[0].url_secret: must use https:// (http:// is allowed only for loopback hosts or with allow_http = true)';

  it.each([
    ['http://localhost/'],
    ['http://LOCALHOST:3000/x'],
    ['http://app.localhost:8080/hook'],
    ['http://127.0.0.1:8787/sink'],
    ['http://127.255.255.254/'],
    ['http://127.1/'],
    ['http://[::1]:9000/x'],
    ['http://[0:0:0:0:0:0:0:1]/'],
  ])('accepts http:// to the loopback host %j', (url) => {
    expect(destOf({ name: 'crm', type: 'http', url })).toMatchObject({ url });
  });

  it.each([
    ['a public name', 'http://crm.example.test/hook'],
    ['a private address', 'http://10.0.0.1/hook'],
    ['128.0.0.1', 'http://128.0.0.1/'],
    ['0.0.0.0', 'http://0.0.0.0/'],
    ['[::2]', 'http://[::2]/'],
    ['an IPv4-mapped IPv6 address', 'http://[::ffff:127.0.0.1]/'],
    ['a name ending in localhost but not a subdomain', 'http://evil-localhost/'],
    ['localhost as a subdomain of another host', 'http://localhost.evil.test/'],
    ['127.0.0.1 as a subdomain of another host', 'http://127.0.0.1.evil.test/'],
    ['a loopback name only in the userinfo', 'http://localhost@evil.test/'],
  ])('rejects http:// to a non-loopback host (%s)', (_label, url) => {
    expect(destProblems({ name: 'crm', type: 'http', url })).toEqual([HTTPS_ONLY_URL]);
  });

  it('accepts http:// to any host with allow_http = true, and keeps the destination shape', () => {
    expect(destOf({ name: 'crm', type: 'http', url: 'http://crm.internal.test/hook', allow_http: true })).toEqual({
      name: 'crm',
      type: 'http',
      url: 'http://crm.internal.test/hook',
      headers: {},
      timeoutMs: DEFAULT_TIMEOUT_MS,
      retry: RETRY_DEFAULTS,
      circuit: CIRCUIT_DEFAULTS,
      maxPerSecond: null,
    } satisfies HttpDestination);
    expect(destOf({ name: 'crm', type: 'http', url: CRM, allow_http: true })).toMatchObject({ url: CRM });
    expect(destOf({ name: 'crm', type: 'http', url: CRM, allow_http: false })).toMatchObject({ url: CRM });
  });

  it('rejects http:// to a non-loopback host with allow_http = false', () => {
    expect(destProblems({ name: 'crm', type: 'http', url: 'http://crm.example.test/', allow_http: false })).toEqual([HTTPS_ONLY_URL]);
  });

  it.each([
    ['a string', 'true'],
    ['a number', 1],
    ['null', null],
    ['a list', [true]],
  ])('reports allow_http that is %s, not a boolean', (_label, allow) => {
    expect(destProblems({ name: 'crm', type: 'http', url: CRM, allow_http: allow })).toEqual(['destinations[0].allow_http: must be true or false']);
    // An invalid allow_http allows nothing.
    expect(destProblems({ name: 'crm', type: 'http', url: 'http://crm.example.test/', allow_http: allow })).toEqual([
      'destinations[0].allow_http: must be true or false',
      HTTPS_ONLY_URL,
    ]);
  });

  it('applies the https rule to a URL read from url_secret, without echoing it', () => {
    const secretUrl = 'http://crm.example.test/hook?token=SEKRET-TOKEN';
    const p = destProblems({ name: 'crm', type: 'http', url_secret: 'CRM_URL' }, { CRM_URL: secretUrl });
    expect(p).toEqual([HTTPS_ONLY_SECRET]);
    expect(p.join('\n')).not.toContain('SEKRET');
    expect(p.join('\n')).not.toContain('crm.example.test');
    expect(destOf({ name: 'crm', type: 'http', url_secret: 'CRM_URL', allow_http: true }, { CRM_URL: secretUrl })).toMatchObject({ url: secretUrl });
    expect(destOf({ name: 'crm', type: 'http', url_secret: 'CRM_URL' }, { CRM_URL: 'http://127.0.0.1:9/x' })).toMatchObject({ url: 'http://127.0.0.1:9/x' });
  });

  it('does not check a url_secret it cannot resolve (checkBindings: false), whatever allow_http says', () => {
    expect(destOf({ name: 'crm', type: 'http', url_secret: 'CRM_URL', allow_http: false }, {}, { checkBindings: false })).toMatchObject({ url: '' });
  });

  it('reports allow_http on a queue destination as an unknown field', () => {
    expect(destProblems({ name: 'q', type: 'queue', queue: 'Q', allow_http: true }, { Q: QUEUE_BINDING })).toEqual([
      'destinations[0].allow_http: unknown field for a queue destination',
    ]);
  });

  it('never includes a secret value in any problem or warning', () => {
    const r = parse(
      {
        destinations: [
          { name: 'a', type: 'http', url_secret: 'A_URL', signing_secret: 'A_SIGN' },
          { name: 'b', type: 'slack', url_secret: 'B_URL' },
        ],
        rules: [rule('r', ['a', 'b'])],
      },
      { A_URL: 'notaurl-SEKRET-1', A_SIGN: 'SEKRET-2', B_URL: 'ftp://SEKRET-3' },
    );
    expect(r.ok).toBe(false);
    expect(JSON.stringify(r)).not.toContain('SEKRET');
  });

  it('skips url_secret resolution with checkBindings: false', () => {
    expect(destOf({ name: 'crm', type: 'http', url_secret: 'CRM_URL', signing_secret: 'SIGN' }, {}, { checkBindings: false })).toMatchObject({
      type: 'http',
      url: '',
    });
  });

  it('resolves signing_secret to its value', () => {
    const d = destOf(http('crm', { signing_secret: 'CRM_SIGNING_SECRET' }), { CRM_SIGNING_SECRET: 'whsec_crm' }) as HttpDestination;
    expect(d.signingSecret).toBe('whsec_crm');
  });

  it('leaves signingSecret unset when no signing_secret is configured', () => {
    expect(destOf(http('crm'))).not.toHaveProperty('signingSecret');
  });

  it.each([
    ['unset', undefined],
    ['empty', ''],
    ['a binding object', QUEUE_BINDING],
  ])('reports a signing_secret naming a secret that is %s', (_label, value) => {
    expect(destProblems(http('crm', { signing_secret: 'CRM_SIGNING_SECRET' }), { CRM_SIGNING_SECRET: value })).toEqual([
      'destinations[0].signing_secret: secret "CRM_SIGNING_SECRET" is not set (wrangler secret put CRM_SIGNING_SECRET)',
    ]);
  });

  it.each([['whsec_live_Abc123xyz'], ['https://hooks.slack.com/services/T0/B0/XYZ'], ['crm_signing_secret'], ['A'.repeat(65)]])(
    'a secret name that does not look like one (perhaps the value itself, pasted) is not shown when its secret is unset: %s',
    (name) => {
      for (const d of [http('crm', { signing_secret: name }), { name: 'crm', type: 'http', url_secret: name }]) {
        const problems = destProblems(d);
        expect(problems).toHaveLength(1);
        expect(problems[0]).toMatch(/^destinations\[0\]\.(signing|url)_secret: the secret it names is not set \(the name is not shown/);
        expect(problems[0]).not.toContain(name);
      }
    },
  );

  it.each([[''], [5], [true]])('reports a signing_secret that is not a secret name: %j', (value) => {
    expect(destProblems(http('crm', { signing_secret: value }))).toEqual(['destinations[0].signing_secret: must be the name of a secret']);
  });

  it('keeps valid static headers', () => {
    expect(destOf(http('crm', { headers: { 'X-Team': 'growth', Authorization: 'Bearer abc', 'x-empty': '' } }))).toMatchObject({
      headers: { 'X-Team': 'growth', Authorization: 'Bearer abc', 'x-empty': '' },
    });
  });

  it.each([
    ['Content-Type'],
    ['content-type'],
    ['Content-Length'],
    ['Host'],
    ['WorkOS-Signature'],
    ['workos-signature'],
    ['Idempotency-Key'],
    ['X-WorkOS-Event-Id'],
    ['X-WORKOS-EVENT'],
    ['x-workos-stale'],
    ['X-WorkOS-Replay'],
  ])('reports a reserved header %j (set by the router)', (h) => {
    expect(destProblems(http('crm', { headers: { [h]: 'x' } }))).toEqual([`destinations[0].headers["${h}"]: set by the router; cannot be overridden`]);
  });

  // The HTTP adapter (src/destinations/http.ts) also sets User-Agent; the contract says
  // static headers cannot override router-set headers, yet validation accepts it.
  it.each([['User-Agent'], ['user-agent']])('reports User-Agent %j as set by the router', (h) => {
    expect(destProblems(http('crm', { headers: { [h]: 'mine' } }))).toEqual([`destinations[0].headers["${h}"]: set by the router; cannot be overridden`]);
  });

  it.each([['X Team'], ['X-Team:'], [''], ['X-Té'], ['X(Team)'], ['X-Team\n']])('reports an invalid header name %j', (h) => {
    expect(destProblems(http('crm', { headers: { [h]: 'x' } }))).toEqual([`destinations[0].headers["${h}"]: not a valid header name`]);
  });

  it.each([
    ['LF', 'a\nb'],
    ['CRLF', 'a\r\nInjected: yes'],
    ['CR', 'a\rb'],
    ['trailing newline', 'growth\n'],
    ['a number', 5],
    ['a boolean', true],
    ['a list', ['a']],
  ])('reports a header value that is not a single-line string (%s)', (_label, v) => {
    expect(destProblems(http('crm', { headers: { 'X-Team': v } }))).toEqual(['destinations[0].headers["X-Team"]: value must be a single-line string']);
  });

  it.each([
    ['a string', 'X-Team: growth'],
    ['a list', [['X-Team', 'growth']]],
  ])('reports headers that is %s, not a table', (_label, headers) => {
    expect(destProblems(http('crm', { headers }))).toEqual(['destinations[0].headers: must be a table of header = "value"']);
  });

  const CONTROL = 'destinations[0].headers["X-Team"]: value must be printable text without control characters (tab is allowed)';

  it.each([
    ['NUL', 'a\u0000b'],
    ['a trailing NUL', 'growth\u0000'],
    ['SOH', '\u0001'],
    ['backspace', 'a\bb'],
    ['vertical tab', 'a\u000Bb'],
    ['form feed', 'a\fb'],
    ['ESC (terminal escape)', '\u001B[31mred'],
    ['unit separator 0x1F', 'a\u001Fb'],
    ['DEL 0x7F', 'a\u007Fb'],
  ])('reports a header value holding a control character (%s), without echoing it', (_label, v) => {
    const p = destProblems(http('crm', { headers: { 'X-Team': `SEKRET-${v}` } }));
    expect(p).toEqual([CONTROL]);
    expect(p.join('\n')).not.toContain('SEKRET');
  });

  it.each([
    ['a tab', 'a\tb'],
    ['a space', 'growth team'],
    ['non-ASCII text', 'équipe 成長'],
    ['C1 range characters (not ASCII controls)', 'a\u0085b\u00A0c'],
    ['exactly 8192 bytes', 'x'.repeat(8192)],
    ['8192 bytes of two-byte characters', 'é'.repeat(4096)],
  ])('accepts a header value with %s', (_label, v) => {
    expect((destOf(http('crm', { headers: { 'X-Team': v } })) as HttpDestination).headers).toEqual({ 'X-Team': v });
  });

  it.each([
    ['8193 ASCII characters', 'x'.repeat(8193)],
    ['4097 two-byte characters (8194 bytes)', 'é'.repeat(4097)],
    ['a megabyte', 'x'.repeat(1 << 20)],
  ])('reports a header value longer than 8 KB (%s)', (_label, v) => {
    expect(destProblems(http('crm', { headers: { 'X-Team': v } }))).toEqual(['destinations[0].headers["X-Team"]: value must be at most 8192 bytes']);
  });

  it('reports each bad header separately', () => {
    expect(destProblems(http('crm', { headers: { Host: 'x', 'Bad Name': 'y', 'X-Ok': 'fine', 'X-Multi': 'a\nb' } }))).toEqual([
      'destinations[0].headers["Host"]: set by the router; cannot be overridden',
      'destinations[0].headers["Bad Name"]: not a valid header name',
      'destinations[0].headers["X-Multi"]: value must be a single-line string',
    ]);
  });
});

describe('parseRouterConfig: slack destinations', () => {
  const slack = (extra: Record<string, unknown> = {}) => ({ name: 'security', type: 'slack', url: SLACK, ...extra });

  it('max_pending: default 10,000, accepted from 100 to 1,000,000, anything else a problem', () => {
    expect(destOf(slack())).toMatchObject({ maxPending: 10_000 });
    expect(destOf(slack({ max_pending: 100 }))).toMatchObject({ maxPending: 100 });
    expect(destOf(slack({ max_pending: 1_000_000 }))).toMatchObject({ maxPending: 1_000_000 });
    for (const bad of [99, 1_000_001, 1.5, -1, 'lots', true]) {
      expect(destProblems(slack({ max_pending: bad }))).toEqual(['destinations[0].max_pending: must be a whole number from 100 to 1000000']);
    }
    expect(destProblems({ name: 'crm', type: 'http', url: CRM, max_pending: 100 })).toEqual([
      'destinations[0].max_pending: unknown field for a http destination',
    ]);
  });

  it('accepts url_secret and reports url/url_secret problems like http', () => {
    expect(destOf({ name: 'security', type: 'slack', url_secret: 'SLACK_URL' }, { SLACK_URL: SLACK })).toMatchObject({ url: SLACK });
    expect(destProblems({ name: 'security', type: 'slack' })).toEqual(['destinations[0]: set exactly one of url or url_secret']);
    expect(destProblems({ name: 'security', type: 'slack', url: SLACK, url_secret: 'S' }, { S: SLACK })).toEqual([
      'destinations[0]: set exactly one of url or url_secret',
    ]);
    expect(destProblems({ name: 'security', type: 'slack', url_secret: 'SLACK_URL' })).toEqual([
      'destinations[0].url_secret: secret "SLACK_URL" is not set (wrangler secret put SLACK_URL)',
    ]);
    const p = destProblems({ name: 'security', type: 'slack', url_secret: 'SLACK_URL' }, { SLACK_URL: 'hooks.slack.test/T/B/SEKRET' });
    expect(p).toEqual(['destinations[0].url_secret: must be an absolute http(s) URL']);
    expect(p.join()).not.toContain('SEKRET');
    expect(destProblems(slack({ url: 'slack://SEKRET' }))).toEqual(['destinations[0].url: must be an absolute http(s) URL']);
  });

  it('applies the https rule to Slack URLs (url and url_secret), with allow_http and loopback exceptions', () => {
    const suffix = 'must use https:// (http:// is allowed only for loopback hosts or with allow_http = true)';
    expect(destProblems(slack({ url: 'http://hooks.slack.test/services/T/B/SEKRET' }))).toEqual([`destinations[0].url: ${suffix}`]);
    const p = destProblems({ name: 'security', type: 'slack', url_secret: 'SLACK_URL' }, { SLACK_URL: 'http://hooks.slack.test/services/T/B/SEKRET' });
    expect(p).toEqual([`destinations[0].url_secret: ${suffix}`]);
    expect(p.join()).not.toContain('SEKRET');
    expect(destOf(slack({ url: 'http://127.0.0.1:8080/slack' }))).toMatchObject({ url: 'http://127.0.0.1:8080/slack' });
    expect(destOf(slack({ url: 'http://slack-proxy.internal.test/x', allow_http: true }))).toMatchObject({ url: 'http://slack-proxy.internal.test/x' });
    expect(destProblems(slack({ allow_http: 'yes' }))).toEqual(['destinations[0].allow_http: must be true or false']);
  });

  it('accepts a title of up to 150 characters', () => {
    expect(destOf(slack({ title: 't'.repeat(150) }))).toMatchObject({ title: 't'.repeat(150) });
  });

  it.each([
    ['151 characters', 't'.repeat(151)],
    ['empty', ''],
    ['whitespace', '   '],
    ['a number', 5],
  ])('reports a title that is %s', (_label, title) => {
    expect(destProblems(slack({ title }))).toEqual(['destinations[0].title: must be a non-empty string of at most 150 characters']);
  });

  it('leaves title and mention unset when not configured', () => {
    const d = destOf(slack());
    expect(d).not.toHaveProperty('title');
    expect(d).not.toHaveProperty('mention');
  });

  it.each([['<!here>'], ['<!channel>'], ['<!everyone>'], ['<@U123ABC>'], ['<@W0123>'], ['<!subteam^S123ABC>']])('accepts mention %j (string form)', (text) => {
    expect(destOf(slack({ mention: text }))).toMatchObject({ mention: { text, rules: [], events: [] } });
  });

  const BAD_TEXT = 'destinations[0].mention.text: must be "<!here>", "<!channel>", "<@U123ABC>" or "<!subteam^S123ABC>"';

  it.each([
    ['@here'],
    ['here'],
    ['<!here'],
    ['<!HERE>'],
    ['<@u123abc>'],
    ['<@X123>'],
    ['<@U123ABC> please look'],
    ['<!subteam^>'],
    ['<!subteam^s123>'],
    ['<#C123>'],
    [''],
  ])('reports a bad mention text %j', (text) => {
    expect(destProblems(slack({ mention: text }))).toEqual([BAD_TEXT]);
    expect(destProblems(slack({ mention: { text } }))).toEqual([BAD_TEXT]);
  });

  it('reports a mention table without text', () => {
    expect(destProblems(slack({ mention: { rules: ['r'] } }))).toEqual([BAD_TEXT]);
  });

  it.each([
    ['a number', 5],
    ['a list', ['<!here>']],
    ['a boolean', true],
  ])('reports a mention that is %s', (_label, mention) => {
    expect(destProblems(slack({ mention }))).toEqual(['destinations[0].mention: must be a mention string or a table { text, rules, events }']);
  });

  it('reports an unknown field in a mention table', () => {
    expect(destProblems(slack({ mention: { text: '<!here>', channel: '#sec' } }))).toEqual(['destinations[0].mention.channel: unknown field']);
  });

  it.each([
    ['rules', 'failed-logins'],
    ['rules', [5]],
    ['rules', ['']],
    ['events', 'user.*'],
    ['events', [null]],
  ])('reports mention.%s that is not a list of non-empty strings (%j)', (key, value) => {
    expect(destProblems(slack({ mention: { text: '<!here>', [key]: value } }))).toEqual([`destinations[0].mention.${key}: must be a list of non-empty strings`]);
  });

  it('reports an invalid mention.events pattern', () => {
    expect(destProblems(slack({ mention: { text: '<!here>', events: ['user.*', 'user created'] } }))).toEqual([
      'destinations[0].mention.events[1]: invalid pattern "user created"',
    ]);
  });

  it('parses a mention table with rules and events', () => {
    const cfg = {
      destinations: [slack({ mention: { text: '<@U123ABC>', rules: ['failed-logins'], events: ['authentication.sso_failed', '!authentication.mfa_*'] } })],
      rules: [{ name: 'failed-logins', events: ['authentication.*_failed'], to: ['security'] }],
    };
    expect(ok(cfg).config.destinations.get('security')).toMatchObject({
      mention: { text: '<@U123ABC>', rules: ['failed-logins'], events: ['authentication.sso_failed', '!authentication.mfa_*'] },
    });
  });

  it('reports mention.rules naming an unknown rule, with a did-you-mean when close', () => {
    const cfg = {
      destinations: [slack({ mention: { text: '<!here>', rules: ['failed-logins', 'failed-login', 'totally-different-name'] } })],
      rules: [{ name: 'failed-logins', events: ['authentication.*_failed'], to: ['security'] }],
    };
    expect(problems(cfg)).toEqual([
      'destinations["security"].mention.rules[1]: unknown rule "failed-login" (did you mean "failed-logins"?)',
      'destinations["security"].mention.rules[2]: unknown rule "totally-different-name"',
    ]);
  });
});

describe('parseRouterConfig: rules', () => {
  it.each([
    ['a string', 'users'],
    ['a number', 1],
    ['a list', [{ name: 'r' }]],
    ['null', null],
  ])('reports a rule that is %s, not a table', (_label, r) => {
    expect(ruleProblems(r)).toEqual(['rules[0]: must be a table']);
  });

  it('reports an unknown rule field with a did-you-mean', () => {
    expect(ruleProblems(rule('r', ['crm'], { filter: {} }))).toEqual(['rules[0].filter: unknown field']);
    expect(ruleProblems(rule('r', ['crm'], { stal: 'drop' }))).toEqual(['rules[0].stal: unknown field (did you mean "stale"?)']);
    expect(ruleProblems({ name: 'r', event: ['user.created'], to: ['crm'] })).toEqual([
      'rules[0].event: unknown field (did you mean "events"?)',
      'rules[0].events: required: a non-empty list of event names or patterns',
    ]);
  });

  it.each([
    ['missing', undefined],
    ['empty', ''],
    ['a number', 1],
    ['with a space', 'my rule'],
    ['starting with "-"', '-r'],
    ['65 characters', 'r'.repeat(65)],
  ])('reports a bad rule name (%s)', (_label, name) => {
    expect(ruleProblems({ name, events: ['user.created'], to: ['crm'] })).toEqual(['rules[0].name: required; letters, digits, "_", "-" or "."']);
  });

  it('reports duplicate rule names at the later index', () => {
    expect(ruleProblems(rule('users', ['crm']), [rule('other', ['crm']), rule('users', ['crm'])])).toEqual(['rules[2].name: duplicate rule name "users"']);
  });

  it.each([
    ['missing', undefined],
    ['empty', []],
    ['a string', 'user.created'],
    ['a table', { include: ['user.*'] }],
  ])('reports events that is %s', (_label, events) => {
    expect(ruleProblems({ name: 'r', events, to: ['crm'] })).toEqual(['rules[0].events: required: a non-empty list of event names or patterns']);
  });

  it.each([
    ['empty', ''],
    ['"!" alone', '!'],
    ['a number', 5],
    ['null', null],
  ])('reports an empty pattern (%s)', (_label, p) => {
    expect(ruleProblems({ name: 'r', events: ['user.created', p], to: ['crm'] })).toEqual(['rules[0].events[1]: empty pattern']);
  });

  it.each([['user created'], ['user.created!'], ['!!user.created'], ['user/created'], ['user.créated'], ['user.*?'], ['user.{created,deleted}'], [' user.created'], ['user:created']])(
    'reports a pattern with invalid characters: %j',
    (p) => {
      expect(ruleProblems({ name: 'r', events: [p], to: ['crm'] })).toEqual([
        `rules[0].events[0]: invalid pattern "${p}" (letters, digits, "_", ".", "-", "*", leading "!")`,
      ]);
    },
  );

  it('reports every bad pattern in one rule', () => {
    expect(ruleProblems({ name: 'r', events: ['', 'user.*', 'a b', '!'], to: ['crm'] })).toEqual([
      'rules[0].events[0]: empty pattern',
      'rules[0].events[2]: invalid pattern "a b" (letters, digits, "_", ".", "-", "*", leading "!")',
      'rules[0].events[3]: empty pattern',
    ]);
  });

  it.each([['*'], ['!*'], ['dsync.*'], ['!dsync.group.updated'], ['authentication.*_failed'], ['*.created'], ['Custom-Event_1.x']])('accepts pattern %j', (p) => {
    const r = parse({ destinations: [http('crm')], rules: [{ name: 'r', events: [p], to: ['crm'] }] });
    expect(r.ok).toBe(true);
  });

  it.each([
    ['missing', undefined],
    ['empty', []],
    ['a string', 'crm'],
  ])('reports to that is %s', (_label, to) => {
    expect(ruleProblems({ name: 'r', events: ['user.created'], to })).toEqual(['rules[0].to: required: a non-empty list of destination names']);
  });

  it('reports an unknown destination with the exact message', () => {
    const cfg = { destinations: [http('audit-archive')], rules: [rule('a', ['audit-archive']), rule('b', ['crm2'])] };
    expect(problems(cfg)).toEqual(['rules[1].to[0]: unknown destination "crm2"']);
  });

  it('adds a did-you-mean to an unknown destination when a name is close', () => {
    const cfg = { destinations: [http('crm'), http('ops')], rules: [rule('a', ['crm', 'ops']), rule('b', ['crm2'])] };
    expect(problems(cfg)).toEqual(['rules[1].to[0]: unknown destination "crm2" (did you mean "crm"?)']);
  });

  it('names each unknown destination by its index in to', () => {
    const cfg = { destinations: [http('crm')], rules: [rule('a', ['crm', 'slack-sec', 'crm'])] };
    expect(problems(cfg)).toEqual(['rules[0].to[1]: unknown destination "slack-sec"']);
  });

  it('reports a non-string destination reference', () => {
    expect(ruleProblems(rule('r', ['crm', 5, null]))).toEqual(['rules[0].to[1]: unknown destination 5', 'rules[0].to[2]: unknown destination null']);
  });

  it('collapses a destination listed twice in one rule', () => {
    expect(ok({ destinations: [http('crm')], rules: [rule('r', ['crm', 'crm'])] }).config.rules[0]?.to).toEqual(['crm']);
  });

  it('defaults stale to "deliver" and accepts "drop"', () => {
    const { config } = ok({ destinations: [http('crm')], rules: [rule('a', ['crm']), rule('b', ['crm'], { stale: 'drop' }), rule('c', ['crm'], { stale: 'deliver' })] });
    expect(config.rules.map((r) => r.stale)).toEqual(['deliver', 'drop', 'deliver']);
  });

  it.each([['skip'], ['DROP'], [''], [true], [0]])('reports an invalid stale %j', (stale) => {
    expect(ruleProblems(rule('r', ['crm'], { stale }))).toEqual(['rules[0].stale: must be "deliver" or "drop"']);
  });

  it('reports every field problem of a rule together', () => {
    expect(ruleProblems({ name: '', events: [], to: [], stale: 'x', where: {} })).toEqual([
      'rules[0].name: required; letters, digits, "_", "-" or "."',
      'rules[0].events: required: a non-empty list of event names or patterns',
      'rules[0].to: required: a non-empty list of destination names',
      'rules[0].where: must name at least one path',
      'rules[0].stale: must be "deliver" or "drop"',
    ]);
  });
});

describe('parseRouterConfig: where', () => {
  it('compiles a valid where into one condition per path, in order', () => {
    const { config } = ok({
      destinations: [http('crm')],
      rules: [
        rule('r', ['crm'], {
          where: {
            'data.organization_id': ['org_1', 'org_2'],
            'data.email': { suffix: '@example.com' },
            'context.actor.id': { exists: true },
            'data.state': { not: 'inactive' },
          },
        }),
      ],
    });
    const where = config.rules[0]?.where ?? [];
    expect(where.map((c) => c.path)).toEqual(['data.organization_id', 'data.email', 'context.actor.id', 'data.state']);
    expect(where.map((c) => c.segments)).toEqual([['data', 'organization_id'], ['data', 'email'], ['context', 'actor', 'id'], ['data', 'state']]);
    expect(where[0]?.equalityValues).toEqual(['org_1', 'org_2']);
    expect(where[1]?.equalityValues).toBeUndefined();
  });

  it.each([
    ['a string', 'data.x = 1'],
    ['a list', [{ 'data.x': 1 }]],
    ['a number', 1],
    ['null', null],
  ])('reports a where that is %s', (_label, where) => {
    expect(whereProblems(where)).toEqual(['rules[0].where: must be a table of "path" = condition']);
  });

  it('reports an empty where table', () => {
    expect(whereProblems({})).toEqual(['rules[0].where: must name at least one path']);
  });

  it.each([['data..x'], ['.data'], ['data.'], ['data x'], [''], ['data.$x'], ['data[0]'], ['data/x'], ['data.*']])('reports a bad path %j', (path) => {
    expect(whereProblems({ [path]: 'x' })).toEqual([`rules[0].where["${path}"]: path must be dot-separated field names, e.g. "data.organization_id"`]);
  });

  it.each([['data.organization_id'], ['event'], ['context.actor.id'], ['data.a-b.c_d.0']])('accepts path %j', (path) => {
    const { config } = ok({ destinations: [http('crm')], rules: [rule('r', ['crm'], { where: { [path]: 'x' } })] });
    expect(config.rules[0]?.where[0]?.segments).toEqual(path.split('.'));
  });

  it('reports an empty any-of list', () => {
    expect(whereProblems({ 'data.x': [] })).toEqual(['rules[0].where["data.x"]: an "any of" list must not be empty']);
  });

  it.each([
    ['a list', [['a']]],
    ['a table', [{ prefix: 'a' }]],
    ['mixed', ['a', { b: 1 }]],
  ])('reports an any-of list holding a non-scalar (%s)', (_label, list) => {
    expect(whereProblems({ 'data.x': list })).toEqual(['rules[0].where["data.x"]: an "any of" list may hold only strings, numbers, booleans or null']);
  });

  it('reports an empty operator table', () => {
    expect(whereProblems({ 'data.x': {} })).toEqual(['rules[0].where["data.x"]: an operator table must use prefix, suffix, exists or not']);
  });

  it.each([['equals'], ['eq'], ['in'], ['contains'], ['Prefix'], ['regex']])('reports an unknown operator %j', (op) => {
    expect(whereProblems({ 'data.x': { [op]: 'a' } })).toEqual([`rules[0].where["data.x"].${op}: unknown operator (use prefix, suffix, exists or not)`]);
  });

  it.each([
    ['a number', 5],
    ['empty', ''],
    ['an empty list', []],
    ['a list with a number', ['a', 5]],
    ['a list with an empty string', ['a', '']],
    ['a boolean', true],
    ['null', null],
    ['a table', { value: 'a' }],
  ])('reports prefix and suffix that are %s', (_label, arg) => {
    expect(whereProblems({ 'data.x': { prefix: arg } })).toEqual(['rules[0].where["data.x"].prefix: must be a non-empty string or a list of them']);
    expect(whereProblems({ 'data.x': { suffix: arg } })).toEqual(['rules[0].where["data.x"].suffix: must be a non-empty string or a list of them']);
  });

  it.each([['true'], [1], [0], [null], [['true']]])('reports exists that is not a boolean: %j', (arg) => {
    expect(whereProblems({ 'data.x': { exists: arg } })).toEqual(['rules[0].where["data.x"].exists: must be true or false']);
  });

  it('reports a bad condition nested in not at its nested path', () => {
    expect(whereProblems({ 'data.x': { not: { prefix: 5 } } })).toEqual(['rules[0].where["data.x"].not.prefix: must be a non-empty string or a list of them']);
    expect(whereProblems({ 'data.x': { not: { exists: 'yes' } } })).toEqual(['rules[0].where["data.x"].not.exists: must be true or false']);
    expect(whereProblems({ 'data.x': { not: [] } })).toEqual(['rules[0].where["data.x"].not: an "any of" list must not be empty']);
    expect(whereProblems({ 'data.x': { not: [{}] } })).toEqual([
      'rules[0].where["data.x"].not: an "any of" list may hold only strings, numbers, booleans or null',
    ]);
    expect(whereProblems({ 'data.x': { not: {} } })).toEqual(['rules[0].where["data.x"].not: an operator table must use prefix, suffix, exists or not']);
    expect(whereProblems({ 'data.x': { not: { is: 'a' } } })).toEqual(['rules[0].where["data.x"].not.is: unknown operator (use prefix, suffix, exists or not)']);
  });

  // `not` negates equality, any-of, prefix/suffix or exists; it does not nest.
  it('reports a not nested inside not', () => {
    const p = whereProblems({ 'data.state': { not: { not: 'active' } } });
    expect(p).toHaveLength(1);
    expect(p[0]).toMatch(/^rules\[0\]\.where\["data\.state"\]\.not/);
  });

  it('reports every bad path and operator of one where table', () => {
    expect(
      whereProblems({
        'data..x': 1,
        'data.a': [],
        'data.b': { prefix: 1, suffix: 'ok', exists: 'no', wat: 1 },
        'data.c': 'fine',
      }),
    ).toEqual([
      'rules[0].where["data..x"]: path must be dot-separated field names, e.g. "data.organization_id"',
      'rules[0].where["data.a"]: an "any of" list must not be empty',
      'rules[0].where["data.b"].prefix: must be a non-empty string or a list of them',
      'rules[0].where["data.b"].exists: must be true or false',
      'rules[0].where["data.b"].wat: unknown operator (use prefix, suffix, exists or not)',
    ]);
  });

  it('names the rule index in where problems', () => {
    expect(ruleProblems(rule('a', ['crm']), [rule('b', ['crm'], { where: { 'data.x': { exists: 1 } } })])).toEqual([
      'rules[1].where["data.x"].exists: must be true or false',
    ]);
  });
});

describe('parseRouterConfig: warnings', () => {
  const cfg = (events: string[], extraDests: unknown[] = []) => ({ destinations: [http('crm'), ...extraDests], rules: [{ name: 'r', events, to: ['crm'] }] });

  it('warns about an unknown exact event name with a did-you-mean', () => {
    const { warnings } = ok(cfg(['dsync.user.create']));
    expect(warnings).toEqual(['rules[0].events[0]: "dsync.user.create" is not a known WorkOS event type (did you mean "dsync.user.created"?)']);
  });

  it.each([
    ['user.crated', 'user.created'],
    ['dsync.group.user_add', 'dsync.group.user_added'],
    ['authentication.sso_fail', 'authentication.sso_failed'],
    ['organisation.created', 'organization.created'],
  ])('suggests the closest catalog type for %j', (name, best) => {
    expect(ok(cfg([name])).warnings).toEqual([`rules[0].events[0]: "${name}" is not a known WorkOS event type (did you mean "${best}"?)`]);
  });

  it('warns about an unknown exact name without a suggestion when nothing is close', () => {
    expect(ok(cfg(['acme.widget.exploded'])).warnings).toEqual(['rules[0].events[0]: "acme.widget.exploded" is not a known WorkOS event type']);
  });

  it('warns about an unknown excluded name (by its bare name)', () => {
    expect(ok(cfg(['dsync.*', '!dsync.group.updatd'])).warnings).toEqual([
      'rules[0].events[1]: "dsync.group.updatd" is not a known WorkOS event type (did you mean "dsync.group.updated"?)',
    ]);
  });

  it.each([['acme.*'], ['*.exploded'], ['user.*.created'], ['!acme.*']])('warns about pattern %j matching no catalog type', (p) => {
    expect(ok(cfg(['user.created', p])).warnings).toEqual([`rules[0].events[1]: pattern "${p}" matches no known WorkOS event type`]);
  });

  it.each([['*'], ['dsync.*'], ['authentication.*_failed'], ['*.created'], ['organization*'], ['!dsync.*'], ['dsync.*.created'], ['user.created']])(
    'does not warn about %j (matches the catalog)',
    (p) => {
      expect(ok(cfg([p])).warnings).toEqual([]);
    },
  );

  it('warns about unused destinations, in declaration order', () => {
    const { warnings } = ok(cfg(['user.created'], [http('spare'), { name: 'q', type: 'queue', queue: 'Q' }]), { Q: QUEUE_BINDING });
    expect(warnings).toEqual(['destinations: "spare" is not used by any rule', 'destinations: "q" is not used by any rule']);
  });

  it('warns that an empty rules list leaves every event unrouted (and every destination unused)', () => {
    expect(ok({ destinations: [http('crm')], rules: [] }).warnings).toEqual([
      'rules: no rules; every event will be accepted and reported as unrouted',
      'destinations: "crm" is not used by any rule',
    ]);
  });

  it('keeps warnings in rule order with their paths', () => {
    const { warnings } = ok({
      destinations: [http('crm'), http('ops')],
      rules: [
        { name: 'a', events: ['user.created', 'user.crated'], to: ['crm'] },
        { name: 'b', events: ['acme.*'], to: ['crm'] },
      ],
    });
    expect(warnings).toEqual([
      'rules[0].events[1]: "user.crated" is not a known WorkOS event type (did you mean "user.created"?)',
      'rules[1].events[0]: pattern "acme.*" matches no known WorkOS event type',
      'destinations: "ops" is not used by any rule',
    ]);
  });

  it('warnings do not make the config invalid', () => {
    const r = parse(cfg(['acme.widget.exploded', 'acme.*'], [http('spare')]));
    expect(r.ok).toBe(true);
    expect(r.warnings).toHaveLength(3);
  });
});

describe('suggest', () => {
  it('returns the closest candidate within the edit-distance budget', () => {
    expect(suggest('crm2', ['crm', 'ops'])).toBe(' (did you mean "crm"?)');
    expect(suggest('xyzzy', ['crm', 'ops'])).toBe('');
    expect(suggest('anything', [])).toBe('');
    expect(suggest('rules', ['rules'])).toBe(' (did you mean "rules"?)');
  });
});

describe('shared Slack webhooks', () => {
  it('warns (without printing the URL) when two Slack destinations post to one webhook', async () => {
    const { parseRouterConfig } = await import('../../src/config/router-config');
    const url = 'https://hooks.slack.com/services/T/B/very-secret';
    const r = parseRouterConfig(
      {
        destinations: [
          { name: 'a', type: 'slack', url },
          { name: 'b', type: 'slack', url },
        ],
        rules: [{ name: 'r', events: ['*'], to: ['a', 'b'] }],
      },
      () => undefined,
    );
    expect(r.ok).toBe(true);
    expect(r.warnings).toContain(
      'destinations: "b" and "a" post to the same Slack webhook; each is rate-limited separately, so together they may exceed Slack\'s 1 message/s',
    );
    expect(JSON.stringify(r.warnings)).not.toContain('very-secret');
  });
});

// ---------------------------------------------------------------------------
// Shortcuts taken for large configs: each must give exactly what the plain
// check gives (written here from the rules, not from router-config.ts).

describe('parseRouterConfig: large-config shortcuts agree with the plain checks', () => {
  /** What the URL parser says of a destination url (the plain check). */
  function urlVerdict(url: string, allowHttp: boolean): string[] {
    let u: URL;
    try {
      u = new URL(url);
    } catch {
      return ['destinations[0].url: must be an absolute http(s) URL'];
    }
    if (u.protocol !== 'https:' && u.protocol !== 'http:') return ['destinations[0].url: must be an absolute http(s) URL'];
    const loopback = u.hostname === 'localhost' || u.hostname.endsWith('.localhost') || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(u.hostname) || u.hostname === '[::1]';
    if (u.protocol === 'http:' && !allowHttp && !loopback) {
      return ['destinations[0].url: must use https:// (http:// is allowed only for loopback hosts or with allow_http = true)'];
    }
    return [];
  }

  const label = fc.oneof(
    fc.stringMatching(/^[a-z0-9-]{1,12}$/),
    fc.constantFrom('xn--', 'xn--abc', 'xn--nxasmq6b', 'XN--abc', '0x1f', '0xzz', '123', '999', '1', 'a-', '-a', 'a--b', 'localhost', 'EXAMPLE', 'ex_ample', ''),
  );
  const host = fc.array(label, { minLength: 1, maxLength: 4 }).map((labels) => labels.join('.'));
  const path = fc.oneof(
    fc.constant(''),
    fc.stringMatching(/^\/[A-Za-z0-9._~!$&'()*+,;=:@\/-]{0,20}$/),
    fc.constantFrom('/a%20b', '/%zz', '/a b', '/a\\b', '?q=1', '#f', '/x?y#z', '/\u00e9', ':443/x', ':99999', ':8080', '.', './x'),
  );
  const scheme = fc.constantFrom('https://', 'http://', 'HTTPS://', 'https:/', 'https:', 'ftp://', 'https:///', ' https://');
  const url = fc.oneof(
    fc.tuple(scheme, host, path).map(([a, b, c]) => a + b + c),
    fc.string({ maxLength: 40 }),
    fc.tuple(fc.constantFrom('https://', 'http://'), fc.string({ maxLength: 30 })).map(([a, b]) => a + b),
    fc.constantFrom(`https://${'a'.repeat(63)}.com/x`, `https://${'a'.repeat(64)}.com/x`, `https://a.b/${'p'.repeat(3000)}`, 'https://1.2.3.4/x', 'https://1.2.3/x', 'https://a.1/x', 'https://a.b1/x', 'https://a.0x1/x', 'https://a.b./x'),
  );

  it('2,000 runs: a destination url is accepted or refused exactly as the URL parser says', () => {
    fc.assert(
      fc.property(url, fc.boolean(), (u, allowHttp) => {
        const dest = allowHttp ? { name: 'd', type: 'http', url: u, allow_http: true } : { name: 'd', type: 'http', url: u };
        const want = urlVerdict(u, allowHttp);
        const r = parse({ destinations: [dest] });
        expect(r.ok ? [] : r.problems).toEqual(want);
        if (r.ok) expect((r.config.destinations.get('d') as HttpDestination).url).toBe(u);
      }),
      { numRuns: 2000 },
    );
  });

  /** The plain pattern check for one rule's events, written from README "Rules" and the warning texts. */
  function patternFindings(events: string[], at: string): { problems: string[]; warnings: string[] } {
    const problems: string[] = [];
    const warnings: string[] = [];
    events.forEach((p, i) => {
      const pat = `${at}.events[${i}]`;
      if (p === '' || p === '!') problems.push(`${pat}: empty pattern`);
      else if (!/^!?[A-Za-z0-9_.*-]+$/.test(p)) problems.push(`${pat}: invalid pattern "${p}" (letters, digits, "_", ".", "-", "*", leading "!")`);
      else {
        const bare = p.startsWith('!') ? p.slice(1) : p;
        if (!bare.includes('*')) {
          if (!(EVENT_TYPES as readonly string[]).includes(bare)) warnings.push(`${pat}: "${bare}" is not a known WorkOS event type${suggest(bare, EVENT_TYPES)}`);
        } else {
          const re = new RegExp(`^${bare.split('*').map((x) => x.replace(/[.+?^${}()|[\]\\]/g, '\\$&')).join('.*')}$`, 's');
          if (!EVENT_TYPES.some((t) => re.test(t))) warnings.push(`${pat}: pattern "${p}" matches no known WorkOS event type`);
        }
      }
    });
    return { problems, warnings };
  }

  const pattern = fc.constantFrom(
    'user.created',
    '!user.created',
    'user.create',
    '!dsync.group.updatd',
    'dsync.*',
    '!dsync.*',
    'acme.*',
    '!acme.*',
    '*',
    'acme.widget.exploded',
    'user created',
    '!',
    '',
    'a\nb',
    '*.deleted',
  );

  it('300 runs: patterns repeated across many rules give each rule the same problems and warnings as checking it alone', () => {
    fc.assert(
      fc.property(fc.array(fc.array(pattern, { minLength: 1, maxLength: 4 }), { minLength: 1, maxLength: 30 }), (lists) => {
        const rules = lists.map((events, i) => ({ name: `r${i}`, events, to: ['crm'] }));
        const r = parse({ destinations: [{ name: 'crm', type: 'http', url: CRM }], rules });
        const want = { problems: [] as string[], warnings: [] as string[] };
        lists.forEach((events, i) => {
          const f = patternFindings(events, `rules[${i}]`);
          want.problems.push(...f.problems);
          want.warnings.push(...f.warnings);
        });
        // (When every rule is refused, crm is also reported unused: not a pattern finding.)
        expect({ problems: r.ok ? [] : r.problems, warnings: r.warnings.filter((w) => w.startsWith('rules[')) }).toEqual(want);
        if (r.ok) expect(r.config.rules.map((x) => x.events)).toEqual(lists);
      }),
      { numRuns: 300 },
    );
  });

  it('rules filtering on the same path share one segments list; the parsed lists are independent of the input', () => {
    const raw = {
      destinations: [{ name: 'crm', type: 'http', url: CRM }],
      rules: [
        { name: 'a', events: ['user.created'], where: { 'data.organization_id': 'org_1' }, to: ['crm', 'crm'] },
        { name: 'b', events: ['user.created'], where: { 'data.organization_id': ['org_2'] }, to: ['crm'] },
      ],
    };
    const { config } = ok(raw);
    const [a, b] = config.rules as [Rule, Rule];
    expect(a.where[0]?.segments).toEqual(['data', 'organization_id']);
    expect(b.where[0]?.segments).toBe(a.where[0]?.segments);
    expect(a.to).toEqual(['crm']);
    raw.rules[0]?.events.push('user.deleted');
    expect(a.events).toEqual(['user.created']);
  });
});
