/**
 * `npx tsx bench/profile.ts [events]`: where the router's CPU goes. Starts the
 * router under `wrangler dev` (one HTTP destination on a loopback sink),
 * attaches to its DevTools inspector, samples the Worker's isolate (the
 * webhook Worker, its Durable Objects and its queue consumer run there
 * locally) while N unique events (default 2,000, 10 in flight) are accepted
 * and delivered, and reports self time by function and by source file —
 * mapped back to src/ (and to each package) through the source map wrangler
 * writes next to the bundle it serves. Writes bench/results/profile.json. Not part of `npm run bench`: a
 * diagnostic for the `ingest` CPU ratio. `PROFILE_LOG_LEVEL=warn` profiles
 * the router with `log_level = "warn"` (ingest's second router).
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type RawSourceMap, SourceMapConsumer } from 'source-map-js';
import WebSocket from 'ws';
import { startRouter } from '../scripts/lib/dev-server';
import { startSink } from '../scripts/lib/sink';
import { BENCH_SECRET, EventSource, postEvents, routerToSink } from './lib/events';
import { ROOT } from './lib/machine';
import { sleep } from './lib/stats';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; scriptId: string; url: string; lineNumber: number; columnNumber: number };
  children?: number[];
}
interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

class Cdp {
  private seq = 0;
  private readonly waiting = new Map<number, (v: unknown) => void>();
  private readonly listeners = new Map<string, (params: unknown) => void>();
  constructor(private readonly ws: WebSocket) {
    ws.on('message', (data) => {
      const msg = JSON.parse(String(data)) as { id?: number; result?: unknown; method?: string; params?: unknown };
      if (msg.id !== undefined) this.waiting.get(msg.id)?.(msg.result);
      else if (msg.method !== undefined) this.listeners.get(msg.method)?.(msg.params);
    });
  }
  on(method: string, listener: (params: unknown) => void): void {
    this.listeners.set(method, listener);
  }
  send<T>(method: string, params: object = {}): Promise<T> {
    const id = ++this.seq;
    return new Promise((r) => {
      this.waiting.set(id, r as (v: unknown) => void);
      this.ws.send(JSON.stringify({ id, method, params }));
    });
  }
}

/** Source maps of the scripts the isolate runs (by script id: profile frames name the module, not its file), as the inspector announces them. */
async function sourceMaps(cdp: Cdp): Promise<Map<string, SourceMapConsumer>> {
  const maps = new Map<string, SourceMapConsumer>();
  cdp.on('Debugger.scriptParsed', (p) => {
    const { scriptId, url, sourceMapURL } = p as { scriptId: string; url: string; sourceMapURL?: string };
    if (!url.startsWith('file://') || sourceMapURL === undefined || sourceMapURL === '' || sourceMapURL.startsWith('data:')) return;
    const mapUrl = new URL(sourceMapURL, url).href;
    try {
      const raw = JSON.parse(readFileSync(fileURLToPath(mapUrl), 'utf8')) as RawSourceMap;
      maps.set(scriptId, new SourceMapConsumer(raw));
    } catch (err) {
      // No map on disk: that script stays attributed to its bundle.
      console.warn(`no source map for ${url}: ${(err as Error).message}`);
    }
  });
  await cdp.send('Debugger.enable'); // the inspector announces every script already parsed
  await sleep(500);
  await cdp.send('Debugger.disable');
  return maps;
}

/** Where a function's code was written: its source file and line, through the script's source map when there is one. */
function origin(frame: ProfileNode['callFrame'], maps: Map<string, SourceMapConsumer>): { url: string; line: number } {
  const map = maps.get(frame.scriptId);
  if (map !== undefined) {
    const o = map.originalPositionFor({ line: frame.lineNumber + 1, column: Math.max(0, frame.columnNumber) });
    if (o.source !== null && o.line !== null) return { url: o.source, line: o.line };
  }
  return { url: frame.url, line: frame.lineNumber + 1 };
}

function where(url: string): string {
  if (url === '') return '(runtime / native)';
  const src = url.indexOf('/src/');
  if (src >= 0) return url.slice(src + 1);
  const nm = url.indexOf('node_modules/');
  if (nm >= 0) return url.slice(nm).split('/').slice(0, 2).join('/');
  return url.replace(/^.*\//, '');
}

async function main(): Promise<void> {
  const events = Number(process.argv[2] ?? '') || 2000;
  const logLevel = process.env.PROFILE_LOG_LEVEL ?? 'info';
  const sink = await startSink();
  sink.respond('/p0', () => ({ status: 204 }));
  const router = await startRouter({ timeoutMs: 60_000, vars: { WORKOS_WEBHOOK_SECRET: BENCH_SECRET, ROUTER: routerToSink(sink.url, 1, '/p', { log_level: logLevel }) } });
  try {
    const source = new EventSource();
    const post = (n: number) => postEvents(router.url, source, n, 10);
    const delivered = () => sink.requests.filter((r) => r.path === '/p0').length;
    // Warm up (compile, create the objects), and let it drain.
    await post(200);
    while (delivered() < 200) await sleep(100);

    const targets = (await (await fetch(`http://127.0.0.1:${router.inspectorPort}/json`)).json()) as { webSocketDebuggerUrl: string; title?: string }[];
    const target = targets[0];
    if (target === undefined) throw new Error('no inspector target');
    const ws = new WebSocket(target.webSocketDebuggerUrl);
    await new Promise((r, j) => ws.once('open', r).once('error', j));
    const cdp = new Cdp(ws);
    const maps = await sourceMaps(cdp);
    await cdp.send('Profiler.enable');
    await cdp.send('Profiler.setSamplingInterval', { interval: 200 });
    await cdp.send('Profiler.start');
    const t0 = Date.now();
    await post(events);
    while (delivered() < 200 + events) await sleep(100);
    const wallMs = Date.now() - t0;
    const { profile } = await cdp.send<{ profile: Profile }>('Profiler.stop');
    ws.close();

    const byId = new Map(profile.nodes.map((n) => [n.id, n]));
    const self = new Map<number, number>();
    profile.samples.forEach((id, i) => self.set(id, (self.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0) / 1000));
    const total = [...self.values()].reduce((a, b) => a + b, 0);
    const idle = [...self].filter(([id]) => byId.get(id)?.callFrame.functionName === '(idle)').reduce((a, [, v]) => a + v, 0);
    const busy = total - idle;
    const parent = new Map<number, number>();
    for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
    /** src/<dir>, a file directly in src/, a package, or the runtime. */
    const areaOf = (file: string) => (file.startsWith('src/') && file.split('/').length > 2 ? file.split('/').slice(0, 2).join('/') : file);
    /** The nearest JavaScript frame at or above a node (native work is done on behalf of its caller), if any. */
    const jsCaller = (id: number): ProfileNode | undefined => {
      for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
        const n = byId.get(cur);
        if (n !== undefined && n.callFrame.url !== '') return n;
      }
      return undefined;
    };
    const fnAgg = new Map<string, number>();
    const fileAgg = new Map<string, number>();
    const areaAgg = new Map<string, number>();
    /** By area, JavaScript self time plus the runtime work (SQLite, RPC, I/O, crypto…) called from it. */
    const callerAgg = new Map<string, { js: number; native: number }>();
    /** Runtime work by what it is and the line of ours (or a package's) that asked for it. */
    const siteAgg = new Map<string, number>();
    for (const [id, ms] of self) {
      const n = byId.get(id) as ProfileNode;
      if (n.callFrame.functionName === '(idle)') continue;
      const o = origin(n.callFrame, maps);
      const file = where(o.url);
      const fn = `${n.callFrame.functionName || '(anonymous)'} ${file}${o.url === '' ? '' : `:${o.line}`}`;
      fnAgg.set(fn, (fnAgg.get(fn) ?? 0) + ms);
      fileAgg.set(file, (fileAgg.get(file) ?? 0) + ms);
      const area = areaOf(file);
      areaAgg.set(area, (areaAgg.get(area) ?? 0) + ms);
      // JavaScript is its own caller; runtime work is credited to the nearest JavaScript frame above it.
      const caller = o.url === '' ? jsCaller(id) : undefined;
      const key =
        o.url !== '' ? area : caller === undefined ? `(runtime, no JavaScript caller: ${n.callFrame.functionName || '(anonymous)'})` : areaOf(where(origin(caller.callFrame, maps).url));
      if (o.url === '' && caller !== undefined) {
        const co = origin(caller.callFrame, maps);
        const site = `${n.callFrame.functionName || '(anonymous)'} ← ${caller.callFrame.functionName || '(anonymous)'} ${where(co.url)}:${co.line}`;
        siteAgg.set(site, (siteAgg.get(site) ?? 0) + ms);
      }
      const c = callerAgg.get(key) ?? { js: 0, native: 0 };
      if (o.url === '') c.native += ms;
      else c.js += ms;
      callerAgg.set(key, c);
    }
    const top = (m: Map<string, number>, k: number) =>
      [...m].sort((a, b) => b[1] - a[1]).slice(0, k).map(([name, ms]) => ({ name, ms_per_event: +(ms / events).toFixed(4), share: +(ms / busy).toFixed(3) }));
    const out = {
      date: new Date().toISOString(),
      events,
      log_level: logLevel,
      wall_ms: wallMs,
      isolate_busy_ms_per_event: +(busy / events).toFixed(3),
      source_maps: maps.size,
      by_caller: [...callerAgg]
        .sort((a, b) => b[1].js + b[1].native - (a[1].js + a[1].native))
        .slice(0, 25)
        .map(([name, v]) => ({ name, ms_per_event: +((v.js + v.native) / events).toFixed(4), share: +((v.js + v.native) / busy).toFixed(3), js_ms_per_event: +(v.js / events).toFixed(4), runtime_ms_per_event: +(v.native / events).toFixed(4) })),
      runtime_by_call_site: top(siteAgg, 30),
      by_area: top(areaAgg, 25),
      by_file: top(fileAgg, 25),
      by_function: top(fnAgg, 40),
      note: 'Self time sampled every 200 µs in the Worker isolate (webhook Worker, Durable Objects and queue consumer share it under wrangler dev), mapped to src/ through the bundle\'s source map. "(runtime / native)" is time in the runtime outside JavaScript (garbage collection, I/O, serialisation of RPC and queue messages, SQLite, crypto). by_caller credits that runtime time to the nearest JavaScript frame that called it (SQLite exec to the object that ran the statement, and so on); what has no JavaScript caller (the runtime between calls, I/O completions, garbage collection) is listed on its own.',
    };
    writeFileSync(resolve(ROOT, 'bench/results/profile.json'), `${JSON.stringify(out, null, 2)}\n`);
    console.log(`isolate busy ${out.isolate_busy_ms_per_event} ms per event over ${events} events (wall ${wallMs} ms)`);
    for (const r of out.by_caller) console.log(`${r.ms_per_event.toFixed(3).padStart(8)} ms  ${(100 * r.share).toFixed(1).padStart(5)} %  ${r.name} (js ${r.js_ms_per_event.toFixed(3)}, runtime ${r.runtime_ms_per_event.toFixed(3)})`);
    console.log('--');
    for (const r of out.runtime_by_call_site) console.log(`${r.ms_per_event.toFixed(3).padStart(8)} ms  ${(100 * r.share).toFixed(1).padStart(5)} %  ${r.name}`);
    console.log('--');
    for (const r of out.by_area) console.log(`${r.ms_per_event.toFixed(3).padStart(8)} ms  ${(100 * r.share).toFixed(1).padStart(5)} %  ${r.name}`);
    console.log('--');
    for (const r of out.by_file) console.log(`${r.ms_per_event.toFixed(3).padStart(8)} ms  ${(100 * r.share).toFixed(1).padStart(5)} %  ${r.name}`);
    console.log('--');
    for (const r of out.by_function.slice(0, 30)) console.log(`${r.ms_per_event.toFixed(3).padStart(8)} ms  ${(100 * r.share).toFixed(1).padStart(5)} %  ${r.name}`);
  } finally {
    await router.stop();
    await sink.close();
  }
}

void main();
