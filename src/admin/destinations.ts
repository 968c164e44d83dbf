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

/** Every configured destination with its state, health, held deliveries and dead letters. */
export async function destinationList(env: Env) {
  const config = configOf(env);
  const names = [...config.destinations.keys()];
  const [health, deadLetters, held] = await Promise.all([
    registryStub(env).health(names),
    deadLetterStub(env).countsByDestination(),
    Promise.all(names.map((n) => heldStub(env, n).count())),
  ]);
  return health.map((h, i) => ({
    ...h,
    type: config.destinations.get(h.name)?.type,
    held: held[i] ?? 0,
    dead_letters: deadLetters[h.name] ?? 0,
  }));
}

export async function pauseDestination(env: Env, param: string): Promise<{ name: string; state: 'paused'; paused_at: string }> {
  const config = configOf(env);
  const name = known(config, param);
  // The registry pauses the destination's held store too (it alone tells it to hold or drain), and a Slack
  // destination's outbox, which keeps what it buffered (and what alerts add) until the resume.
  const at = await registryStub(env).pause(name, { slack: config.destinations.get(name)?.type === 'slack' });
  return { name, state: 'paused', paused_at: new Date(at).toISOString() };
}

export async function resumeDestination(env: Env, param: string): Promise<{ name: string; state: 'active'; held: number }> {
  const config = configOf(env);
  const name = known(config, param);
  // The registry tells the held store to drain, unless the circuit is open: then they wait for it to close.
  const { held: sync } = await registryStub(env).resume(name, { slack: config.destinations.get(name)?.type === 'slack' });
  const held = sync.state === 'draining' ? sync.held : await heldStub(env, name).count();
  return { name, state: 'active', held };
}

destinationRoutes.get('/', async (c) => c.json({ items: await destinationList(c.env) }));
destinationRoutes.post('/:name/pause', async (c) => c.json(await pauseDestination(c.env, c.req.param('name'))));
destinationRoutes.post('/:name/resume', async (c) => c.json(await resumeDestination(c.env, c.req.param('name'))));
