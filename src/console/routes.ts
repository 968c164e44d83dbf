/**
 * The console (`/console`): server-rendered pages over the same operations as
 * the admin API — overview, event trace, dead letters, destinations. Sign-in
 * and request checks: src/console/auth.ts. Pages: src/console/pages.ts.
 */
import { Hono } from 'hono';
import { bodyLimit } from 'hono/body-limit';
import type { Context } from 'hono';
import type { ContentfulStatusCode } from 'hono/utils/http-status';
import { type EventFilter, filterFromQuery, findEvent, pageOfEvents, replayEvents } from '../admin/events';
import { destinationList, pauseDestination, resumeDestination } from '../admin/destinations';
import { type BulkRequest, type DeadLetterFilter, parseBulkRequest } from '../admin/bulk';
import { loadConfig } from '../config/load';
import { deadLetterStub } from '../deadletters/store';
import { ledgerStubByName } from '../dedup/shard';
import { ApiError } from '../http/errors';
import { sameSecret } from '../http/same-secret';
import { audit, errorName, log } from '../log';
import { reconcilerStub } from '../reconcile/reconciler';
import { countStates, lookupEvent } from '../trace/client';
import { MAX_ID_LENGTH } from '../webhook/envelope';
import { authenticate, consoleMode, sameOriginPost } from './auth';
import * as pages from './pages';
import { CSRF_COOKIE, SESSION_COOKIE, SESSION_TTL_SECONDS, clearedCookie, createSession, csrfCookie, newCsrfToken, readCookie, sessionCookie } from './session';

/** Events one console replay sends at most; a further page is confirmed apart. */
const EVENT_REPLAY_PAGE = 500;

type Vars = { csrf: string; who: string | null; canSignOut: boolean };
type C = Context<{ Bindings: Env; Variables: Vars }>;

export const consoleRoutes = new Hono<{ Bindings: Env; Variables: Vars }>();

function send(c: C, body: string | Promise<string>, status: ContentfulStatusCode = 200, headers: Record<string, string> = {}) {
  return Promise.resolve(body).then((text) => c.html(text, status, { ...pages.SECURITY_HEADERS, ...headers }));
}

function frame(c: C, section: pages.Section, notice?: { text: string; bad?: boolean }): pages.Frame {
  return { section, csrf: c.get('csrf'), who: c.get('who'), canSignOut: c.get('canSignOut'), ...(notice !== undefined ? { notice } : {}) };
}

/** A notice carried across a redirect (`?msg=`, `?bad=1`): plain text, escaped when shown. */
function noticeOf(c: C): { text: string; bad?: boolean } | undefined {
  const msg = c.req.query('msg');
  if (msg === undefined || msg === '') return undefined;
  return { text: msg.slice(0, 300), ...(c.req.query('bad') === '1' ? { bad: true } : {}) };
}

function redirect(c: C, to: string, msg?: string, bad = false) {
  const url = msg === undefined ? to : `${to}${to.includes('?') ? '&' : '?'}msg=${encodeURIComponent(msg)}${bad ? '&bad=1' : ''}`;
  return c.body(null, 303, { ...pages.SECURITY_HEADERS, Location: url });
}

async function form(c: C): Promise<Record<string, string | string[]>> {
  const type = c.req.header('content-type') ?? '';
  if (!type.startsWith('application/x-www-form-urlencoded') && !type.startsWith('multipart/form-data')) return {};
  const parsed = await c.req.parseBody({ all: true });
  const out: Record<string, string | string[]> = {};
  for (const [k, v] of Object.entries(parsed)) {
    if (typeof v === 'string') out[k] = v;
    else if (Array.isArray(v)) out[k] = v.filter((x): x is string => typeof x === 'string');
  }
  return out;
}

const one = (v: string | string[] | undefined): string => (typeof v === 'string' ? v.trim() : (v?.[0]?.trim() ?? ''));

/**
 * The console's forms are small (at most 100 selected seqs): a larger body is
 * refused before it is read whole. The sign-in form is read before any
 * credential is checked, so this bounds what anyone can make the Worker hold.
 */
export const CONSOLE_BODY_LIMIT_BYTES = 64 * 1024;

consoleRoutes.use(
  '*',
  bodyLimit({
    maxSize: CONSOLE_BODY_LIMIT_BYTES,
    onError: (c) => {
      log('warn', 'console_body_too_large', { path: c.req.path });
      return c.html(pages.refusalPage('Too large', 'This form is larger than the console accepts.'), 413, pages.SECURITY_HEADERS);
    },
  }),
);

// Sign-in and sign-out (token mode only; Access signs in at the team domain).
consoleRoutes.get('/login', (c) => {
  const mode = consoleMode(c.env);
  if (mode.kind === 'disabled') return send(c, pages.refusalPage('Console disabled', 'Set the ADMIN_TOKEN secret (or Cloudflare Access) to enable the console.'), 403);
  if (mode.kind !== 'token') return redirect(c, '/console');
  return send(c, pages.loginPage({ failed: false }));
});

consoleRoutes.post('/login', async (c) => {
  const mode = consoleMode(c.env);
  if (mode.kind !== 'token') return send(c, pages.refusalPage('Not available', 'Sign in through Cloudflare Access, or set the ADMIN_TOKEN secret.'), 403);
  const origin = c.req.header('origin');
  if (origin !== undefined && origin !== new URL(c.req.url).origin) return send(c, pages.refusalPage('Refused', 'This form must be sent from the console itself.'), 403);
  const fields = await form(c);
  const token = one(fields.token);
  const next = consolePath(one(fields.next));
  if (!(await sameSecret(token, mode.token))) {
    log('warn', 'console_sign_in_failed', {});
    return send(c, pages.loginPage({ failed: true, ...(next !== '/console' ? { next } : {}) }), 401);
  }
  const { value } = await createSession(mode.token, Date.now(), SESSION_TTL_SECONDS);
  audit('console_signed_in', {});
  const res = redirect(c, next);
  res.headers.append('Set-Cookie', sessionCookie(value, SESSION_TTL_SECONDS));
  res.headers.append('Set-Cookie', csrfCookie(newCsrfToken(), SESSION_TTL_SECONDS));
  return res;
});

/** Where to go after signing in: a console page of this origin only (never an open redirect). */
function consolePath(next: string): string {
  return /^\/console(\/[A-Za-z0-9_.~%/-]*)?(\?[A-Za-z0-9_.~%&=+:,*!-]*)?$/.test(next) && !next.includes('//') ? next : '/console';
}

// Everything else needs valid credentials; posts also need the page's CSRF token.
consoleRoutes.use('*', async (c, next) => {
  const mode = consoleMode(c.env);
  const verdict = await authenticate(c.req.raw, mode);
  if (!verdict.ok) {
    if (verdict.status === 401 && mode.kind === 'token') {
      const here = c.req.method === 'GET' ? consolePath(`${c.req.path}${new URL(c.req.url).search}`) : '/console';
      return send(c, pages.loginPage({ failed: false, ...(here !== '/console' ? { next: here } : {}) }), 401);
    }
    if (verdict.status === 401) return send(c, pages.refusalPage('Sign-in required', 'Open the console through Cloudflare Access.'), 401);
    return send(
      c,
      'disabled' in verdict ? pages.refusalPage('Console disabled', 'Set the ADMIN_TOKEN secret (or Cloudflare Access) to enable the console.') : pages.refusalPage('Access denied', 'Your credentials were not accepted.'),
      403,
    );
  }
  let csrf = readCookie(c.req.header('cookie'), CSRF_COOKIE);
  const fresh = csrf === undefined || !/^[A-Za-z0-9_-]{43}$/.test(csrf);
  if (fresh) csrf = newCsrfToken();
  c.set('csrf', csrf as string);
  c.set('who', verdict.who);
  c.set('canSignOut', mode.kind === 'token');
  if (c.req.method === 'POST') {
    const fields = await form(c);
    if (!sameOriginPost(c.req.raw, one(fields.csrf))) {
      log('warn', 'console_csrf_rejected', { path: c.req.path });
      return send(c, pages.refusalPage('Refused', 'This form has expired or did not come from the console: reload the page and try again.'), 403);
    }
  }
  await next();
  if (fresh) c.res.headers.append('Set-Cookie', csrfCookie(csrf as string, SESSION_TTL_SECONDS));
});

consoleRoutes.post('/logout', (c) => {
  const res = redirect(c, '/console/login');
  res.headers.append('Set-Cookie', clearedCookie(SESSION_COOKIE));
  res.headers.append('Set-Cookie', clearedCookie(CSRF_COOKIE));
  return res;
});

consoleRoutes.get('/', async (c) => {
  const loaded = loadConfig(c.env);
  const store = deadLetterStub(c.env);
  const settings = loaded.ok ? loaded.config.settings : null;
  const [deadLetters, reconcile, destinations, lastHour] = await Promise.all([
    store.count(),
    reconcilerStub(c.env).status(),
    loaded.ok ? destinationList(c.env) : Promise.resolve(null),
    settings !== null ? countStates(c.env, settings, Date.now() - 3_600_000) : Promise.resolve({}),
  ]);
  return send(
    c,
    pages.overviewPage(frame(c, 'overview', noticeOf(c)), {
      config: loaded.ok
        ? { valid: true, rules: loaded.config.rules.length, destinations: loaded.config.destinations.size, warnings: loaded.warnings }
        : { valid: false, problems: loaded.problems, warnings: loaded.warnings },
      destinations: destinations as pages.DestinationRow[] | null,
      deadLetters,
      reconcile,
      lastHour,
    }),
  );
});

function configOr(c: C) {
  const loaded = loadConfig(c.env);
  if (!loaded.ok) throw new ApiError(500, 'config_invalid', 'The router configuration is invalid: see the overview.');
  return loaded.config;
}

function eventsForm(q: (n: string) => string | undefined): pages.EventsFilterForm {
  return { destination: q('destination') ?? '', type: q('type') ?? '', state: q('state') ?? '', since: q('since') ?? '', until: q('until') ?? '' };
}

function queryOf(fields: Record<string, string>): string {
  return Object.entries(fields)
    .filter(([, v]) => v !== '')
    .map(([k, v]) => `${k}=${encodeURIComponent(v)}`)
    .join('&');
}

consoleRoutes.get('/events', async (c) => {
  const config = configOr(c);
  const formValues = eventsForm((n) => c.req.query(n)?.trim());
  const filter = filterFromQuery(
    (n) => c.req.query(n)?.trim(),
    (n) => c.req.queries(n),
  );
  const page = await pageOfEvents(c.env, filter, 50, c.req.query('cursor') || undefined);
  return send(
    c,
    pages.eventsPage(frame(c, 'events', noticeOf(c)), {
      form: formValues,
      destinations: [...config.destinations.keys()],
      items: page.items,
      next: page.next_cursor,
      query: queryOf({ ...formValues }),
    }),
  );
});

consoleRoutes.get('/events/lookup', (c) => {
  const id = (c.req.query('id') ?? '').trim();
  if (id === '' || id.length > MAX_ID_LENGTH) return redirect(c, '/console/events', 'Enter an event id.', true);
  return redirect(c, `/console/events/${encodeURIComponent(id)}`);
});

consoleRoutes.get('/events/:id', async (c) => {
  const config = configOr(c);
  const id = c.req.param('id');
  const view = id.length <= MAX_ID_LENGTH ? await findEvent(c.env, id) : null;
  if (view === null) {
    return send(c, pages.errorPage(frame(c, 'events'), 'Not found', 'No trace of that event: unknown, not yet consumed, or older than trace_retention_days.'), 404);
  }
  const allowed = config.settings.consoleShowPayloads;
  const wantPayload = c.req.query('payload') === '1';
  if (wantPayload && !allowed) {
    return send(c, pages.errorPage(frame(c, 'events'), 'Payloads are hidden', 'Set console_show_payloads = true in ROUTER to show payloads here.'), 403);
  }
  let shown: string | null = null;
  let missing = false;
  if (wantPayload) {
    const items = await lookupEvent(c.env, config.settings, id);
    const shard = items.find((i) => i.body_shard !== null)?.body_shard ?? null;
    const body = shard !== null ? await ledgerStubByName(c.env, shard).getBody(id) : null;
    if (body === null) missing = true;
    else {
      shown = pretty(body);
      audit('console_payload_viewed', { event_id: id, who: c.get('who') ?? 'admin-token' });
    }
  }
  return send(c, pages.eventPage(frame(c, 'events', noticeOf(c)), view, { allowed, shown, missing }));
});

function pretty(body: string): string {
  try {
    return JSON.stringify(JSON.parse(body), null, 2);
  } catch {
    return body;
  }
}

/**
 * Event replay, a page of 500 at a time: the first post shows the dry-run
 * count; the confirmed one sends, then, while more match, shows the next
 * page's count to confirm (its cursor carried in the form, so the events just
 * replayed, newer than the cursor, are not selected again).
 */
consoleRoutes.post('/events/replay', async (c) => {
  const fields = await form(c);
  const formValues = eventsForm((n) => one(fields[n]));
  const filter: EventFilter = filterFromQuery(
    (n) => one(fields[n]) || undefined,
    (n) => (one(fields[n]) === '' ? undefined : [one(fields[n])]),
  );
  const to = one(fields.to);
  const cursor = one(fields.cursor);
  const back = `/console/events?${queryOf({ ...formValues })}`;
  const confirmed = one(fields.confirm) === '1';
  const page = (dryRun: boolean, at: string) =>
    replayEvents(c.env, { filter, to, dry_run: dryRun, limit: EVENT_REPLAY_PAGE, ...(at !== '' ? { cursor: at } : {}) });
  const confirmNext = async (at: string, sent: string) => {
    const next = await page(true, at);
    const count = next.replayable ?? 0;
    const skipped = next.not_replayable.length;
    return send(
      c,
      pages.confirmPage(frame(c, 'events'), {
        title: 'Replay events',
        text: `${sent}${count} event${count === 1 ? '' : 's'} would be sent again to ${to}${skipped > 0 ? ` (${skipped} more matched but their bodies are no longer kept: not replayable)` : ''}${next.next_cursor !== null ? `; more match beyond these ${EVENT_REPLAY_PAGE}: you will be asked again for them.` : '.'}`,
        action: '/console/events/replay',
        fields: { ...formValues, to, ...(at !== '' ? { cursor: at } : {}) },
        confirmLabel: `Send ${count} event${count === 1 ? '' : 's'} to ${to}`,
        danger: false,
        back,
        count,
      }),
    );
  };
  if (!confirmed) return confirmNext(cursor, '');
  let result: Awaited<ReturnType<typeof page>>;
  try {
    result = await page(false, cursor);
  } catch (err) {
    // The queue refused part-way: offer the rest only, never the events already sent again.
    if (!(err instanceof ApiError) || typeof err.extra.resume_cursor !== 'string') throw err;
    return confirmNext(err.extra.resume_cursor, `The queue refused part-way: ${String(err.extra.replayed)} were sent. Try the rest again: `);
  }
  const sent = `Sent ${result.replayed} event${result.replayed === 1 ? '' : 's'} to ${to}${result.not_replayable.length > 0 ? `; ${result.not_replayable.length} not replayable (body no longer kept)` : ''}.`;
  if (result.next_cursor !== null) return confirmNext(result.next_cursor, `${sent} Next: `);
  return redirect(c, back, sent);
});

function deadLetterForm(get: (n: string) => string): pages.DeadLetterFilterForm {
  return { destination: get('destination'), event_type: get('event_type'), reason: get('reason'), since: get('since'), until: get('until') };
}

/** The bulk filter from form or query fields, validated exactly as the admin API does. */
function deadLetterFilter(f: pages.DeadLetterFilterForm): DeadLetterFilter {
  const raw: Record<string, unknown> = {};
  if (f.destination !== '') raw.destination = f.destination;
  if (f.event_type !== '') raw.event_type = f.event_type.split(',').map((s) => s.trim()).filter((s) => s !== '');
  if (f.reason !== '') raw.reason = f.reason;
  if (f.since !== '') raw.since = f.since;
  if (f.until !== '') raw.until = f.until;
  return parseBulkRequest(JSON.stringify({ filter: raw })).filter;
}

consoleRoutes.get('/dead-letters', async (c) => {
  const config = loadConfig(c.env);
  const formValues = deadLetterForm((n) => c.req.query(n)?.trim() ?? '');
  const filter = deadLetterFilter(formValues);
  const afterRaw = c.req.query('after') ?? '0';
  const after = /^[0-9]{1,15}$/.test(afterRaw) ? Number(afterRaw) : 0;
  const store = deadLetterStub(c.env);
  const [items, total] = await Promise.all([store.list(100, after, filter), store.count()]);
  return send(
    c,
    pages.deadLettersPage(frame(c, 'dead-letters', noticeOf(c)), {
      form: formValues,
      items,
      total,
      next: items.length === 100 ? (items[items.length - 1]?.seq ?? null) : null,
      query: queryOf({ ...formValues }),
      destinations: config.ok ? [...config.config.destinations.keys()] : [],
    }),
  );
});

consoleRoutes.post('/dead-letters/selected', async (c) => {
  const fields = await form(c);
  const action = one(fields.action);
  const raw = fields.seq;
  const seqs = (Array.isArray(raw) ? raw : raw !== undefined ? [raw] : []).filter((s) => /^[0-9]{1,15}$/.test(s)).map(Number).slice(0, 100);
  if (seqs.length === 0) return redirect(c, '/console/dead-letters', 'Select at least one dead letter.', true);
  const store = deadLetterStub(c.env);
  if (action !== 'discard' && action !== 'replay') return redirect(c, '/console/dead-letters', 'Unknown action.', true);
  /** The seqs acted on, for the audit line (at most 100). */
  const done: number[] = [];
  const problems: string[] = [];
  for (const seq of seqs) {
    if (action === 'discard') {
      const removed = await store.remove(seq);
      if (removed === 'deleted') done.push(seq);
      else if (removed === 'busy') problems.push(`#${seq}: being replayed`);
      continue;
    }
    const outcome = await store.replayOne(seq);
    if (outcome.status === 'replayed' || outcome.status === 'duplicate') done.push(seq);
    else problems.push(`#${seq}: ${outcome.status === 'not_replayable' && outcome.why === 'destination_removed' ? 'destination removed' : outcome.status}`);
  }
  const verb = action === 'discard' ? 'Discarded' : 'Replayed';
  audit(action === 'discard' ? 'dead_letters_discarded' : 'dead_letters_replayed', { selected: seqs.length, done: done.length, seqs: done, source: 'console' });
  return redirect(c, '/console/dead-letters', `${verb} ${done.length} of ${seqs.length}.${problems.length > 0 ? ` Kept: ${problems.join(', ')}.` : ''}`, problems.length > 0);
});

/** Bulk by filter: the first post shows the dry-run count; the confirmed one starts the job (its key makes a double submit harmless). */
consoleRoutes.post('/dead-letters/bulk', async (c) => {
  const fields = await form(c);
  const action = one(fields.action) === 'discard' ? 'discard' : 'replay';
  const formValues = deadLetterForm((n) => one(fields[n]));
  const filter = deadLetterFilter(formValues);
  const back = `/console/dead-letters?${queryOf({ ...formValues })}`;
  const store = deadLetterStub(c.env);
  if (one(fields.confirm) !== '1') {
    const dry = await store.startJob(action, { filter, dry_run: true } satisfies BulkRequest, null);
    const matched = dry.kind === 'dry_run' ? dry.matched : 0;
    // The confirmation acts on what was counted: records added after this page are not part of it.
    const upTo = dry.kind === 'dry_run' ? dry.max_seq : 0;
    return send(
      c,
      pages.confirmPage(frame(c, 'dead-letters'), {
        title: action === 'replay' ? 'Replay dead letters' : 'Discard dead letters',
        text: `${matched} dead letter${matched === 1 ? '' : 's'} match this filter.`,
        action: '/console/dead-letters/bulk',
        fields: { ...formValues, action, key: crypto.randomUUID(), up_to: String(upTo) },
        confirmLabel: `${action === 'replay' ? 'Replay' : 'Discard'} ${matched}`,
        danger: action === 'discard',
        back,
        count: matched,
      }),
    );
  }
  if (action === 'replay' && !loadConfig(c.env).ok) return redirect(c, back, 'The configuration is invalid: fix it before replaying.', true);
  const key = one(fields.key);
  const upToText = one(fields.up_to);
  if (!/^[0-9]{1,15}$/.test(upToText)) return redirect(c, back, 'This confirmation is incomplete; start again.', true);
  const started = await store.startJob(action, { filter, dry_run: false }, /^[0-9a-f-]{36}$/.test(key) ? `console:${key}` : null, false, Number(upToText));
  if (started.kind === 'config_invalid') return redirect(c, back, 'The configuration is invalid: fix it before replaying.', true);
  if (started.kind === 'dry_run' || started.kind === 'key_reused') return redirect(c, back, 'This confirmation was already used; start again.', true);
  const { job } = started;
  const verb = action === 'replay' ? 'replayed' : 'discarded';
  const state = job.state === 'running' ? `running in the background (${job.done} ${verb} so far; progress on the overview)` : `${job.done} ${verb}, ${job.failed} kept`;
  return redirect(c, back, `Job ${job.id}: ${job.matched} matched, ${state}.`);
});

consoleRoutes.get('/destinations', async (c) => {
  configOr(c);
  const rows = await destinationList(c.env);
  return send(c, pages.destinationsPage(frame(c, 'destinations', noticeOf(c)), rows as pages.DestinationRow[]));
});

for (const action of ['pause', 'resume'] as const) {
  consoleRoutes.post(`/destinations/:name/${action}`, async (c) => {
    const name = c.req.param('name');
    if (action === 'pause') await pauseDestination(c.env, name);
    else {
      const r = await resumeDestination(c.env, name);
      return redirect(c, '/console/destinations', `Resumed ${r.name}: ${r.held} held deliveries drain in acceptance order.`);
    }
    return redirect(c, '/console/destinations', `Paused ${name}: its deliveries are held until you resume it.`);
  });
}

// A catch-all route, not `notFound`: a sub-app's notFound is not used once it is mounted with `app.route`, so an
// unknown console path got the app's JSON 404 without the console's security headers.
consoleRoutes.all('*', (c) => send(c, pages.refusalPage('Not found', 'No such console page.'), 404));

consoleRoutes.onError((err, c) => {
  const ctx = c as unknown as C;
  if (err instanceof ApiError) {
    const status = err.status;
    const f = { section: 'overview' as const, csrf: ctx.get('csrf') ?? '', who: ctx.get('who') ?? null, canSignOut: ctx.get('canSignOut') ?? false };
    return send(ctx, pages.errorPage(f, status === 400 ? 'Check the form' : 'Something went wrong', err.message), status);
  }
  log('error', 'console_error', { path: c.req.path, error: errorName(err) });
  return send(ctx, pages.refusalPage('Something went wrong', 'The router could not complete this page; see the Worker logs.'), 500);
});
