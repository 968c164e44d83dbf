/**
 * Optional Workers Analytics Engine output: when an `ANALYTICS` binding is
 * configured (`[[analytics_engine_datasets]] binding = "ANALYTICS"`), each
 * consumer batch writes one data point per (destination, event type, result)
 * it saw — for dashboards over months. Nothing is written without the binding.
 *
 * Data point layout: blobs = [destination, event type, result ("delivered" |
 * "failed" | "held")], doubles = [count, total latency ms (accept → outcome)],
 * indexes = [destination].
 */
import { bindingNamed } from '../env';
import { errorName, log } from '../log';

interface Group {
  destination: string;
  type: string;
  result: 'delivered' | 'failed' | 'held';
  count: number;
  latencyMs: number;
}

export class AnalyticsBatch {
  private readonly groups = new Map<string, Group>();

  add(destination: string, type: string, result: Group['result'], latencyMs: number): void {
    const key = `${destination}\u0000${type}\u0000${result}`;
    const g = this.groups.get(key) ?? { destination, type, result, count: 0, latencyMs: 0 };
    g.count++;
    g.latencyMs += Math.max(0, latencyMs);
    this.groups.set(key, g);
  }

  /** Writes the batch's data points (no subrequest: Analytics Engine writes are fire-and-forget). */
  write(env: Env): number {
    const dataset = analyticsDataset(env);
    if (dataset === null || this.groups.size === 0) return 0;
    try {
      for (const g of this.groups.values()) {
        dataset.writeDataPoint({ blobs: [g.destination, g.type, g.result], doubles: [g.count, g.latencyMs], indexes: [g.destination] });
      }
    } catch (err) {
      log('warn', 'analytics_write_failed', { error: errorName(err) });
      return 0;
    }
    return this.groups.size;
  }
}

function analyticsDataset(env: Env): AnalyticsEngineDataset | null {
  const b = bindingNamed(env, 'ANALYTICS');
  return typeof b === 'object' && b !== null && typeof (b as { writeDataPoint?: unknown }).writeDataPoint === 'function' ? (b as AnalyticsEngineDataset) : null;
}
