/**
 * `npm run bench [-- <name>...]`: runs the benchmarks (all, or the ones named),
 * writes each raw result to bench/results/<name>.json and regenerates
 * BENCHMARKS.md from every result on disk.
 *
 * BENCH_QUICK=1 shortens every phase (for trying the harness; figures are then
 * noisier and are marked as quick in the raw JSON).
 */
import { runCost } from './cost';
import { runIngest } from './ingest';
import { runLatency } from './latency';
import { type BenchDefinition } from './lib/types';
import { machineInfo, machineLine } from './lib/machine';
import { type BenchResult, printTargets, writeBenchmarksMd, writeResult } from './lib/report';
import { SOAK_TITLE } from '../scripts/lib/soak-report';
import { runMatch } from './match';
import { runVerify } from './verify';
import { runTrace } from './trace';
import { runBurst } from './burst';

export const BENCHMARKS: BenchDefinition[] = [
  {
    name: 'verify',
    title: 'Signature verification ops/s (2 KB, 64 KB): ours vs @workos-inc/node vs node:crypto, in Node and in workerd',
    method:
      'Same payloads, same process; each implementation runs back to back for a fixed slice, in rounds whose order rotates; the figure is the median over rounds. ' +
      'The workerd table runs N verifications inside one isolate per request (bench/workerd/verify) and subtracts an n=0 request.',
    run: runVerify,
  },
  {
    name: 'match',
    title: 'Rule matching ns/event at 10, 100, 1,000 and 10,000 rules: our Matcher vs a naive scan',
    method:
      'Configs built through parseRouterConfig (http destinations) from a realistic mix of global rules (exact names, wildcards, exclusions, prefix/suffix filters) and per-tenant rules (`where` on data.organization_id, some with extra conditions); events from makeEvent across all catalog types and tenants. ' +
      'The naive baseline tests every rule in turn with one RegExp per pattern and full `where` evaluation. Both give identical results on every event (checked).',
    run: runMatch,
  },
  {
    name: 'ingest',
    title: 'Webhook ingest throughput and latency on local workerd vs a bare Hono worker (the ceiling), and duplicate-only load',
    method:
      'wrangler dev on loopback; autocannon (programmatic) sends unique, freshly signed events for a fixed duration after a warm-up; the bare worker (bench/workerd/bare) answers 200 after reading the body, and the skeleton (bench/workerd/skeleton) makes the router\'s hops per event with none of its features (the design\'s floor), on the same setup, in the same run.',
    run: runIngest,
  },
  {
    name: 'latency',
    title: 'Accept-to-deliver latency to a loopback HTTP destination, and queue consumer settings',
    method:
      'Events sent at a steady open-loop rate; accept = the router\'s 200 response, deliver = arrival at the loopback sink (matched by X-WorkOS-Event-Id). ' +
      'Each consumer setting runs on a copy of wrangler.toml with only [[queues.consumers]] changed.',
    run: runLatency,
  },
  {
    name: 'cost',
    title: 'Billable operations per accepted event with 1 and 5 destinations, and cost per million events',
    method:
      'A bench-only entry (bench/workerd/instrumented/index.js) re-exports src/index.ts with counting wrappers around the env bindings, the Durable Object classes, the queue handler and fetch; cross-checked against the structured logs and the sink\'s request count.',
    run: runCost,
  },
  {
    name: 'trace',
    title: 'Delivery trace queries (GET /admin/events) over a week of traffic at 10 events/s vs one hour',
    method:
      'A bench-only entry (bench/workerd/trace/index.js) adds a SQL-only seed() to the trace buckets; a synthetic week (6.05 M acceptances, every one to crm, every other one to warehouse too; 0.5 % dead-lettered, 1 % retrying, 0.5 % held) is written into the day buckets, then each query shape is timed through the real admin routes over HTTP, interleaved, against the same shapes over one hour of traffic in the same run.',
    run: runTrace,
  },
  {
    name: 'burst',
    title: 'A directory sync burst (5,000 events at once) against max_per_second = 10, measured at the receiver',
    method:
      'wrangler dev on loopback; 5,000 dsync.user.created sent with 100 requests in flight; the loopback receiver records each arrival; the same burst to a destination without a limit is the baseline, in the same run.',
    run: runBurst,
  },
];

async function main(): Promise<void> {
  const args = process.argv.slice(2).filter((a) => a !== '--');
  if (args.includes('--render')) {
    // BENCHMARKS.md again from the stored results (bench/results/*.json), nothing run.
    writeBenchmarksMd([...BENCHMARKS, { name: 'soak', title: SOAK_TITLE }]);
    process.stdout.write('BENCHMARKS.md regenerated from bench/results\n');
    return;
  }
  const wanted = args.length === 0 || args.includes('all') ? BENCHMARKS.map((b) => b.name) : args;
  const unknown = wanted.filter((n) => !BENCHMARKS.some((b) => b.name === n));
  if (unknown.length > 0) {
    process.stderr.write(`unknown benchmark: ${unknown.join(', ')} (choose from: ${BENCHMARKS.map((b) => b.name).join(', ')}, all)\n`);
    process.exit(2);
  }
  const quick = process.env.BENCH_QUICK === '1';
  const started = Date.now();
  let failed = 0;
  process.stdout.write(`machine: ${machineLine(machineInfo())}${quick ? '  [BENCH_QUICK]' : ''}\n`);
  for (const name of wanted) {
    const def = BENCHMARKS.find((b) => b.name === name) as BenchDefinition;
    process.stdout.write(`\n━━ ${def.name}: ${def.title}\n`);
    const machine = machineInfo();
    const t0 = Date.now();
    try {
      const out = await def.run({ quick });
      const result: BenchResult = {
        name: def.name,
        title: def.title,
        method: def.method,
        machine,
        durationMs: Date.now() - t0,
        targets: out.targets,
        tables: out.tables,
        findings: out.findings,
        raw: { quick, ...((out.raw ?? {}) as object) },
      };
      printTargets(result.targets);
      const path = writeResult(result);
      process.stdout.write(`  → ${path} (${((Date.now() - t0) / 1000).toFixed(0)} s)\n`);
    } catch (err) {
      failed++;
      process.stderr.write(`  ${def.name} failed: ${(err as Error).stack ?? String(err)}\n`);
    }
  }
  // The soak (npm run soak) writes its own result; its section is kept here as last measured.
  writeBenchmarksMd([...BENCHMARKS, { name: 'soak', title: SOAK_TITLE }]);
  process.stdout.write(`\nBENCHMARKS.md regenerated; total ${((Date.now() - started) / 1000).toFixed(0)} s\n`);
  // wrangler children are stopped by each benchmark; nothing should keep the loop alive, but do not hang on a stray handle.
  process.exit(failed > 0 ? 1 : 0);
}

await main();
