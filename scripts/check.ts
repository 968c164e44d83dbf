/**
 * `npm run check [-- [wrangler.toml]] [--config wrangler.toml] [--env <name>]`
 *
 * Validates the ROUTER config with the exact code the Worker runs, for the
 * top level and every `[env.<name>]` (or only the one `--env` names), each
 * read as wrangler reads it (an environment's own vars, no inheritance). For
 * each environment it also reports what the top level declares that the
 * environment lacks — wrangler does not copy Durable Object bindings, queue
 * producers or consumers into environments — and the router queues' naming
 * (the dead-letter queue ends in "-dlq").
 *
 * Exit 0 when every configuration checked is valid, 1 otherwise (also for an
 * unreadable file), 2 on usage errors and for an `--env` the file does not define.
 * `--list-envs` prints the environments the file defines, one per line.
 */
import { isShownSecretName } from '../src/config/router-config';
import { CONFIG_OPTIONS, type Tool, parseToolArgs, requestedEnv, unknownEnvMessage, usageError } from './lib/args';
import {
  UnknownEnvironmentError,
  type WranglerView,
  compareWithTopLevel,
  defaultSecretFiles,
  ignoredSecretFiles,
  environmentNames,
  parseWranglerFile,
  queueProblems,
  configOf,
  routerFileWarnings,
  sharedQueues,
  viewOf,
} from './wrangler-config';

/** The size Cloudflare's limits page allows each environment variable, `ROUTER` included. */
const VAR_SIZE_LIMIT_BYTES = 5 * 1024;

const TOOL: Tool = {
  name: 'check',
  usage: `usage: npm run check -- [wrangler.toml] [--config wrangler.toml] [--env <name>] [--list-envs]

  --config, -c   the wrangler config to check (default: wrangler.toml; also accepted as the only argument)
  --env, -e      check only this environment ([env.<name>]); "" checks only the top level.
                 Without it (and without CLOUDFLARE_ENV): the top level and every environment.
  --list-envs    print the environments the config defines, one per line, and exit`,
};

const args = parseToolArgs(TOOL, { ...CONFIG_OPTIONS, 'list-envs': { type: 'boolean' } });
if (args.positionals.length > 1) usageError(TOOL, 'give at most one config file');
const positional = args.positionals[0];
if (positional !== undefined && args.values.config !== undefined && positional !== args.values.config) {
  usageError(TOOL, `two config files given (${positional} and --config ${args.values.config})`);
}
const path = args.values.config ?? positional ?? 'wrangler.toml';
const requested = requestedEnv(args.values.env);

let toml: Record<string, unknown>;
try {
  toml = parseWranglerFile(path);
} catch (err) {
  console.error(`✗ ${path}: ${(err as Error).message}`);
  process.exit(1);
}
const environments = environmentNames(toml);
if (args.values['list-envs'] === true) {
  if (environments.length > 0) console.log(environments.join('\n'));
  process.exit(0);
}

let top: WranglerView;
let targets: WranglerView[];
try {
  top = viewOf(toml, path);
  const names = requested === undefined ? environments : requested === '' ? [] : [requested];
  targets = [...(requested === undefined || requested === '' ? [top] : []), ...names.map((env) => viewOf(toml, path, { env }))];
} catch (err) {
  if (err instanceof UnknownEnvironmentError) {
    console.error(`check: ${unknownEnvMessage(err)}`);
    process.exit(2);
  }
  throw err;
}

const multiple = targets.length > 1;
const failed: string[] = [];
for (const view of targets) {
  if (!checkOne(view)) failed.push(view.label);
}
if (requested === undefined) {
  for (const w of sharedQueues(targets)) console.warn(`! warning: ${w}`);
}
if (multiple) {
  console.log();
  if (failed.length === 0) {
    console.log(`✓ ${path}: all ${targets.length} configurations valid (${targets.map((t) => t.label).join(', ')}).`);
  } else {
    console.error(`✗ ${path}: ${failed.length} of ${targets.length} configurations failed: ${failed.join(', ')}.`);
  }
}
process.exitCode = failed.length === 0 ? 0 : 1;

/** Checks one configuration (top level or environment) and prints its report; true when valid. */
function checkOne(view: WranglerView): boolean {
  const env = view.env;
  const label = env !== undefined ? `${path} --env ${env}` : multiple ? `${path} (top level)` : path;
  const tag = env !== undefined ? `[env.${env}] ` : multiple ? '[top level] ' : '';
  const { source, result } = configOf(view);
  const routerProblems = result.ok
    ? []
    : result.problems.map((p) =>
        env !== undefined && p.startsWith('ROUTER: missing')
          ? `ROUTER: missing: [env.${env}.vars] defines no ROUTER, and wrangler does not inherit vars into environments (define [env.${env}.vars.ROUTER])`
          : p,
      );
  const compared = env !== undefined ? compareWithTopLevel(top, view) : { problems: [], warnings: [] };
  const bindingProblems = [...compared.problems, ...queueProblems(view)];

  const sizes =
    source.origin === 'ROUTER'
      ? sizeWarnings(view.router)
      : result.ok && view.routerFile !== undefined
        ? routerFileWarnings(view.routerFile, result.config.rules.length)
        : [];
  for (const w of [...result.warnings, ...compared.warnings, ...sizes]) console.warn(`! warning: ${tag}${w}`);
  const secretFiles = defaultSecretFiles().join('/');
  for (const file of ignoredSecretFiles(env)) {
    console.warn(`! warning: ${tag}${file} is not read: npm run dev passes --env-file dev.env, and wrangler then reads no .dev.vars file; put local secrets in dev.env`);
  }
  const putFlag = env !== undefined ? ` --env ${env}` : '';
  for (const name of view.missingSecrets) {
    if (isShownSecretName(name)) {
      console.warn(`! warning: ${tag}secret "${name}" is not set locally (${secretFiles}); before deploying run: wrangler secret put ${name}${putFlag}`);
    } else {
      console.warn(`! warning: ${tag}a secret ROUTER names is not set locally (${secretFiles}); its name is not shown, as it does not look like one (A–Z, 0–9, _): is a secret's value in a name field?`);
    }
  }
  for (const p of [...routerProblems, ...bindingProblems]) console.error(`✗ ${tag}${p}`);
  if (routerProblems.length > 0) {
    console.error(`\n${label}: ${routerProblems.length} problem(s); the Worker would answer every webhook with 500 config_invalid.`);
  }
  if (bindingProblems.length > 0) {
    console.error(`\n${label}: ${bindingProblems.length} binding problem(s); fix them before \`wrangler deploy${putFlag}\`.`);
  }
  if (!result.ok || bindingProblems.length > 0) return false;
  const { rules, destinations } = result.config;
  const bindings = env !== undefined ? '; Durable Objects, router queues and consumers match the top level' : '';
  const size =
    source.origin === 'router.json'
      ? `router.json, ${(routerBytes(view.routerFile) / 1024).toFixed(1)} KB, bundled with the Worker`
      : `${(routerBytes(view.router) / 1024).toFixed(1)} KB of the 5 KB a variable may hold`;
  console.log(`✓ ${label}: ${source.origin} is valid (${rules.length} rule(s), ${destinations.size} destination(s); ${size})${bindings}.`);
  return true;
}

/** ROUTER's size as uploaded: the JSON string as given, or a table serialised as wrangler sends it. */
function routerBytes(router: unknown): number {
  return router === undefined ? 0 : new TextEncoder().encode(typeof router === 'string' ? router : JSON.stringify(router)).length;
}

/**
 * Cloudflare's limits page lists 5 KB per environment variable
 * (https://developers.cloudflare.com/workers/platform/limits/, "Environment
 * variable size"); `ROUTER` is one, uploaded as JSON. Larger may be refused at
 * deploy, so say so before then.
 */
function sizeWarnings(router: unknown): string[] {
  const bytes = routerBytes(router);
  if (bytes <= VAR_SIZE_LIMIT_BYTES) return [];
  return [
    `ROUTER is ${(bytes / 1024).toFixed(1)} KB as uploaded (JSON); Cloudflare's limits page lists 5 KB per environment variable (developers.cloudflare.com/workers/platform/limits), so \`wrangler deploy\` may refuse it: shorten names, merge rules that share destinations, or list event types with patterns; or move the config to router.json (bundled with the Worker, no such limit)`,
  ];
}
