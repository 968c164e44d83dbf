/**
 * `npm run check [-- path/to/wrangler.toml]`: validates the ROUTER config with
 * the exact code the Worker runs. Exit 0 when valid, 1 otherwise.
 */
import { parseRouterConfig } from '../src/config/router-config';
import { readWranglerConfig } from './wrangler-config';

const path = process.argv[2] ?? 'wrangler.toml';
let view;
try {
  view = readWranglerConfig(path);
} catch (err) {
  console.error(`✗ ${path}: ${(err as Error).message}`);
  process.exit(1);
}
const result = parseRouterConfig(view.router, view.lookup);
for (const w of result.warnings) console.warn(`! warning: ${w}`);
for (const name of view.missingSecrets) {
  console.warn(`! warning: secret "${name}" is not set locally (dev.env/.dev.vars); before deploying run: wrangler secret put ${name}`);
}
if (!result.ok) {
  for (const p of result.problems) console.error(`✗ ${p}`);
  console.error(`\n${path}: ${result.problems.length} problem(s); the Worker would answer every webhook with 500 config_invalid.`);
  process.exit(1);
}
const { rules, destinations } = result.config;
console.log(`✓ ${path}: ROUTER is valid (${rules.length} rule(s), ${destinations.size} destination(s)).`);
