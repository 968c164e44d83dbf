/**
 * `npm run route -- <event type | event.json> [--config wrangler.toml] [--env <name>]`
 *
 * Explains routing the way EventBridge's TestEventPattern does: for every rule
 * in config order, whether it matches and why (which pattern included or
 * excluded the type; with a payload file, each `where` condition's path, the
 * value found and pass/fail), then the destinations that would receive the
 * event. The verdict comes from the exact parser and matcher the Worker runs
 * (`parseRouterConfig`, `Matcher`); the per-pattern / per-condition lines
 * explain it and are cross-checked against it. `--env <name>` reads that
 * environment's own `[env.<name>.vars.ROUTER]` and bindings, as wrangler does
 * (no inheritance from the top level).
 *
 * Exit 0 after explaining (also for an unknown type: a warning is printed);
 * exit 2 on usage errors, unreadable input, invalid configs and an unknown environment.
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import { type Destination, type Rule, suggest } from '../src/config/router-config';
import { EVENT_TYPES, type UnknownEvent, isCatalogEventType } from '../src/events/catalog';
import { Matcher } from '../src/routing/matcher';
import { isPlainObject, readPath } from '../src/routing/where';
import { envelopeProblem } from '../src/webhook/envelope';
import { CONFIG_OPTIONS, type Tool, assertEnvironmentExists, parseToolArgs, requestedEnv, usageError as toolUsageError } from './lib/args';
import { configOf, readWranglerConfig } from './wrangler-config';

const USAGE = `usage: npm run route -- <event type | event.json> [--config wrangler.toml] [--env <name>]

  <event type>   e.g. dsync.user.created: which rules select this type by name
                 (\`where\` conditions need a payload and are shown as "if where holds")
  <event.json>   a WorkOS event body ({ "id", "event", "data", "created_at" }):
                 rules, patterns and every \`where\` condition evaluated on it
  --config, -c   wrangler config to read [vars.ROUTER] from (default: wrangler.toml)
  --env, -e      read that environment's routing ([env.<name>.vars.ROUTER]) as
                 \`wrangler deploy --env <name>\` would (default: the top level)`;

const TOOL: Tool = { name: 'route', usage: USAGE };

function usageError(message: string): never {
  toolUsageError(TOOL, message);
}

// ---------------------------------------------------------------------------
// Arguments and inputs
// ---------------------------------------------------------------------------

const parsed = parseToolArgs(TOOL, CONFIG_OPTIONS);
if (parsed.positionals.length !== 1) {
  usageError(parsed.positionals.length === 0 ? 'an event type or an event JSON file is required' : 'give exactly one event type or file');
}
const input = parsed.positionals[0] as string;
const configPath = parsed.values.config ?? 'wrangler.toml';
const env = requestedEnv(parsed.values.env) || undefined;
assertEnvironmentExists(TOOL, configPath, env);

const isFile = input.endsWith('.json') || (existsSync(input) && statSync(input).isFile());
let event: UnknownEvent | undefined;
let type: string;
if (isFile) {
  let value: unknown;
  try {
    value = JSON.parse(readFileSync(input, 'utf8'));
  } catch (err) {
    usageError(`cannot read ${input}: ${(err as Error).message}`);
  }
  const problem = envelopeProblem(value);
  if (problem !== null) {
    usageError(`${input} is not a WorkOS event (the router would answer 400 invalid_event): ${problem}`);
  }
  event = value as UnknownEvent;
  type = event.event;
} else {
  if (!/^[A-Za-z0-9_.-]+$/.test(input)) usageError(`"${input}" is neither an event type nor a .json file`);
  type = input;
}

let view: ReturnType<typeof readWranglerConfig>;
try {
  view = readWranglerConfig(configPath, { env });
} catch (err) {
  console.error(`✗ ${configPath}: ${(err as Error).message}`);
  process.exit(2);
}
const { result, root: rawRoot } = configOf(view);
if (!result.ok) {
  const where = env !== undefined ? ` [env.${env}]` : '';
  const checkArgs = `${configPath}${env !== undefined ? ` --env ${env}` : ''}`;
  console.error(`✗ ${configPath}${where}: ROUTER is invalid, so the Worker would route nothing (npm run check -- ${checkArgs}):`);
  for (const p of result.problems) console.error(`  ✗ ${p}`);
  process.exit(2);
}
const { config } = result;
// The raw rules, for showing each `where` condition as written (parse succeeded: same order and count).
const rawRules: unknown[] = isPlainObject(rawRoot) && Array.isArray(rawRoot.rules) ? rawRoot.rules : [];

// ---------------------------------------------------------------------------
// Explanation
// ---------------------------------------------------------------------------

const PASS = '✓';
const FAIL = '✗';
const MAYBE = '?';
const NONE = '·';

const out: string[] = [];
const say = (line = '') => out.push(line);

say(`Event type  ${type}${isCatalogEventType(type) ? '' : '  (not in the WorkOS catalog)'}`);
if (event !== undefined) say(`Event id    ${event.id}   (from ${input})`);
say(`Config      ${view.path}  (${config.rules.length} rule(s), ${config.destinations.size} destination(s))`);
if (view.env !== undefined) {
  say(`Environment ${view.env}  ([env.${view.env}.vars.ROUTER]; Worker ${view.workerName ?? '?'})`);
} else if (view.environments.length > 0) {
  say(`Environment top level  (also defined: ${view.environments.join(', ')}; choose one with --env <name>)`);
}
if (!isCatalogEventType(type)) {
  say();
  say(`! warning: "${type}" is not a known WorkOS event type${suggest(type, EVENT_TYPES)}; routed by pattern anyway.`);
}
say();

type Verdict = 'match' | 'no-match' | 'if-where';
const verdicts = new Map<Rule, Verdict>();
const disagreements: string[] = [];
const byName = new Set(config.matcher.rulesForType(type));
const matched = event !== undefined ? new Set(config.matcher.match(event).rules) : undefined;

say(config.rules.length === 0 ? 'Rules: none (every event is accepted and reported as unrouted)' : 'Rules, in config order:');
config.rules.forEach((rule, i) => {
  const nameOk = Matcher.namesMatch(rule.events, type);
  if (nameOk !== byName.has(rule)) disagreements.push(`rule "${rule.name}": patterns explained as ${nameOk ? 'matching' : 'not matching'}, matcher says otherwise`);
  const patternLines = explainPatterns(rule.events, type);
  const whereLines: string[] = [];
  let verdict: Verdict;
  if (!nameOk) {
    verdict = 'no-match';
    if (rule.where.length > 0) whereLines.push(`${NONE} where: not evaluated (the event name is not selected)`);
  } else if (rule.where.length === 0) {
    verdict = 'match';
  } else if (event === undefined) {
    verdict = 'if-where';
    whereLines.push(`${MAYBE} where: needs a payload to evaluate; would match if where holds (all must hold):`);
    rule.where.forEach((c) => whereLines.push(`    ${c.path} ${describeSpec(rawWhere(i, c.path))}`));
  } else {
    let all = true;
    whereLines.push('where   (all must hold)');
    const rows = rule.where.map((c) => {
      const found = readPath(event, c.segments);
      const ok = c.test(found);
      all &&= ok;
      return [`  ${ok ? PASS : FAIL} ${c.path}`, describeSpec(rawWhere(i, c.path)), `found ${showValue(found)}`];
    });
    whereLines.push(...columns(rows));
    verdict = all ? 'match' : 'no-match';
  }
  if (matched !== undefined && (verdict === 'match') !== matched.has(rule)) {
    disagreements.push(`rule "${rule.name}": explained as ${verdict}, matcher says ${matched.has(rule) ? 'match' : 'no match'}`);
    verdict = matched.has(rule) ? 'match' : 'no-match';
  }
  verdicts.set(rule, verdict);
  const mark = verdict === 'match' ? PASS : verdict === 'if-where' ? MAYBE : FAIL;
  const label = verdict === 'match' ? 'matches' : verdict === 'if-where' ? 'would match if where holds' : 'does not match';
  say(`  ${mark} ${rule.name}: ${label}`);
  say(`      events  ${JSON.stringify(rule.events).replace(/","/g, '", "')}`);
  for (const l of patternLines) say(`        ${l}`);
  if (rule.where.length === 0 && nameOk) say('      where   (none)');
  for (const l of whereLines) say(`      ${l}`);
  say(`      to      ${rule.to.join(', ')}`);
});
say();

// Destinations: each once, in rule order (the consumer's order), with the rules that name it.
const dests = new Map<string, { sure: string[]; maybe: string[] }>();
for (const rule of config.rules) {
  const v = verdicts.get(rule);
  if (v === 'no-match' || v === undefined) continue;
  for (const to of rule.to) {
    const slot = dests.get(to) ?? { sure: [], maybe: [] };
    (v === 'match' ? slot.sure : slot.maybe).push(rule.name);
    dests.set(to, slot);
  }
}
if (event !== undefined) {
  const expected = config.matcher.match(event).destinations;
  const explained = [...dests.keys()];
  if (expected.join(',') !== explained.join(',')) disagreements.push(`destinations explained as [${explained}], matcher says [${expected}]`);
}
if (dests.size === 0) {
  say('Destinations: none. The router would accept the event (200) and log it as unrouted.');
} else {
  say(event === undefined && [...dests.values()].some((d) => d.sure.length === 0) ? 'Destinations (by event name; "?" depends on where):' : 'Destinations that would receive it:');
  const rows = [...dests.entries()].map(([name, { sure, maybe }]) => {
    const d = config.destinations.get(name) as Destination;
    const ifWhere = maybe.length > 0 ? `${maybe.join(', ')} if where holds` : '';
    const via = sure.length > 0 ? `via ${sure.join(', ')}${ifWhere !== '' ? `; ${ifWhere}` : ''}` : `only via ${ifWhere}`;
    return [`  ${sure.length > 0 ? PASS : MAYBE} ${name}`, describeDestination(d, name), via];
  });
  for (const l of columns(rows)) say(l);
}
for (const d of disagreements) say(`! internal: ${d} (please report: the explanation is out of step with src/routing/matcher.ts)`);
console.log(out.join('\n'));
process.exitCode = 0;

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

function explainPatterns(patterns: readonly string[], name: string): string[] {
  const lines: string[] = [];
  const includes = patterns.filter((p) => !p.startsWith('!'));
  if (includes.length === 0) lines.push(`${PASS} no include pattern: every name not excluded is included`);
  for (const p of patterns) {
    if (p.startsWith('!')) {
      // namesMatch(["!x"]) is true when "x" does NOT exclude the name.
      const excludes = !Matcher.namesMatch([p], name);
      lines.push(excludes ? `${FAIL} "${p}" excludes ${name}` : `${NONE} "${p}" does not apply`);
    } else {
      const includesIt = Matcher.namesMatch([p], name);
      lines.push(includesIt ? `${PASS} "${p}" includes ${name}` : `${NONE} "${p}" does not include it`);
    }
  }
  return lines;
}

function rawWhere(ruleIndex: number, path: string): unknown {
  const raw = rawRules[ruleIndex];
  if (!isPlainObject(raw) || !isPlainObject(raw.where)) return undefined;
  return raw.where[path];
}

function describeSpec(spec: unknown): string {
  if (spec === null || typeof spec !== 'object') return `= ${JSON.stringify(spec)}`;
  if (Array.isArray(spec)) return `is any of ${JSON.stringify(spec)}`;
  const parts: string[] = [];
  for (const [op, arg] of Object.entries(spec)) {
    const list = Array.isArray(arg) ? `one of ${JSON.stringify(arg)}` : JSON.stringify(arg);
    if (op === 'prefix') parts.push(`starts with ${list}`);
    else if (op === 'suffix') parts.push(`ends with ${list}`);
    else if (op === 'exists') parts.push(arg === true ? 'exists (present, not null)' : 'is absent or null');
    else if (op === 'not') parts.push(`not (${describeSpec(arg)})`);
    else parts.push(`${op} ${JSON.stringify(arg)}`);
  }
  return parts.join(' and ');
}

function showValue(v: unknown): string {
  if (v === undefined) return '(missing)';
  const s = JSON.stringify(v);
  return s.length > 60 ? `${s.slice(0, 57)}…` : s;
}

function describeDestination(d: Destination, name: string): string {
  const raw = isPlainObject(rawRoot) && Array.isArray(rawRoot.destinations) ? rawRoot.destinations.find((x) => isPlainObject(x) && x.name === name) : undefined;
  // Never print a URL that comes from a secret.
  const fromSecret = isPlainObject(raw) && typeof raw.url_secret === 'string' ? `url from secret ${raw.url_secret}` : undefined;
  switch (d.type) {
    case 'queue': {
      // In an environment, also the queue its binding sends to (names differ per environment).
      const queueName = view.env !== undefined ? view.producers.find((p) => p.binding === d.queue)?.queue : undefined;
      return `queue → ${d.queue}${queueName !== undefined ? ` (${queueName})` : ''}`;
    }
    case 'http':
      return `http → ${fromSecret ?? d.url}${d.signingSecret !== undefined ? ' (re-signed)' : ''}`;
    case 'slack':
      return `slack → ${fromSecret ?? 'incoming webhook'}`;
  }
}

/** Left-aligns rows of cells into columns (two spaces apart). */
function columns(rows: string[][]): string[] {
  const widths: number[] = [];
  for (const r of rows) r.forEach((c, i) => (widths[i] = Math.max(widths[i] ?? 0, c.length)));
  return rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i] ?? 0))).join('  '));
}
