/**
 * Reads wrangler.toml the way the Worker will see it, for the offline tools
 * (`npm run check`, `npm run route`): the ROUTER var, the queue producer
 * bindings, and the secrets available locally (dev.env, .dev.vars).
 */
import { existsSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { parse } from 'smol-toml';
import type { BindingLookup } from '../src/config/router-config';

export interface WranglerView {
  path: string;
  router: unknown;
  queueBindings: Set<string>;
  localSecrets: Map<string, string>;
  /** Secret names looked up that are not available locally. */
  missingSecrets: Set<string>;
  lookup: BindingLookup;
}

export function readWranglerConfig(path = 'wrangler.toml', envFiles = ['dev.env', '.dev.vars']): WranglerView {
  const full = resolve(path);
  const toml = parse(readFileSync(full, 'utf8')) as Record<string, unknown>;
  const vars = (toml.vars ?? {}) as Record<string, unknown>;
  const queues = (toml.queues ?? {}) as { producers?: { binding: string }[] };
  const queueBindings = new Set((queues.producers ?? []).map((p) => p.binding));
  const localSecrets = new Map<string, string>();
  for (const file of envFiles) {
    if (!existsSync(file)) continue;
    for (const line of readFileSync(file, 'utf8').split('\n')) {
      const m = /^\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*?)\s*$/.exec(line);
      if (m) localSecrets.set(m[1] as string, (m[2] as string).replace(/^"(.*)"$|^'(.*)'$/, '$1$2'));
    }
  }
  const missingSecrets = new Set<string>();
  const lookup: BindingLookup = (name) => {
    if (queueBindings.has(name)) return { send: () => Promise.resolve() };
    if (name in vars) return vars[name];
    const local = localSecrets.get(name);
    if (local !== undefined) return local;
    // A secret set only in Cloudflare (wrangler secret put): validate the shape with a stand-in.
    missingSecrets.add(name);
    return 'https://secret-not-available-locally.invalid/';
  };
  return { path: full, router: vars.ROUTER, queueBindings, localSecrets, missingSecrets, lookup };
}
