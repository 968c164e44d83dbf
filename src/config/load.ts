/**
 * Per-isolate config: validated once for each `env` object the runtime hands
 * us, with the problems logged once; its `log_level` applied on every call.
 */
import { bindingNamed, routerVar } from '../env';
import { log, logOnce, setLogLevel, setLogLevelIfUnapplied } from '../log';
import { type ConfigResult, parseRouterConfig } from './router-config';

const cache = new WeakMap<object, ConfigResult>();

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
    result = parseRouterConfig(routerVar(env), (name) => bindingNamed(env, name));
    cache.set(env, result);
    if (!result.ok) {
      logOnce(`config:${result.problems.join('|')}`, 'error', 'config_invalid', { problems: result.problems });
    } else if (result.warnings.length > 0) {
      logOnce(`config-warn:${result.warnings.join('|')}`, 'warn', 'config_warnings', { warnings: result.warnings });
    }
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
