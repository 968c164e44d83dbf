import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { cloudflareTest } from '@cloudflare/vitest-pool-workers';
import { defineConfig } from 'vitest/config';
import { DELIVERY_ROUTER, DELIVERY_SECRETS } from './test/delivery/router';
import { WORKERS_ROUTER } from './test/worker/router';

/** Secrets the in-workerd tests run with (never used outside tests). */
export const TEST_BINDINGS = {
  WORKOS_WEBHOOK_SECRET: 'whsec_test_primary',
  ADMIN_TOKEN: 'test-admin-token',
  WORKOS_API_KEY: 'sk_test_reconcile',
};

/** wrangler.toml's compatibility_date, for the auxiliary Workers (kept in step with it). */
const COMPATIBILITY_DATE = /^compatibility_date\s*=\s*"([^"]+)"/m.exec(readFileSync(new URL('./wrangler.toml', import.meta.url), 'utf8'))?.[1];
if (COMPATIBILITY_DATE === undefined) throw new Error('wrangler.toml has no compatibility_date');

/**
 * The consumer of the router's `audit` queue destination (workos-audit; wrangler.toml
 * declares no consumer for it): test/helpers/audit-sink-worker.mjs keeps every body it
 * consumes, and the tests ask it what was delivered (test/helpers/audit-sentinel.ts).
 * A batch goes to it 50 ms after its first message (or at once with 100).
 */
const AUDIT_SINK = {
  name: 'audit-sink',
  modules: true,
  scriptPath: fileURLToPath(new URL('./test/helpers/audit-sink-worker.mjs', import.meta.url)),
  compatibilityDate: COMPATIBILITY_DATE,
  queueConsumers: { 'workos-audit': { maxBatchSize: 100, maxBatchTimeout: 0.05 } },
};

export default defineConfig({
  test: {
    // Structured logs are part of the product; show them only for failing tests.
    silent: 'passed-only',
    projects: [
      {
        plugins: [
          cloudflareTest({
            wrangler: { configPath: './wrangler.toml' },
            // Its own routing (the shipped one), not whatever wrangler.toml or router.json holds now.
            miniflare: {
              bindings: { ...TEST_BINDINGS, ROUTER: WORKERS_ROUTER },
              serviceBindings: { AUDIT_SINK: AUDIT_SINK.name },
              workers: [AUDIT_SINK],
            },
          }),
        ],
        test: {
          name: 'workers',
          include: ['test/worker/**/*.test.ts'],
        },
      },
      {
        // The Worker as it runs: what the tests enqueue, its own queue
        // consumer really consumes (about a second later), routed by this
        // project's ROUTER; only outbound fetch is played by the tests.
        plugins: [
          cloudflareTest({
            wrangler: { configPath: './wrangler.toml' },
            miniflare: {
              bindings: { ...TEST_BINDINGS, ...DELIVERY_SECRETS, ROUTER: JSON.stringify(DELIVERY_ROUTER) },
              serviceBindings: { AUDIT_SINK: AUDIT_SINK.name },
              workers: [AUDIT_SINK],
            },
          }),
        ],
        test: {
          name: 'delivery',
          include: ['test/delivery/**/*.test.ts'],
          // The DLQ consumer waits up to 5 s to fill a batch; a round trip takes several.
          testTimeout: 30_000,
        },
      },
      {
        // examples/queue-consumer: a downstream Worker consuming the router's
        // queue destination, importing `workos-event-router/events` as a
        // downstream project would (resolved through package.json `exports`).
        plugins: [cloudflareTest({ wrangler: { configPath: './examples/queue-consumer/wrangler.toml' } })],
        test: {
          name: 'example-queue-consumer',
          include: ['examples/queue-consumer/test/**/*.test.ts'],
        },
      },
      {
        test: {
          name: 'e2e',
          include: ['test/e2e/**/*.test.ts'],
          environment: 'node',
          testTimeout: 120_000,
          hookTimeout: 120_000,
          // One wrangler dev at a time: the machine has two cores.
          fileParallelism: false,
        },
      },
    ],
  },
});
