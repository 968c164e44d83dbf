/**
 * The `ROUTER` configuration: parsed and validated once per isolate.
 *
 * `ROUTER` arrives as a TOML table (`[vars.ROUTER]` in wrangler.toml) or as a
 * JSON string of the same shape (`wrangler dev --var ROUTER:'{…}'`, `.dev.vars`,
 * dashboard overrides). Every problem is reported with its path, e.g.
 * `rules[1].to[0]: unknown destination "crm2"`. The same code backs
 * `npm run check`.
 */
import { parseIsoTime } from './iso-time';
import { firstDuplicateKey } from './json-duplicates';
import { EVENT_TYPES, isCatalogEventType } from '../events/catalog';
import { Matcher, globToRegExp } from '../routing/matcher';
import { compileAllowlist } from '../webhook/source-ip';
import { type CompiledCondition, compileWhere, isPlainObject } from '../routing/where';

export interface RouterSettings {
  signatureToleranceSeconds: number;
  maxBodyBytes: number;
  dedupShards: number;
  dedupRetentionDays: number;
  claimLeaseSeconds: number;
  consumerSubrequestBudget: number;
  reconcileMaxPages: number;
  /** How far back each reconciliation run re-reads, to catch events that became visible late. */
  reconcileOverlapSeconds: number;
  deadLetterRetentionDays: number;
  /** Days the delivery trace keeps each acceptance (whole days, swept by bucket). */
  traceRetentionDays: number;
  /** Trace buckets per day (by event id): raise with traffic. */
  traceShards: number;
  /** The console may show an event's payload (on its page, after a click). */
  consoleShowPayloads: boolean;
  /** Optional allowlist of webhook source IPs (`CF-Connecting-IP`); null: no check. */
  sourceAllowlist: SourceAllowlist | null;
  /** The least severe log lines written (`info`: every line). */
  logLevel: ConfigLogLevel;
  /** ISO time the first reconciliation starts from (default: the first run's time). */
  reconcileSince?: string;
  /**
   * `dedup_shards` before its last change, while the ledger still remembers
   * events filed under it: a new event is also looked for in its shard then.
   */
  dedupShardsPrevious?: number;
}

export type ConfigLogLevel = 'info' | 'warn' | 'error';
const LOG_LEVELS: readonly ConfigLogLevel[] = ['info', 'warn', 'error'];

export interface SourceAllowlist {
  /** `log`: requests from elsewhere are logged and counted, then verified as usual; `enforce`: refused with 403. */
  mode: 'log' | 'enforce';
  matches: (ip: string | undefined | null) => boolean;
  entries: number;
}

export interface RetryPolicy {
  maxAttempts: number;
  retryDelaySeconds: number;
}

/** The circuit breaker of one destination (null: off). */
export interface CircuitPolicy {
  /** Consecutive retryable failures that open the circuit. */
  failures: number;
  /** First wait before a probe; doubles after each failed probe, capped at MAX_CIRCUIT_COOLDOWN_SECONDS. */
  cooldownSeconds: number;
}

interface DestinationBase {
  name: string;
  retry: RetryPolicy;
  circuit: CircuitPolicy | null;
  /** Deliveries per second at most (HTTP and queue destinations); null: no limit. */
  maxPerSecond: number | null;
}

export interface QueueDestination extends DestinationBase {
  type: 'queue';
  /** Producer binding name. */
  queue: string;
}

export interface HttpDestination extends DestinationBase {
  type: 'http';
  url: string;
  /** The signing secret's value (resolved from the named secret). */
  signingSecret?: string;
  headers: Record<string, string>;
  timeoutMs: number;
}

export interface SlackMention {
  text: string;
  /** Rule names the mention applies to; empty with `events` empty: always. */
  rules: string[];
  /** Event-name patterns the mention applies to. */
  events: string[];
}

export interface SlackDestination extends DestinationBase {
  type: 'slack';
  url: string;
  /** After a message, further events wait this long and go out together as one digest. */
  digestWindowSeconds: number;
  /** Events the outbox may hold for this destination (a Slack outage); beyond it, new events go to dead letters. */
  maxPending: number;
  title?: string;
  mention?: SlackMention;
  timeoutMs: number;
}

export type Destination = QueueDestination | HttpDestination | SlackDestination;
export type DestinationType = Destination['type'];

export type StalePolicy = 'deliver' | 'drop';

export interface Rule {
  name: string;
  events: string[];
  where: CompiledCondition[];
  to: string[];
  stale: StalePolicy;
}

export const ALERT_KINDS = [
  'dead_letter',
  'circuit_open',
  'circuit_closed',
  'paused',
  'resumed',
  'reconcile_error',
  'reconcile_recovered',
  'reconcile_lag',
  'config_invalid',
] as const;
export type AlertKind = (typeof ALERT_KINDS)[number];

/** `[vars.ROUTER.alerts]`: operational alerts to Slack destinations. */
export interface AlertsConfig {
  to: string[];
  on: AlertKind[];
  minIntervalSeconds: number;
  /** The console's base URL (e.g. https://router.example.com), for links in messages. */
  consoleUrl: string | null;
}

export interface RouterConfig {
  settings: RouterSettings;
  destinations: Map<string, Destination>;
  rules: Rule[];
  matcher: Matcher<Rule>;
  alerts: AlertsConfig | null;
}

export type ConfigResult =
  | { ok: true; config: RouterConfig; warnings: string[] }
  | { ok: false; problems: string[]; warnings: string[] };

interface IntSpec {
  key: string;
  field: Exclude<keyof RouterSettings, 'reconcileSince' | 'consoleShowPayloads' | 'sourceAllowlist' | 'logLevel' | 'dedupShardsPrevious'>;
  def: number;
  min: number;
  max: number;
}

export const SETTINGS_SPEC: readonly IntSpec[] = [
  { key: 'signature_tolerance_seconds', field: 'signatureToleranceSeconds', def: 180, min: 1, max: 3600 },
  { key: 'max_body_bytes', field: 'maxBodyBytes', def: 1_048_576, min: 1024, max: 1_900_000 },
  { key: 'dedup_shards', field: 'dedupShards', def: 16, min: 1, max: 1024 },
  // 30 days: the Events API serves events up to 30 days old, so any backfill it allows is duplicate-free.
  { key: 'dedup_retention_days', field: 'dedupRetentionDays', def: 30, min: 4, max: 90 },
  { key: 'claim_lease_seconds', field: 'claimLeaseSeconds', def: 30, min: 5, max: 600 },
  // HTTP deliveries per consumer invocation (requests to the Internet; Workers Free allows 50). Its calls to Cloudflare
  // services are budgeted apart (serviceCallBudget in queue/consumer.ts). The held store's drain and bulk replays use it too.
  { key: 'consumer_subrequest_budget', field: 'consumerSubrequestBudget', def: 45, min: 8, max: 1000 },
  { key: 'reconcile_max_pages', field: 'reconcileMaxPages', def: 5, min: 1, max: 40 },
  { key: 'reconcile_overlap_seconds', field: 'reconcileOverlapSeconds', def: 120, min: 0, max: 3600 },
  { key: 'dead_letter_retention_days', field: 'deadLetterRetentionDays', def: 30, min: 1, max: 365 },
  // 0 turns the trace off (no trace writes; the console and GET /admin/events then find nothing).
  { key: 'trace_retention_days', field: 'traceRetentionDays', def: 7, min: 0, max: 90 },
  // One bucket per day handles a few hundred consumer batches a second; each shard adds that much.
  { key: 'trace_shards', field: 'traceShards', def: 1, min: 1, max: 64 },
];

/** The largest value the config accepts for a numeric setting (what to assume while ROUTER is invalid). */
export function settingMax(field: IntSpec['field']): number {
  const spec = SETTINGS_SPEC.find((s) => s.field === field);
  if (spec === undefined) throw new Error(`no setting ${field}`);
  return spec.max;
}

export const RETRY_DEFAULTS: RetryPolicy = { maxAttempts: 10, retryDelaySeconds: 30 };
export const CIRCUIT_DEFAULTS: CircuitPolicy = { failures: 20, cooldownSeconds: 60 };
export const MAX_CIRCUIT_COOLDOWN_SECONDS = 900;
export const DEFAULT_TIMEOUT_MS = 10_000;
export const DEFAULT_DIGEST_WINDOW_SECONDS = 10;
export const DEFAULT_SLACK_MAX_PENDING = 10_000;

const TOP_KEYS = new Set([
  'destinations',
  'rules',
  'alerts',
  'reconcile_since',
  'console_show_payloads',
  'allowed_source_ips',
  'source_ip_mode',
  'log_level',
  'dedup_shards_previous',
  ...SETTINGS_SPEC.map((s) => s.key),
]);
const COMMON_DEST_KEYS = ['name', 'type', 'max_attempts', 'retry_delay_seconds', 'circuit'];
const DEST_KEYS: Record<DestinationType, Set<string>> = {
  queue: new Set([...COMMON_DEST_KEYS, 'queue', 'max_per_second']),
  http: new Set([...COMMON_DEST_KEYS, 'url', 'url_secret', 'allow_http', 'signing_secret', 'headers', 'timeout_ms', 'max_per_second']),
  slack: new Set([...COMMON_DEST_KEYS, 'url', 'url_secret', 'allow_http', 'mention', 'title', 'timeout_ms', 'digest_window_seconds', 'max_pending']),
};
const RULE_KEYS = new Set(['name', 'events', 'where', 'to', 'stale']);
const NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;
const PATTERN = /^!?[A-Za-z0-9_.*-]+$/;
const RESERVED_HEADERS = new Set([
  'content-type',
  'content-length',
  'host',
  'workos-signature',
  'idempotency-key',
  'x-workos-event-id',
  'x-workos-event',
  'x-workos-stale',
  'x-workos-replay',
  'user-agent',
]);
const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
/** Control characters other than horizontal tab (0x00–0x08, 0x0A–0x1F, 0x7F): never valid in a header value. */
const HEADER_VALUE_CONTROL = /[\x00-\x08\x0A-\x1F\x7F]/;
const MAX_HEADER_VALUE_BYTES = 8192;
/** The router's own queue bindings: a destination sending to one of them would feed events back into the router. */
const OWN_QUEUES: Readonly<Record<string, string>> = {
  EVENTS_QUEUE: "the router's own queue",
  EVENTS_DLQ: "the router's own dead-letter queue",
};
const utf8 = new TextEncoder();

/** Where secrets and bindings are looked up (the Worker's env, or a stand-in for `npm run check`). */
export type BindingLookup = (name: string) => unknown;

/** Where a routing config was read from: the `ROUTER` variable, or `router.json` bundled with the Worker. */
export type RouterOrigin = 'ROUTER' | 'router.json';

/** The config in force, where it came from, and whether `router.json` also holds one (then not used). */
export interface RouterSource {
  raw: unknown;
  origin: RouterOrigin;
  fileIgnored: boolean;
}

/** `npm run check`: both set in the deployed configuration is an error. */
export const BOTH_SOURCES_PROBLEM =
  'ROUTER and router.json both hold a routing config: keep one (router.json is for a config larger than the 5 KB a variable may hold: remove ROUTER from wrangler.toml, or write null in router.json)';

/** The running Worker: a `ROUTER` given at run time wins, and says so once per isolate. */
export const FILE_IGNORED_WARNING =
  'router.json holds a routing config but ROUTER is set, so router.json is not used (remove ROUTER to route by router.json)';

/**
 * Which routing config is in force: the `ROUTER` variable when it is set,
 * else `router.json` (its `null` means unused). A `ROUTER` set at run time
 * (`wrangler dev --var`, an env file, the dashboard) overrides the bundled
 * file, as the test suite and `npm run demo` do; the Worker logs it as a
 * config warning, and `npm run check` refuses both set in wrangler.toml.
 */
export function chooseRouterSource(variable: unknown, file: unknown): RouterSource {
  const inVariable = variable !== undefined && variable !== null && variable !== '';
  const inFile = file !== undefined && file !== null;
  if (inVariable || !inFile) return { raw: variable, origin: 'ROUTER', fileIgnored: inVariable && inFile };
  return { raw: file, origin: 'router.json', fileIgnored: false };
}

/**
 * Parses and validates `ROUTER`. `lookup` resolves secret and binding names;
 * pass `checkBindings: false` to validate shape only (offline check without secrets).
 */
export function parseRouterConfig(raw: unknown, lookup: BindingLookup, opts: { checkBindings?: boolean; origin?: RouterOrigin } = {}): ConfigResult {
  const checkBindings = opts.checkBindings ?? true;
  const label = opts.origin ?? 'ROUTER';
  const problems: string[] = [];
  const warnings: string[] = [];
  let root: unknown = raw;
  if (raw === undefined || raw === null || raw === '') {
    return { ok: false, problems: [`${label}: missing (define [vars.ROUTER] in wrangler.toml, or write a larger config in router.json)`], warnings };
  }
  if (typeof raw === 'string') {
    try {
      root = JSON.parse(raw);
    } catch (e) {
      // Never echo the engine's message: V8 quotes the input, which may hold a secret.
      const at = jsonErrorPosition(e, raw);
      return { ok: false, problems: [at === undefined ? `${label}: not valid JSON` : `${label}: not valid JSON (at position ${at})`], warnings };
    }
    // JSON.parse keeps the last of a repeated key silently (a second "rules" would replace the first); TOML refuses it.
    const repeated = firstDuplicateKey(raw);
    if (repeated !== null) {
      // A path of config names is shown; anything else (a key that may be a pasted value) is not.
      const problem = /^[A-Za-z0-9_.[\]-]{1,200}$/.test(repeated) ? `${label}: ${repeated} is written twice` : `${label}: a key is written twice in one object`;
      return { ok: false, problems: [`${problem} (JSON would keep only the last)`], warnings };
    }
  }
  if (!isPlainObject(root)) return { ok: false, problems: [`${label}: must be a table (object)`], warnings };

  for (const key of Object.keys(root)) if (!TOP_KEYS.has(key)) problems.push(`${label}.${key}: unknown field${suggest(key, TOP_KEYS)}`);

  const settings = {} as RouterSettings;
  for (const spec of SETTINGS_SPEC) {
    (settings as unknown as Record<string, number>)[spec.field] = readInt(root[spec.key], spec.key, spec.def, spec.min, spec.max, problems);
  }
  settings.sourceAllowlist = parseSourceAllowlist(root.allowed_source_ips, root.source_ip_mode, problems);
  settings.consoleShowPayloads = false;
  if (root.console_show_payloads !== undefined) {
    if (typeof root.console_show_payloads !== 'boolean') problems.push('console_show_payloads: must be true or false');
    else settings.consoleShowPayloads = root.console_show_payloads;
  }
  settings.logLevel = 'info';
  if (root.log_level !== undefined) {
    const level = LOG_LEVELS.find((l) => l === root.log_level);
    if (level === undefined) problems.push('log_level: must be "info", "warn" or "error"');
    else settings.logLevel = level;
  }
  if (root.reconcile_since !== undefined) {
    const since = root.reconcile_since;
    const ms = typeof since === 'string' ? parseIsoTime(since) : null;
    if (ms === null) {
      problems.push('reconcile_since: must be an ISO 8601 date, or a date and time with its zone, e.g. "2026-11-01T00:00:00Z"');
    } else settings.reconcileSince = new Date(ms).toISOString();
  }

  if (root.dedup_shards_previous !== undefined) {
    const previous = readInt(root.dedup_shards_previous, 'dedup_shards_previous', 0, 1, 1024, problems);
    if (previous > 0 && previous === settings.dedupShards) problems.push(`dedup_shards_previous: must differ from dedup_shards (${settings.dedupShards}); remove it when the shard count did not change`);
    else if (previous > 0) {
      settings.dedupShardsPrevious = previous;
      warnings.push(
        `dedup_shards_previous: each new event is also looked for in its shard of ${previous} (one more Durable Object request per new event); remove it once dedup_retention_days (${settings.dedupRetentionDays}) have passed since dedup_shards changed`,
      );
    }
  }

  // Destinations
  const destinations = new Map<string, Destination>();
  const rawDests = root.destinations ?? [];
  if (!Array.isArray(rawDests)) problems.push('destinations: must be a list ([[vars.ROUTER.destinations]])');
  else {
    for (let i = 0; i < rawDests.length; i++) {
      if (!(i in rawDests)) continue; // a hole (never in TOML or JSON), skipped as forEach would
      const dest = parseDestination(rawDests[i], `destinations[${i}]`, lookup, checkBindings, problems);
      if (dest === null) continue;
      if (destinations.has(dest.name)) problems.push(`destinations[${i}].name: duplicate destination name "${dest.name}"`);
      else destinations.set(dest.name, dest);
    }
  }

  // Rules
  const rules: Rule[] = [];
  const ruleNames = new Set<string>();
  const used = new Set<string>();
  const rawRules = root.rules ?? [];
  if (!Array.isArray(rawRules)) problems.push('rules: must be a list ([[vars.ROUTER.rules]])');
  else {
    const patterns = new Map<string, PatternVerdict>();
    for (let i = 0; i < rawRules.length; i++) {
      if (!(i in rawRules)) continue; // a hole (never in TOML or JSON), skipped as forEach would
      const rule = parseRule(rawRules[i], i, destinations, problems, warnings, patterns);
      if (rule === null) continue;
      const known = ruleNames.size;
      ruleNames.add(rule.name);
      if (ruleNames.size === known) problems.push(`rules[${i}].name: duplicate rule name "${rule.name}"`);
      for (let k = 0; k < rule.to.length; k++) used.add(rule.to[k] as string);
      rules.push(rule);
    }
    if (rawRules.length === 0) warnings.push('rules: no rules; every event will be accepted and reported as unrouted');
  }
  for (const name of destinations.keys()) if (!used.has(name)) warnings.push(`destinations: "${name}" is not used by any rule`);
  // The Slack rate limit is kept per destination: two destinations on one webhook could exceed it.
  const slackSources = new Map<string, string>();
  (Array.isArray(rawDests) ? rawDests : []).forEach((d: unknown) => {
    if (!isPlainObject(d) || d.type !== 'slack') return;
    // Compared, never printed: a Slack webhook URL is a credential.
    const source = typeof d.url === 'string' ? `url:${d.url}` : typeof d.url_secret === 'string' ? `secret:${d.url_secret}` : undefined;
    if (source === undefined) return;
    const other = slackSources.get(source);
    if (other !== undefined) {
      warnings.push(`destinations: ${shownValue(d.name)} and "${other}" post to the same Slack webhook; each is rate-limited separately, so together they may exceed Slack's 1 message/s`);
    } else slackSources.set(source, String(d.name));
  });
  for (const d of destinations.values()) {
    if (d.type === 'slack' && d.mention !== undefined) {
      d.mention.rules.forEach((r, j) => {
        if (!ruleNames.has(r)) problems.push(`destinations["${d.name}"].mention.rules[${j}]: unknown rule ${shownValue(r)}${suggest(r, ruleNames)}`);
      });
    }
  }

  const alerts = parseAlerts(root.alerts, destinations, problems);
  if (problems.length > 0) return { ok: false, problems, warnings };
  return { ok: true, config: { settings, destinations, rules, matcher: new Matcher(rules), alerts }, warnings };
}

/** `[vars.ROUTER.alerts]`: `to` (Slack destinations), `on` (kinds; default all), `min_interval_seconds` (300), `console_url`. */
function parseAlerts(raw: unknown, destinations: Map<string, Destination>, problems: string[]): AlertsConfig | null {
  if (raw === undefined) return null;
  if (!isPlainObject(raw)) {
    problems.push('alerts: must be a table ([vars.ROUTER.alerts])');
    return null;
  }
  for (const key of Object.keys(raw)) {
    if (!['to', 'on', 'min_interval_seconds', 'console_url'].includes(key)) problems.push(`alerts.${key}: unknown field (use to, on, min_interval_seconds, console_url)`);
  }
  const to = readStringList(raw.to, 'alerts.to', problems);
  if (to.length === 0) problems.push('alerts.to: name at least one Slack destination');
  to.forEach((name, i) => {
    const d = destinations.get(name);
    if (d === undefined) problems.push(`alerts.to[${i}]: unknown destination ${shownValue(name)}${suggest(name, destinations.keys())}`);
    else if (d.type !== 'slack') problems.push(`alerts.to[${i}]: "${name}" is a ${d.type} destination; alerts go to Slack destinations`);
  });
  let on: AlertKind[] = [...ALERT_KINDS];
  if (raw.on !== undefined) {
    const list = readStringList(raw.on, 'alerts.on', problems);
    on = [];
    list.forEach((k, i) => {
      if ((ALERT_KINDS as readonly string[]).includes(k)) on.push(k as AlertKind);
      else problems.push(`alerts.on[${i}]: unknown kind "${k}"${suggest(k, ALERT_KINDS)} (one of ${ALERT_KINDS.join(', ')})`);
    });
  }
  const minIntervalSeconds = readInt(raw.min_interval_seconds, 'alerts.min_interval_seconds', 300, 10, 86_400, problems);
  let consoleUrl: string | null = null;
  if (raw.console_url !== undefined) {
    if (typeof raw.console_url !== 'string' || !/^https?:\/\/[^\s/?#]+(\/[^\s?#]*)?$/.test(raw.console_url)) {
      problems.push('alerts.console_url: must be the router\'s base URL, e.g. "https://router.example.com"');
    } else consoleUrl = raw.console_url.replace(/\/+$/, '');
  }
  return { to, on, minIntervalSeconds, consoleUrl };
}

/** `allowed_source_ips = ["203.0.113.0/24", "2001:db8::/32"]` with `source_ip_mode = "log"` (default) or `"enforce"`. */
function parseSourceAllowlist(list: unknown, mode: unknown, problems: string[]): SourceAllowlist | null {
  if (mode !== undefined && mode !== 'log' && mode !== 'enforce') problems.push('source_ip_mode: must be "log" or "enforce"');
  if (list === undefined) {
    if (mode !== undefined) problems.push('source_ip_mode: set allowed_source_ips too (the addresses to allow)');
    return null;
  }
  if (!Array.isArray(list) || list.length === 0 || list.length > 1000 || !list.every((e) => typeof e === 'string')) {
    problems.push('allowed_source_ips: must be a non-empty list (at most 1,000) of IP addresses or CIDR ranges, e.g. ["203.0.113.0/24"]');
    return null;
  }
  const compiled = compileAllowlist(list as string[]);
  if (!compiled.ok) {
    for (const p of compiled.problems) problems.push(`allowed_source_ips${p}`);
    return null;
  }
  return { mode: mode === 'enforce' ? 'enforce' : 'log', matches: compiled.matches, entries: compiled.ranges.length };
}

/** `circuit = { failures = 20, cooldown_seconds = 60 }` (either may be omitted), or `circuit = false`; default on. */
function parseCircuit(v: unknown, at: string, problems: string[]): CircuitPolicy | null {
  if (v === undefined || v === true) return { ...CIRCUIT_DEFAULTS };
  if (v === false) return null;
  if (!isPlainObject(v)) {
    problems.push(`${at}: must be a table { failures = 20, cooldown_seconds = 60 } or false`);
    return null;
  }
  for (const key of Object.keys(v)) if (key !== 'failures' && key !== 'cooldown_seconds') problems.push(`${at}.${key}: unknown field (use failures, cooldown_seconds)`);
  return {
    failures: readInt(v.failures, `${at}.failures`, CIRCUIT_DEFAULTS.failures, 1, 10_000, problems),
    cooldownSeconds: readInt(v.cooldown_seconds, `${at}.cooldown_seconds`, CIRCUIT_DEFAULTS.cooldownSeconds, 1, MAX_CIRCUIT_COOLDOWN_SECONDS, problems),
  };
}

function parseDestination(
  d: unknown,
  at: string,
  lookup: BindingLookup,
  checkBindings: boolean,
  problems: string[],
): Destination | null {
  if (!isPlainObject(d)) {
    problems.push(`${at}: must be a table`);
    return null;
  }
  const before = problems.length;
  const name = d.name;
  if (typeof name !== 'string' || !NAME.test(name)) {
    problems.push(`${at}.name: required; letters, digits, "_", "-" or "." (at most 64)`);
  }
  const type = d.type;
  if (type !== 'queue' && type !== 'http' && type !== 'slack') {
    problems.push(`${at}.type: unknown type ${shownValue(type)} (use "queue", "http" or "slack")`);
    return null;
  }
  for (const key of Object.keys(d)) {
    if (!DEST_KEYS[type].has(key)) problems.push(`${at}.${key}: unknown field for a ${type} destination${suggest(key, DEST_KEYS[type])}`);
  }
  const retry: RetryPolicy = {
    maxAttempts: readInt(d.max_attempts, () => `${at}.max_attempts`, RETRY_DEFAULTS.maxAttempts, 1, 100, problems),
    retryDelaySeconds: readInt(d.retry_delay_seconds, () => `${at}.retry_delay_seconds`, RETRY_DEFAULTS.retryDelaySeconds, 1, 43_200, problems),
  };
  const circuit = parseCircuit(d.circuit, `${at}.circuit`, problems);
  const maxPerSecond = d.max_per_second === undefined ? null : readInt(d.max_per_second, () => `${at}.max_per_second`, 1, 1, 1000, problems);
  const n = name as string;
  if (type === 'queue') {
    if (typeof d.queue !== 'string' || d.queue === '') {
      problems.push(`${at}.queue: required: the name of a producer binding declared in [[queues.producers]]`);
    } else if (Object.hasOwn(OWN_QUEUES, d.queue)) {
      problems.push(`${at}.queue: "${d.queue}" is ${OWN_QUEUES[d.queue]}; routing to it would loop`);
    } else if (checkBindings) {
      const binding = lookup(d.queue);
      if (!isQueueBinding(binding)) {
        problems.push(`${at}.queue: no queue producer binding named ${shownValue(d.queue)} (declare it in [[queues.producers]])`);
      }
    }
    return problems.length > before ? null : { name: n, type, queue: d.queue as string, retry, circuit, maxPerSecond };
  }
  const url = resolveUrl(d, at, lookup, checkBindings, problems);
  const timeoutMs = readInt(d.timeout_ms, () => `${at}.timeout_ms`, DEFAULT_TIMEOUT_MS, 100, 60_000, problems);
  if (type === 'http') {
    let signingSecret: string | undefined;
    if (d.signing_secret !== undefined) {
      if (typeof d.signing_secret !== 'string' || d.signing_secret === '') {
        problems.push(`${at}.signing_secret: must be the name of a secret`);
      } else if (checkBindings) {
        const v = lookup(d.signing_secret);
        if (typeof v !== 'string' || v === '') {
          problems.push(secretNotSet(`${at}.signing_secret`, d.signing_secret));
        } else signingSecret = v;
      }
    }
    const headers: Record<string, string> = {};
    if (d.headers !== undefined) {
      if (!isPlainObject(d.headers)) problems.push(`${at}.headers: must be a table of header = "value"`);
      else {
        for (const [h, v] of Object.entries(d.headers)) {
          if (!HEADER_NAME.test(h)) problems.push(`${at}.headers["${h}"]: not a valid header name`);
          else if (RESERVED_HEADERS.has(h.toLowerCase())) problems.push(`${at}.headers["${h}"]: set by the router; cannot be overridden`);
          else if (typeof v !== 'string' || /[\r\n]/.test(v)) problems.push(`${at}.headers["${h}"]: value must be a single-line string`);
          else if (HEADER_VALUE_CONTROL.test(v)) problems.push(`${at}.headers["${h}"]: value must be printable text without control characters (tab is allowed)`);
          else if (utf8.encode(v).byteLength > MAX_HEADER_VALUE_BYTES) {
            problems.push(`${at}.headers["${h}"]: value must be at most ${MAX_HEADER_VALUE_BYTES} bytes`);
          } else headers[h] = v;
        }
      }
    }
    if (problems.length > before) return null;
    const dest: HttpDestination = { name: n, type, url: url ?? '', headers, timeoutMs, retry, circuit, maxPerSecond };
    if (signingSecret !== undefined) dest.signingSecret = signingSecret;
    return dest;
  }
  // slack
  let title: string | undefined;
  if (d.title !== undefined) {
    if (typeof d.title !== 'string' || d.title.trim() === '' || d.title.length > 150) {
      problems.push(`${at}.title: must be a non-empty string of at most 150 characters`);
    } else title = d.title;
  }
  const mention = parseMention(d.mention, `${at}.mention`, problems);
  const digestWindowSeconds = readInt(d.digest_window_seconds, `${at}.digest_window_seconds`, DEFAULT_DIGEST_WINDOW_SECONDS, 1, 3600, problems);
  const maxPending = readInt(d.max_pending, `${at}.max_pending`, DEFAULT_SLACK_MAX_PENDING, 100, 1_000_000, problems);
  if (problems.length > before) return null;
  const dest: SlackDestination = { name: n, type, url: url ?? '', digestWindowSeconds, maxPending, timeoutMs, retry, circuit, maxPerSecond: null };
  if (title !== undefined) dest.title = title;
  if (mention !== undefined) dest.mention = mention;
  return dest;
}

const MENTION = /^<(!here|!channel|!everyone|@[UW][A-Z0-9]+|!subteam\^[A-Z0-9]+)>$/;

function parseMention(m: unknown, at: string, problems: string[]): SlackMention | undefined {
  if (m === undefined) return undefined;
  const spec = typeof m === 'string' ? { text: m } : m;
  if (!isPlainObject(spec)) {
    problems.push(`${at}: must be a mention string or a table { text, rules, events }`);
    return undefined;
  }
  for (const key of Object.keys(spec)) if (!['text', 'rules', 'events'].includes(key)) problems.push(`${at}.${key}: unknown field`);
  const text = spec.text;
  if (typeof text !== 'string' || !MENTION.test(text)) {
    problems.push(`${at}.text: must be "<!here>", "<!channel>", "<@U123ABC>" or "<!subteam^S123ABC>"`);
    return undefined;
  }
  const rules = readStringList(spec.rules, `${at}.rules`, problems);
  const events = readStringList(spec.events, `${at}.events`, problems);
  events.forEach((p, i) => {
    if (!PATTERN.test(p)) problems.push(`${at}.events[${i}]: invalid pattern ${shownPattern(p)}`);
  });
  return { text, rules, events };
}

function readStringList(v: unknown, at: string, problems: string[]): string[] {
  if (v === undefined) return [];
  if (!Array.isArray(v) || !v.every((s) => typeof s === 'string' && s !== '')) {
    problems.push(`${at}: must be a list of non-empty strings`);
    return [];
  }
  return v as string[];
}

function resolveUrl(
  d: Record<string, unknown>,
  at: string,
  lookup: BindingLookup,
  checkBindings: boolean,
  problems: string[],
): string | undefined {
  let allowHttp = false;
  if (d.allow_http !== undefined) {
    if (typeof d.allow_http !== 'boolean') problems.push(`${at}.allow_http: must be true or false`);
    else allowHttp = d.allow_http;
  }
  const hasUrl = d.url !== undefined;
  const hasSecret = d.url_secret !== undefined;
  if (hasUrl === hasSecret) {
    problems.push(`${at}: set exactly one of url or url_secret`);
    return undefined;
  }
  let value: unknown;
  let where: string;
  if (hasUrl) {
    value = d.url;
    where = `${at}.url`;
  } else {
    if (typeof d.url_secret !== 'string' || d.url_secret === '') {
      problems.push(`${at}.url_secret: must be the name of a secret`);
      return undefined;
    }
    if (!checkBindings) return undefined;
    value = lookup(d.url_secret);
    where = `${at}.url_secret`;
    if (typeof value !== 'string' || value === '') {
      problems.push(secretNotSet(where, d.url_secret));
      return undefined;
    }
  }
  // Never echo a URL (it may embed a token, and may come from a secret).
  const kind = typeof value === 'string' ? httpUrlKind(value) : undefined;
  if (kind === undefined) {
    problems.push(`${where}: must be an absolute http(s) URL`);
    return undefined;
  }
  if (kind === 'http' && !allowHttp) {
    problems.push(`${where}: must use https:// (http:// is allowed only for loopback hosts or with allow_http = true)`);
    return undefined;
  }
  return value as string;
}

function parseRule(
  r: unknown,
  index: number,
  destinations: Map<string, Destination>,
  problems: string[],
  warnings: string[],
  patterns: Map<string, PatternVerdict>,
): Rule | null {
  // Positions are spelled out only for a problem or a warning: most rules have neither.
  const at = (): string => `rules[${index}]`;
  if (!isPlainObject(r)) {
    problems.push(`${at()}: must be a table`);
    return null;
  }
  const before = problems.length;
  for (const key of Object.keys(r)) if (!RULE_KEYS.has(key)) problems.push(`${at()}.${key}: unknown field${suggest(key, RULE_KEYS)}`);
  const name = r.name;
  if (typeof name !== 'string' || !NAME.test(name)) problems.push(`${at()}.name: required; letters, digits, "_", "-" or "."`);
  const events: string[] = [];
  const rawEvents = r.events;
  if (!Array.isArray(rawEvents) || rawEvents.length === 0) {
    problems.push(`${at()}.events: required: a non-empty list of event names or patterns`);
  } else {
    for (let i = 0; i < rawEvents.length; i++) {
      const p: unknown = rawEvents[i];
      if (typeof p !== 'string' || p === '' || p === '!') {
        problems.push(`${at()}.events[${i}]: empty pattern`);
        continue;
      }
      const verdict = patternVerdict(p, patterns);
      if (verdict.problem !== undefined) problems.push(`${at()}.events[${i}]: ${verdict.problem}`);
      else {
        events.push(p);
        if (verdict.warning !== undefined) warnings.push(`${at()}.events[${i}]: ${verdict.warning}`);
      }
    }
  }
  const to: string[] = [];
  if (!Array.isArray(r.to) || r.to.length === 0) problems.push(`${at()}.to: required: a non-empty list of destination names`);
  else {
    for (let i = 0; i < r.to.length; i++) {
      const t: unknown = r.to[i];
      if (typeof t !== 'string' || !destinations.has(t)) {
        problems.push(`${at()}.to[${i}]: unknown destination ${shownValue(t)}${typeof t === 'string' ? suggest(t, destinations.keys()) : ''}`);
      } else if (!to.includes(t)) to.push(t);
    }
  }
  let where: CompiledCondition[] = [];
  if (r.where !== undefined) {
    const w = compileWhere(r.where, () => `${at()}.where`);
    if (w.ok) where = w.conditions;
    else problems.push(...w.problems);
  }
  const stale = r.stale ?? 'deliver';
  if (stale !== 'deliver' && stale !== 'drop') problems.push(`${at()}.stale: must be "deliver" or "drop"`);
  if (problems.length > before) return null;
  // Copies of exactly their length: a list grown by push keeps room for 17, and 10,000 rules keep theirs for the isolate's life.
  return { name: name as string, events: events.slice(), where, to: to.slice(), stale: stale as StalePolicy };
}

/** What checking one pattern string says: a problem, or its warning (if any). The same for every rule that uses it. */
interface PatternVerdict {
  problem: string | undefined;
  warning: string | undefined;
}

/**
 * The verdict on a (non-empty) pattern, computed once per distinct pattern
 * per parse: thousands of rules repeat a handful of patterns, and a wildcard's
 * check tests it against every catalog type.
 */
function patternVerdict(p: string, seen: Map<string, PatternVerdict>): PatternVerdict {
  const known = seen.get(p);
  if (known !== undefined) return known;
  let verdict: PatternVerdict = { problem: undefined, warning: undefined };
  if (!PATTERN.test(p)) verdict = { problem: `invalid pattern ${shownPattern(p)} (letters, digits, "_", ".", "-", "*", leading "!")`, warning: undefined };
  else {
    const bare = p.startsWith('!') ? p.slice(1) : p;
    if (!bare.includes('*')) {
      if (!isCatalogEventType(bare)) verdict.warning = `"${bare}" is not a known WorkOS event type${suggest(bare, EVENT_TYPES)}`;
    } else {
      const re = globToRegExp(bare);
      if (!EVENT_TYPES.some((t) => re.test(t))) verdict.warning = `pattern "${p}" matches no known WorkOS event type`;
    }
  }
  seen.set(p, verdict);
  return verdict;
}

/**
 * A name a problem may show: a conventional secret name (A–Z, 0–9, _, at most
 * 64). Anything else may be the secret's value pasted into its name field
 * (`signing_secret = "whsec_…"`, `url_secret = "https://hooks.slack.com/…"`),
 * and problems reach the logs, `GET /admin/status` and the console.
 */
export function isShownSecretName(name: string): boolean {
  return /^[A-Z][A-Z0-9_]{0,63}$/.test(name);
}

/**
 * A value a problem may quote where a name (of a destination, rule, type,
 * binding) or an event pattern was expected: name characters only, at most
 * 64, and not shaped like a credential. Anything else (a webhook URL or a key
 * put where its name belongs) is described, not shown: problems reach the
 * logs, `GET /admin/status` and the console.
 */
export function shownValue(value: unknown): string {
  if (typeof value === 'number' || typeof value === 'boolean' || value === null) return JSON.stringify(value);
  return typeof value === 'string' && /^!?[A-Za-z0-9_.*-]{1,64}$/.test(value) && !CREDENTIAL_SHAPED.test(value)
    ? JSON.stringify(value)
    : '(a value that is not a name, not shown)';
}

const CREDENTIAL_SHAPED = /^(whsec|sk|pk|xox[a-z]?|wos|api|key|token|secret)[_-]/i;

/** An invalid event pattern, quoted unless it looks like a URL or a credential (or is longer than a pattern would be). */
function shownPattern(p: string): string {
  return p.length > 64 || p.includes('://') || CREDENTIAL_SHAPED.test(p) ? '(not shown: it does not look like a pattern)' : `"${p}"`;
}

function secretNotSet(where: string, name: string): string {
  return isShownSecretName(name)
    ? `${where}: secret "${name}" is not set (wrangler secret put ${name})`
    : `${where}: the secret it names is not set (the name is not shown, as it does not look like one: A–Z, 0–9 and _; put a secret's value in with wrangler secret put, and its name here)`;
}

/** `at` may be given as a function: the path is then spelled out only for a problem (thousands of destinations have none). */
function readInt(v: unknown, at: string | (() => string), def: number, min: number, max: number, problems: string[]): number {
  if (v === undefined) return def;
  const n = typeof v === 'string' && /^\d+$/.test(v) ? Number(v) : v;
  if (typeof n !== 'number' || !Number.isInteger(n) || n < min || n > max) {
    problems.push(`${typeof at === 'string' ? at : at()}: must be a whole number from ${min} to ${max}`);
    return def;
  }
  return n;
}

/**
 * `https://` + lower-case host names + an optional path made of URL code
 * points that never make the URL parser fail: accepted by `new URL` as an
 * https URL, so the parser is skipped (thousands of destinations parse in a
 * fraction of the time). The host's labels are letters, digits and inner
 * hyphens, the last one starting with a letter (so never an IPv4 address),
 * none an `xn--` (punycode) label. Anything else goes to the parser.
 */
const PLAIN_HTTPS_URL = /^https:\/\/(?:(?!xn--)[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)*(?!xn--)[a-z](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\/[A-Za-z0-9._~!$&'()*+,;=:@\/-]*)?$/;

/** What kind of absolute URL `s` is: https, http to a loopback host, other http; undefined if neither. */
function httpUrlKind(s: string): 'https' | 'http-loopback' | 'http' | undefined {
  if (s.length <= 2048 && PLAIN_HTTPS_URL.test(s)) return 'https';
  let u: URL;
  try {
    u = new URL(s);
  } catch {
    return undefined;
  }
  if (u.protocol === 'https:') return 'https';
  if (u.protocol === 'http:') return isLoopbackHost(u.hostname) ? 'http-loopback' : 'http';
  return undefined;
}

/**
 * `localhost`, `*.localhost`, 127.0.0.0/8 or [::1]. `hostname` is the URL
 * parser's canonical form: IPv4 in dotted decimal (`127.1` → `127.0.0.1`),
 * IPv6 compressed and bracketed, names lower-cased.
 */
export function isLoopbackHost(hostname: string): boolean {
  return hostname === 'localhost' || hostname.endsWith('.localhost') || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(hostname) || hostname === '[::1]';
}

/**
 * The offset of a JSON syntax error, for a string JSON.parse refused. Taken
 * from the end of the engine's message when it has one (`… at position 12`,
 * optionally `(line 1 column 13)`; the quoted input never sits there), else
 * found by scanning. The rest of the message is discarded: it quotes the input.
 */
function jsonErrorPosition(e: unknown, text: string): number | undefined {
  const m = e instanceof SyntaxError ? / at position (\d+)(?: \(line \d+ column \d+\))?$/.exec(e.message) : null;
  const n = m === null ? jsonSyntaxErrorAt(text) : Number(m[1]);
  return n !== undefined && Number.isSafeInteger(n) && n >= 0 && n <= text.length ? n : undefined;
}

/**
 * Where JSON text first goes wrong (a UTF-16 offset; the length for an
 * unexpected end), or undefined when it is valid. Iterative, so deep nesting
 * cannot overflow the stack. Used only to explain a failed JSON.parse.
 */
function jsonSyntaxErrorAt(s: string): number | undefined {
  const n = s.length;
  const stack: string[] = [];
  const number = /-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?/y;
  let i = 0;
  let mode: 'value' | 'key' | 'after' = 'value';
  const skipWs = () => {
    while (i < n && (s[i] === ' ' || s[i] === '\t' || s[i] === '\n' || s[i] === '\r')) i++;
  };
  /** Scans the string at s[i] === '"'; true with i after its closing quote, false with i at the error. */
  const scanString = (): boolean => {
    i++;
    while (i < n) {
      const c = s.charCodeAt(i);
      if (c === 0x22) {
        i++;
        return true;
      }
      if (c < 0x20) return false;
      if (c === 0x5c) {
        const esc = s[i + 1];
        if (esc === 'u' && /^[0-9a-fA-F]{4}$/.test(s.slice(i + 2, i + 6))) i += 6;
        else if (esc !== undefined && '"\\/bfnrt'.includes(esc)) i += 2;
        else return false;
      } else i++;
    }
    return false;
  };
  for (;;) {
    skipWs();
    if (mode === 'after') {
      const top = stack[stack.length - 1];
      if (top === undefined) return i < n ? i : undefined;
      if (i >= n) return n;
      const c = s[i];
      if (c === ',') {
        i++;
        mode = top === '{' ? 'key' : 'value';
      } else if ((top === '{' && c === '}') || (top === '[' && c === ']')) {
        stack.pop();
        i++;
      } else return i;
      continue;
    }
    if (i >= n) return n;
    if (mode === 'key') {
      if (s[i] !== '"' || !scanString()) return i;
      skipWs();
      if (s[i] !== ':') return i;
      i++;
      mode = 'value';
      continue;
    }
    const c = s[i] as string;
    if (c === '{' || c === '[') {
      i++;
      skipWs();
      if (s[i] === (c === '{' ? '}' : ']')) {
        i++;
        mode = 'after';
      } else {
        stack.push(c);
        mode = c === '{' ? 'key' : 'value';
      }
      continue;
    }
    mode = 'after';
    if (c === '"') {
      if (!scanString()) return i;
    } else if (c === 't' || c === 'f' || c === 'n') {
      const literal = c === 't' ? 'true' : c === 'f' ? 'false' : 'null';
      for (const ch of literal) {
        if (s[i] !== ch) return i;
        i++;
      }
    } else {
      number.lastIndex = i;
      if (number.exec(s) === null) return i;
      i = number.lastIndex;
    }
  }
}

/** Is this a queue producer binding (it has `send`)? Shared with the queue destination. */
export function isQueueBinding(v: unknown): boolean {
  return typeof v === 'object' && v !== null && typeof (v as { send?: unknown }).send === 'function';
}

/** ` (did you mean "x"?)` for the closest candidate within a small edit distance, else ''. */
export function suggest(word: string, candidates: Iterable<string>): string {
  let best: string | undefined;
  let bestD = Infinity;
  for (const c of candidates) {
    const d = editDistance(word, c);
    if (d < bestD) {
      bestD = d;
      best = c;
    }
  }
  return best !== undefined && bestD <= Math.max(2, Math.floor(word.length / 4)) ? ` (did you mean "${best}"?)` : '';
}

function editDistance(a: string, b: string): number {
  const prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let diag = prev[0] as number;
    prev[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const tmp = prev[j] as number;
      prev[j] = Math.min(tmp + 1, (prev[j - 1] as number) + 1, diag + (a[i - 1] === b[j - 1] ? 0 : 1));
      diag = tmp;
    }
  }
  return prev[b.length] as number;
}
