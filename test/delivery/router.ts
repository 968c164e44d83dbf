/**
 * The configuration the `delivery` test project runs the Worker with: its
 * queue consumer really consumes what the tests enqueue, so the routes it
 * follows must be the ones the tests expect.
 */
export const CRM = 'https://crm.example.test/workos';
export const OPS = 'https://ops.example.test/hook';
export const SLACK = 'https://hooks.slack.test/services/T000/B000/XXXX';
export const LATEST = 'https://latest.example.test/state';
export const HISTORY = 'https://history.example.test/log';
export const BIG = 'https://big.example.test/in';
export const WAREHOUSE = 'https://warehouse.example.test/in';
export const ONCALL = 'https://hooks.slack.test/services/T000/B000/ONCALL';
export const FLAKY = 'https://flaky.example.test/in';
export const METERED = 'https://metered.example.test/in';
export const BRITTLE = 'https://brittle.example.test/in';
export const ALERTS = 'https://hooks.slack.test/services/T000/B000/ALERTS';
export const FRAGILE = 'https://fragile.example.test/in';

/** Event families the ordering tests use. */
const ORDERED = ['organization.*', 'organization_membership.*', 'group.*', 'role.*', 'organization_role.*', 'dsync.group.user_*', 'vault.*'];

export const DELIVERY_ROUTER = {
  destinations: [
    { name: 'crm', type: 'http', url: CRM, signing_secret: 'CRM_SIGNING_SECRET', headers: { 'X-Team': 'growth' }, max_attempts: 3, retry_delay_seconds: 10, timeout_ms: 200 },
    { name: 'ops', type: 'http', url_secret: 'OPS_URL', max_attempts: 3, retry_delay_seconds: 10 },
    { name: 'security', type: 'slack', url_secret: 'SLACK_URL', digest_window_seconds: 1 },
    { name: 'audit', type: 'queue', queue: 'AUDIT_QUEUE' },
    { name: 'latest', type: 'http', url: LATEST, max_attempts: 3, retry_delay_seconds: 1 },
    { name: 'history', type: 'http', url: HISTORY, max_attempts: 3, retry_delay_seconds: 1 },
    { name: 'big', type: 'http', url: BIG, max_attempts: 3, retry_delay_seconds: 1, timeout_ms: 5000 },
    { name: 'oncall', type: 'slack', url: ONCALL, digest_window_seconds: 1 },
    { name: 'warehouse', type: 'http', url: WAREHOUSE, max_attempts: 3, retry_delay_seconds: 1 },
    { name: 'brittle', type: 'http', url: BRITTLE, max_attempts: 1 },
    { name: 'ops-alerts', type: 'slack', url: ALERTS, digest_window_seconds: 1 },
    { name: 'metered', type: 'http', url: METERED, max_per_second: 20, max_attempts: 3, retry_delay_seconds: 1 },
    { name: 'flaky', type: 'http', url: FLAKY, max_attempts: 6, retry_delay_seconds: 1, circuit: { failures: 20, cooldown_seconds: 2 } },
    { name: 'fragile', type: 'http', url: FRAGILE, max_attempts: 3, retry_delay_seconds: 1, circuit: { failures: 3, cooldown_seconds: 3 } },
  ],
  rules: [
    { name: 'users', events: ['user.*'], to: ['crm', 'ops'] },
    { name: 'failed-logins', events: ['authentication.*_failed'], to: ['security'] },
    { name: 'dsync', events: ['dsync.*', '!dsync.group.updated', '!dsync.group.user_*'], to: ['audit', 'crm'] },
    { name: 'latest-state', events: ORDERED, to: ['latest'], stale: 'drop' },
    { name: 'every-version', events: ORDERED, to: ['history'] },
    { name: 'connections', events: ['connection.*'], to: ['big'] },
    { name: 'api-keys', events: ['api_key.*'], to: ['audit', 'big'] },
    { name: 'mfa', events: ['authentication.mfa_failed'], to: ['oncall'] },
    { name: 'domains', events: ['organization_domain.*'], to: ['warehouse'] },
    { name: 'invitations', events: ['invitation.*'], to: ['flaky'] },
    { name: 'magic', events: ['magic_auth.*'], to: ['metered'] },
    { name: 'resets', events: ['password_reset.*'], to: ['brittle'] },
    { name: 'verifications', events: ['email_verification.*'], to: ['fragile'] },
  ],
  alerts: { to: ['ops-alerts'], min_interval_seconds: 30 },
};

export const DELIVERY_SECRETS = { CRM_SIGNING_SECRET: 'crm-secret', OPS_URL: OPS, SLACK_URL: SLACK };
