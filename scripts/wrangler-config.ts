/**
 * Reads wrangler.toml the way wrangler builds the Worker, for the offline
 * tools (`npm run check`, `route`, `send`, `demo`): the top level, or one
 * named environment (`--env <name>`, `[env.<name>]`) resolved as wrangler
 * resolves it:
 *
 * - `vars`, `durable_objects` and `queues` are NOT inherited: an environment
 *   has exactly what its own section declares (its `vars` replace the top
 *   level's, no merge; no `vars` at all means no vars);
 * - `triggers` are inherited unless the environment sets its own;
 * - `--env ""` means the top level (as for wrangler).
 *
 * Also the secrets available locally (dev.env, what `npm run dev` loads with
 * `--env-file`, for every environment), and the comparison of
 * an environment's bindings against the top level's (`compareWithTopLevel`):
 * what an environment lacks because wrangler did not copy it.
 */
import { existsSync, readFileSync } from 'node:fs';
import { gzipSync } from 'node:zlib';
import { dirname, join, resolve } from 'node:path';
import { parse } from 'smol-toml';
import { BOTH_SOURCES_PROBLEM, type BindingLookup, type ConfigResult, type RouterSource, chooseRouterSource, parseRouterConfig } from '../src/config/router-config';

/** The router's own queue bindings: every deployment needs both, with a consumer on each. */
export const ROUTER_QUEUE_BINDINGS = ['EVENTS_QUEUE', 'EVENTS_DLQ'] as const;

export interface DurableObjectBinding {
  name: string;
  class_name: string;
  script_name?: string;
}

export interface QueueProducer {
  binding: string;
  queue: string;
}

export interface QueueConsumer {
  queue: string;
  max_batch_size?: number;
  max_batch_timeout?: number;
  max_retries?: number;
  retry_delay?: number;
  dead_letter_queue?: string;
  [key: string]: unknown;
}

export interface WranglerView {
  /** Absolute path of the config file. */
  path: string;
  /** The environment read; undefined for the top level. */
  env: string | undefined;
  /** "top level" or "env.staging": for messages. */
  label: string;
  /** The Worker's name as wrangler deploys it (`<name>-<env>` unless the environment sets its own). */
  workerName: string | undefined;
  /** Every `[env.<name>]` the file defines. */
  environments: string[];
  /** Whether this environment declares a `vars` table at all (wrangler does not inherit one). */
  hasVars: boolean;
  vars: Record<string, unknown>;
  router: unknown;
  /**
   * `router.json` next to the wrangler config, as text: the routing config
   * bundled with the Worker when it is larger than a variable may hold
   * (`null` in the file: unused). Undefined when the file is absent.
   */
  routerFile: string | undefined;
  durableObjects: DurableObjectBinding[];
  producers: QueueProducer[];
  consumers: QueueConsumer[];
  queueBindings: Set<string>;
  /** Cron triggers in effect (the environment's own, else the top level's). */
  crons: string[];
  /** Whether `crons` are the environment's own (false: inherited from the top level). */
  ownCrons: boolean;
  localSecrets: Map<string, string>;
  /** The files `localSecrets` were read from (those that exist), in order. */
  secretFiles: string[];
  /** Secret names looked up that are not available locally. */
  missingSecrets: Set<string>;
  lookup: BindingLookup;
}

/** `--env` names an environment the file does not define. */
export class UnknownEnvironmentError extends Error {
  constructor(
    readonly env: string,
    readonly path: string,
    readonly available: string[],
  ) {
    super(
      `no environment "${env}" in ${path}; ${
        available.length === 0 ? 'it defines no [env.<name>] sections' : `the environments it defines are: ${available.join(', ')}`
      }`,
    );
    this.name = 'UnknownEnvironmentError';
  }
}

export interface ReadOptions {
  /** The environment to read (`[env.<name>]`); undefined or "" for the top level. */
  env?: string | undefined;
  /** Files with local secrets (KEY=value lines); default: dev.env. */
  envFiles?: string[];
}

type Table = Record<string, unknown>;

const isTable = (v: unknown): v is Table => typeof v === 'object' && v !== null && !Array.isArray(v);
const tablesOf = (v: unknown): Table[] => (Array.isArray(v) ? v.filter(isTable) : []);

/** Parses a wrangler.toml (throws on unreadable files and invalid TOML). */
export function parseWranglerFile(path: string): Table {
  return parse(readFileSync(resolve(path), 'utf8')) as Table;
}

/** The `[env.<name>]` sections a parsed wrangler.toml defines, in file order. */
export function environmentNames(toml: Table): string[] {
  return isTable(toml.env) ? Object.keys(toml.env).filter((k) => isTable((toml.env as Table)[k])) : [];
}

/**
 * The local secret files: dev.env alone, whatever the environment, as
 * `npm run dev [-- --env <env>]` runs `wrangler dev --env-file dev.env`, with
 * which wrangler reads no `.dev.vars` file.
 */
export function defaultSecretFiles(): string[] {
  return ['dev.env'];
}

/** `.dev.vars` files `wrangler dev --env <env>` would read without `--env-file`, present here: `npm run dev` ignores them. */
export function ignoredSecretFiles(env: string | undefined): string[] {
  return [...(env !== undefined && env !== '' ? [`.dev.vars.${env}`] : []), '.dev.vars'].filter((f) => existsSync(f));
}

/** KEY=value lines of the files that exist (later files win). */
export function readSecretFiles(files: string[]): { secrets: Map<string, string>; read: string[] } {
  const secrets = new Map<string, string>();
  const read: string[] = [];
  for (const file of files) {
    if (!existsSync(file)) continue;
    read.push(file);
    for (const line of readFileSync(file, 'utf8').split('\n')) {
      const m = /^\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*?)\s*$/.exec(line);
      if (m) secrets.set(m[1] as string, (m[2] as string).replace(/^"(.*)"$|^'(.*)'$/, '$1$2'));
    }
  }
  return { secrets, read };
}

export function readWranglerConfig(path = 'wrangler.toml', opts: ReadOptions = {}): WranglerView {
  const full = resolve(path);
  const toml = parseWranglerFile(full);
  return viewOf(toml, full, opts);
}

/** The view of an already parsed file (the top level, or `opts.env`). */
export function viewOf(toml: Table, full: string, opts: ReadOptions = {}): WranglerView {
  const environments = environmentNames(toml);
  const env = opts.env === '' ? undefined : opts.env;
  let section: Table = toml;
  if (env !== undefined) {
    const found = isTable(toml.env) ? (toml.env as Table)[env] : undefined;
    if (!isTable(found)) throw new UnknownEnvironmentError(env, full, environments);
    section = found;
  }
  // Not inherited: exactly what this section declares.
  const hasVars = isTable(section.vars);
  const vars = hasVars ? (section.vars as Table) : {};
  const queues = isTable(section.queues) ? section.queues : {};
  const producers = tablesOf(queues.producers)
    .filter((p) => typeof p.binding === 'string' && typeof p.queue === 'string')
    .map((p) => ({ binding: p.binding as string, queue: p.queue as string }));
  const consumers = tablesOf(queues.consumers).filter((c) => typeof c.queue === 'string') as QueueConsumer[];
  const durableObjects = tablesOf(isTable(section.durable_objects) ? section.durable_objects.bindings : undefined)
    .filter((b) => typeof b.name === 'string' && typeof b.class_name === 'string')
    .map((b) => ({
      name: b.name as string,
      class_name: b.class_name as string,
      ...(typeof b.script_name === 'string' ? { script_name: b.script_name } : {}),
    }));
  // Inherited unless set: triggers, name (suffixed with the environment).
  const ownCrons = env !== undefined && isTable(section.triggers);
  const triggers = ownCrons ? (section.triggers as Table) : isTable(toml.triggers) ? toml.triggers : {};
  const crons = Array.isArray(triggers.crons) ? triggers.crons.filter((c): c is string => typeof c === 'string') : [];
  const baseName = typeof toml.name === 'string' ? toml.name : undefined;
  const workerName = env === undefined ? baseName : typeof section.name === 'string' ? section.name : baseName !== undefined ? `${baseName}-${env}` : undefined;

  const queueBindings = new Set(producers.map((p) => p.binding));
  const { secrets: localSecrets, read: secretFiles } = readSecretFiles(opts.envFiles ?? defaultSecretFiles());
  const missingSecrets = new Set<string>();
  const lookup: BindingLookup = (name) => {
    if (queueBindings.has(name)) return { send: () => Promise.resolve() };
    if (name in vars) return vars[name];
    const local = localSecrets.get(name);
    if (local !== undefined) return local;
    // A secret set only in Cloudflare (wrangler secret put): validate the shape with a stand-in.
    missingSecrets.add(name);
    return 'https://secret-not-available-locally.invalid/';
  };
  return {
    path: full,
    env,
    label: env === undefined ? 'top level' : `env.${env}`,
    workerName,
    environments,
    hasVars,
    vars,
    router: vars.ROUTER,
    routerFile: readRouterFile(full),
    durableObjects,
    producers,
    consumers,
    queueBindings,
    crons,
    ownCrons,
    localSecrets,
    secretFiles,
    missingSecrets,
    lookup,
  };
}

export interface BindingReport {
  /** Missing or contradicting bindings: the environment's Worker would not run as the top level's does. */
  problems: string[];
  warnings: string[];
}

/**
 * What a named environment lacks that the top level declares — the things
 * wrangler does not copy into environments: Durable Object bindings, the
 * router's own queue producers (EVENTS_QUEUE, EVENTS_DLQ) and the queue
 * consumers (matched through the producer binding of the queue they consume,
 * since queue names differ per environment), with their settings. Plus the
 * cron triggers in effect and the top level's plain vars.
 */
export function compareWithTopLevel(top: WranglerView, envView: WranglerView): BindingReport {
  const problems: string[] = [];
  const warnings: string[] = [];
  const env = envView.env as string;
  const section = `[env.${env}]`;

  // Durable Objects: same binding name, same class (and script).
  for (const d of top.durableObjects) {
    const mine = envView.durableObjects.find((b) => b.name === d.name);
    if (mine === undefined) {
      problems.push(
        `durable_objects: binding "${d.name}" (class ${d.class_name}) is declared at the top level but not in ${section}; ` +
          `wrangler does not inherit durable_objects: add [[env.${env}.durable_objects.bindings]] name = "${d.name}", class_name = "${d.class_name}"`,
      );
    } else if (mine.class_name !== d.class_name || mine.script_name !== d.script_name) {
      problems.push(
        `durable_objects: binding "${d.name}" is class ${mine.class_name}${mine.script_name !== undefined ? ` of ${mine.script_name}` : ''} in ${section}, ` +
          `${d.class_name}${d.script_name !== undefined ? ` of ${d.script_name}` : ''} at the top level`,
      );
    }
  }

  // The router's own queue producers.
  for (const binding of ROUTER_QUEUE_BINDINGS) {
    const t = top.producers.find((p) => p.binding === binding);
    if (t === undefined) continue; // the top level's own problem (reported by queueProblems)
    if (!envView.producers.some((p) => p.binding === binding)) {
      problems.push(
        `queues.producers: binding "${binding}" is declared at the top level (queue "${t.queue}") but not in ${section}; ` +
          `wrangler does not inherit queues: add [[env.${env}.queues.producers]] binding = "${binding}", queue = "${envQueueName(t.queue, env)}"`,
      );
    }
  }

  // Consumers: each top-level consumer, mapped to the environment through the producer binding of its queue.
  for (const c of top.consumers) {
    const binding = top.producers.find((p) => p.queue === c.queue)?.binding;
    const envQueue = binding !== undefined ? envView.producers.find((p) => p.binding === binding)?.queue : c.queue;
    if (envQueue === undefined) continue; // its producer is missing: reported above
    const mine = envView.consumers.find((x) => x.queue === envQueue);
    if (mine === undefined) {
      problems.push(
        `queues.consumers: the top level consumes "${c.queue}"${binding !== undefined ? ` (${binding})` : ''} but ${section} has no consumer for ` +
          `"${envQueue}"; wrangler does not inherit queues: add [[env.${env}.queues.consumers]] queue = "${envQueue}" (messages sent there would never be consumed)`,
      );
      continue;
    }
    if (c.dead_letter_queue !== undefined) {
      const dlqBinding = top.producers.find((p) => p.queue === c.dead_letter_queue)?.binding;
      const expected = dlqBinding !== undefined ? envView.producers.find((p) => p.binding === dlqBinding)?.queue : c.dead_letter_queue;
      if (mine.dead_letter_queue === undefined) {
        problems.push(
          `queues.consumers: "${envQueue}" in ${section} has no dead_letter_queue (the top level's "${c.queue}" sends to "${c.dead_letter_queue}"): ` +
            `messages the platform gives up on would be discarded`,
        );
      } else if (expected !== undefined && mine.dead_letter_queue !== expected) {
        problems.push(
          `queues.consumers: "${envQueue}" in ${section} sends its dead letters to "${mine.dead_letter_queue}", ` +
            `but ${section}'s ${dlqBinding ?? 'dead-letter queue'} is "${expected}"`,
        );
      }
    }
    for (const key of ['max_retries', 'retry_delay', 'max_batch_size', 'max_batch_timeout'] as const) {
      if (c[key] !== mine[key]) {
        warnings.push(
          `queues.consumers: "${envQueue}" in ${section} has ${key} = ${mine[key] ?? '(platform default)'}; the top level's "${c.queue}" has ${c[key] ?? '(platform default)'}`,
        );
      }
    }
  }

  // Cron triggers (inherited unless the environment sets its own).
  for (const cron of top.crons) {
    if (!envView.crons.includes(cron)) {
      warnings.push(`triggers: ${section} sets its own crons without "${cron}" (the top level's: reconciliation runs on it)`);
    }
  }

  // Plain vars other than ROUTER: not inherited.
  if (!envView.hasVars && Object.keys(top.vars).length > 0) {
    warnings.push(`vars: ${section} has no [env.${env}.vars]; wrangler does not inherit vars, so this environment has none (no ROUTER either)`);
  } else {
    for (const name of Object.keys(top.vars)) {
      if (name !== 'ROUTER' && !(name in envView.vars)) {
        warnings.push(`vars: "${name}" is set at the top level but not in [env.${env}.vars] (vars are not inherited: the Worker uses its default)`);
      }
    }
  }
  return { problems, warnings };
}

/**
 * The router queues' wiring in one deployment (top level or environment): the
 * dead-letter queue named "*-dlq" (the consumer recognises it by that suffix)
 * and the events queue not, and the two distinct.
 */
export function queueProblems(view: WranglerView): string[] {
  const problems: string[] = [];
  // Whether they are declared at all is compareWithTopLevel's business (an
  // environment against the top level); here only how they are wired.
  const events = view.producers.find((p) => p.binding === 'EVENTS_QUEUE');
  const dlq = view.producers.find((p) => p.binding === 'EVENTS_DLQ');
  if (events !== undefined && events.queue.endsWith('-dlq')) {
    problems.push(`queues.producers: EVENTS_QUEUE's queue "${events.queue}" ends in "-dlq": the consumer would treat every event as a dead letter`);
  }
  if (dlq !== undefined && !dlq.queue.endsWith('-dlq')) {
    problems.push(`queues.producers: EVENTS_DLQ's queue "${dlq.queue}" must end in "-dlq" (the consumer recognises its dead-letter queue by that suffix), e.g. "${dlq.queue}-dlq"`);
  }
  if (events !== undefined && dlq !== undefined && events.queue === dlq.queue) {
    problems.push(`queues.producers: EVENTS_QUEUE and EVENTS_DLQ are the same queue "${events.queue}"`);
  }
  if (events !== undefined && dlq !== undefined) {
    const c = view.consumers.find((x) => x.queue === events.queue);
    if (c !== undefined && c.dead_letter_queue !== undefined && c.dead_letter_queue !== dlq.queue) {
      // For environments compareWithTopLevel reports this with more context.
      if (view.env === undefined) {
        problems.push(`queues.consumers: "${events.queue}" sends its dead letters to "${c.dead_letter_queue}", not to EVENTS_DLQ's "${dlq.queue}"`);
      }
    }
  }
  return problems;
}

/** Queue names one deployment shares with another (a queue has one consumer Worker, and events would cross environments). */
export function sharedQueues(views: WranglerView[]): string[] {
  const owners = new Map<string, string[]>();
  for (const v of views) {
    for (const q of new Set([...v.producers.map((p) => p.queue), ...v.consumers.map((c) => c.queue)])) {
      owners.set(q, [...(owners.get(q) ?? []), v.label]);
    }
  }
  return [...owners.entries()]
    .filter(([, who]) => who.length > 1)
    .map(([q, who]) => `queue "${q}" is used by ${who.join(' and ')}: events of one would reach the other's consumers (a queue has one consumer Worker); name queues per environment, e.g. "${q}-<env>"`);
}

/** A top-level queue name as the environment's: `<name>-<env>`, keeping "-dlq" last. */
export function envQueueName(queue: string, env: string): string {
  return queue.endsWith('-dlq') ? `${queue.slice(0, -4)}-${env}-dlq` : `${queue}-${env}`;
}

/** `router.json` beside the wrangler config, as text (undefined when absent). */
export function readRouterFile(configPath: string): string | undefined {
  const file = join(dirname(configPath), 'router.json');
  return existsSync(file) ? readFileSync(file, 'utf8') : undefined;
}

/**
 * The routing config of a view as the Worker would take it: `ROUTER`, or
 * `router.json` when the file holds one (its JSON text, so that a key written
 * twice is reported, which the bundler would settle silently).
 */
export function routerSourceOf(view: WranglerView): RouterSource {
  let file: unknown = view.routerFile;
  if (typeof file === 'string') {
    try {
      if (JSON.parse(file) === null) file = null;
    } catch {
      // Not JSON: kept as text, so that the config check reports where.
    }
  }
  return chooseRouterSource(view.router, file);
}

/** The view's routing config, validated as the Worker validates it, and its parsed root (for tools that show rules as written). */
export function configOf(view: WranglerView): { source: RouterSource; result: ConfigResult; root: unknown } {
  const source = routerSourceOf(view);
  // In wrangler.toml, both set is a mistake (a config moved to the file while the old variable stayed): refused.
  if (source.fileIgnored) return { source, result: { ok: false, problems: [BOTH_SOURCES_PROBLEM], warnings: [] }, root: undefined };
  const result = parseRouterConfig(source.raw, view.lookup, { origin: source.origin });
  let root: unknown = source.raw;
  if (result.ok && typeof root === 'string') root = JSON.parse(root);
  return { source, result, root };
}

/** Cloudflare's Worker size limit on the Free plan (compressed); the Paid plan's is 10 MB. */
export const FREE_WORKER_GZIP_BYTES = 3 * 1024 * 1024;
/** Rules above which the startup build nears its 1 s limit: the `match` benchmark builds 10,000 in 60–190 ms, cold. */
export const STARTUP_RULES_WARNING = 25_000;

/**
 * What `npm run check` says of a router.json config beyond its validity: the
 * file's weight in the Worker's compressed size (the rest of the Worker is
 * ~130 KB), and a rule count whose startup build nears the 1 s limit.
 */
export function routerFileWarnings(text: string, rules: number): string[] {
  const warnings: string[] = [];
  const gz = gzipSync(text).length;
  if (gz > FREE_WORKER_GZIP_BYTES - 512 * 1024) {
    warnings.push(
      `router.json is ${(gz / 1024 / 1024).toFixed(1)} MB compressed: with the Worker's own code that nears or passes the Free plan's 3 MB Worker size limit (Paid: 10 MB), so \`wrangler deploy\` may refuse it`,
    );
  }
  if (rules > STARTUP_RULES_WARNING) {
    warnings.push(
      `router.json has ${rules} rules: the Worker builds them at each isolate's startup, which Cloudflare limits to 1 s (10,000 rules take 60–190 ms on the benchmark machine); measure before deploying (npm run bench -- match gives the figures for 10,000)`,
    );
  }
  return warnings;
}
