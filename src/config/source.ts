/**
 * The routing config in force in this Worker: the `ROUTER` variable, or
 * `router.json`, bundled with the Worker when it is deployed (for a config
 * larger than the 5 KB a variable may hold; `null` in the file means unused).
 * `chooseRouterSource` settles which; `npm run check` reads both the same way.
 */
import bundled from '../../router.json';
import { bindingNamed } from '../env';
import { type RouterSource, chooseRouterSource } from './router-config';

const BUNDLED: unknown = bundled;

export function routerSource(env: Env): RouterSource {
  return chooseRouterSource(bindingNamed(env, 'ROUTER'), BUNDLED);
}
