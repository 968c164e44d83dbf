/**
 * Worker entry: the Hono app is the `fetch` handler; the same module exports
 * the `queue` handler and the Durable Object classes.
 */
import { app } from './app';
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

export default {
  fetch: app.fetch,
  async queue(batch, env, _ctx) {
    await consumeBatch(batch, env);
  },
  async scheduled(_controller, env, _ctx) {
    await Promise.all([runScheduledReconcile(env), rememberAlertSettings(env)]);
  },
} satisfies ExportedHandler<Env>;
