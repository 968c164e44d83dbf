/**
 * The command-line tools as a user runs them: `route` and `check` against
 * wrangler configs written to a temp dir, and `send` against a real
 * `wrangler dev` (one router for the file).
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type RouterProcess, startRouter } from '../../scripts/lib/dev-server';
import { makeEvent } from '../fixtures/events';

const ROOT = resolve(new URL('../..', import.meta.url).pathname);
const TSX = resolve(ROOT, 'node_modules/.bin/tsx');

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs `tsx scripts/<script> ...args` from the project root; never rejects. */
function run(script: string, args: string[], timeout = 60_000): Promise<Run> {
  return new Promise((done) => {
    execFile(
      TSX,
      [`scripts/${script}`, ...args],
      { cwd: ROOT, timeout, env: { ...process.env, NO_COLOR: '1', FORCE_COLOR: '0' }, maxBuffer: 10 * 1024 * 1024 },
      (err, stdout, stderr) => {
        const code = err === null ? 0 : typeof err.code === 'number' ? err.code : -1;
        done({ code, stdout, stderr });
      },
    );
  });
}

let dir: string;
let n = 0;

/** Writes a wrangler.toml (with the AUDIT_QUEUE producer unless `queues` is false) and returns its path. */
function config(router: string, opts: { queues?: boolean } = {}): string {
  const queues = opts.queues === false ? '' : '[[queues.producers]]\nbinding = "AUDIT_QUEUE"\nqueue = "workos-audit"\n';
  const path = join(dir, `wrangler-${++n}.toml`);
  writeFileSync(path, `name = "cli-test"\nmain = "src/index.ts"\n${queues}\n${router}\n`);
  return path;
}

function jsonFile(value: unknown): string {
  const path = join(dir, `event-${++n}.json`);
  writeFileSync(path, JSON.stringify(value, null, 2));
  return path;
}

const AUDIT = `
[[vars.ROUTER.destinations]]
name = "audit"
type = "queue"
queue = "AUDIT_QUEUE"
`;
const CRM = `
[[vars.ROUTER.destinations]]
name = "crm"
type = "http"
url = "https://crm.example.com/hooks"
`;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'router-cli-'));
});

afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

describe('npm run route', () => {
  it('wildcard: "*" selects any type; a family pattern does not select another family', async () => {
    const path = config(`${AUDIT}${CRM}
[[vars.ROUTER.rules]]
name = "users"
events = ["user.*"]
to = ["crm"]

[[vars.ROUTER.rules]]
name = "everything"
events = ["*"]
to = ["audit"]
`);
    const r = await run('route.ts', ['organization.created', '--config', path]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('✗ users: does not match');
    expect(r.stdout).toContain('· "user.*" does not include it');
    expect(r.stdout).toContain('✓ everything: matches');
    expect(r.stdout).toContain('✓ "*" includes organization.created');
    const destinations = r.stdout.slice(r.stdout.indexOf('Destinations'));
    expect(destinations).toMatch(/✓ audit\s+queue → AUDIT_QUEUE\s+via everything/);
    expect(destinations).not.toContain('crm');

    const user = await run('route.ts', ['user.deleted', '--config', path]);
    expect(user.code).toBe(0);
    expect(user.stdout).toContain('✓ users: matches');
    expect(user.stdout).toContain('✓ "user.*" includes user.deleted');
    expect(user.stdout.slice(user.stdout.indexOf('Destinations'))).toMatch(/✓ crm\s+http → https:\/\/crm\.example\.com\/hooks\s+via users/);
  });

  it('exclusion: "!dsync.group.updated" removes that type from "dsync.*"', async () => {
    const path = config(`${CRM}
[[vars.ROUTER.rules]]
name = "directory-sync"
events = ["dsync.*", "!dsync.group.updated"]
to = ["crm"]
`);
    const excluded = await run('route.ts', ['dsync.group.updated', '--config', path]);
    expect(excluded.code).toBe(0);
    expect(excluded.stdout).toContain('✗ directory-sync: does not match');
    expect(excluded.stdout).toContain('✓ "dsync.*" includes dsync.group.updated');
    expect(excluded.stdout).toContain('✗ "!dsync.group.updated" excludes dsync.group.updated');
    expect(excluded.stdout).toContain('Destinations: none');

    const kept = await run('route.ts', ['dsync.group.created', '--config', path]);
    expect(kept.code).toBe(0);
    expect(kept.stdout).toContain('✓ directory-sync: matches');
    expect(kept.stdout).toContain('· "!dsync.group.updated" does not apply');
    expect(kept.stdout).toMatch(/✓ crm\s+http/);
  });

  describe('where', () => {
    let path: string;
    beforeAll(() => {
      path = config(`${AUDIT}${CRM}
[[vars.ROUTER.rules]]
name = "example-users"
events = ["user.created"]
to = ["crm"]
[vars.ROUTER.rules.where]
"data.email" = { suffix = "@example.com" }
"data.locale" = ["en-GB", "en-US"]

[[vars.ROUTER.rules]]
name = "audit-all"
events = ["*"]
to = ["audit"]
`);
    });

    it('with a bare type, says the rule would match if where holds', async () => {
      const r = await run('route.ts', ['user.created', '--config', path]);
      expect(r.code).toBe(0);
      expect(r.stdout).toContain('? example-users: would match if where holds');
      expect(r.stdout).toContain('data.email ends with "@example.com"');
      expect(r.stdout).toMatch(/\? crm\s+http.*only via example-users if where holds/);
      expect(r.stdout).toMatch(/✓ audit\s+queue/);
    });

    it('with a payload file that satisfies every condition: matches, with the values found', async () => {
      const file = jsonFile(makeEvent('user.created', { data: { email: 'ada@example.com', locale: 'en-GB' } }));
      const r = await run('route.ts', [file, '--config', path]);
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
      expect(r.stdout).toContain('✓ example-users: matches');
      expect(r.stdout).toMatch(/✓ data\.email\s+ends with "@example\.com"\s+found "ada@example\.com"/);
      expect(r.stdout).toMatch(/✓ data\.locale\s+is any of \["en-GB","en-US"\]\s+found "en-GB"/);
      expect(r.stdout).toMatch(/✓ crm\s+http.*via example-users/);
    });

    it('with a payload file that fails a condition: no match, and which condition failed', async () => {
      const file = jsonFile(makeEvent('user.created', { data: { email: 'ada@globex.net', locale: 'en-GB' } }));
      const r = await run('route.ts', [file, '--config', path]);
      expect(r.code).toBe(0);
      expect(r.stdout).toContain('✗ example-users: does not match');
      expect(r.stdout).toMatch(/✗ data\.email\s+ends with "@example\.com"\s+found "ada@globex\.net"/);
      expect(r.stdout).toMatch(/✓ data\.locale\s+is any of .*found "en-GB"/);
      const destinations = r.stdout.slice(r.stdout.indexOf('Destinations'));
      expect(destinations).not.toContain('crm');
      expect(destinations).toMatch(/✓ audit/);
    });

    it('a missing field is reported as missing', async () => {
      const event = makeEvent('user.created') as unknown as { data: Record<string, unknown> };
      delete event.data.locale;
      const r = await run('route.ts', [jsonFile(event), '--config', path]);
      expect(r.code).toBe(0);
      expect(r.stdout).toMatch(/✗ data\.locale\s+is any of .*found \(missing\)/);
    });
  });

  it('an unknown type gets a did-you-mean warning and is still explained (exit 0)', async () => {
    const path = config(`${AUDIT}
[[vars.ROUTER.rules]]
name = "everything"
events = ["*"]
to = ["audit"]
`);
    const r = await run('route.ts', ['dsync.user.create', '--config', path]);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('"dsync.user.create" is not a known WorkOS event type (did you mean "dsync.user.created"?)');
    expect(r.stdout).toContain('✓ everything: matches');
  });

  it('exit 2 on usage errors and invalid configs', async () => {
    const noArgs = await run('route.ts', []);
    expect(noArgs.code).toBe(2);
    expect(noArgs.stderr).toContain('usage: npm run route');
    expect((await run('route.ts', ['user.created', '--bogus'])).code).toBe(2);
    expect((await run('route.ts', ['user.created', '--config', join(dir, 'absent.toml')])).code).toBe(2);
    const notEvent = await run('route.ts', [jsonFile({ hello: 'world' })]);
    expect(notEvent.code).toBe(2);
    expect(notEvent.stderr).toContain('is not a WorkOS event');
    const broken = await run('route.ts', ['user.created', '--config', config(`${CRM}
[[vars.ROUTER.rules]]
name = "r"
events = ["user.*"]
to = ["crm2"]
`)]);
    expect(broken.code).toBe(2);
    expect(broken.stderr).toContain('rules[0].to[0]: unknown destination "crm2"');
  });

  it('reads the project wrangler.toml by default', async () => {
    const r = await run('route.ts', ['user.created']);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(resolve(ROOT, 'wrangler.toml'));
  });
});

describe('npm run check', () => {
  const rule = (name: string, events: string, to: string) => `
[[vars.ROUTER.rules]]
name = "${name}"
events = ${events}
to = ${to}
`;

  const cases: { name: string; toml: () => string; code: 0 | 1; errors?: string[]; warnings?: string[] }[] = [
    {
      name: 'unknown destination (with its path and a suggestion)',
      toml: () => config(`${CRM}${rule('users', '["user.*"]', '["crm"]')}${rule('orgs', '["organization.*"]', '["crm2"]')}`),
      code: 1,
      errors: ['✗ rules[1].to[0]: unknown destination "crm2" (did you mean "crm"?)'],
    },
    {
      name: 'duplicate destination and rule names',
      toml: () => config(`${CRM}${CRM}${rule('a', '["user.*"]', '["crm"]')}${rule('a', '["dsync.*"]', '["crm"]')}`),
      code: 1,
      errors: ['✗ destinations[1].name: duplicate destination name "crm"', '✗ rules[1].name: duplicate rule name "a"'],
    },
    {
      name: 'unknown destination type',
      toml: () =>
        config(`
[[vars.ROUTER.destinations]]
name = "crm"
type = "webhook"
url = "https://crm.example.com/hooks"
${rule('users', '["user.*"]', '["crm"]')}`),
      code: 1,
      errors: ['✗ destinations[0].type: unknown type "webhook" (use "queue", "http" or "slack")'],
    },
    {
      name: 'empty pattern',
      toml: () => config(`${CRM}${rule('users', '["user.*", ""]', '["crm"]')}`),
      code: 1,
      errors: ['✗ rules[0].events[1]: empty pattern'],
    },
    {
      name: 'bad where operator',
      toml: () =>
        config(`${CRM}${rule('users', '["user.*"]', '["crm"]')}[vars.ROUTER.rules.where]
"data.email" = { endswith = "@example.com" }
`),
      code: 1,
      errors: ['✗ rules[0].where["data.email"].endswith: unknown operator (use prefix, suffix, exists or not)'],
    },
    {
      name: 'missing queue binding',
      toml: () => config(`${AUDIT}${rule('everything', '["*"]', '["audit"]')}`, { queues: false }),
      code: 1,
      errors: ['✗ destinations[0].queue: no queue producer binding named "AUDIT_QUEUE" (declare it in [[queues.producers]])'],
    },
    {
      name: 'misspelled exact event name: a warning with a suggestion, still valid',
      toml: () => config(`${CRM}${rule('directory', '["dsync.user.create"]', '["crm"]')}`),
      code: 0,
      warnings: ['! warning: rules[0].events[0]: "dsync.user.create" is not a known WorkOS event type (did you mean "dsync.user.created"?)'],
    },
    {
      name: 'unknown event type and a pattern that matches nothing: warnings',
      toml: () => config(`${CRM}${rule('billing', '["billing.invoice.paid", "billing.*"]', '["crm"]')}`),
      code: 0,
      warnings: [
        '! warning: rules[0].events[0]: "billing.invoice.paid" is not a known WorkOS event type\n',
        '! warning: rules[0].events[1]: pattern "billing.*" matches no known WorkOS event type',
      ],
    },
    {
      name: 'ROUTER larger than the 5 KB Cloudflare allows a variable: a warning, still valid',
      toml: () => config(`${CRM}${Array.from({ length: 60 }, (_, i) => rule(`users-of-a-rather-long-tenant-name-${i}`, '["user.created", "user.updated"]', '["crm"]')).join('')}`),
      code: 0,
      warnings: ["! warning: ROUTER is ", "KB as uploaded (JSON); Cloudflare's limits page lists 5 KB per environment variable"],
    },
    {
      name: 'unused destination: a warning',
      toml: () => config(`${CRM}${AUDIT}${rule('users', '["user.*"]', '["crm"]')}`),
      code: 0,
      warnings: ['! warning: destinations: "audit" is not used by any rule'],
    },
  ];

  for (const c of cases) {
    it(c.name, async () => {
      const path = c.toml();
      const r = await run('check.ts', [path]);
      expect(r.code, `${r.stdout}\n${r.stderr}`).toBe(c.code);
      for (const e of c.errors ?? []) expect(r.stderr).toContain(e);
      for (const w of c.warnings ?? []) expect(r.stderr).toContain(w);
      if (c.code === 0) {
        expect(r.stdout).toContain(`✓ ${path}: ROUTER is valid`);
        expect(r.stderr).not.toContain('✗');
      } else {
        expect(r.stderr).toMatch(/problem\(s\); the Worker would answer every webhook with 500 config_invalid/);
      }
    });
  }

  it('a valid config passes without warnings', async () => {
    const path = config(`${AUDIT}${CRM}${rule('users', '["user.*"]', '["crm"]')}${rule('all', '["*"]', '["audit"]')}`);
    const r = await run('check.ts', [path]);
    expect(r.code).toBe(0);
    expect(r.stderr).toBe('');
    expect(r.stdout).toMatch(/ROUTER is valid \(2 rule\(s\), 2 destination\(s\); \d+\.\d KB of the 5 KB a variable may hold\)/);
  });

  it('a secret not set locally: a warning naming it, except a name that looks like a value pasted into the field (never printed)', async () => {
    const crm = '[[vars.ROUTER.destinations]]\nname = "crm"\ntype = "http"\nurl_secret = "CRM_URL"\nsigning_secret = "whsec_live_Abc123xyz"\n';
    const path = config(`${AUDIT}${crm}${rule('all', '["*"]', '["audit", "crm"]')}`);
    const r = await run('check.ts', [path]);
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/! warning: secret "CRM_URL" is not set locally \(.*\); before deploying run: wrangler secret put CRM_URL/);
    expect(r.stderr).toMatch(/! warning: a secret ROUTER names is not set locally \(.*\); its name is not shown/);
    expect(`${r.stdout}${r.stderr}`).not.toContain('whsec_live_Abc123xyz');
  });
});

describe('npm run send (against wrangler dev)', () => {
  let router: RouterProcess;
  const devSecret = /^WORKOS_WEBHOOK_SECRET=(.*)$/m.exec(readFileSync(resolve(ROOT, 'dev.env'), 'utf8'))?.[1]?.trim() ?? '';

  beforeAll(async () => {
    expect(devSecret).not.toBe('');
    // The dev.env secret, as `npm run dev` would use: send's default.
    router = await startRouter({ vars: { WORKOS_WEBHOOK_SECRET: devSecret } });
  }, 120_000);

  afterAll(async () => {
    await router?.stop();
  });

  const answers = (stdout: string) =>
    [...stdout.matchAll(/(event_[0-9A-Z]{26}) {2}\d+ B {2}→ (\d{3}) (\{.*\})$/gm)].map((m) => ({
      id: m[1] as string,
      status: Number(m[2]),
      body: JSON.parse(m[3] as string) as Record<string, unknown>,
    }));

  it('accepted, then --repeat re-sends the same id: duplicate (URL without a path gets /webhooks/workos)', async () => {
    const r = await run('send.ts', ['user.created', '--url', router.url, '--repeat', '2']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain(`${router.url}/webhooks/workos`);
    const got = answers(r.stdout);
    expect(got).toHaveLength(3);
    const id = got[0]!.id;
    expect(got.map((a) => a.id)).toEqual([id, id, id]);
    expect(got.map((a) => a.body)).toEqual([
      { status: 'accepted', id },
      { status: 'duplicate', id },
      { status: 'duplicate', id },
    ]);
    expect(r.stdout).toContain('3 request(s): 1 accepted, 2 duplicate');
    // Never the secret nor a signature.
    for (const text of [r.stdout, r.stderr]) {
      expect(text).not.toContain(devSecret);
      expect(text).not.toMatch(/v1=|t=\d/);
    }
  });

  it('--count sends distinct events', async () => {
    const r = await run('send.ts', ['dsync.user.created', '--url', `${router.url}/webhooks/workos`, '--count', '3']);
    expect(r.code, r.stderr).toBe(0);
    const got = answers(r.stdout);
    expect(got).toHaveLength(3);
    expect(new Set(got.map((a) => a.id)).size).toBe(3);
    expect(got.every((a) => a.status === 200 && a.body.status === 'accepted')).toBe(true);
  });

  it('--file sends the given payload with a fresh id', async () => {
    const file = jsonFile(makeEvent('organization.updated', { id: 'event_01FIXEDIDFROMTHEFILE00000' }));
    const r = await run('send.ts', ['--file', file, '--url', router.url]);
    expect(r.code, r.stderr).toBe(0);
    const [a] = answers(r.stdout);
    expect(a?.body.status).toBe('accepted');
    expect(a?.id).not.toBe('event_01FIXEDIDFROMTHEFILE00000');
    expect(r.stdout).toContain('organization.updated');
  });

  it('a wrong --secret is rejected (401 signature_mismatch, exit 1) and never printed', async () => {
    const wrong = 'whsec_definitely_not_the_right_one';
    const r = await run('send.ts', ['user.created', '--url', router.url, '--secret', wrong]);
    expect(r.code).toBe(1);
    const [a] = answers(r.stdout);
    expect(a?.status).toBe(401);
    expect(a?.body.error).toBe('signature_mismatch');
    expect(r.stdout + r.stderr).not.toContain(wrong);
  });

  it('usage errors exit 2 (unknown type with a suggestion, bad numbers)', async () => {
    const typo = await run('send.ts', ['user.create', '--url', router.url]);
    expect(typo.code).toBe(2);
    expect(typo.stderr).toContain('(did you mean "user.created"?)');
    expect((await run('send.ts', ['user.created', '--count', '0'])).code).toBe(2);
    expect((await run('send.ts', ['user.created', '--repeat', 'x'])).code).toBe(2);
    expect((await run('send.ts', [])).code).toBe(2);
  });
});
