/** The cron trigger: one reconciliation run, or a single notice when it is off. */
import { logOnce } from '../log';
import { reconcilerStub } from './reconciler';

export async function runScheduledReconcile(env: Env): Promise<void> {
  const key = (env as { WORKOS_API_KEY?: unknown }).WORKOS_API_KEY;
  if (typeof key !== 'string' || key === '') {
    logOnce('reconcile-disabled', 'info', 'reconcile_disabled', {
      detail: 'WORKOS_API_KEY is not set: reconciliation from the Events API is off (wrangler secret put WORKOS_API_KEY to enable).',
    });
    return;
  }
  await reconcilerStub(env).run({ trigger: 'cron' });
}
