/**
 * The routing the `workers` test project runs the Worker with: the routing
 * wrangler.toml ships (one queue destination, `audit`, and a rule sending
 * every event to it), given as a binding so that the tests keep testing the
 * product when a project edits its own routing in wrangler.toml, or moves it
 * to router.json.
 */
export const WORKERS_ROUTER = {
  destinations: [{ name: 'audit', type: 'queue', queue: 'AUDIT_QUEUE' }],
  rules: [{ name: 'everything-to-audit', events: ['*'], to: ['audit'] }],
};
