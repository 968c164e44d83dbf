/**
 * The console's pages: server-rendered HTML (`hono/html`, which escapes every
 * interpolated value), no client script, one small stylesheet inline. Every
 * state-changing form posts back with the CSRF token (`csrf`).
 * Presentation only: the data comes from src/console/routes.ts.
 */
import { html, raw } from 'hono/html';
import type { HtmlEscapedString } from 'hono/utils/html';
import type { EventView } from '../admin/events';
import type { DeadLetterSummary } from '../deadletters/store';
import type { ReconcileStatus } from '../reconcile/reconciler';
import { DELIVERY_STATES } from '../trace/store';

type Html = HtmlEscapedString | Promise<HtmlEscapedString>;

export type Section = 'overview' | 'events' | 'dead-letters' | 'destinations';

const STYLE = `
:root{color-scheme:light dark;--fg:#1b1f24;--muted:#57606a;--line:#d0d7de;--bg:#fff;--soft:#f6f8fa;--ok:#1a7f37;--warn:#9a6700;--bad:#cf222e;--accent:#0969da}
@media (prefers-color-scheme:dark){:root{--fg:#e6edf3;--muted:#9198a1;--line:#30363d;--bg:#0d1117;--soft:#161b22;--ok:#3fb950;--warn:#d29922;--bad:#f85149;--accent:#4493f8}}
*{box-sizing:border-box}body{margin:0;font:14px/1.5 system-ui,-apple-system,"Segoe UI",sans-serif;color:var(--fg);background:var(--bg)}
header{display:flex;gap:1.5rem;align-items:center;padding:.6rem 1.5rem;border-bottom:1px solid var(--line);background:var(--soft)}
header strong{font-size:15px}header nav{display:flex;gap:1rem;flex:1}header a{color:var(--fg);text-decoration:none;padding:.2rem 0}
header a.on{border-bottom:2px solid var(--accent);font-weight:600}main{padding:1.2rem 1.5rem;max-width:1200px}
h1{font-size:20px;margin:.2rem 0 1rem}h2{font-size:16px;margin:1.5rem 0 .5rem}
table{border-collapse:collapse;width:100%;margin:.5rem 0}th,td{text-align:left;padding:.35rem .6rem;border-bottom:1px solid var(--line);vertical-align:top}
th{font-weight:600;color:var(--muted);font-size:12px;text-transform:uppercase;letter-spacing:.03em}
code,pre{font:12.5px ui-monospace,SFMono-Regular,Menlo,monospace}pre{background:var(--soft);padding:.8rem;overflow:auto;border:1px solid var(--line);border-radius:6px}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(180px,1fr));gap:.8rem}
.card{border:1px solid var(--line);border-radius:8px;padding:.7rem .9rem;background:var(--soft)}.card b{display:block;font-size:22px}
.pill{display:inline-block;padding:0 .5rem;border-radius:999px;font-size:12px;border:1px solid var(--line);white-space:nowrap}
.s-delivered,.s-active,.s-ok{color:var(--ok);border-color:var(--ok)}.s-retrying,.s-held,.s-paused,.s-warn{color:var(--warn);border-color:var(--warn)}
.s-dead_lettered,.s-bad{color:var(--bad);border-color:var(--bad)}.s-discarded,.s-unrouted{color:var(--muted)}
form.inline{display:inline}form.filters{display:flex;flex-wrap:wrap;gap:.5rem;align-items:end;margin:.5rem 0}
label{display:flex;flex-direction:column;font-size:12px;color:var(--muted)}input,select,button{font:inherit;padding:.3rem .5rem;border:1px solid var(--line);border-radius:6px;background:var(--bg);color:var(--fg)}
button{cursor:pointer;background:var(--soft)}button.primary{background:var(--accent);color:#fff;border-color:var(--accent)}button.danger{color:var(--bad);border-color:var(--bad)}
.notice{padding:.6rem .9rem;border-radius:6px;border:1px solid var(--line);background:var(--soft);margin:.5rem 0}.notice.bad{border-color:var(--bad)}
.muted{color:var(--muted)}.login{max-width:360px;margin:12vh auto;padding:1.5rem;border:1px solid var(--line);border-radius:10px;background:var(--soft)}
.login input{width:100%;margin:.4rem 0 1rem}.actions{display:flex;gap:.5rem;flex-wrap:wrap;margin:.5rem 0}
`;

const CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";
/** Headers every console response carries: no caching, no framing, no scripts, no referrer to other sites. */
export const SECURITY_HEADERS: Readonly<Record<string, string>> = {
  'Content-Security-Policy': CSP,
  'Cache-Control': 'no-store',
  'X-Frame-Options': 'DENY',
  'X-Content-Type-Options': 'nosniff',
  // same-origin, not no-referrer: under no-referrer browsers send `Origin: null` on the console's own form posts.
  'Referrer-Policy': 'same-origin',
};

function document(title: string, body: Html): Html {
  return html`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>${title} · WorkOS event router</title><style>${raw(STYLE)}</style></head>
<body>${body}</body></html>`;
}

export interface Frame {
  section: Section;
  csrf: string;
  /** Who is signed in (Access e-mail), when known. */
  who: string | null;
  /** Sign-out button (token sessions only: Access signs out at the team domain). */
  canSignOut: boolean;
  notice?: { text: string; bad?: boolean };
}

export function layout(title: string, f: Frame, content: Html): Html {
  const link = (href: string, section: Section, label: string) => html`<a href="${href}" class="${f.section === section ? 'on' : ''}">${label}</a>`;
  return document(
    title,
    html`<header><strong>WorkOS event router</strong>
<nav>${link('/console', 'overview', 'Overview')}${link('/console/events', 'events', 'Events')}${link('/console/dead-letters', 'dead-letters', 'Dead letters')}${link('/console/destinations', 'destinations', 'Destinations')}</nav>
${f.who !== null ? html`<span class="muted">${f.who}</span>` : ''}
${f.canSignOut ? html`<form class="inline" method="post" action="/console/logout"><input type="hidden" name="csrf" value="${f.csrf}"><button type="submit">Sign out</button></form>` : ''}
</header>
<main>${f.notice !== undefined ? html`<div class="notice ${f.notice.bad === true ? 'bad' : ''}" role="status">${f.notice.text}</div>` : ''}${content}</main>`,
  );
}

export function loginPage(opts: { failed: boolean; next?: string }): Html {
  return document(
    'Sign in',
    html`<form class="login" method="post" action="/console/login">
${opts.next !== undefined ? html`<input type="hidden" name="next" value="${opts.next}">` : ''}
<h1>Sign in</h1>
<p class="muted">Enter the router's admin token (the <code>ADMIN_TOKEN</code> secret).</p>
${opts.failed ? html`<div class="notice bad" role="alert">That token is not valid.</div>` : ''}
<label>Admin token<input type="password" name="token" autocomplete="off" required autofocus></label>
<button class="primary" type="submit">Sign in</button>
</form>`,
  );
}

/** A page for a refusal (401/403/404): says what to do, reveals nothing. */
export function refusalPage(title: string, text: string): Html {
  return document(title, html`<main class="login"><h1>${title}</h1><p>${text}</p></main>`);
}

export function errorPage(f: Frame, title: string, text: string): Html {
  return layout(title, f, html`<h1>${title}</h1><div class="notice bad" role="alert">${text}</div>`);
}

const when = (iso: string | null | undefined) => (iso === null || iso === undefined ? html`<span class="muted">—</span>` : html`<time datetime="${iso}">${iso.replace('T', ' ').replace(/\.\d+Z$/, 'Z')}</time>`);
const pill = (state: string) => html`<span class="pill s-${state}">${state.replace('_', ' ')}</span>`;

export interface DestinationRow {
  name: string;
  type: string | undefined;
  state: 'active' | 'paused';
  circuit: 'open' | 'closed';
  next_probe_at: string | null;
  consecutive_failures: number;
  last_success_at: string | null;
  last_failure_at: string | null;
  last_error: string | null;
  held: number;
  dead_letters: number;
}

function destinationsTable(rows: DestinationRow[], csrf: string | null): Html {
  return html`<table><thead><tr><th>Destination</th><th>Type</th><th>State</th><th>Circuit</th><th>Last success</th><th>Last failure</th><th>Held</th><th>Dead letters</th>${csrf !== null ? html`<th></th>` : ''}</tr></thead><tbody>
${rows.map(
  (d) => html`<tr data-destination="${d.name}"><td><b>${d.name}</b></td><td>${d.type ?? '?'}</td><td data-col="state">${pill(d.state)}</td>
<td>${d.circuit === 'open' ? html`<span class="pill s-bad">open</span><br><span class="muted">probe ${when(d.next_probe_at)}</span>` : html`<span class="pill s-ok">closed</span>${d.consecutive_failures > 0 ? html` <span class="muted">${d.consecutive_failures} failing</span>` : ''}`}</td>
<td>${when(d.last_success_at)}</td>
<td>${when(d.last_failure_at)}${d.last_error !== null ? html`<br><code>${d.last_error}</code>` : ''}</td><td data-col="held">${d.held}</td>
<td>${d.dead_letters > 0 ? html`<a href="/console/dead-letters?destination=${encodeURIComponent(d.name)}">${d.dead_letters}</a>` : '0'}</td>
${
  csrf !== null
    ? html`<td><form class="inline" method="post" action="/console/destinations/${encodeURIComponent(d.name)}/${d.state === 'paused' ? 'resume' : 'pause'}">
<input type="hidden" name="csrf" value="${csrf}"><button type="submit" class="${d.state === 'paused' ? 'primary' : 'danger'}">${d.state === 'paused' ? 'Resume' : 'Pause'}</button></form></td>`
    : ''
}</tr>`,
)}
</tbody></table>`;
}

export interface OverviewData {
  config: { valid: true; rules: number; destinations: number; warnings: string[] } | { valid: false; problems: string[]; warnings: string[] };
  destinations: DestinationRow[] | null;
  deadLetters: number;
  reconcile: ReconcileStatus;
  lastHour: Record<string, number>;
}

export function overviewPage(f: Frame, d: OverviewData): Html {
  const r = d.reconcile;
  const counts = (['delivered', 'retrying', 'held', 'dead_lettered'] as const).map((s) => html`<div class="card"><span class="muted">${s.replace('_', ' ')}</span><b data-count="${s}">${d.lastHour[s] ?? 0}</b></div>`);
  return layout(
    'Overview',
    f,
    html`<h1>Overview</h1>
<h2>Configuration</h2>
${
  d.config.valid
    ? html`<p>${pill('ok')} Valid: ${d.config.rules} rules, ${d.config.destinations} destinations.</p>${d.config.warnings.map((w) => html`<div class="notice">${w}</div>`)}`
    : html`<div class="notice bad" role="alert"><b>The configuration is invalid: events are held until it is fixed.</b><ul>${d.config.problems.map((p) => html`<li><code>${p}</code></li>`)}</ul></div>${d.config.warnings.map((w) => html`<div class="notice">${w}</div>`)}`
}
<h2>Deliveries in the last hour</h2>
<div class="cards">${counts}<div class="card"><span class="muted">dead letters stored</span><b data-count="dead_letters_total"><a href="/console/dead-letters">${d.deadLetters}</a></b></div></div>
<h2>Destinations</h2>
${d.destinations !== null ? destinationsTable(d.destinations, null) : html`<p class="muted">Unavailable while the configuration is invalid.</p>`}
<h2>Reconciliation</h2>
${
  r.enabled
    ? html`<table><tbody>
<tr><th>State</th><td>${r.last_error !== null && r.consecutive_failures > 0 ? pill('bad') : r.behind ? pill('warn') : pill('ok')} ${r.behind ? 'catching up' : 'up to date'}</td></tr>
<tr><th>Lag</th><td>${r.lag_seconds === null ? '—' : `${r.lag_seconds} s`}</td></tr>
<tr><th>Last run</th><td>${when(r.last_run_at)}</td></tr>
<tr><th>Recovered (missed by webhooks)</th><td>${r.totals.recovered ?? 0}</td></tr>
${r.last_error !== null ? html`<tr><th>Last error</th><td><code>${r.last_error.kind}${r.last_error.status !== null ? ` (HTTP ${r.last_error.status})` : ''}</code> ${when(r.last_error.at)}</td></tr>` : ''}
</tbody></table>`
    : html`<p class="muted">Off: set the <code>WORKOS_API_KEY</code> secret to reconcile from the Events API.</p>`
}`,
  );
}

export interface EventsFilterForm {
  destination: string;
  type: string;
  state: string;
  since: string;
  until: string;
}

export function eventsPage(f: Frame, d: { form: EventsFilterForm; destinations: string[]; items: EventView[]; next: string | null; query: string }): Html {
  const opt = (value: string, selected: string, label = value) => html`<option value="${value}" ${value === selected ? 'selected' : ''}>${label}</option>`;
  return layout(
    'Events',
    f,
    html`<h1>Events</h1>
<form class="filters" method="get" action="/console/events/lookup">
<label>Event id<input name="id" placeholder="event_01H…" size="34" required></label><button type="submit">Look up</button></form>
<form class="filters" method="get" action="/console/events">
<label>Destination<select name="destination">${opt('', d.form.destination, 'any')}${d.destinations.map((n) => opt(n, d.form.destination))}</select></label>
<label>Type<input name="type" value="${d.form.type}" placeholder="dsync.*"></label>
<label>State<select name="state">${opt('', d.form.state, 'any')}${DELIVERY_STATES.map((s) => opt(s, d.form.state))}</select></label>
<label>Since<input name="since" value="${d.form.since}" placeholder="2026-11-28T09:00:00Z"></label>
<label>Until<input name="until" value="${d.form.until}" placeholder="2026-11-28T11:00:00Z"></label>
<button type="submit">Filter</button></form>
<table><thead><tr><th>Accepted</th><th>Event</th><th>Type</th><th>Source</th><th>Deliveries</th></tr></thead><tbody>
${d.items.length === 0 ? html`<tr><td colspan="5" class="muted">No events match.</td></tr>` : ''}
${d.items.map(
  (e) => html`<tr><td>${when(e.accepted_at)}</td><td><a href="/console/events/${encodeURIComponent(e.id)}"><code>${e.id}</code></a>${e.stale ? html` <span class="pill">stale</span>` : ''}</td><td>${e.type}</td><td>${e.source}</td>
<td>${e.deliveries.length === 0 ? html`<span class="pill s-unrouted">unrouted</span>` : e.deliveries.map((x) => html`<span class="pill s-${x.state}" title="${x.state}">${x.destination}: ${x.state.replace('_', ' ')}</span> `)}</td></tr>`,
)}
</tbody></table>
${d.next !== null ? html`<p><a href="/console/events?${d.query}${d.query === '' ? '' : '&'}cursor=${encodeURIComponent(d.next)}">Older events →</a></p>` : ''}
<h2>Send these events again</h2>
<p class="muted">Re-sends the events this filter selects (up to 500, newest first) to one destination, e.g. for a downstream service that lost its data. A count is shown before anything is sent.</p>
<form class="filters" method="post" action="/console/events/replay">
<input type="hidden" name="csrf" value="${f.csrf}">
<input type="hidden" name="destination" value="${d.form.destination}"><input type="hidden" name="type" value="${d.form.type}">
<input type="hidden" name="state" value="${d.form.state}"><input type="hidden" name="since" value="${d.form.since}"><input type="hidden" name="until" value="${d.form.until}">
<label>To destination<select name="to" required>${d.destinations.map((n) => opt(n, ''))}</select></label>
<button type="submit">Count events to replay…</button></form>`,
  );
}

export function eventPage(f: Frame, e: EventView, payload: { allowed: boolean; shown: string | null; missing: boolean }): Html {
  return layout(
    e.id,
    f,
    html`<h1>Event <code>${e.id}</code></h1>
<table><tbody>
<tr><th>Type</th><td>${e.type}</td></tr><tr><th>Source</th><td>${e.source}</td></tr>
<tr><th>Accepted</th><td>${when(e.accepted_at)}</td></tr><tr><th>Stale</th><td>${e.stale ? 'yes (a newer event about the same object came first)' : 'no'}</td></tr>
<tr><th>Rules</th><td>${e.rules.length === 0 ? html`<span class="muted">none matched</span>` : e.rules.map((r) => html`<code>${r}</code> `)}</td></tr>
${(e.acceptances?.length ?? 0) > 1 ? html`<tr><th>Accepted</th><td>${e.acceptances?.map((a) => html`${when(a.accepted_at)} (${a.source})<br>`)}</td></tr>` : ''}
</tbody></table>
<h2>Deliveries</h2>
${e.deliveries.length === 0 ? html`<p class="muted">No rule sent this event anywhere.</p>` : ''}
${e.deliveries.map(
  (d) => html`<section data-delivery="${d.destination}"><h3>${d.destination} ${pill(d.state)}</h3>
${d.next_attempt_at !== undefined ? html`<p>Next attempt: ${when(d.next_attempt_at)}</p>` : ''}
<table><thead><tr><th>#</th><th>At</th><th>Status</th><th>Error</th><th>Duration</th></tr></thead><tbody>
${d.attempts.length === 0 ? html`<tr><td colspan="5" class="muted">No attempt yet.</td></tr>` : ''}
${d.attempts.map((a, i) => html`<tr><td>${i + 1}</td><td>${when(a.at)}</td><td>${a.status ?? '—'}</td><td>${a.error !== null ? html`<code>${a.error}</code>` : '—'}</td><td>${a.duration_ms} ms</td></tr>`)}
</tbody></table></section>`,
)}
<h2>Payload</h2>
${
  !payload.allowed
    ? html`<p class="muted">Payloads are not shown in this console (<code>console_show_payloads = false</code>).</p>`
    : payload.shown !== null
      ? html`<pre data-payload>${payload.shown}</pre>`
      : payload.missing
        ? html`<p class="muted">The body is no longer kept (older than <code>dedup_retention_days</code>).</p>`
        : html`<form method="get" action="/console/events/${encodeURIComponent(e.id)}"><input type="hidden" name="payload" value="1"><button type="submit">Show payload</button></form>`
}`,
  );
}

export interface DeadLetterFilterForm {
  destination: string;
  event_type: string;
  reason: string;
  since: string;
  until: string;
}

export function deadLettersPage(f: Frame, d: { form: DeadLetterFilterForm; items: DeadLetterSummary[]; total: number; next: number | null; query: string; destinations: string[] }): Html {
  const fv = d.form;
  const hiddenFilter = html`<input type="hidden" name="destination" value="${fv.destination}"><input type="hidden" name="event_type" value="${fv.event_type}">
<input type="hidden" name="reason" value="${fv.reason}"><input type="hidden" name="since" value="${fv.since}"><input type="hidden" name="until" value="${fv.until}">`;
  return layout(
    'Dead letters',
    f,
    html`<h1>Dead letters <span class="muted">(${d.total} stored)</span></h1>
<form class="filters" method="get" action="/console/dead-letters">
<label>Destination<input name="destination" value="${fv.destination}" list="destinations"></label>
<datalist id="destinations">${d.destinations.map((n) => html`<option value="${n}"></option>`)}</datalist>
<label>Event type<input name="event_type" value="${fv.event_type}" placeholder="dsync.*"></label>
<label>Reason<input name="reason" value="${fv.reason}" placeholder="http_*"></label>
<label>Since<input name="since" value="${fv.since}" placeholder="2026-11-28T09:00:00Z"></label>
<label>Until<input name="until" value="${fv.until}" placeholder="2026-11-28T11:00:00Z"></label>
<button type="submit">Filter</button></form>
<form method="post" action="/console/dead-letters/selected">
<input type="hidden" name="csrf" value="${f.csrf}">
<table><thead><tr><th></th><th>#</th><th>Dead since</th><th>Event</th><th>Type</th><th>Destination</th><th>Reason</th><th>Attempts</th></tr></thead><tbody>
${d.items.length === 0 ? html`<tr><td colspan="8" class="muted">No dead letters match.</td></tr>` : ''}
${d.items.map(
  (r) => html`<tr><td><input type="checkbox" name="seq" value="${r.seq}" aria-label="select ${r.seq}"></td><td>${r.seq}</td><td>${when(r.dead_at)}</td>
<td><a href="/console/events/${encodeURIComponent(r.event_id)}"><code>${r.event_id}</code></a></td><td>${r.event_type}</td><td>${r.destination}</td><td><code>${r.reason}</code>${r.last_status !== null ? ` (HTTP ${r.last_status})` : ''}</td><td>${r.attempts}</td></tr>`,
)}
</tbody></table>
<div class="actions"><button type="submit" name="action" value="replay" class="primary">Replay selected</button><button type="submit" name="action" value="discard" class="danger">Discard selected</button></div>
</form>
${d.next !== null ? html`<p><a href="/console/dead-letters?${d.query}${d.query === '' ? '' : '&'}after=${d.next}">Next page →</a></p>` : ''}
<h2>Everything this filter selects</h2>
<p class="muted">Acts on every dead letter the filter above selects, in the background. The number it would act on is shown first.</p>
<div class="actions">
<form class="inline" method="post" action="/console/dead-letters/bulk"><input type="hidden" name="csrf" value="${f.csrf}">${hiddenFilter}<input type="hidden" name="action" value="replay"><button type="submit">Replay all matching…</button></form>
<form class="inline" method="post" action="/console/dead-letters/bulk"><input type="hidden" name="csrf" value="${f.csrf}">${hiddenFilter}<input type="hidden" name="action" value="discard"><button type="submit" class="danger">Discard all matching…</button></form>
</div>`,
  );
}

/** The dry-run count, and the confirmation that starts the action (its idempotency key makes a double submit harmless). */
export function confirmPage(
  f: Frame,
  d: { title: string; text: string; action: string; fields: Record<string, string>; confirmLabel: string; danger: boolean; back: string; count: number },
): Html {
  return layout(
    d.title,
    f,
    html`<h1>${d.title}</h1><p data-matched="${d.count}">${d.text}</p>
${
  d.count > 0
    ? html`<form method="post" action="${d.action}"><input type="hidden" name="csrf" value="${f.csrf}">
${Object.entries(d.fields).map(([k, v]) => html`<input type="hidden" name="${k}" value="${v}">`)}
<input type="hidden" name="confirm" value="1"><div class="actions"><button type="submit" class="${d.danger ? 'danger' : 'primary'}">${d.confirmLabel}</button><a href="${d.back}">Cancel</a></div></form>`
    : html`<p><a href="${d.back}">Back</a></p>`
}`,
  );
}

export function destinationsPage(f: Frame, rows: DestinationRow[]): Html {
  return layout(
    'Destinations',
    f,
    html`<h1>Destinations</h1>
<p class="muted">Pausing holds every delivery for a destination in storage (up to 14 days) without using its attempts; resuming delivers them in acceptance order, each once.</p>
${destinationsTable(rows, f.csrf)}`,
  );
}
