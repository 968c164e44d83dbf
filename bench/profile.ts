/**
 * `npx tsx bench/profile.ts [events]`: where the router's CPU goes. Starts the
 * router under `wrangler dev` (one HTTP destination on a loopback sink),
 * attaches to its DevTools inspector, samples the Worker's isolate (the
 * webhook Worker, its Durable Objects and its queue consumer run there
 * locally) while N unique events (default 2,000, 10 in flight) are accepted
 * and delivered, and reports self time by function and by source file.
 * Writes bench/results/profile.json. Not part of `npm run bench`: a
 * diagnostic for the `ingest` CPU ratio.
 */
import { writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import WebSocket from 'ws';
import { startRouter } from '../scripts/lib/dev-server';
import { startSink } from '../scripts/lib/sink';
import { BENCH_SECRET, EventSource, postEvents, routerToSink } from './lib/events';
import { ROOT } from './lib/machine';
import { sleep } from './lib/stats';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
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
  constructor(private readonly ws: WebSocket) {
    ws.on('message', (data) => {
      const msg = JSON.parse(String(data)) as { id?: number; result?: unknown };
      if (msg.id !== undefined) this.waiting.get(msg.id)?.(msg.result);
    });
  }
  send<T>(method: string, params: object = {}): Promise<T> {
    const id = ++this.seq;
    return new Promise((r) => {
      this.waiting.set(id, r as (v: unknown) => void);
      this.ws.send(JSON.stringify({ id, method, params }));
    });
  }
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
  const sink = await startSink();
  sink.respond('/p0', () => ({ status: 204 }));
  const router = await startRouter({ timeoutMs: 60_000, vars: { WORKOS_WEBHOOK_SECRET: BENCH_SECRET, ROUTER: routerToSink(sink.url, 1, '/p') } });
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
    const fnAgg = new Map<string, number>();
    const fileAgg = new Map<string, number>();
    for (const [id, ms] of self) {
      const n = byId.get(id) as ProfileNode;
      if (n.callFrame.functionName === '(idle)') continue;
      const file = where(n.callFrame.url);
      const fn = `${n.callFrame.functionName || '(anonymous)'} ${file}${n.callFrame.url === '' ? '' : `:${n.callFrame.lineNumber + 1}`}`;
      fnAgg.set(fn, (fnAgg.get(fn) ?? 0) + ms);
      fileAgg.set(file, (fileAgg.get(file) ?? 0) + ms);
    }
    const top = (m: Map<string, number>, k: number) =>
      [...m].sort((a, b) => b[1] - a[1]).slice(0, k).map(([name, ms]) => ({ name, ms_per_event: +(ms / events).toFixed(4), share: +(ms / busy).toFixed(3) }));
    const out = {
      date: new Date().toISOString(),
      events,
      wall_ms: wallMs,
      isolate_busy_ms_per_event: +(busy / events).toFixed(3),
      by_file: top(fileAgg, 25),
      by_function: top(fnAgg, 40),
      note: 'Self time sampled every 200 µs in the Worker isolate (webhook Worker, Durable Objects and queue consumer share it under wrangler dev). "(runtime / native)" is time in the runtime outside JavaScript (garbage collection, I/O, serialisation of RPC and queue messages, SQLite, crypto).',
    };
    writeFileSync(resolve(ROOT, 'bench/results/profile.json'), `${JSON.stringify(out, null, 2)}\n`);
    console.log(`isolate busy ${out.isolate_busy_ms_per_event} ms per event over ${events} events (wall ${wallMs} ms)`);
    for (const r of out.by_file) console.log(`${r.ms_per_event.toFixed(3).padStart(8)} ms  ${(100 * r.share).toFixed(1).padStart(5)} %  ${r.name}`);
    console.log('--');
    for (const r of out.by_function.slice(0, 30)) console.log(`${r.ms_per_event.toFixed(3).padStart(8)} ms  ${(100 * r.share).toFixed(1).padStart(5)} %  ${r.name}`);
  } finally {
    await router.stop();
    await sink.close();
  }
}

void main();
