/**
 * One Worker per environment (`[env.staging]`, `[env.production]`): the tools
 * read an environment as wrangler does (`--env`), the check reports what an
 * environment lacks against the top level, and wrangler itself builds and runs
 * each environment (`deploy --dry-run --env`, `dev --env`).
 */
import { execFile } from 'node:child_process';
import { createHmac } from 'node:crypto';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startRouter } from '../../scripts/lib/dev-server';
import { postSigned } from '../../scripts/lib/sign';
import { startSink } from '../../scripts/lib/sink';
import { makeEvent } from '../fixtures/events';

const ROOT = resolve(new URL('../..', import.meta.url).pathname);
const WRANGLER_TOML = resolve(ROOT, 'wrangler.toml');

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs a command from the project root; never rejects. */
function exec(cmd: string, args: string[], env: Record<string, string> = {}, timeout = 90_000): Promise<Run> {
  return new Promise((done) => {
    execFile(
      cmd,
      args,
      {
        cwd: ROOT,
        timeout,
        env: { ...process.env, NO_COLOR: '1', FORCE_COLOR: '0', WRANGLER_SEND_METRICS: 'false', CLOUDFLARE_ENV: '', ...env },
        maxBuffer: 10 * 1024 * 1024,
      },
      (err, stdout, stderr) => done({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : -1, stdout, stderr }),
    );
  });
}

/** A script run with `cwd` as the working directory (where the tools look for dev.env and .dev.vars files). */
function tsxIn(cwd: string, script: string, args: string[]): Promise<Run> {
  return new Promise((done) => {
    execFile(
      resolve(ROOT, 'node_modules/.bin/tsx'),
      [resolve(ROOT, 'scripts', script), ...args],
      { cwd, timeout: 90_000, env: { ...process.env, NO_COLOR: '1', FORCE_COLOR: '0', CLOUDFLARE_ENV: '' } },
      (err, stdout, stderr) => done({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : -1, stdout, stderr }),
    );
  });
}

/** `npm run <script> -- ...args`, as a user types it. */
const npmRun = (script: string, args: string[], env: Record<string, string> = {}) => exec('npm', ['run', '--silent', script, '--', ...args], env);
const tsx = (script: string, args: string[]) => exec(resolve(ROOT, 'node_modules/.bin/tsx'), [`scripts/${script}`, ...args]);
const wrangler = (args: string[]) => exec(process.execPath, [resolve(ROOT, 'node_modules/wrangler/bin/wrangler.js'), ...args]);

/** The "Destinations that would receive it" block of `route`'s output. */
const destinationsOf = (stdout: string) => stdout.slice(stdout.indexOf('Destinations'));
const destinationNames = (stdout: string) => [...destinationsOf(stdout).matchAll(/^ {2}[✓?] (\S+)/gm)].map((m) => m[1]);

let dir: string;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'router-envs-'));
});

afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

/** A copy of the project's wrangler.toml with `edit` applied (each edit must change the text). */
function editedCopy(name: string, edits: [RegExp, string][]): string {
  let text = readFileSync(WRANGLER_TOML, 'utf8');
  for (const [pattern, replacement] of edits) {
    const next = text.replace(pattern, replacement);
    expect(next, `edit ${pattern} applies to wrangler.toml`).not.toBe(text);
    text = next;
  }
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
}

describe('npm run check across environments', () => {
  it('--env production passes', async () => {
    const r = await npmRun('check', ['--env', 'production']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/✓ wrangler\.toml --env production: ROUTER is valid \(\d+ rule\(s\), \d+ destination\(s\); \d+\.\d KB of the 5 KB a variable may hold\); Durable Objects, router queues and consumers match the top level\./);
    expect(r.stdout).not.toContain('staging');
    expect(r.stderr).not.toContain('✗');
    // Per-environment secrets: the hint names the environment.
    // production's ROUTER names CRM_URL and CRM_SIGNING_SECRET, which dev.env does not set: hints are printed.
    const hints = r.stderr.split('\n').filter((l) => l.includes('wrangler secret put'));
    expect(hints.length).toBeGreaterThan(0);
    for (const w of hints) expect(w).toMatch(/--env production$/);
  });

  it('without --env: the top level and every environment, each reported', async () => {
    const r = await npmRun('check', []);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain('✓ wrangler.toml (top level): ROUTER is valid');
    expect(r.stdout).toContain('✓ wrangler.toml --env staging: ROUTER is valid');
    expect(r.stdout).toContain('✓ wrangler.toml --env production: ROUTER is valid');
    expect(r.stdout).toContain('all 3 configurations valid (top level, env.staging, env.production)');
    const list = await tsx('check.ts', ['--list-envs']);
    expect(list.stdout.trim().split('\n')).toEqual(['staging', 'production']);
  });

  it('--env naming no environment: a clear error, exit 2 (check, route, send)', async () => {
    const check = await npmRun('check', ['--env', 'nope']);
    expect(check.code).toBe(2);
    expect(check.stderr).toContain('no environment "nope" in wrangler.toml; the environments it defines are: staging, production');
    expect(check.stdout).toBe('');
    const typo = await tsx('check.ts', ['--env', 'prodution']);
    expect(typo.code).toBe(2);
    expect(typo.stderr).toContain('(did you mean "production"?)');
    const route = await tsx('route.ts', ['user.created', '--env', 'nope']);
    expect(route.code).toBe(2);
    expect(route.stderr).toContain('no environment "nope"');
    const send = await tsx('send.ts', ['user.created', '--env', 'nope', '--url', 'http://127.0.0.1:9']);
    expect(send.code).toBe(2);
    expect(send.stderr).toContain('no environment "nope"');
    expect(send.stdout).not.toContain('Sending'); // refused before sending anything
  });

  it('local secrets are read from dev.env alone, as npm run dev loads them: a .dev.vars.<env> file is reported as not read, and its secrets still missing', async () => {
    const here = mkdtempSync(join(dir, 'local-secrets-'));
    writeFileSync(join(here, 'dev.env'), readFileSync(resolve(ROOT, 'dev.env'), 'utf8'));
    // What a user might try: the staging ROUTER's secrets in wrangler's per-environment file.
    writeFileSync(join(here, '.dev.vars.staging'), 'CRM_URL=http://127.0.0.1:9/crm\nCRM_SIGNING_SECRET=whsec_local_crm\n');
    const r = await tsxIn(here, 'check.ts', [WRANGLER_TOML, '--env', 'staging']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toContain('! warning: [env.staging] .dev.vars.staging is not read: npm run dev passes --env-file dev.env');
    // npm run dev -- --env staging would answer 500 config_invalid without them: still reported.
    expect(r.stderr).toContain('secret "CRM_URL" is not set locally (dev.env)');
    expect(r.stderr).toContain('secret "CRM_SIGNING_SECRET" is not set locally (dev.env)');
    expect(r.stderr).not.toContain('whsec_local_crm');
  });

  it("send --env staging prints staging's routing and signs with dev.env's secret (what npm run dev -- --env staging verifies with)", async () => {
    const devSecret = /^WORKOS_WEBHOOK_SECRET=(.*)$/m.exec(readFileSync(resolve(ROOT, 'dev.env'), 'utf8'))?.[1]?.split(',')[0]?.trim() as string;
    expect(devSecret.length).toBeGreaterThan(0);
    const got: { signature: string; body: string }[] = [];
    const server = createServer((req, res) => {
      let body = '';
      req.on('data', (c: Buffer) => (body += c.toString('utf8')));
      req.on('end', () => {
        got.push({ signature: String(req.headers['workos-signature'] ?? ''), body });
        res.writeHead(200, { 'Content-Type': 'application/json' }).end(JSON.stringify({ status: 'accepted' }));
      });
    });
    await new Promise<void>((ok) => server.listen(0, '127.0.0.1', ok));
    try {
      const port = (server.address() as AddressInfo).port;
      const r = await tsx('send.ts', ['user.created', '--env', 'staging', '--url', `http://127.0.0.1:${port}`]);
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout).toContain('WORKOS_WEBHOOK_SECRET from dev.env (--env staging)');
      expect(r.stdout).not.toContain(devSecret);
      expect(got).toHaveLength(1);
      const sent = got[0] as { signature: string; body: string };
      const t = /t=(\d+)/.exec(sent.signature)?.[1] as string;
      const v1 = /v1=([0-9a-f]+)/.exec(sent.signature)?.[1];
      expect(v1).toBe(createHmac('sha256', devSecret).update(`${t}.${sent.body}`).digest('hex'));
    } finally {
      server.close();
    }
  });

  it('reports, per environment, every binding the top level declares that the environment lacks', async () => {
    const path = editedCopy('missing-bindings.toml', [
      // production loses a Durable Object binding…
      [/\[\[env\.production\.durable_objects\.bindings\]\]\nname = "DELIVERY_TRACE"\nclass_name = "DeliveryTrace"\n/, ''],
      // …staging its dead-letter queue's producer and consumer.
      [/\[\[env\.staging\.queues\.producers\]\]\nbinding = "EVENTS_DLQ"\nqueue = "[^"]+"\n/, ''],
      [/\[\[env\.staging\.queues\.consumers\]\]\nqueue = "workos-router-events-staging-dlq"\n(?:[a-z_]+ = [^\n]+\n)+/, ''],
    ]);
    const r = await tsx('check.ts', ['--config', path]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(
      '✗ [env.production] durable_objects: binding "DELIVERY_TRACE" (class DeliveryTrace) is declared at the top level but not in [env.production]; wrangler does not inherit durable_objects',
    );
    expect(r.stderr).toContain('✗ [env.staging] queues.producers: binding "EVENTS_DLQ" is declared at the top level (queue "workos-router-events-dlq") but not in [env.staging]');
    expect(r.stderr).toContain(`${path} --env production: 1 binding problem(s); fix them before \`wrangler deploy --env production\`.`);
    expect(r.stderr).toContain(`✗ ${path}: 2 of 3 configurations failed: env.staging, env.production.`);
    // Each report names its own environment only.
    expect(r.stderr).not.toMatch(/\[env\.staging\][^\n]*DELIVERY_TRACE/);
    expect(r.stdout).toContain(`✓ ${path} (top level): ROUTER is valid`);

    // Only the environment asked for.
    const staging = await tsx('check.ts', ['--config', path, '--env', 'staging']);
    expect(staging.code).toBe(1);
    expect(staging.stderr).not.toContain('production');
    const production = await tsx('check.ts', ['--config', path, '--env', 'production']);
    expect(production.code).toBe(1);
    expect(production.stderr).toContain('DELIVERY_TRACE');
    const topOnly = await tsx('check.ts', ['--config', path, '--env', '']);
    expect(topOnly.code).toBe(0);
  });

  it('a missing consumer, a dead-letter queue not named "-dlq" and queues shared between environments are reported', async () => {
    const path = editedCopy('queue-names.toml', [
      [/\[\[env\.production\.queues\.consumers\]\]\nqueue = "workos-router-events-production"\n(?:[a-z_]+ = [^\n]+\n)+/, ''],
      [/"workos-router-events-staging-dlq"/g, '"workos-router-events-staging-dead"'],
      [/queue = "workos-audit-production"/, 'queue = "workos-audit-staging"'],
    ]);
    const r = await tsx('check.ts', ['--config', path]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(
      '✗ [env.production] queues.consumers: the top level consumes "workos-router-events" (EVENTS_QUEUE) but [env.production] has no consumer for "workos-router-events-production"',
    );
    expect(r.stderr).toContain(
      `✗ [env.staging] queues.producers: EVENTS_DLQ's queue "workos-router-events-staging-dead" must end in "-dlq" (the consumer recognises its dead-letter queue by that suffix)`,
    );
    expect(r.stderr).toContain('! warning: queue "workos-audit-staging" is used by env.staging and env.production');
  });

  it('an environment without vars has no ROUTER (wrangler does not inherit vars)', async () => {
    const path = editedCopy('no-vars.toml', [[/\n\[env\.staging\.vars\]\n[\s\S]*?(?=\n# --- production)/, '\n']]);
    const r = await tsx('check.ts', ['--config', path, '--env', 'staging']);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('✗ [env.staging] ROUTER: missing: [env.staging.vars] defines no ROUTER, and wrangler does not inherit vars into environments');
    expect(r.stderr).toContain('! warning: [env.staging] vars: [env.staging] has no [env.staging.vars]');
  });
});

describe('npm run route --env', () => {
  it('staging and production route user.created to their own destinations', async () => {
    const staging = await npmRun('route', ['user.created', '--env', 'staging']);
    expect(staging.code, staging.stderr).toBe(0);
    expect(staging.stdout).toContain('Environment staging  ([env.staging.vars.ROUTER]; Worker workos-event-router-staging)');
    expect(destinationNames(staging.stdout)).toEqual(['staging-audit', 'crm-sandbox']);
    expect(destinationsOf(staging.stdout)).toContain('queue → AUDIT_QUEUE (workos-audit-staging)');

    const production = await npmRun('route', ['user.created', '--env', 'production']);
    expect(production.code, production.stderr).toBe(0);
    expect(production.stdout).toContain('Environment production');
    expect(destinationNames(production.stdout)).toEqual(['audit', 'crm']);
    expect(destinationsOf(production.stdout)).toContain('queue → AUDIT_QUEUE (workos-audit-production)');

    // CLOUDFLARE_ENV selects the environment as it does for wrangler.
    const viaVariable = await npmRun('route', ['user.created'], { CLOUDFLARE_ENV: 'staging' });
    expect(destinationNames(viaVariable.stdout)).toEqual(['staging-audit', 'crm-sandbox']);

    // The top level, with a note that environments exist.
    const top = await npmRun('route', ['user.created']);
    expect(top.stdout).toContain('Environment top level  (also defined: staging, production; choose one with --env <name>)');
    expect(destinationNames(top.stdout)).toEqual(['audit']);
  });
});

describe('wrangler builds and runs each environment', () => {
  it('wrangler deploy --dry-run --env staging / production: own queues, every Durable Object', async () => {
    const top = await wrangler(['deploy', '--dry-run', '--env', '', '--outdir', join(dir, 'dry-top')]);
    expect(top.code, top.stderr).toBe(0);
    const durableObjects = [...top.stdout.matchAll(/env\.([A-Z_]+) \(\w+\)\s+Durable Object/g)].map((m) => m[1]);
    expect(durableObjects.length).toBeGreaterThan(0);
    for (const env of ['staging', 'production']) {
      const r = await wrangler(['deploy', '--dry-run', '--env', env, '--outdir', join(dir, `dry-${env}`)]);
      expect(r.code, `${r.stdout}\n${r.stderr}`).toBe(0);
      expect(r.stdout).toContain('--dry-run: exiting now.');
      expect(r.stdout).toMatch(new RegExp(`env\\.EVENTS_QUEUE \\(workos-router-events-${env}\\)\\s+Queue`));
      expect(r.stdout).toMatch(new RegExp(`env\\.EVENTS_DLQ \\(workos-router-events-${env}-dlq\\)\\s+Queue`));
      expect(r.stdout).toMatch(new RegExp(`env\\.AUDIT_QUEUE \\(workos-audit-${env}\\)\\s+Queue`));
      expect([...r.stdout.matchAll(/env\.([A-Z_]+) \(\w+\)\s+Durable Object/g)].map((m) => m[1])).toEqual(durableObjects);
      // wrangler's own warning when an environment lacks a whole non-inherited field.
      expect(r.stdout + r.stderr).not.toMatch(/not inherited by environments/);
    }
  });

  it('wrangler dev --env staging accepts and delivers through the staging queue and its consumer', async () => {
    const sink = await startSink();
    const secret = 'whsec_staging_e2e';
    const router = await startRouter({
      args: ['--env', 'staging'],
      vars: {
        WORKOS_WEBHOOK_SECRET: secret,
        ROUTER: { destinations: [{ name: 'app', type: 'http', url: `${sink.url}/app` }], rules: [{ name: 'users', events: ['user.*'], to: ['app'] }] },
      },
    });
    try {
      expect(router.output()).toMatch(/env\.EVENTS_QUEUE \(workos-router-events-staging\)/);
      const e = makeEvent('user.created');
      const res = await postSigned(`${router.url}/webhooks/workos`, JSON.stringify(e), secret);
      expect(await res.json()).toEqual({ status: 'accepted', id: e.id });
      await sink.waitFor((reqs) => reqs.some((r) => r.path === '/app' && r.headers['x-workos-event-id'] === e.id), 30_000);
    } finally {
      await router.stop();
      await sink.close();
    }
  });
});
