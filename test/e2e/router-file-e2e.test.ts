/**
 * A routing config larger than a variable may hold: `router.json`, bundled
 * with the Worker. A project copy whose wrangler.toml has no `[vars.ROUTER]`
 * and whose router.json holds 10,000 rules (one HTTP destination per tenant,
 * selected by `data.organization_id`) is checked, bundled as `wrangler deploy`
 * bundles it, and run by a real `wrangler dev`: events of tenants at both ends
 * of the list reach their own destination and nobody else's. Both places set
 * in wrangler.toml is refused by the check; a ROUTER given at run time
 * overrides the file, and the Worker says so.
 */
import { execFile } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { gzipSync } from 'node:zlib';
import { parse, stringify } from 'smol-toml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { type RouterProcess, startRouter } from '../../scripts/lib/dev-server';
import { STARTUP_RULES_WARNING, routerFileWarnings } from '../../scripts/wrangler-config';
import { postSigned } from '../../scripts/lib/sign';
import { type Sink, startSink } from '../../scripts/lib/sink';
import { makeEvent } from '../fixtures/events';

const ROOT = resolve(new URL('../..', import.meta.url).pathname);
const SECRET = 'whsec_router_file_e2e';
const ADMIN_TOKEN = 'router-file-admin-token';

async function configStatus(url: string): Promise<Record<string, unknown>> {
  const res = await fetch(`${url}/admin/status`, { headers: { Authorization: `Bearer ${ADMIN_TOKEN}` } });
  expect(res.status).toBe(200);
  return ((await res.json()) as { config: Record<string, unknown> }).config;
}
const TENANTS = 5_000; // two rules each: 10,000 rules

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function exec(cmd: string, args: string[], cwd: string, timeout = 120_000): Promise<Run> {
  return new Promise((done) => {
    execFile(
      cmd,
      args,
      { cwd, timeout, maxBuffer: 20 * 1024 * 1024, env: { ...process.env, NO_COLOR: '1', FORCE_COLOR: '0', WRANGLER_SEND_METRICS: 'false', CLOUDFLARE_ENV: '' } },
      (err, stdout, stderr) => done({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : -1, stdout, stderr }),
    );
  });
}

const org = (t: number) => `org_tenant_${t}`;

/** 10,000 rules: per tenant, its directory events and its user events, each to the tenant's own destination. */
function tenantConfig(sinkUrl: string): { destinations: unknown[]; rules: unknown[] } {
  const destinations: unknown[] = [];
  const rules: unknown[] = [];
  for (let t = 0; t < TENANTS; t++) {
    destinations.push({ name: `t${t}`, type: 'http', url: `${sinkUrl}/t/${t}` });
    rules.push({ name: `t${t}-dsync`, events: ['dsync.*'], where: { 'data.organization_id': org(t) }, to: [`t${t}`] });
    rules.push({ name: `t${t}-users`, events: ['organization_membership.*'], where: { 'data.organization_id': org(t) }, to: [`t${t}`] });
  }
  return { destinations, rules };
}

/** A copy of the project (src, package.json, node_modules linked) whose wrangler.toml has no ROUTER and no environments. */
function projectCopy(dir: string, routerJson: unknown, keepRouterVar = false): string {
  cpSync(resolve(ROOT, 'src'), join(dir, 'src'), { recursive: true });
  for (const f of ['package.json', 'tsconfig.json']) cpSync(resolve(ROOT, f), join(dir, f));
  symlinkSync(resolve(ROOT, 'node_modules'), join(dir, 'node_modules'));
  const toml = parse(readFileSync(resolve(ROOT, 'wrangler.toml'), 'utf8')) as Record<string, unknown>;
  delete toml.env;
  const vars = toml.vars as Record<string, unknown>;
  if (!keepRouterVar) delete vars.ROUTER;
  writeFileSync(join(dir, 'wrangler.toml'), stringify(toml));
  writeFileSync(join(dir, 'dev.env'), `WORKOS_WEBHOOK_SECRET=${SECRET}\nADMIN_TOKEN=router-file-admin\n`);
  writeFileSync(join(dir, 'router.json'), `${JSON.stringify(routerJson, null, 1)}\n`);
  return join(dir, 'wrangler.toml');
}

let base: string;
let sink: Sink;
let config: { destinations: unknown[]; rules: unknown[] };

beforeAll(async () => {
  base = mkdtempSync(join(tmpdir(), 'router-file-'));
  sink = await startSink();
  config = tenantConfig(sink.url);
});

afterAll(async () => {
  await sink?.close();
  rmSync(base, { recursive: true, force: true });
});

describe('router.json: a 10,000-rule config', () => {
  let dir: string;
  let wranglerToml: string;
  let router: RouterProcess | undefined;

  beforeAll(() => {
    dir = mkdtempSync(join(base, 'big-'));
    wranglerToml = projectCopy(dir, config);
  });

  afterAll(async () => {
    await router?.stop();
  });

  it('npm run check validates it as the Worker will, and says where it comes from', async () => {
    const r = await exec(resolve(ROOT, 'node_modules/.bin/tsx'), [resolve(ROOT, 'scripts/check.ts'), wranglerToml], dir);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/✓ .*wrangler\.toml: router\.json is valid \(10000 rule\(s\), 5000 destination\(s\); router\.json, \d+\.\d KB, bundled with the Worker\)\./);
    expect(r.stderr).not.toContain('5 KB');
    expect(r.stderr).not.toContain('! warning');
  });

  it('npm run check warns of a file that nears the Worker size limit, and of a rule count whose startup build nears its limit', () => {
    const text = readFileSync(join(dir, 'router.json'), 'utf8');
    expect(routerFileWarnings(text, 10_000)).toEqual([]);
    expect(routerFileWarnings(text, STARTUP_RULES_WARNING + 1)).toEqual([expect.stringContaining(`router.json has ${STARTUP_RULES_WARNING + 1} rules: the Worker builds them at each isolate's startup`)]);
    // Incompressible: 4 MB of base64 is about 3 MB compressed.
    const heavy = JSON.stringify({ blob: randomBytes(3 * 1024 * 1024).toString('base64') });
    expect(routerFileWarnings(heavy, 1)).toEqual([expect.stringMatching(/^router\.json is 3\.\d MB compressed: .* 3 MB Worker size limit/)]);
  });

  it('npm run route explains an event by it: the last tenant\'s event goes to the last tenant only', async () => {
    const file = join(dir, 'event.json');
    writeFileSync(file, JSON.stringify(makeEvent('dsync.user.created', { data: { organization_id: org(TENANTS - 1) } })));
    const r = await exec(resolve(ROOT, 'node_modules/.bin/tsx'), [resolve(ROOT, 'scripts/route.ts'), file, '--config', wranglerToml], dir);
    expect(r.code, r.stderr).toBe(0);
    const block = r.stdout.slice(r.stdout.indexOf('Destinations'));
    expect([...block.matchAll(/^ {2}[✓?] (\S+)/gm)].map((m) => m[1])).toEqual([`t${TENANTS - 1}`]);
  });

  it('wrangler bundles it with the Worker, within the Free plan\'s 3 MB (compressed)', async () => {
    const out = join(dir, 'dry-run');
    const r = await exec(process.execPath, [resolve(ROOT, 'node_modules/wrangler/bin/wrangler.js'), 'deploy', '--dry-run', '--config', wranglerToml, '--outdir', out], dir);
    expect(r.code, r.stderr + r.stdout).toBe(0);
    const files = readdirSync(out).filter((f) => f.endsWith('.js'));
    expect(files.length).toBeGreaterThan(0);
    const bundle = files.map((f) => readFileSync(join(out, f))).reduce((a, b) => Buffer.concat([a, b]));
    // The rules are in the bundle (the last tenant's destination name and org), not read at run time.
    expect(bundle.includes(org(TENANTS - 1))).toBe(true);
    expect(gzipSync(bundle).length).toBeLessThan(3 * 1024 * 1024);
    expect(statSync(join(dir, 'router.json')).size).toBeGreaterThan(5 * 1024); // far above what a variable may hold
  });

  it('wrangler dev routes events of the first and the last tenant to their own destination only', async () => {
    router = await startRouter({ config: wranglerToml, vars: { WORKOS_WEBHOOK_SECRET: SECRET, ADMIN_TOKEN } });
    expect(await configStatus(router.url)).toEqual({ valid: true, source: 'router.json', rules: 10_000, destinations: 5_000, warnings: [] });
    const first = makeEvent('dsync.user.created', { data: { organization_id: org(0) } });
    const last = makeEvent('organization_membership.created', { data: { organization_id: org(TENANTS - 1) } });
    const nobody = makeEvent('dsync.user.created', { data: { organization_id: 'org_no_such_tenant' } });
    for (const e of [nobody, first, last]) {
      const res = await postSigned(`${router.url}/webhooks/workos`, JSON.stringify(e), SECRET);
      expect(res.status, await res.clone().text()).toBe(200);
      expect(((await res.json()) as { status: string }).status).toBe('accepted');
    }
    await expect.poll(() => sink.requests.filter((r) => r.path === `/t/${TENANTS - 1}`).length, { timeout: 60_000, interval: 250 }).toBe(1);
    await expect.poll(() => sink.requests.filter((r) => r.path === '/t/0').length, { timeout: 60_000, interval: 250 }).toBe(1);
    // Both delivered (the positive signal); the unmatched event, sent before them, reached no destination.
    const ids = (path: string) => sink.requests.filter((r) => r.path === path).map((r) => (JSON.parse(r.body.toString()) as { id: string }).id);
    expect(ids('/t/0')).toEqual([first.id]);
    expect(ids(`/t/${TENANTS - 1}`)).toEqual([last.id]);
    expect(sink.requests.map((r) => r.body.toString()).filter((b) => b.includes(nobody.id))).toEqual([]);
    expect(sink.requests).toHaveLength(2);
    expect(router.output()).not.toContain('config_invalid');
  });
});

describe('router.json and ROUTER both set', () => {
  const routeTo = (path: string) => ({ destinations: [{ name: 'd', type: 'http', url: `${sink.url}${path}` }], rules: [{ name: 'users', events: ['user.*'], to: ['d'] }] });

  it('in wrangler.toml: npm run check refuses it, naming both', async () => {
    const dir = mkdtempSync(join(base, 'both-check-'));
    const wranglerToml = projectCopy(dir, routeTo('/file'), true);
    const r = await exec(resolve(ROOT, 'node_modules/.bin/tsx'), [resolve(ROOT, 'scripts/check.ts'), wranglerToml], dir);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('✗ ROUTER and router.json both hold a routing config: keep one');
  });

  it('ROUTER given at run time (as the tests and npm run demo give theirs) overrides the file, and the Worker logs that the file is not used', async () => {
    const dir = mkdtempSync(join(base, 'both-dev-'));
    const wranglerToml = projectCopy(dir, routeTo('/file'));
    const router = await startRouter({ config: wranglerToml, vars: { WORKOS_WEBHOOK_SECRET: SECRET, ADMIN_TOKEN, ROUTER: routeTo('/var') } });
    try {
      expect(await configStatus(router.url)).toMatchObject({ valid: true, source: 'ROUTER', rules: 1, warnings: [expect.stringContaining('router.json holds a routing config but ROUTER is set')] });
      const e = makeEvent('user.created');
      const res = await postSigned(`${router.url}/webhooks/workos`, JSON.stringify(e), SECRET);
      expect(res.status, await res.clone().text()).toBe(200);
      await expect.poll(() => sink.requests.filter((r) => r.path === '/var').length, { timeout: 60_000, interval: 250 }).toBe(1);
      expect(sink.requests.filter((r) => r.path === '/file')).toEqual([]);
      await expect.poll(() => router.output(), { timeout: 10_000 }).toContain('router.json holds a routing config but ROUTER is set, so router.json is not used');
      expect(router.output()).not.toContain('config_invalid');
    } finally {
      await router.stop();
    }
  });

  it('an invalid ROUTER given at run time still says router.json is not used (in /admin/status and the log): the file is good, the variable shadowing it is not', async () => {
    const dir = mkdtempSync(join(base, 'both-invalid-'));
    const wranglerToml = projectCopy(dir, routeTo('/file'));
    const router = await startRouter({ config: wranglerToml, vars: { WORKOS_WEBHOOK_SECRET: SECRET, ADMIN_TOKEN, ROUTER: { rules: 'not a list' } } });
    try {
      expect(await configStatus(router.url)).toMatchObject({
        valid: false,
        source: 'ROUTER',
        problems: [expect.stringContaining('rules')],
        warnings: [expect.stringContaining('router.json holds a routing config but ROUTER is set')],
      });
      const res = await postSigned(`${router.url}/webhooks/workos`, JSON.stringify(makeEvent('user.created')), SECRET);
      expect(res.status).toBe(500);
      expect(((await res.json()) as { error: string }).error).toBe('config_invalid');
      await expect.poll(() => router.output(), { timeout: 10_000 }).toContain('router.json holds a routing config but ROUTER is set, so router.json is not used');
    } finally {
      await router.stop();
    }
  });
});
