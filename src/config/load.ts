/**
 * Per-isolate config: validated once for each `env` object the runtime hands
 * us, with the problems logged once; its `log_level` applied on every call.
 *
 * `prepareConfig` builds it ahead, at the isolate's startup (the Worker's
 * global scope): validation and the matcher's index for every catalog type,
 * so that no request pays for them. A request's `env` reuses that build when
 * it holds the same config (the same object, or the same JSON text) and the
 * same secrets and bindings the config names; anything else is built anew.
 */
import { EVENT_TYPES } from '../events/catalog';
import { bindingNamed } from '../env';
import { log, logOnce, setLogLevel, setLogLevelIfUnapplied } from '../log';
import { type ConfigResult, FILE_IGNORED_WARNING, type RouterSource, isQueueBinding, parseRouterConfig } from './router-config';
import { routerSource } from './source';

const cache = new WeakMap<object, ConfigResult>();

/** The build made at startup, with what it read: the config and each binding it looked up. */
interface Prepared {
  raw: unknown;
  lookups: Map<string, unknown>;
  result: ConfigResult;
}
let prepared: Prepared | undefined;

/** What a lookup's answer is compared by: a string by value, a queue binding by kind (each env has its own stub), anything else by identity. */
const A_QUEUE = Symbol('queue binding');
function lookedUp(value: unknown): unknown {
  return typeof value !== 'string' && isQueueBinding(value) ? A_QUEUE : value;
}

function build(env: Env, source: RouterSource = routerSource(env), seen?: Map<string, unknown>): ConfigResult {
  const result = parseRouterConfig(source.raw, (name) => {
    const value = bindingNamed(env, name);
    seen?.set(name, lookedUp(value));
    return value;
  }, { origin: source.origin });
  if (source.fileIgnored) result.warnings.push(FILE_IGNORED_WARNING);
  return result;
}

/**
 * Builds the config ahead, once, from the env the isolate starts with (its
 * global scope): validation, then the matcher's index and entry for every
 * catalog type. Logs nothing (the first request that uses it logs what it
 * found) and never throws: a failure here only means the first request
 * builds it.
 */
export function prepareConfig(env: Env): void {
  try {
    const lookups = new Map<string, unknown>();
    const source = routerSource(env);
    const result = build(env, source, lookups);
    if (result.ok) for (const type of EVENT_TYPES) result.config.matcher.rulesForType(type);
    prepared = { raw: source.raw, lookups, result };
  } catch {
    prepared = undefined;
  }
}

/** The startup build, when this env holds the same config and names the same secrets and bindings. */
function preparedFor(env: Env): ConfigResult | undefined {
  if (prepared === undefined) return undefined;
  if (routerSource(env).raw !== prepared.raw) return undefined;
  for (const [name, value] of prepared.lookups) if (lookedUp(bindingNamed(env, name)) !== value) return undefined;
  return prepared.result;
}

export function loadConfig(env: Env): ConfigResult {
  const result = parsedConfig(env);
  // Every call, not only the first: the level follows the config of the env at hand.
  if (result.ok) setLogLevel(result.config.settings.logLevel);
  return result;
}

/**
 * For a Durable Object's constructor: applies the config's `log_level` to an
 * isolate that has not applied one yet. In production an object may run in an
 * isolate of its own, where nothing else loads the config before its first
 * `info` line (the registry's, the held store's); in tests, where one isolate
 * runs every config, it never overrides the level a request applied.
 */
export function applyLogLevelOnce(env: Env): void {
  const result = parsedConfig(env);
  if (result.ok) setLogLevelIfUnapplied(result.config.settings.logLevel);
}

/**
 * The same config without applying its `log_level`: for a Durable Object
 * that reads a setting in the middle of another request's work (the level is
 * one per isolate, and tests run Workers of several configs in one).
 */
export function parsedConfig(env: Env): ConfigResult {
  let result = cache.get(env);
  if (result === undefined) {
    result = preparedFor(env) ?? build(env);
    cache.set(env, result);
    if (!result.ok) logOnce(`config:${result.problems.join('|')}`, 'error', 'config_invalid', { problems: result.problems });
    // An invalid config's too: "router.json is not used" is what explains a broken run-time ROUTER shadowing a good file.
    if (result.warnings.length > 0) logOnce(`config-warn:${result.warnings.join('|')}`, 'warn', 'config_warnings', { warnings: result.warnings });
  }
  return result;
}

/** Logged when the webhook secret is missing; once per isolate. */
export function reportNotConfigured(): void {
  logOnce('not_configured', 'error', 'not_configured', {
    detail: 'WORKOS_WEBHOOK_SECRET is not set: every webhook is refused (wrangler secret put WORKOS_WEBHOOK_SECRET)',
  });
}

export { log };
