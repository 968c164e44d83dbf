/**
 * Command-line parsing shared by the tools (check, route, send, demo): strict
 * `node:util` parseArgs, `--help`, exit 2 on usage errors, and the options
 * they share with wrangler — `--config <path>` and `--env <name>` (or
 * `CLOUDFLARE_ENV`, as wrangler reads it; `--env ""` means the top level).
 */
import { type ParseArgsConfig, parseArgs } from 'node:util';
import { UnknownEnvironmentError, parseWranglerFile, environmentNames } from '../wrangler-config';
import { suggest } from '../../src/config/router-config';

type Options = NonNullable<ParseArgsConfig['options']>;

/** `--config` and `--env`, as wrangler spells them. */
export const CONFIG_OPTIONS = {
  config: { type: 'string', short: 'c' },
  env: { type: 'string', short: 'e' },
} as const satisfies Options;

export interface Tool {
  /** The tool's name, for messages ("route: …"). */
  name: string;
  usage: string;
}

/** Prints `<tool>: <message>` and the usage, exits 2. */
export function usageError(tool: Tool, message: string): never {
  console.error(`${tool.name}: ${message}\n\n${tool.usage}`);
  process.exit(2);
}

/** Strict parse of process.argv; `--help` prints the usage and exits 0; any parse error exits 2. */
export function parseToolArgs<O extends Options>(tool: Tool, options: O, argv = process.argv.slice(2)) {
  let parsed;
  try {
    parsed = parseArgs({ args: argv, options: { ...options, help: { type: 'boolean', short: 'h' } }, allowPositionals: true, strict: true });
  } catch (err) {
    usageError(tool, (err as Error).message);
  }
  if ((parsed.values as { help?: boolean }).help === true) {
    console.log(tool.usage);
    process.exit(0);
  }
  return parsed;
}

/**
 * The environment asked for, as wrangler picks it: `--env` (`""`: the top
 * level, explicitly), else a non-empty CLOUDFLARE_ENV, else undefined (nothing
 * asked: the top level, or for `check` every environment).
 */
export function requestedEnv(value: string | undefined): string | undefined {
  if (value !== undefined) return value;
  const fromEnv = process.env.CLOUDFLARE_ENV;
  return fromEnv === undefined || fromEnv === '' ? undefined : fromEnv;
}

/** The message for an environment the file does not define, with a suggestion. */
export function unknownEnvMessage(err: UnknownEnvironmentError): string {
  const hint = suggest(err.env, err.available);
  return `${err.message}${hint}. Add an [env.${err.env}] section, or use one of those (--env "" is the top level).`;
}

/**
 * Exits 2 with a clear message when `env` names an environment the config does
 * not define (a missing or unreadable file is left to the caller's own reading).
 */
export function assertEnvironmentExists(tool: Tool, configPath: string, env: string | undefined): void {
  if (env === undefined || env === '') return;
  let toml;
  try {
    toml = parseWranglerFile(configPath);
  } catch {
    return;
  }
  const available = environmentNames(toml);
  if (!available.includes(env)) {
    console.error(`${tool.name}: ${unknownEnvMessage(new UnknownEnvironmentError(env, configPath, available))}`);
    process.exit(2);
  }
}
