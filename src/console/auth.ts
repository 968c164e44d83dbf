/**
 * Who may use the console, decided once per request:
 * - Cloudflare Access, when `ACCESS_TEAM_DOMAIN` and `ACCESS_AUD` are both
 *   set: the `Cf-Access-Jwt-Assertion` header must hold a token signed by the
 *   team's keys for that audience (src/console/access.ts);
 * - else the `ADMIN_TOKEN`, typed once into the sign-in form and exchanged for
 *   a signed, expiring session cookie (src/console/session.ts);
 * - else the console is off.
 * State-changing requests must also come from the console's own pages: the
 * `Origin` (or `Sec-Fetch-Site`) must be this origin and the form's `csrf`
 * field must equal the `router_csrf` cookie.
 * Failure reasons stay inside (logged); the browser sees 401/403 and nothing else.
 */
import { stringBinding } from '../env';
import { log } from '../log';
import { verifyAccessJwt } from './access';
import { CSRF_COOKIE, SESSION_COOKIE, csrfMatches, readCookie, verifySession } from './session';

export type ConsoleMode = { kind: 'access'; teamDomain: string; aud: string } | { kind: 'token'; token: string } | { kind: 'disabled' };

export function consoleMode(env: Env): ConsoleMode {
  const teamDomain = stringBinding(env, 'ACCESS_TEAM_DOMAIN');
  const aud = stringBinding(env, 'ACCESS_AUD');
  if (teamDomain !== undefined && aud !== undefined) return { kind: 'access', teamDomain, aud };
  const token = stringBinding(env, 'ADMIN_TOKEN');
  return token !== undefined ? { kind: 'token', token } : { kind: 'disabled' };
}

export type Verdict =
  | { ok: true; who: string | null }
  /** 401: no credentials (token mode: show the sign-in form). */
  | { ok: false; status: 401 }
  /** 403: credentials that do not hold, or the console is off. */
  | { ok: false; status: 403; disabled?: true };

export async function authenticate(req: Request, mode: ConsoleMode, now = Date.now()): Promise<Verdict> {
  switch (mode.kind) {
    case 'disabled':
      return { ok: false, status: 403, disabled: true };
    case 'access': {
      const result = await verifyAccessJwt(req.headers.get('cf-access-jwt-assertion') ?? undefined, { teamDomain: mode.teamDomain, aud: mode.aud });
      if (result.ok) return { ok: true, who: result.identity.email ?? result.identity.sub };
      log('warn', 'console_access_denied', { reason: result.reason });
      return result.reason === 'missing' ? { ok: false, status: 401 } : { ok: false, status: 403 };
    }
    case 'token': {
      const result = await verifySession(mode.token, readCookie(req.headers.get('cookie') ?? undefined, SESSION_COOKIE), now);
      if (result.ok) return { ok: true, who: null };
      if (result.reason !== 'missing') log('warn', 'console_session_rejected', { reason: result.reason });
      return { ok: false, status: 401 };
    }
    default: {
      const never: never = mode;
      // Its kind only: the mode holds the admin token.
      throw new Error(`unknown console mode ${String((never as { kind?: unknown }).kind)}`);
    }
  }
}

/** Did this state-changing request come from the console's own page? (Origin check, then the double-submitted token.) */
export function sameOriginPost(req: Request, formCsrf: string | undefined): boolean {
  const origin = req.headers.get('origin');
  const site = req.headers.get('sec-fetch-site');
  const own = new URL(req.url).origin;
  if (origin !== null ? origin !== own : site !== 'same-origin') return false;
  return csrfMatches(readCookie(req.headers.get('cookie') ?? undefined, CSRF_COOKIE), formCsrf);
}
