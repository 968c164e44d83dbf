/**
 * `npm run send -- <event type> [--url URL] [--secret S] [--count N] [--repeat K] [--file payload.json] [--env <name>]`
 *
 * Sends realistic, correctly signed WorkOS webhooks to a router (local
 * `npm run dev` by default, or a deployed Worker) and prints each answer.
 *
 * - The payload is the catalog fixture for the type (test/fixtures/events.ts)
 *   with a fresh event id and created_at; `--file` supplies the payload instead
 *   (a whole event envelope, or just its `data` object).
 * - Signed exactly as WorkOS signs (scripts/lib/sign.ts) with `--secret`, or
 *   by default with WORKOS_WEBHOOK_SECRET from dev.env (what `npm run dev` uses).
 * - `--count N` sends N distinct events; `--repeat K` re-sends each event's
 *   exact bytes K more times (freshly signed, like a WorkOS retry) to show
 *   deduplication.
 * - `--url https://x.workers.dev` (no path) means https://x.workers.dev/webhooks/workos.
 * - `--env <name>`: the environment the target router runs (`wrangler dev|deploy
 *   --env <name>`): the routing of the type in `[env.<name>.vars.ROUTER]` is
 *   printed before sending. The default secret is dev.env's
 *   WORKOS_WEBHOOK_SECRET, with or without `--env`: `npm run dev -- --env <name>`
 *   passes `--env-file dev.env`, and wrangler then reads no `.dev.vars`.
 *
 * The secret and the signature are never printed. Exit 0 when every request
 * was answered 200, 1 otherwise (including an unreachable router), 2 on usage
 * errors and an unknown environment.
 */
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { suggest } from '../src/config/router-config';
import { EVENT_TYPES, type EventType, isCatalogEventType } from '../src/events/catalog';
import { makeEvent, newEventId } from '../test/fixtures/events';
import { CONFIG_OPTIONS, type Tool, assertEnvironmentExists, parseToolArgs, requestedEnv, usageError as toolUsageError } from './lib/args';
import { postSigned } from './lib/sign';
import { configOf, readWranglerConfig } from './wrangler-config';

const ROOT = resolve(new URL('..', import.meta.url).pathname);
const DEFAULT_URL = 'http://127.0.0.1:8787/webhooks/workos';
const WEBHOOK_PATH = '/webhooks/workos';
const MAX_COUNT = 1000;
const MAX_REPEAT = 100;

const USAGE = `usage: npm run send -- <event type> [--url URL] [--secret S] [--count N] [--repeat K] [--file payload.json] [--env <name>]

  <event type>  any WorkOS catalog type, e.g. user.created (optional with --file when
                the file is a whole event)
  --url URL     router URL (default ${DEFAULT_URL}); a URL without a path gets ${WEBHOOK_PATH}
  --secret S    webhook signing secret (default: WORKOS_WEBHOOK_SECRET from dev.env)
  --count N     send N distinct events (default 1)
  --repeat K    re-send each event (same id, same bytes) K more times (default 0)
  --file F      JSON payload to send instead of the sample: an event envelope
                ({ "event", "data", ... }) or just the "data" object; each send
                still gets a fresh id and created_at
  --env E       the router's environment ([env.E] in wrangler.toml): E's routing of
                the type shown (the default secret is dev.env's, as npm run dev loads it)
  --config C    the wrangler config defining the environment (default: wrangler.toml)`;

const TOOL: Tool = { name: 'send', usage: USAGE };

function usageError(message: string): never {
  toolUsageError(TOOL, message);
}

const args = parseToolArgs(TOOL, {
  ...CONFIG_OPTIONS,
  url: { type: 'string' },
  secret: { type: 'string' },
  count: { type: 'string', short: 'n' },
  repeat: { type: 'string', short: 'r' },
  file: { type: 'string', short: 'f' },
});
const opts = args.values;
if (args.positionals.length > 1) usageError('give one event type');
const configPath = opts.config ?? resolve(ROOT, 'wrangler.toml');
const env = requestedEnv(opts.env) || undefined;
assertEnvironmentExists(TOOL, configPath, env);

function wholeNumber(value: string | undefined, name: string, def: number, min: number, max: number): number {
  if (value === undefined) return def;
  if (!/^\d+$/.test(value) || Number(value) < min || Number(value) > max) usageError(`--${name} must be a whole number from ${min} to ${max}`);
  return Number(value);
}
const count = wholeNumber(opts.count, 'count', 1, 1, MAX_COUNT);
const repeat = wholeNumber(opts.repeat, 'repeat', 0, 0, MAX_REPEAT);

// --- The target URL -------------------------------------------------------------
let url: URL;
try {
  url = new URL(opts.url ?? DEFAULT_URL);
} catch {
  usageError(`--url: not an absolute URL: ${opts.url}`);
}
if (url.protocol !== 'http:' && url.protocol !== 'https:') usageError('--url must be http:// or https://');
if (url.pathname === '/' || url.pathname === '') url.pathname = WEBHOOK_PATH;
if (url.username !== '' || url.password !== '') usageError('--url must not carry credentials');

// --- The secret -------------------------------------------------------------------
let secret: string;
let secretSource: string;
if (opts.secret !== undefined) {
  if (opts.secret === '') usageError('--secret must not be empty');
  secret = opts.secret;
  secretSource = '--secret';
} else {
  // What `npm run dev` (and `npm run dev -- --env E`) loads: `--env-file dev.env`, with which wrangler reads no .dev.vars.
  const fromDevEnv = readDevEnv('WORKOS_WEBHOOK_SECRET');
  if (fromDevEnv === undefined) usageError('no --secret given and WORKOS_WEBHOOK_SECRET is not set in dev.env');
  // The Worker accepts a comma-separated list (rotation); WorkOS signs with one secret.
  secret = fromDevEnv.split(',')[0]?.trim() ?? '';
  secretSource = `WORKOS_WEBHOOK_SECRET from dev.env${env !== undefined ? ` (--env ${env})` : ''}`;
}

// --- The payload --------------------------------------------------------------------
let type = args.positionals[0];
let fileData: Record<string, unknown> | undefined;
let fileContext: Record<string, unknown> | undefined;
if (opts.file !== undefined) {
  let value: unknown;
  try {
    value = JSON.parse(readFileSync(opts.file, 'utf8'));
  } catch (err) {
    usageError(`--file: cannot read ${opts.file}: ${(err as Error).message}`);
  }
  if (!isRecord(value)) usageError('--file must hold a JSON object (an event, or its data)');
  if (typeof value.event === 'string' && isRecord(value.data)) {
    if (type !== undefined && type !== value.event) {
      console.warn(`! warning: sending as ${type}, not ${value.event} as the file says`);
    }
    type ??= value.event;
    fileData = value.data;
    if (isRecord(value.context)) fileContext = value.context;
  } else {
    fileData = value;
  }
}
if (type === undefined) usageError('an event type is required');
if (!/^[A-Za-z0-9_.-]+$/.test(type)) usageError(`"${type}" is not an event type`);
if (!isCatalogEventType(type)) {
  const hint = `"${type}" is not a known WorkOS event type${suggest(type, EVENT_TYPES)}`;
  if (fileData === undefined) usageError(`${hint}; pass --file with a payload to send an uncatalogued type`);
  console.warn(`! warning: ${hint}; sending the file's payload anyway`);
}
const eventType = type;

function buildEvent(): Record<string, unknown> {
  if (fileData === undefined) return makeEvent(eventType as EventType) as unknown as Record<string, unknown>;
  const now = Date.now();
  const event: Record<string, unknown> = {
    id: newEventId(now),
    event: eventType,
    data: structuredClone(fileData),
    created_at: new Date(now).toISOString(),
  };
  if (fileContext !== undefined) event.context = structuredClone(fileContext);
  return event;
}

// --- Sending --------------------------------------------------------------------------
const target = url.toString();
const tally = new Map<string, number>();
let allOk = true;

console.log(`Sending ${count} ${eventType} event(s)${repeat > 0 ? `, each re-sent ${repeat} more time(s)` : ''} to ${target}`);
console.log(`Signed with ${secretSource} (the secret and signatures are never printed)`);
if (env !== undefined) console.log(routingLine(env));
console.log();

outer: for (let n = 1; n <= count; n++) {
  const event = buildEvent();
  const body = JSON.stringify(event);
  for (let r = 0; r <= repeat; r++) {
    const label = r === 0 ? `#${n}` : `#${n} repeat ${r}/${repeat}`;
    process.stdout.write(`${label.padEnd(count > 1 || repeat > 0 ? 14 : 3)} ${eventType}  ${String(event.id)}  ${Buffer.byteLength(body)} B  → `);
    let res: Response;
    try {
      res = await postSigned(target, body, secret);
    } catch (err) {
      console.log('no answer');
      const cause = (err as { cause?: { code?: string; message?: string } }).cause;
      console.error(`✗ could not reach ${target}: ${cause?.code ?? cause?.message ?? (err as Error).message}`);
      if (opts.url === undefined) console.error(`  Is the router running? Start it with: npm run dev${env !== undefined ? ` -- --env ${env}` : ''}`);
      allOk = false;
      tally.set('unreachable', (tally.get('unreachable') ?? 0) + 1);
      break outer;
    }
    const text = await res.text();
    let shown = text;
    let outcome = `http_${res.status}`;
    try {
      const json = JSON.parse(text) as Record<string, unknown>;
      shown = JSON.stringify(json);
      outcome = typeof json.status === 'string' ? json.status : typeof json.error === 'string' ? json.error : outcome;
    } catch {
      shown = text.length > 200 ? `${text.slice(0, 200)}…` : text;
    }
    console.log(`${res.status} ${shown}`);
    if (res.status !== 200) allOk = false;
    tally.set(outcome, (tally.get(outcome) ?? 0) + 1);
  }
}

const total = [...tally.values()].reduce((a, b) => a + b, 0);
console.log();
console.log(`${total} request(s): ${[...tally.entries()].map(([k, v]) => `${v} ${k}`).join(', ')}`);
process.exitCode = allOk ? 0 : 1;

// ---------------------------------------------------------------------------

/** Where `[env.<env>.vars.ROUTER]` routes the type, by name (the payload's `where` conditions are not evaluated). */
function routingLine(name: string): string {
  let view: ReturnType<typeof readWranglerConfig>;
  try {
    view = readWranglerConfig(configPath, { env: name });
  } catch (err) {
    return `! warning: cannot read ${configPath}: ${(err as Error).message}`;
  }
  const parsed = configOf(view).result;
  if (!parsed.ok) {
    return `! warning: [env.${name}] ROUTER is invalid, the router answers 500 config_invalid (npm run check -- --env ${name})`;
  }
  const rules = parsed.config.matcher.rulesForType(eventType);
  const destinations = [...new Set(rules.flatMap((r) => r.to))];
  return rules.length === 0
    ? `Routing in env.${name}: no rule selects ${eventType} (accepted and logged as unrouted)`
    : `Routing in env.${name}: ${destinations.join(', ')} (rules ${rules.map((r) => r.name).join(', ')}${rules.some((r) => r.where.length > 0) ? '; some only if their where holds' : ''})`;
}

function readDevEnv(name: string): string | undefined {
  let text: string;
  try {
    text = readFileSync(resolve(ROOT, 'dev.env'), 'utf8');
  } catch {
    return undefined;
  }
  // Same reading as scripts/wrangler-config.ts.
  for (const line of text.split('\n')) {
    const m = /^\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)\s*$/.exec(line);
    if (m && m[1] === name) return (m[2] as string).trim().replace(/^"(.*)"$/, '$1');
  }
  return undefined;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
