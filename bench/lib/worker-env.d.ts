/**
 * For the Node side (benchmarks run Worker modules in Node, e.g. `match`
 * timing the config's startup build): the Worker's `Env`, which `wrangler
 * types` generates for the Worker's own tsconfig only, seen here as a plain
 * map of bindings.
 */
interface Env {
  readonly [binding: string]: unknown;
}
