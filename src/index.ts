/**
 * Worker entry: the Hono app is the `fetch` handler; the same module exports
 * the `queue` handler and the Durable Object classes.
 */
import { env as startupEnv } from 'cloudflare:workers';
import { app } from './app';
import { prepareConfig } from './config/load';
import { consumeBatch } from './queue/consumer';
import { rememberAlertSettings } from './alerts/notifier';
import { runScheduledReconcile } from './reconcile/scheduled';

export { DedupLedger } from './dedup/ledger';
export { DeadLetterStore } from './deadletters/store';
export { SlackOutbox } from './destinations/slack/outbox';
export { Reconciler } from './reconcile/reconciler';
export { DestinationRegistry } from './destinations/registry';
export { HeldDeliveries } from './destinations/held';
export { DeliveryTrace } from './trace/store';
export { AlertNotifier } from './alerts/notifier';

// At the isolate's startup, not in a request: the routing config's validation
// and matcher index (tens of ms for thousands of rules) are built here, within
// the platform's startup limit, and the requests that follow reuse them.
prepareConfig(startupEnv);

export default {
  fetch: app.fetch,
  async queue(batch, env, _ctx) {
    await consumeBatch(batch, env);
  },
  async scheduled(_controller, env, _ctx) {
    await Promise.all([runScheduledReconcile(env), rememberAlertSettings(env)]);
  },
} satisfies ExportedHandler<Env>;
