/**
 * `GET /admin/metrics` (bearer token): the router's counters and gauges in the
 * Prometheus text exposition format (version 0.0.4). Counters live in the
 * destination registry (src/destinations/registry.ts, src/metrics/counters.ts),
 * so they survive isolate restarts; gauges are read when scraped.
 */
import { Hono } from 'hono';
import { loadConfig } from '../config/load';
import { deadLetterStub } from '../deadletters/store';
import { heldStub } from '../destinations/held';
import { registryStub } from '../destinations/registry';
import { flushCounters } from '../metrics/counters';
import { reconcilerStub } from '../reconcile/reconciler';

export const metricsRoutes = new Hono<{ Bindings: Env }>();

type Labels = Record<string, string>;
interface Family {
  help: string;
  type: 'counter' | 'gauge';
  samples: Array<{ labels: Labels; value: number }>;
}

const PREFIX = 'workos_router_';

/** A label value as the format requires: backslash, double quote and newline escaped. */
export function escapeLabelValue(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}

export function renderMetrics(families: Record<string, Family>): string {
  const lines: string[] = [];
  for (const [name, f] of Object.entries(families)) {
    const full = `${PREFIX}${name}`;
    lines.push(`# HELP ${full} ${f.help}`, `# TYPE ${full} ${f.type}`);
    for (const s of f.samples) {
      const labels = Object.entries(s.labels)
        .map(([k, v]) => `${k}="${escapeLabelValue(v)}"`)
        .join(',');
      lines.push(`${full}${labels === '' ? '' : `{${labels}}`} ${Number.isFinite(s.value) ? s.value : 0}`);
    }
  }
  return `${lines.join('\n')}\n`;
}

const HELP: Record<string, Omit<Family, 'samples'>> = {
  webhook_requests_total: { help: 'Webhook requests by outcome (accepted, duplicate, signature failures by reason, …).', type: 'counter' },
  source_ip_outside_allowlist_total: { help: 'Webhook requests from outside allowed_source_ips, by mode.', type: 'counter' },
  delivery_failures_total: { help: 'Failed delivery attempts by destination and class (http_5xx, http_4xx, timeout, network_error, …).', type: 'counter' },
};

metricsRoutes.get('/', async (c) => {
  const env = c.env;
  await flushCounters(env, true);
  const loaded = loadConfig(env);
  const names = loaded.ok ? [...loaded.config.destinations.keys()] : [];
  const registry = registryStub(env);
  const [counters, health, deadLetters, held, reconcile] = await Promise.all([
    registry.counters(),
    registry.health(names),
    deadLetterStub(env).countsByDestination(),
    Promise.all(names.map((n) => heldStub(env, n).count())),
    reconcilerStub(env).status(),
  ]);
  const families: Record<string, Family> = {};
  const family = (name: string, help: string, type: Family['type']) => (families[name] ??= { help, type, samples: [] });
  for (const { key, value } of counters) {
    const [name, labels] = JSON.parse(key) as [string, Labels];
    const h = HELP[name];
    if (h === undefined) continue;
    family(name, h.help, h.type).samples.push({ labels, value });
  }
  family('webhook_requests_total', HELP.webhook_requests_total?.help ?? '', 'counter');
  for (const h of health) {
    const d = { destination: h.name };
    family('deliveries_total', 'Delivery attempts by destination and result.', 'counter').samples.push(
      { labels: { ...d, result: 'delivered' }, value: h.delivered },
      { labels: { ...d, result: 'failed' }, value: h.failed },
    );
    family('circuit_open', '1 while the destination\'s circuit is open.', 'gauge').samples.push({ labels: d, value: h.circuit === 'open' ? 1 : 0 });
    family('paused', '1 while the destination is paused.', 'gauge').samples.push({ labels: d, value: h.state === 'paused' ? 1 : 0 });
    family('consecutive_failures', 'Retryable failures in a row (the circuit breaker\'s streak).', 'gauge').samples.push({ labels: d, value: h.consecutive_failures });
  }
  names.forEach((n, i) => family('held', 'Deliveries held (paused destination or open circuit).', 'gauge').samples.push({ labels: { destination: n }, value: held[i] ?? 0 }));
  const dl = family('dead_letters', 'Dead letters stored, by destination.', 'gauge');
  for (const [destination, n] of Object.entries(deadLetters)) dl.samples.push({ labels: { destination }, value: n });
  family('reconcile_enabled', '1 when reconciliation from the Events API is on.', 'gauge').samples.push({ labels: {}, value: reconcile.enabled ? 1 : 0 });
  family('reconcile_lag_seconds', 'Seconds between now and the newest event reconciliation has read.', 'gauge').samples.push({ labels: {}, value: reconcile.lag_seconds ?? 0 });
  family('reconcile_recovered_total', 'Events the webhooks had missed, recovered from the Events API.', 'counter').samples.push({ labels: {}, value: reconcile.totals.recovered });
  family('reconcile_read_total', 'Events read from the Events API.', 'counter').samples.push({ labels: {}, value: reconcile.totals.read });
  family('config_valid', '1 when ROUTER is valid.', 'gauge').samples.push({ labels: {}, value: loaded.ok ? 1 : 0 });
  return c.text(renderMetrics(families), 200, { 'Content-Type': 'text/plain; version=0.0.4; charset=utf-8', 'Cache-Control': 'no-store' });
});
