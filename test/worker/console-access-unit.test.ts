/**
 * Cloudflare Access assertions (src/console/access.ts), verified with jose
 * for real: RSA keys are generated here, tokens signed here, and only the
 * network edge is played — `fetch` answers the team's certs URL (or fails).
 * Every test uses a team domain of its own (the key sets are cached per
 * isolate per team domain) and checks that its fetches went to exactly that
 * domain's certs URL, or that garbage caused no fetch at all.
 */
import { CompactSign, SignJWT, exportJWK, exportSPKI, generateKeyPair } from 'jose';
import type { CryptoKey as JoseCryptoKey, JWK, JWTPayload } from 'jose';
import { afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { normalizeTeamDomain, verifyAccessJwt } from '../../src/console/access';

const AUD = 'f3c1a6b0e2d94c0a8e7b5d1c9a2f4e6b8d0c3a5f7e9b1d2c4a6e8f0a1b3c5d7e';
const KID = 'access-key-1';
const EMAIL = 'operator@example.com';

let signingKey: JoseCryptoKey;
let otherKey: JoseCryptoKey;
let jwk: JWK;

beforeAll(async () => {
  const pair = await generateKeyPair('RS256', { extractable: true });
  signingKey = pair.privateKey;
  jwk = { ...(await exportJWK(pair.publicKey)), kid: KID, alg: 'RS256', use: 'sig' };
  otherKey = (await generateKeyPair('RS256', { extractable: true })).privateKey;
}, 60_000);

afterEach(() => vi.restoreAllMocks());

let domains = 0;
/** A team domain no other test uses. */
function freshDomain(): string {
  domains += 1;
  return `team-${domains}-${crypto.randomUUID().slice(0, 8)}.cloudflareaccess.com`;
}

const certsUrl = (domain: string) => `https://${domain}/cdn-cgi/access/certs`;

type Responder = () => Response | Promise<Response>;

/** Plays the network: answers fetches with `respond` (the team's key set by default); returns the URLs fetched. */
function network(respond: Responder = () => Response.json({ keys: [jwk] })): string[] {
  const urls: string[] = [];
  vi.spyOn(globalThis, 'fetch').mockImplementation(async (input) => {
    urls.push(input instanceof Request ? input.url : String(input));
    return respond();
  });
  return urls;
}

interface TokenOptions {
  domain: string;
  key?: JoseCryptoKey;
  kid?: string;
  iss?: string | null;
  aud?: string | string[] | null;
  exp?: number | string | null;
  nbf?: number;
  sub?: string | null;
  claims?: JWTPayload;
}

async function token(o: TokenOptions): Promise<string> {
  const jwt = new SignJWT({ email: EMAIL, type: 'app', ...o.claims }).setProtectedHeader({ alg: 'RS256', kid: o.kid ?? KID }).setIssuedAt();
  if (o.iss !== null) jwt.setIssuer(o.iss ?? `https://${o.domain}`);
  if (o.aud !== null) jwt.setAudience(o.aud ?? AUD);
  if (o.exp !== null) jwt.setExpirationTime(o.exp ?? '5m');
  if (o.sub !== null) jwt.setSubject(o.sub ?? 'user-7f3a');
  if (o.nbf !== undefined) jwt.setNotBefore(o.nbf);
  return jwt.sign(o.key ?? signingKey);
}

const b64url = (text: string) => btoa(text).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
const nowSeconds = () => Math.floor(Date.now() / 1000);

describe('verifyAccessJwt', () => {
  it('a valid assertion gives the identity; keys come from the team certs URL', async () => {
    const domain = freshDomain();
    const urls = network();
    const r = await verifyAccessJwt(await token({ domain }), { teamDomain: domain, aud: AUD });
    expect(r).toEqual({ ok: true, identity: { email: EMAIL, sub: 'user-7f3a' } });
    expect(urls).toEqual([certsUrl(domain)]);
  });

  it('the key set is cached per isolate per team domain: one fetch for many verifications', async () => {
    const domain = freshDomain();
    const urls = network();
    for (let i = 0; i < 3; i++) {
      expect(await verifyAccessJwt(await token({ domain }), { teamDomain: domain, aud: AUD })).toMatchObject({ ok: true });
    }
    expect(urls).toEqual([certsUrl(domain)]);
    // Another team domain has its own key set.
    const second = freshDomain();
    expect(await verifyAccessJwt(await token({ domain: second }), { teamDomain: second, aud: AUD })).toMatchObject({ ok: true });
    expect(urls).toEqual([certsUrl(domain), certsUrl(second)]);
  });

  it('the team domain may be written as an https URL with a trailing slash', async () => {
    const domain = freshDomain();
    const urls = network();
    expect(await verifyAccessJwt(await token({ domain }), { teamDomain: `https://${domain}/`, aud: AUD })).toMatchObject({ ok: true });
    expect(urls).toEqual([certsUrl(domain)]);
  });

  it('an aud array containing the application is accepted', async () => {
    const domain = freshDomain();
    const urls = network();
    expect(await verifyAccessJwt(await token({ domain, aud: ['other-app', AUD] }), { teamDomain: domain, aud: AUD })).toMatchObject({ ok: true });
    expect(urls).toEqual([certsUrl(domain)]);
  });

  it('a service token (no email, empty sub) gives email null', async () => {
    const domain = freshDomain();
    const urls = network();
    const jwt = await new SignJWT({ type: 'app', common_name: 'client-id.access' })
      .setProtectedHeader({ alg: 'RS256', kid: KID })
      .setIssuer(`https://${domain}`)
      .setAudience(AUD)
      .setSubject('')
      .setExpirationTime('5m')
      .sign(signingKey);
    expect(await verifyAccessJwt(jwt, { teamDomain: domain, aud: AUD })).toEqual({ ok: true, identity: { email: null, sub: '' } });
    expect(urls).toEqual([certsUrl(domain)]);
  });

  it('a non-string email is not an email', async () => {
    const domain = freshDomain();
    const urls = network();
    const r = await verifyAccessJwt(await token({ domain, claims: { email: ['a@example.com'] } }), { teamDomain: domain, aud: AUD });
    expect(r).toEqual({ ok: true, identity: { email: null, sub: 'user-7f3a' } });
    expect(urls).toEqual([certsUrl(domain)]);
  });

  it('expired → expired', async () => {
    const domain = freshDomain();
    const urls = network();
    expect(await verifyAccessJwt(await token({ domain, exp: nowSeconds() - 60 }), { teamDomain: domain, aud: AUD })).toEqual({ ok: false, reason: 'expired' });
    expect(urls).toEqual([certsUrl(domain)]);
  });

  it('wrong audience, or none → wrong_audience', async () => {
    const domain = freshDomain();
    const urls = network();
    expect(await verifyAccessJwt(await token({ domain, aud: 'another-application' }), { teamDomain: domain, aud: AUD })).toEqual({ ok: false, reason: 'wrong_audience' });
    expect(await verifyAccessJwt(await token({ domain, aud: null }), { teamDomain: domain, aud: AUD })).toEqual({ ok: false, reason: 'wrong_audience' });
    expect(urls).toEqual([certsUrl(domain)]);
  });

  it('wrong issuer (another team, or http), or none → wrong_issuer', async () => {
    const domain = freshDomain();
    const urls = network();
    for (const iss of ['https://another-team.cloudflareaccess.com', `http://${domain}`, `https://${domain}/`, null]) {
      expect(await verifyAccessJwt(await token({ domain, iss }), { teamDomain: domain, aud: AUD }), String(iss)).toEqual({ ok: false, reason: 'wrong_issuer' });
    }
    expect(urls).toEqual([certsUrl(domain)]);
  });

  it('signed by another key under the same kid → bad_signature', async () => {
    const domain = freshDomain();
    const urls = network();
    expect(await verifyAccessJwt(await token({ domain, key: otherKey }), { teamDomain: domain, aud: AUD })).toEqual({ ok: false, reason: 'bad_signature' });
    expect(urls).toEqual([certsUrl(domain)]);
  });

  it('a kid the team does not publish → refused (bad_signature)', async () => {
    const domain = freshDomain();
    const urls = network();
    const r = await verifyAccessJwt(await token({ domain, key: otherKey, kid: 'unknown-kid' }), { teamDomain: domain, aud: AUD });
    expect(r).toEqual({ ok: false, reason: 'bad_signature' });
    // Even signed by the genuine key, an unpublished kid does not select it.
    expect(await verifyAccessJwt(await token({ domain, kid: 'unknown-kid' }), { teamDomain: domain, aud: AUD })).toEqual({ ok: false, reason: 'bad_signature' });
    // The key set was fetched once; within jose's cooldown an unknown kid does not refetch.
    expect(urls).toEqual([certsUrl(domain)]);
  });

  it("alg 'none' → bad_signature, without fetching keys", async () => {
    const domain = freshDomain();
    const urls = network();
    const header = b64url(JSON.stringify({ alg: 'none', kid: KID }));
    const payload = b64url(JSON.stringify({ iss: `https://${domain}`, aud: AUD, sub: 'user-7f3a', email: EMAIL, exp: nowSeconds() + 300 }));
    expect(await verifyAccessJwt(`${header}.${payload}.`, { teamDomain: domain, aud: AUD })).toEqual({ ok: false, reason: 'bad_signature' });
    expect(urls).toEqual([]);
  });

  it('HS256 (a random secret, or the public key as the HMAC secret) → bad_signature, without fetching keys', async () => {
    const domain = freshDomain();
    const urls = network();
    const { publicKey } = await generateKeyPair('RS256', { extractable: true });
    const secrets = [crypto.getRandomValues(new Uint8Array(32)), new TextEncoder().encode(await exportSPKI(publicKey))];
    for (const secret of secrets) {
      const jwt = await new SignJWT({ email: EMAIL })
        .setProtectedHeader({ alg: 'HS256', kid: KID })
        .setIssuer(`https://${domain}`)
        .setAudience(AUD)
        .setSubject('user-7f3a')
        .setExpirationTime('5m')
        .sign(secret);
      expect(await verifyAccessJwt(jwt, { teamDomain: domain, aud: AUD })).toEqual({ ok: false, reason: 'bad_signature' });
    }
    expect(urls).toEqual([]);
  });

  it('a token without exp, or without sub, or not yet valid → invalid', async () => {
    const domain = freshDomain();
    const urls = network();
    expect(await verifyAccessJwt(await token({ domain, exp: null }), { teamDomain: domain, aud: AUD })).toEqual({ ok: false, reason: 'invalid' });
    expect(await verifyAccessJwt(await token({ domain, sub: null }), { teamDomain: domain, aud: AUD })).toEqual({ ok: false, reason: 'invalid' });
    expect(await verifyAccessJwt(await token({ domain, nbf: nowSeconds() + 600 }), { teamDomain: domain, aud: AUD })).toEqual({ ok: false, reason: 'invalid' });
    expect(urls).toEqual([certsUrl(domain)]);
  });

  it('certs endpoint answering 500 → keys_unavailable; the failure is not cached', async () => {
    const domain = freshDomain();
    let status = 500;
    const urls = network(() => (status === 200 ? Response.json({ keys: [jwk] }) : new Response('oops', { status })));
    const jwt = await token({ domain });
    expect(await verifyAccessJwt(jwt, { teamDomain: domain, aud: AUD })).toEqual({ ok: false, reason: 'keys_unavailable' });
    status = 200;
    expect(await verifyAccessJwt(jwt, { teamDomain: domain, aud: AUD })).toMatchObject({ ok: true });
    expect(urls).toEqual([certsUrl(domain), certsUrl(domain)]);
  });

  it('certs fetch throwing (network error, timeout) → keys_unavailable', async () => {
    for (const error of [new TypeError('Network connection lost.'), new DOMException('The operation was aborted due to timeout', 'TimeoutError')]) {
      const domain = freshDomain();
      const urls = network(() => {
        throw error;
      });
      expect(await verifyAccessJwt(await token({ domain }), { teamDomain: domain, aud: AUD }), error.name).toEqual({ ok: false, reason: 'keys_unavailable' });
      expect(urls).toEqual([certsUrl(domain)]);
      vi.restoreAllMocks();
    }
  });

  it('certs endpoint answering a redirect, non-JSON or not a key set → keys_unavailable', async () => {
    const answers: Responder[] = [
      () => new Response(null, { status: 302, headers: { Location: 'https://evil.example/certs' } }),
      () => new Response('<html>', { status: 200 }),
      () => Response.json({ keys: 'none' }),
      () => Response.json({ keys: [{ ...jwk, n: 'AQAB' }] }),
    ];
    for (const [i, answer] of answers.entries()) {
      const domain = freshDomain();
      const urls = network(answer);
      expect(await verifyAccessJwt(await token({ domain }), { teamDomain: domain, aud: AUD }), String(i)).toEqual({ ok: false, reason: 'keys_unavailable' });
      expect(urls).toEqual([certsUrl(domain)]);
      vi.restoreAllMocks();
    }
  });

  it('missing header → missing', async () => {
    const domain = freshDomain();
    const urls = network();
    for (const t of [undefined, '', '   ']) {
      expect(await verifyAccessJwt(t, { teamDomain: domain, aud: AUD })).toEqual({ ok: false, reason: 'missing' });
    }
    expect(urls).toEqual([]);
  });

  it("'abc' and other garbage → malformed, without fetching keys", async () => {
    const domain = freshDomain();
    const urls = network();
    const genuine = await token({ domain });
    const garbage = [
      'abc',
      'a.b',
      'a.b.c.d',
      '..',
      'Bearer abc.def.ghi',
      `${genuine}.`,
      ` ${genuine}`,
      genuine.replace('.', '+'),
      'not-json.e30.sig',
      `${b64url('{"alg":"RS256"')}.e30.sig`,
      'x'.repeat(9000),
    ];
    for (const g of garbage) {
      expect(await verifyAccessJwt(g, { teamDomain: domain, aud: AUD }), g.slice(0, 40)).toEqual({ ok: false, reason: 'malformed' });
    }
    expect(urls).toEqual([]);
  });

  it('a payload that is not JSON, under a valid signature, → malformed', async () => {
    const domain = freshDomain();
    const urls = network();
    const jws = await new CompactSign(new TextEncoder().encode('not json')).setProtectedHeader({ alg: 'RS256', kid: KID }).sign(signingKey);
    expect(await verifyAccessJwt(jws, { teamDomain: domain, aud: AUD })).toEqual({ ok: false, reason: 'malformed' });
    expect(urls).toEqual([certsUrl(domain)]);
  });

  it('a configuration that cannot verify anything (bad team domain, empty aud) → invalid, without fetching', async () => {
    const domain = freshDomain();
    const urls = network();
    const jwt = await token({ domain });
    expect(await verifyAccessJwt(jwt, { teamDomain: 'not a domain', aud: AUD })).toEqual({ ok: false, reason: 'invalid' });
    expect(await verifyAccessJwt(jwt, { teamDomain: `${domain}/path`, aud: AUD })).toEqual({ ok: false, reason: 'invalid' });
    expect(await verifyAccessJwt(jwt, { teamDomain: domain, aud: '' })).toEqual({ ok: false, reason: 'invalid' });
    expect(await verifyAccessJwt(await token({ domain, aud: '' }), { teamDomain: domain, aud: ' ' })).toEqual({ ok: false, reason: 'invalid' });
    expect(urls).toEqual([]);
  });
});

describe('normalizeTeamDomain', () => {
  it('accepts a hostname, bare or as an https URL with an optional trailing slash', () => {
    expect(normalizeTeamDomain('team.cloudflareaccess.com')).toBe('team.cloudflareaccess.com');
    expect(normalizeTeamDomain('https://team.cloudflareaccess.com/')).toBe('team.cloudflareaccess.com');
    expect(normalizeTeamDomain('https://team.cloudflareaccess.com')).toBe('team.cloudflareaccess.com');
    expect(normalizeTeamDomain('team.cloudflareaccess.com/')).toBe('team.cloudflareaccess.com');
    expect(normalizeTeamDomain('  Team.CloudflareAccess.com\n')).toBe('team.cloudflareaccess.com');
    expect(normalizeTeamDomain('my-team-2.cloudflareaccess.com')).toBe('my-team-2.cloudflareaccess.com');
  });

  it('refuses anything that is not a plain hostname', () => {
    const bad = [
      '',
      ' ',
      'https://',
      'http://team.cloudflareaccess.com',
      'ftp://team.cloudflareaccess.com',
      'team.cloudflareaccess.com:443',
      'https://team.cloudflareaccess.com:8443/',
      'https://team.cloudflareaccess.com/cdn-cgi/access/certs',
      'team.cloudflareaccess.com//',
      'user@team.cloudflareaccess.com',
      'https://user:pass@team.cloudflareaccess.com/',
      'team.cloudflareaccess.com?x=1',
      'team.cloudflareaccess.com#x',
      'team cloudflareaccess.com',
      'localhost',
      '127.0.0.1',
      '[::1]',
      '-team.cloudflareaccess.com',
      'team-.cloudflareaccess.com',
      'team..cloudflareaccess.com',
      '.team.cloudflareaccess.com',
      'team.cloudflareaccess.com.',
      'tëam.cloudflareaccess.com',
      'team_x.cloudflareaccess.com',
      `${'a'.repeat(64)}.cloudflareaccess.com`,
      `${'a.'.repeat(127)}com`,
      'evil.example\\@team.cloudflareaccess.com',
    ];
    for (const b of bad) expect(normalizeTeamDomain(b), JSON.stringify(b)).toBeNull();
  });
});
