/**
 * Destinations in the admin API: their state and health, pause and resume.
 *
 * - `GET /admin/destinations` → `{ items: [{ name, type, state, paused_at,
 *   last_success_at, last_failure_at, last_error, delivered, failed, held,
 *   dead_letters }] }`
 * - `POST /admin/destinations/<name>/pause` → `{ name, state: "paused", paused_at }`
 * - `POST /admin/destinations/<name>/resume` → `{ name, state: "active", held }`
 *   (the held deliveries then drain in acceptance order).
 */
import { Hono } from 'hono';
import { loadConfig } from '../config/load';
import type { RouterConfig } from '../config/router-config';
import { deadLetterStub } from '../deadletters/store';
import { heldStub } from '../destinations/held';
import { registryStub } from '../destinations/registry';
import { ApiError } from '../http/errors';

export const destinationRoutes = new Hono<{ Bindings: Env }>();

function configOf(env: Env): RouterConfig {
  const loaded = loadConfig(env);
  if (!loaded.ok) throw new ApiError(500, 'config_invalid', 'The router configuration is invalid; see the Worker logs.');
  return loaded.config;
}

function known(config: RouterConfig, name: string): string {
  if (!config.destinations.has(name)) throw new ApiError(404, 'not_found', 'No destination with that name in the configuration.');
  return name;
}

destinationRoutes.get('/', async (c) => {
  const config = configOf(c.env);
  const names = [...config.destinations.keys()];
  const [health, deadLetters, held] = await Promise.all([
    registryStub(c.env).health(names),
    deadLetterStub(c.env).countsByDestination(),
    Promise.all(names.map((n) => heldStub(c.env, n).count())),
  ]);
  return c.json({
    items: health.map((h, i) => ({
      ...h,
      type: config.destinations.get(h.name)?.type,
      held: held[i] ?? 0,
      dead_letters: deadLetters[h.name] ?? 0,
    })),
  });
});

destinationRoutes.post('/:name/pause', async (c) => {
  const name = known(configOf(c.env), c.req.param('name'));
  const at = await registryStub(c.env).pause(name);
  await heldStub(c.env, name).pause(name);
  return c.json({ name, state: 'paused', paused_at: new Date(at).toISOString() });
});

destinationRoutes.post('/:name/resume', async (c) => {
  const name = known(configOf(c.env), c.req.param('name'));
  await registryStub(c.env).resume(name);
  const held = await heldStub(c.env, name).resume(name);
  return c.json({ name, state: 'active', held });
});
