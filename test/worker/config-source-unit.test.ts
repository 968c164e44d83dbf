/**
 * Where the routing config comes from (`ROUTER` or `router.json`), and the
 * build made at an isolate's startup: reused by a request's env only when it
 * holds the same config and the same secrets and bindings that config names.
 */
import { env } from 'cloudflare:workers';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { parsedConfig, prepareConfig } from '../../src/config/load';
import { FILE_IGNORED_WARNING, type HttpDestination, chooseRouterSource, parseRouterConfig } from '../../src/config/router-config';
import { routerSource } from '../../src/config/source';
import { WORKERS_ROUTER } from './router';

const CONFIG = {
  destinations: [
    { name: 'crm', type: 'http', url: 'https://crm.example.test/workos', signing_secret: 'SOURCE_TEST_SIGNING' },
    { name: 'audit', type: 'queue', queue: 'AUDIT_QUEUE' },
  ],
  rules: [{ name: 'users', events: ['user.*'], to: ['crm', 'audit'] }],
};

/** A request's env as the runtime hands it: a new object each time, holding the same bindings. */
function envWith(bindings: Record<string, unknown>): Env {
  return { ...env, ...bindings } as Env;
}

const crmSecret = (e: Env): string | undefined => {
  const r = parsedConfig(e);
  if (!r.ok) throw new Error(r.problems.join('; '));
  return (r.config.destinations.get('crm') as HttpDestination).signingSecret;
};

describe('chooseRouterSource', () => {
  it('ROUTER alone, router.json alone, neither; both: ROUTER wins, and the file is flagged as not used', () => {
    expect(chooseRouterSource({ rules: [] }, null)).toEqual({ raw: { rules: [] }, origin: 'ROUTER', fileIgnored: false });
    expect(chooseRouterSource('{"rules":[]}', null)).toEqual({ raw: '{"rules":[]}', origin: 'ROUTER', fileIgnored: false });
    expect(chooseRouterSource(undefined, { rules: [] })).toEqual({ raw: { rules: [] }, origin: 'router.json', fileIgnored: false });
    expect(chooseRouterSource('', { rules: [] })).toEqual({ raw: { rules: [] }, origin: 'router.json', fileIgnored: false });
    expect(chooseRouterSource(undefined, null)).toEqual({ raw: undefined, origin: 'ROUTER', fileIgnored: false });
    expect(chooseRouterSource({ rules: [1] }, { rules: [2] })).toEqual({ raw: { rules: [1] }, origin: 'ROUTER', fileIgnored: true });
  });

  it('property: a set ROUTER is always what is used, the file only when ROUTER is unset; both set is always flagged', () => {
    const set = fc.oneof(fc.string({ minLength: 1 }), fc.dictionary(fc.string(), fc.jsonValue()), fc.array(fc.jsonValue()), fc.integer(), fc.boolean());
    const unset = fc.constantFrom(undefined, null, '');
    fc.assert(
      fc.property(fc.oneof(set, unset), fc.oneof(set, fc.constantFrom(undefined, null)), (variable, file) => {
        const s = chooseRouterSource(variable, file);
        const inVar = variable !== undefined && variable !== null && variable !== '';
        const inFile = file !== undefined && file !== null;
        if (s.fileIgnored !== (inVar && inFile)) return false;
        return inVar || !inFile ? s.origin === 'ROUTER' && s.raw === variable : s.origin === 'router.json' && s.raw === file;
      }),
      { numRuns: 2000 },
    );
  });

  it('the workers project\'s own ROUTER binding is the config in force, whatever router.json holds (a file it overrides is logged)', () => {
    const s = routerSource(env);
    expect({ origin: s.origin, raw: s.raw }).toEqual({ origin: 'ROUTER', raw: WORKERS_ROUTER });
    const r = parsedConfig(env);
    expect(r.ok).toBe(true);
    expect(r.warnings.includes(FILE_IGNORED_WARNING)).toBe(s.fileIgnored);
  });

  it('problems of a router.json config name router.json, not ROUTER', () => {
    const lookup = () => undefined;
    expect(parseRouterConfig([], lookup, { origin: 'router.json' })).toMatchObject({ ok: false, problems: ['router.json: must be a table (object)'] });
    expect(parseRouterConfig('{"rules":[],"rules":[]}', lookup, { origin: 'router.json' })).toMatchObject({ ok: false, problems: ['router.json: rules is written twice (JSON would keep only the last)'] });
    const unknown = parseRouterConfig({ destinations: [], rules: [], rulez: [] }, lookup, { origin: 'router.json' });
    expect(unknown.ok ? [] : unknown.problems).toContain('router.json.rulez: unknown field (did you mean "rules"?)');
  });
});

describe('prepareConfig: the startup build, and which requests reuse it', () => {
  it('a request env holding the same config object and secrets reuses the startup build (the same result)', () => {
    const startup = envWith({ ROUTER: CONFIG, SOURCE_TEST_SIGNING: 'secret-1' });
    prepareConfig(startup);
    const a = envWith({ ROUTER: CONFIG, SOURCE_TEST_SIGNING: 'secret-1' });
    const b = envWith({ ROUTER: CONFIG, SOURCE_TEST_SIGNING: 'secret-1' });
    expect(parsedConfig(a)).toBe(parsedConfig(b));
    expect(crmSecret(a)).toBe('secret-1');
  });

  it('the same config as JSON text (equal, not the same string object) reuses it too', () => {
    const text = JSON.stringify(CONFIG);
    prepareConfig(envWith({ ROUTER: text, SOURCE_TEST_SIGNING: 'secret-1' }));
    const a = envWith({ ROUTER: `${text}`, SOURCE_TEST_SIGNING: 'secret-1' });
    const b = envWith({ ROUTER: JSON.stringify(CONFIG), SOURCE_TEST_SIGNING: 'secret-1' });
    expect(parsedConfig(a)).toBe(parsedConfig(b));
  });

  it('a secret the config names with another value: built anew, with the value of the request env', () => {
    prepareConfig(envWith({ ROUTER: CONFIG, SOURCE_TEST_SIGNING: 'secret-1' }));
    const rotated = envWith({ ROUTER: CONFIG, SOURCE_TEST_SIGNING: 'secret-2' });
    const same = envWith({ ROUTER: CONFIG, SOURCE_TEST_SIGNING: 'secret-1' });
    expect(parsedConfig(rotated)).not.toBe(parsedConfig(same));
    expect(crmSecret(rotated)).toBe('secret-2');
    expect(crmSecret(same)).toBe('secret-1');
  });

  it('a secret the config names, missing from the request env: built anew, and invalid there', () => {
    prepareConfig(envWith({ ROUTER: CONFIG, SOURCE_TEST_SIGNING: 'secret-1' }));
    const r = parsedConfig(envWith({ ROUTER: CONFIG, SOURCE_TEST_SIGNING: undefined }));
    expect(r.ok).toBe(false);
    expect(r.ok ? [] : r.problems.join('\n')).toContain('SOURCE_TEST_SIGNING');
  });

  it('a queue binding the config names, missing from the request env: built anew, and invalid there', () => {
    prepareConfig(envWith({ ROUTER: CONFIG, SOURCE_TEST_SIGNING: 'secret-1' }));
    const r = parsedConfig(envWith({ ROUTER: CONFIG, SOURCE_TEST_SIGNING: 'secret-1', AUDIT_QUEUE: undefined }));
    expect(r.ok).toBe(false);
    expect(r.ok ? [] : r.problems.join('\n')).toContain('no queue producer binding named "AUDIT_QUEUE"');
  });

  it('another config (a different object, even with equal contents): built anew', () => {
    prepareConfig(envWith({ ROUTER: CONFIG, SOURCE_TEST_SIGNING: 'secret-1' }));
    const shared = parsedConfig(envWith({ ROUTER: CONFIG, SOURCE_TEST_SIGNING: 'secret-1' }));
    const other = parsedConfig(envWith({ ROUTER: structuredClone(CONFIG), SOURCE_TEST_SIGNING: 'secret-1' }));
    expect(other.ok).toBe(true);
    expect(other).not.toBe(shared);
  });

  it('the startup build has every catalog type matched already, and routes like a fresh build', () => {
    prepareConfig(envWith({ ROUTER: CONFIG, SOURCE_TEST_SIGNING: 'secret-1' }));
    const r = parsedConfig(envWith({ ROUTER: CONFIG, SOURCE_TEST_SIGNING: 'secret-1' }));
    const fresh = parseRouterConfig(CONFIG, (n) => (n === 'SOURCE_TEST_SIGNING' ? 'secret-1' : (env as unknown as Record<string, unknown>)[n]));
    if (!r.ok || !fresh.ok) throw new Error('config invalid');
    for (const type of ['user.created', 'dsync.user.created', 'user.custom_type']) {
      expect(r.config.matcher.rulesForType(type).map((x) => x.name)).toEqual(fresh.config.matcher.rulesForType(type).map((x) => x.name));
    }
  });
});
