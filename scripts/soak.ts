/**
 * `npm run soak [-- --events N] [--outage S] [...]`: fault injection over a
 * real `wrangler dev` (see scripts/lib/soak-runner.ts for what is sent, which
 * faults the destinations inject and how the drain is detected).
 *
 * Prints the figures as tables and writes them to bench/results/soak.json.
 * Exit 0 when nothing was lost, nothing was delivered twice, no forged event
 * reached anyone, the Slack counts add up and the run drained in time; 1
 * otherwise; 2 on usage errors. Stops everything it started, also on Ctrl-C.
 */
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { printSoak } from './lib/soak-report';
import { DEFAULTS, type SoakOptions, runSoak } from './lib/soak-runner';

const ROOT = resolve(new URL('..', import.meta.url).pathname);
const DEFAULT_OUT = resolve(ROOT, 'bench/results/soak.json');

const USAGE = `usage: npm run soak -- [options]

  --events N            unique valid events (default ${DEFAULTS.events})
  --rate R              unique events per second (default: as fast as --concurrency allows)
  --concurrency C       concurrent requests to the router (default ${DEFAULTS.concurrency})
  --outage S            the flaky destination refuses everything for S seconds…
  --outage-at S         …starting S seconds after sending starts (default ${DEFAULTS.outageAtSeconds})
  --fail-rate F         fraction of the flaky destination's requests that fail (default ${DEFAULTS.failRate})
  --slack-fail-rate F   fraction of Slack posts answered 503 (default ${DEFAULTS.slackFailRate})
  --max-attempts N      max_attempts of every destination (default ${DEFAULTS.maxAttempts})
  --retry-delay S       retry_delay_seconds of every destination (default ${DEFAULTS.retryDelaySeconds})
  --timeout-ms MS       the flaky destination's timeout_ms; hangs last MS + 1000 (default ${DEFAULTS.timeoutMs})
  --drain-timeout S     give up waiting for the drain S seconds after the last request
                        (default: the worst-case retry schedule + 300 s)
  --seed N              seed for the traffic and the faults (default: random, printed)
  --out FILE            JSON result (default bench/results/soak.json)
  --echo                print wrangler's output
  --router-log FILE     save wrangler's whole output (the router's JSON logs) to FILE
  --live                run the working tree in place (default: a copy of src/ and
                        wrangler.toml taken at start, so edits made during the run
                        do not make wrangler dev reload the router mid-run)`;

function usageError(message: string): never {
  process.stderr.write(`soak: ${message}\n\n${USAGE}\n`);
  process.exit(2);
}

function cli() {
  return parseArgs({
    args: process.argv.slice(2).filter((a) => a !== '--'),
    options: {
      events: { type: 'string' },
      rate: { type: 'string' },
      concurrency: { type: 'string' },
      outage: { type: 'string' },
      'outage-at': { type: 'string' },
      'fail-rate': { type: 'string' },
      'slack-fail-rate': { type: 'string' },
      'max-attempts': { type: 'string' },
      'retry-delay': { type: 'string' },
      'timeout-ms': { type: 'string' },
      'drain-timeout': { type: 'string' },
      seed: { type: 'string' },
      out: { type: 'string' },
      echo: { type: 'boolean' },
      'router-log': { type: 'string' },
      live: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
  });
}

let values: ReturnType<typeof cli>['values'];
try {
  values = cli().values;
} catch (err) {
  usageError((err as Error).message);
}
if (values.help === true) {
  process.stdout.write(`${USAGE}\n`);
  process.exit(0);
}

function num(name: string, value: string | undefined, def: number, min: number, max: number, integer: boolean): number {
  if (value === undefined) return def;
  const v = Number(value);
  if (value.trim() === '' || !Number.isFinite(v) || v < min || v > max || (integer && !Number.isInteger(v))) {
    usageError(`--${name} must be ${integer ? 'a whole number' : 'a number'} from ${min} to ${max}`);
  }
  return v;
}

const controller = new AbortController();
const options: Partial<SoakOptions> = {
  events: num('events', values.events, DEFAULTS.events, 1, 1_000_000, true),
  rate: num('rate', values.rate, DEFAULTS.rate, 0, 10_000, false),
  concurrency: num('concurrency', values.concurrency, DEFAULTS.concurrency, 1, 256, true),
  outageSeconds: num('outage', values.outage, DEFAULTS.outageSeconds, 0, 3600, false),
  outageAtSeconds: num('outage-at', values['outage-at'], DEFAULTS.outageAtSeconds, 0, 86_400, false),
  failRate: num('fail-rate', values['fail-rate'], DEFAULTS.failRate, 0, 0.95, false),
  slackFailRate: num('slack-fail-rate', values['slack-fail-rate'], DEFAULTS.slackFailRate, 0, 0.95, false),
  maxAttempts: num('max-attempts', values['max-attempts'], DEFAULTS.maxAttempts, 1, 100, true),
  retryDelaySeconds: num('retry-delay', values['retry-delay'], DEFAULTS.retryDelaySeconds, 1, 3600, true),
  timeoutMs: num('timeout-ms', values['timeout-ms'], DEFAULTS.timeoutMs, 100, 60_000, true),
  drainTimeoutSeconds: num('drain-timeout', values['drain-timeout'], DEFAULTS.drainTimeoutSeconds, 0, 86_400, false),
  outFile: values.out !== undefined ? resolve(values.out) : DEFAULT_OUT,
  echo: values.echo === true,
  snapshot: values.live !== true,
  ...(values['router-log'] !== undefined ? { routerLogFile: resolve(values['router-log']) } : {}),
  signal: controller.signal,
};
if (values.seed !== undefined) options.seed = num('seed', values.seed, 0, 0, 2 ** 31 - 1, true);

let interrupted = false;
process.on('SIGINT', () => {
  if (interrupted) process.exit(130);
  interrupted = true;
  process.stderr.write('\nsoak: interrupted; stopping wrangler dev and the sink…\n');
  controller.abort();
});

try {
  const result = await runSoak(options);
  printSoak(result);
  process.stdout.write(`\n  → ${options.outFile}\n`);
  process.exitCode = result.ok ? 0 : 1;
} catch (err) {
  process.stderr.write(interrupted ? 'soak: stopped; no result written\n' : `soak: ${(err as Error).stack ?? String(err)}\n`);
  process.exitCode = interrupted ? 130 : 1;
}
// Nothing should keep the loop alive once everything is stopped; do not hang on a stray handle.
setTimeout(() => process.exit(), 2000).unref();
