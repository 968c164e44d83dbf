/**
 * `npm run demo [-- --env <name>] [--config wrangler.toml]`: the router end to
 * end on this machine, offline.
 *
 * Starts a loopback sink (playing two HTTP services and a Slack incoming
 * webhook) and the router (a real `wrangler dev`) with a demo config; sends one
 * signed event of every WorkOS event family, one duplicate (same id re-sent)
 * and one forged request (bad signature); pretty-prints what each destination
 * receives as it arrives; waits for every expected delivery (at most 60 s);
 * prints a summary table; stops everything it started, also on Ctrl-C and on
 * errors.
 *
 * `--env <name>` runs the Worker of that environment (`wrangler dev --env
 * <name>`): its own Durable Object bindings, queues and consumers, exactly as
 * wrangler builds them, so a missing consumer or binding shows up as missing
 * deliveries. Its vars are replaced by the demo's (routing to the local sink).
 *
 * Exit 0 only when every expected delivery arrived exactly once, nothing else
 * arrived, every re-signature verified and all the counts are right; 2 on
 * usage errors and an unknown environment.
 */
import { execFileSync } from 'node:child_process';
import { createHmac, timingSafeEqual } from 'node:crypto';
import { resolve } from 'node:path';
import { type Destination, parseRouterConfig } from '../src/config/router-config';
import { EVENT_TYPES, type EventType, type UnknownEvent, eventFamily } from '../src/events/catalog';
import { makeEvent } from '../test/fixtures/events';
import { CONFIG_OPTIONS, type Tool, assertEnvironmentExists, parseToolArgs, requestedEnv, usageError } from './lib/args';
import { type RouterProcess, groupAlive, startRouter } from './lib/dev-server';
import { postSigned } from './lib/sign';
import { type Sink, type SinkRequest, startSink } from './lib/sink';
import { compareWithTopLevel, queueProblems, readWranglerConfig } from './wrangler-config';

const TOOL: Tool = {
  name: 'demo',
  usage: `usage: npm run demo [-- --env <name>] [--config wrangler.toml]

  --env, -e      run the Worker of that environment ([env.<name>]: its own Durable
                 Objects, queues and consumers, as \`wrangler dev --env <name>\` builds it);
                 the demo's routing replaces its ROUTER (default: the top level)
  --config, -c   the wrangler config (default: the project's wrangler.toml)`,
};
const cli = parseToolArgs(TOOL, CONFIG_OPTIONS);
if (cli.positionals.length > 0) usageError(TOOL, `unexpected argument "${cli.positionals[0]}"`);
const CONFIG_PATH = cli.values.config !== undefined ? resolve(cli.values.config) : undefined;
const ENV = requestedEnv(cli.values.env) || undefined;
assertEnvironmentExists(TOOL, CONFIG_PATH ?? new URL('../wrangler.toml', import.meta.url).pathname, ENV);

const DELIVERY_TIMEOUT_MS = 60_000;
/** After the last expected delivery: room for a wrong extra one to show up. */
const GRACE_MS = 1_500;
/** WorkOS SDKs accept signatures at most this old. */
const SIGNATURE_TOLERANCE_MS = 180_000;

const WEBHOOK_SECRET = 'whsec_demo_local_only';
const FORGED_SECRET = 'whsec_not_the_real_secret';
const SIGNING_SECRETS: Record<string, string> = {
  warehouse: 'warehouse_demo_signing_secret',
  crm: 'crm_demo_signing_secret',
};

/** The event shown for each family (any family not listed uses its first catalog type). */
const FAMILY_PICKS: Partial<Record<string, EventType>> = {
  api_key: 'api_key.revoked',
  authentication: 'authentication.password_failed',
  connection: 'connection.saml_certificate_renewal_required',
  dsync: 'dsync.user.created',
  flag: 'flag.updated',
  group: 'group.member_added',
  invitation: 'invitation.accepted',
  organization: 'organization.created',
  organization_domain: 'organization_domain.verified',
  organization_membership: 'organization_membership.created',
  organization_role: 'organization_role.updated',
  pipes: 'pipes.connected_account.reauthorization_needed',
  role: 'role.updated',
  session: 'session.created',
  user: 'user.created',
  vault: 'vault.byok_key.deleted',
};

function demoRouterConfig(sinkUrl: string) {
  return {
    destinations: [
      {
        name: 'warehouse',
        type: 'http',
        url: `${sinkUrl}/warehouse`,
        signing_secret: 'WAREHOUSE_SIGNING_SECRET',
        headers: { 'X-Demo': 'workos-event-router' },
      },
      { name: 'crm', type: 'http', url: `${sinkUrl}/crm`, signing_secret: 'CRM_SIGNING_SECRET' },
      {
        name: 'security',
        type: 'slack',
        url_secret: 'SLACK_DEMO_URL',
        mention: { text: '<!here>', rules: ['impersonation'] },
        // Slack takes ~1 message/s: a burst is sent as one digest per window.
        digest_window_seconds: 2,
      },
    ],
    rules: [
      { name: 'everything-to-warehouse', events: ['*'], to: ['warehouse'] },
      {
        name: 'customer-lifecycle',
        events: ['user.*', 'organization.*', 'organization_membership.*', 'invitation.accepted', 'dsync.*', '!dsync.group.updated'],
        to: ['crm'],
      },
      { name: 'failed-logins', events: ['authentication.*_failed', 'authentication.radar_risk_detected'], to: ['security'] },
      {
        name: 'keys-and-certificates',
        events: ['api_key.revoked', 'connection.saml_certificate_renewal_required', 'vault.byok_key.deleted'],
        to: ['security'],
      },
      { name: 'impersonation', events: ['session.created'], where: { 'data.impersonator': { exists: true } }, to: ['security'] },
    ],
  };
}

// ---------------------------------------------------------------------------
// Lifecycle: everything started here is stopped here, whatever happens.
// ---------------------------------------------------------------------------

let sink: Sink | undefined;
let router: RouterProcess | undefined;
let routerStarting: Promise<RouterProcess> | undefined;
let cleanup: Promise<void> | undefined;
let cleanedUp = false;
let interrupted = false;

function stopAll(): Promise<void> {
  cleanup ??= (async () => {
    if (routerStarting !== undefined && router === undefined) {
      // Interrupted while wrangler was starting: wait for it, then stop it.
      router = await routerStarting.catch(() => undefined);
      for (const g of childGroups()) routerGroups.add(g);
    }
    await router?.stop().catch((err: unknown) => console.error(`! stopping the router: ${(err as Error).message}`));
    // stop() returns when wrangler has exited; make sure its workerd children are gone too.
    await waitForGroupsGone(routerGroups);
    if (sink !== undefined) sink.onRequest = undefined;
    await sink?.close().catch(() => undefined);
    cleanedUp = true;
  })();
  return cleanup;
}

function onSignal(signal: NodeJS.Signals): void {
  if (interrupted) {
    // Second Ctrl-C: do not wait any longer.
    killChildGroups();
    process.exit(130);
  }
  interrupted = true;
  console.error(`\n${signal}: stopping the router and the sink… (again to force)`);
  void stopAll().finally(() => process.exit(130));
}
process.on('SIGINT', onSignal);
process.on('SIGTERM', onSignal);
process.on('SIGHUP', onSignal);
// Last resort (process.exit from anywhere): never leave wrangler/workerd behind.
process.on('exit', () => {
  if (!cleanedUp) killChildGroups();
});

/**
 * Process groups led by our direct children: startRouter runs wrangler
 * detached, as a group leader, and workerd inherits its group.
 */
function childGroups(): number[] {
  let table: string;
  try {
    table = execFileSync('ps', ['-A', '-o', 'pid=,ppid=,pgid='], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
  } catch {
    return []; // no ps: rely on RouterProcess.stop() alone
  }
  const groups: number[] = [];
  for (const line of table.split('\n')) {
    const [pid, ppid, pgid] = line.trim().split(/\s+/).map(Number);
    if (ppid === process.pid && pid !== undefined && pid === pgid) groups.push(pid);
  }
  return groups;
}

/** Groups recorded when the router came up (its wrangler may have exited since; workerd keeps the group id). */
const routerGroups = new Set<number>();

/** Last resort: SIGKILL every group we started. */
function killChildGroups(): void {
  for (const pgid of new Set([...routerGroups, ...childGroups()])) {
    try {
      process.kill(-pgid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
}

async function waitForGroupsGone(groups: Set<number>, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while ([...groups].some(groupAlive) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
  for (const pgid of groups) {
    if (!groupAlive(pgid)) continue;
    try {
      process.kill(-pgid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  while ([...groups].some(groupAlive) && Date.now() < deadline + timeoutMs) await new Promise((r) => setTimeout(r, 100));
}

// ---------------------------------------------------------------------------
// What is sent and what must arrive
// ---------------------------------------------------------------------------

interface Sent {
  event: UnknownEvent;
  body: string;
}

interface Expected {
  /** destination name → event ids it must receive, each once. */
  byDestination: Map<string, Set<string>>;
  total: number;
}

interface Tally {
  sent: number;
  accepted: number;
  duplicate: number;
  rejected: number;
  other: string[];
  /** destination → event id → times received. */
  received: Map<string, Map<string, number>>;
  unexpected: string[];
  signaturesOk: number;
  signaturesBad: number;
  bodiesMismatched: number;
  slackMessages: number;
}

const tally: Tally = {
  sent: 0,
  accepted: 0,
  duplicate: 0,
  rejected: 0,
  other: [],
  received: new Map(),
  unexpected: [],
  signaturesOk: 0,
  signaturesBad: 0,
  bodiesMismatched: 0,
  slackMessages: 0,
};

function familyEvents(): EventType[] {
  const families = new Map<string, EventType>();
  for (const type of EVENT_TYPES) {
    const family = eventFamily(type);
    if (!families.has(family)) families.set(family, FAMILY_PICKS[family] ?? type);
  }
  return [...families.values()];
}

// ---------------------------------------------------------------------------
// Printing what arrives
// ---------------------------------------------------------------------------

const PATHS: Record<string, string> = { '/warehouse': 'warehouse', '/crm': 'crm', '/slack': 'security' };

function onDelivery(req: SinkRequest, sent: Map<string, Sent>, expected: Expected, destinations: Map<string, Destination>): void {
  const name = PATHS[req.path];
  if (name === undefined) {
    tally.unexpected.push(`${req.method} ${req.path}`);
    console.log(`  ⇠ ?? unexpected request ${req.method} ${req.path}`);
    return;
  }
  const dest = destinations.get(name);
  const text = req.body.toString('utf8');
  const perDest = tally.received.get(name) ?? new Map<string, number>();
  tally.received.set(name, perDest);
  /** Counts one receipt of `id` by this destination; returns a note when it was not owed. */
  const receive = (id: string | undefined): string => {
    const times = (perDest.get(id ?? '?') ?? 0) + 1;
    perDest.set(id ?? '?', times);
    const isExpected = id !== undefined && expected.byDestination.get(name)?.has(id) === true;
    if (!isExpected || times > 1) tally.unexpected.push(`${name} ← ${id ?? '(no event id)'}${times > 1 ? ` (again, ${times}×)` : ''}`);
    return !isExpected ? '  ✗ NOT EXPECTED' : times > 1 ? `  ✗ received ${times} times` : '';
  };

  if (dest?.type === 'slack') {
    // One event per message in a quiet period; a burst arrives as one digest covering several events.
    tally.slackMessages += 1;
    const ids = [...sent.keys()].filter((k) => text.includes(k));
    const notes = ids.map((id) => `${sent.get(id)?.event.event ?? '?'} ${id}${receive(id)}`);
    if (ids.length === 0) notes.push(`(no known event id)${receive(undefined)}`);
    const kind = ids.length > 1 ? `digest of ${ids.length} events` : 'message';
    console.log(`  ⇠ ${name} (slack)  ${req.method} ${kind}: ${notes.join(', ')}`);
    for (const line of renderSlack(text)) console.log(`      │ ${line}`);
    return;
  }
  const header = req.headers['x-workos-event-id'];
  const id = typeof header === 'string' ? header : undefined;
  const note = receive(id);
  const original = id !== undefined ? sent.get(id) : undefined;
  const type = req.headers['x-workos-event'];
  const secret = SIGNING_SECRETS[name];
  const sig = req.headers['workos-signature'];
  let signature: string;
  if (secret === undefined) signature = 'unsigned';
  else if (typeof sig === 'string' && verifySignature(req.body, sig, secret)) {
    tally.signaturesOk += 1;
    signature = `signature ✓ (${name} secret)`;
  } else {
    tally.signaturesBad += 1;
    signature = `signature ✗ (does not verify with the ${name} secret)`;
  }
  let bytes = '';
  if (original !== undefined) {
    const same = original.body === text;
    if (!same) tally.bodiesMismatched += 1;
    bytes = same ? '  bytes = sent ✓' : '  bytes differ from what was sent ✗';
  }
  console.log(`  ⇠ ${name} (http)  ${req.method} ${String(type)}  ${id ?? '(no event id)'}  ${req.body.length} B  ${signature}${bytes}${note}`);
}

/** WorkOS scheme: `t=<ms>, v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`, within the SDK's tolerance. */
function verifySignature(body: Buffer, header: string, secret: string): boolean {
  const parts = new Map(header.split(',').map((p) => p.trim().split('=', 2) as [string, string]));
  const t = parts.get('t');
  const v1 = parts.get('v1');
  if (t === undefined || v1 === undefined || !/^\d+$/.test(t) || !/^[0-9a-f]{64}$/i.test(v1)) return false;
  if (Math.abs(Date.now() - Number(t)) > SIGNATURE_TOLERANCE_MS) return false;
  const mac = createHmac('sha256', secret).update(`${t}.`).update(body).digest();
  return timingSafeEqual(mac, Buffer.from(v1, 'hex'));
}

/** A Slack Block Kit message as readable text: header, section text and fields, context. */
function renderSlack(json: string): string[] {
  let message: { text?: unknown; blocks?: unknown };
  try {
    message = JSON.parse(json) as typeof message;
  } catch {
    return [`(not JSON: ${json.slice(0, 120)})`];
  }
  const lines: string[] = [];
  const blocks = Array.isArray(message.blocks) ? message.blocks : [];
  for (const block of blocks as Record<string, unknown>[]) {
    switch (block.type) {
      case 'header':
        lines.push(`▌ ${readable(textOf(block.text))}`);
        break;
      case 'section': {
        const t = textOf(block.text);
        if (t !== '') lines.push(...readable(t).split('\n'));
        const fields = Array.isArray(block.fields) ? (block.fields as unknown[]) : [];
        for (const f of fields) {
          const raw = textOf(f);
          const m = /^\*([^*\n]+)\*\n([\s\S]*)$/.exec(raw);
          const field = m !== null ? `${readable(m[1] as string)}: ${readable(m[2] as string)}` : readable(raw);
          lines.push(`  ${field.replace(/\n/g, ' ')}`);
        }
        break;
      }
      case 'context': {
        const elements = Array.isArray(block.elements) ? (block.elements as unknown[]) : [];
        lines.push(elements.map((e) => readable(textOf(e))).join(' · '));
        break;
      }
      case 'divider':
        lines.push('────────');
        break;
      default:
        lines.push(`[${String(block.type)} block]`);
    }
  }
  if (blocks.length === 0) lines.push(readable(typeof message.text === 'string' ? message.text : '(empty message)'));
  return lines;
}

function textOf(obj: unknown): string {
  if (typeof obj === 'object' && obj !== null && typeof (obj as { text?: unknown }).text === 'string') return (obj as { text: string }).text;
  return '';
}

const EMOJI: Record<string, string> = { ':warning:': '⚠️', ':rotating_light:': '🚨', ':lock:': '🔒', ':key:': '🔑' };

/** mrkdwn → terminal text: formatting markers dropped, links and mentions spelled out, escapes undone. */
function readable(mrkdwn: string): string {
  return (
    mrkdwn
      // markers the formatter neutralized (ZWSP on both sides) are literal text: keep them
      .replace(/(?<!\u200B)[*`~](?!\u200B)/g, '')
      .replace(/\u200B/g, '')
      .replace(/<!(here|channel|everyone)>/g, '@$1')
      .replace(/<!subteam\^([A-Z0-9]+)>/g, '@group:$1')
      .replace(/<@([UW][A-Z0-9]+)>/g, '@user:$1')
      .replace(/<([^|>]+)\|([^>]+)>/g, '$2 ($1)')
      .replace(/<([^>]+)>/g, '$1')
      .replace(/:[a-z_]+:/g, (m) => EMOJI[m] ?? m)
      .replace(/&lt;/g, '<')
      .replace(/&gt;/g, '>')
      .replace(/&amp;/g, '&')
  );
}

// ---------------------------------------------------------------------------
// The demo
// ---------------------------------------------------------------------------

async function main(): Promise<boolean> {
  console.log('WorkOS event router demo: a local wrangler dev, a loopback sink, no network.\n');

  sink = await startSink();
  const activeSink = sink;
  console.log(`1. Sink on ${activeSink.url}: /warehouse and /crm play HTTP services, /slack plays a Slack incoming webhook.`);

  const routerConfig = demoRouterConfig(activeSink.url);
  // The same parser and matcher as the Worker: they also say what must arrive.
  const vars: Record<string, unknown> = {
    WORKOS_WEBHOOK_SECRET: WEBHOOK_SECRET,
    WAREHOUSE_SIGNING_SECRET: SIGNING_SECRETS.warehouse,
    CRM_SIGNING_SECRET: SIGNING_SECRETS.crm,
    SLACK_DEMO_URL: `${activeSink.url}/slack`,
    ROUTER: routerConfig,
  };
  const parsed = parseRouterConfig(routerConfig, (name) => (name === 'ROUTER' ? undefined : vars[name]));
  if (!parsed.ok) throw new Error(`demo config is invalid:\n  ${parsed.problems.join('\n  ')}`);
  const { config } = parsed;

  const wranglerArgs: string[] = [];
  if (ENV !== undefined) {
    const configFile = CONFIG_PATH ?? new URL('../wrangler.toml', import.meta.url).pathname;
    const view = readWranglerConfig(configFile, { env: ENV });
    const top = readWranglerConfig(configFile);
    const events = view.producers.find((p) => p.binding === 'EVENTS_QUEUE')?.queue ?? '(none)';
    console.log(`   Environment ${ENV}: Worker ${view.workerName ?? '?'}, its own queue ${events} and Durable Objects; the demo's routing replaces [env.${ENV}.vars.ROUTER].`);
    for (const p of [...compareWithTopLevel(top, view).problems, ...queueProblems(view)]) console.log(`   ! [env.${ENV}] ${p}`);
    wranglerArgs.push('--env', ENV);
  }
  console.log(`2. Starting the router (wrangler dev${ENV !== undefined ? ` --env ${ENV}` : ''})…`);
  const started = Date.now();
  routerStarting = startRouter({ vars, args: wranglerArgs, ...(CONFIG_PATH !== undefined ? { config: CONFIG_PATH } : {}) });
  router = await routerStarting;
  for (const g of childGroups()) routerGroups.add(g);
  if (interrupted) return false;
  console.log(`   ready at ${router.url} in ${((Date.now() - started) / 1000).toFixed(1)} s. Routing:`);
  for (const rule of routerConfig.rules) {
    const where = 'where' in rule ? `  where ${JSON.stringify(rule.where)}` : '';
    console.log(`     ${rule.name.padEnd(24)} ${rule.events.join(' ')}${where} → ${rule.to.join(', ')}`);
  }
  const webhookUrl = `${router.url}/webhooks/workos`;

  // Build every event first, so deliveries can be recognized as they arrive.
  const types = familyEvents();
  const sent = new Map<string, Sent>();
  const events = types.map((type) => {
    const event = makeEvent(type) as unknown as UnknownEvent;
    const body = JSON.stringify(event);
    sent.set(event.id, { event, body });
    return { event, body };
  });
  const expected: Expected = { byDestination: new Map(), total: 0 };
  for (const d of config.destinations.keys()) expected.byDestination.set(d, new Set());
  for (const { event } of events) {
    for (const d of config.matcher.match(event).destinations) {
      expected.byDestination.get(d)?.add(event.id);
      expected.total += 1;
    }
  }
  const forged = makeEvent('organization.deleted') as unknown as UnknownEvent;
  const forgedBody = JSON.stringify(forged);

  activeSink.onRequest = (req) => onDelivery(req, sent, expected, config.destinations);

  console.log(`3. Sending ${events.length} events (one per family), one duplicate and one forged request; deliveries show as they arrive:`);
  const post = async (label: string, body: string, secret: string): Promise<{ status: number; json: Record<string, unknown> }> => {
    tally.sent += 1;
    const res = await postSigned(webhookUrl, body, secret);
    const text = await res.text();
    let json: Record<string, unknown> = {};
    try {
      json = JSON.parse(text) as Record<string, unknown>;
    } catch {
      json = { body: text.slice(0, 200) };
    }
    const outcome = typeof json.status === 'string' ? json.status : String(json.error ?? '');
    if (res.status === 200 && outcome === 'accepted') tally.accepted += 1;
    else if (res.status === 200 && outcome === 'duplicate') tally.duplicate += 1;
    else if (res.status === 401) tally.rejected += 1;
    else tally.other.push(`${label}: ${res.status} ${JSON.stringify(json)}`);
    console.log(`  → ${`${res.status} ${outcome}`.padEnd(24)} ${label}`);
    return { status: res.status, json };
  };

  for (const { event, body } of events) {
    if (interrupted) return false;
    await post(`${event.event}  ${event.id}`, body, WEBHOOK_SECRET);
  }
  const first = events[0] as Sent;
  await post(`${first.event.event}  ${first.event.id}  (the same event again: a WorkOS retry)`, first.body, WEBHOOK_SECRET);
  await post(`${forged.event}  ${forged.id}  (forged: signed with a wrong secret)`, forgedBody, FORGED_SECRET);

  console.log(`4. Waiting for ${expected.total} deliveries (at most ${DELIVERY_TIMEOUT_MS / 1000} s)…`);
  const arrived = (): number => {
    let n = 0;
    for (const [dest, ids] of expected.byDestination) for (const id of ids) if ((tally.received.get(dest)?.get(id) ?? 0) > 0) n += 1;
    return n;
  };
  let complete = true;
  try {
    await activeSink.waitFor(() => interrupted || arrived() === expected.total, DELIVERY_TIMEOUT_MS);
  } catch {
    complete = false;
  }
  if (interrupted) return false;
  await new Promise((r) => setTimeout(r, GRACE_MS));
  if (activeSink.requests.some((r) => r.body.toString('utf8').includes(forged.id))) {
    tally.unexpected.push(`the forged event ${forged.id} was delivered`);
  }

  return printSummary(expected, config.destinations, complete);
}

function printSummary(expected: Expected, destinations: Map<string, Destination>, complete: boolean): boolean {
  const families = familyEvents().length;
  const rows: [string, number, number][] = [
    ['sent', tally.sent, families + 2],
    ['accepted', tally.accepted, families],
    ['duplicate', tally.duplicate, 1],
    ['rejected', tally.rejected, 1],
  ];
  for (const [name, ids] of expected.byDestination) {
    const got = [...(tally.received.get(name)?.entries() ?? [])].filter(([id]) => ids.has(id)).length;
    rows.push([`delivered ${name} (${destinations.get(name)?.type ?? '?'})`, got, ids.size]);
  }
  const signed = [...expected.byDestination.entries()]
    .filter(([name]) => SIGNING_SECRETS[name] !== undefined)
    .reduce((n, [, ids]) => n + ids.size, 0);
  rows.push(['re-signatures verified', tally.signaturesOk, signed]);
  rows.push(['unexpected deliveries', tally.unexpected.length, 0]);

  let ok = complete && tally.other.length === 0 && tally.signaturesBad === 0 && tally.bodiesMismatched === 0;
  const width = Math.max(...rows.map((r) => r[0].length)) + 2;
  console.log('\nSummary');
  console.log(`  ${'what'.padEnd(width)}${'actual'.padStart(8)}${'expected'.padStart(10)}`);
  for (const [label, actual, want] of rows) {
    const good = actual === want;
    ok &&= good;
    console.log(`  ${label.padEnd(width)}${String(actual).padStart(8)}${String(want).padStart(10)}  ${good ? '✓' : '✗'}`);
  }
  for (const o of tally.other) console.log(`  ! unexpected answer: ${o}`);
  for (const u of tally.unexpected) console.log(`  ! unexpected delivery: ${u}`);
  if (tally.slackMessages > 0) console.log(`  (Slack received ${tally.slackMessages} message(s): bursts are sent as digests)`);
  if (tally.bodiesMismatched > 0) console.log(`  ! ${tally.bodiesMismatched} HTTP deliveries did not carry the exact bytes sent`);
  if (!complete) {
    for (const [name, ids] of expected.byDestination) {
      for (const id of ids) if ((tally.received.get(name)?.get(id) ?? 0) === 0) console.log(`  ! missing: ${name} ← ${id}`);
    }
  }
  console.log(ok ? '\nresult: OK (every expected delivery arrived exactly once)' : '\nresult: FAILED');
  return ok;
}

let exitCode = 1;
try {
  exitCode = (await main()) ? 0 : 1;
} catch (err) {
  console.error(`\n✗ demo failed: ${(err as Error).stack ?? String(err)}`);
  exitCode = 1;
} finally {
  if (!interrupted) {
    console.log('\nStopping the router and the sink…');
    await stopAll();
    console.log('Stopped: no process left behind.');
  }
}
if (!interrupted) process.exit(exitCode);
