/** The cron trigger: one reconciliation run, or a single notice when it is off. */
import { stringBinding } from '../env';
import { logOnce } from '../log';
import { reconcilerStub } from './reconciler';

export async function runScheduledReconcile(env: Env): Promise<void> {
  if (stringBinding(env, 'WORKOS_API_KEY') === undefined) {
    logOnce('reconcile-disabled', 'info', 'reconcile_disabled', {
      detail: 'WORKOS_API_KEY is not set: reconciliation from the Events API is off (wrangler secret put WORKOS_API_KEY to enable).',
    });
    return;
  }
  await reconcilerStub(env).run({ trigger: 'cron' });
}
