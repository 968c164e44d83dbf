/**
 * What each event family shows: a table of "label: value" facts per family,
 * read from the payload by path. Paths are checked at compile time against the
 * payload types of the family's events (`EventPayload<K>`); paths the wire
 * carries but the SDK does not type are listed explicitly (`X`).
 *
 * Only named paths are ever read, and `at()` refuses sensitive keys (tokens,
 * codes, secrets, URLs…), so a payload field that is not in this table never
 * reaches Slack; what is read is rendered through `literal`/`code`, which also
 * redact secrets by value (see `./redact`).
 */
import {
  eventFamily,
  isCatalogEventType,
  type EventFamily,
  type EventPayload,
  type EventType,
} from '../../../events/catalog';
import type { Field } from './blocks';
import { literal } from './escape';
import { sanitize } from './redact';
import { at, isRecord, isSensitiveKey, render, renderAny, textAt, type Json, type Kind } from './read';

// ---------------------------------------------------------------------------
// Typed paths

type Prev = [never, 0, 1, 2, 3];
/** Dot paths into T (objects only, not into arrays), up to D levels deep. */
type Paths<T, D extends number = 3> = [D] extends [never]
  ? never
  : T extends readonly unknown[]
    ? never
    : T extends object
      ? { [P in keyof T & string]: P | `${P}.${Paths<NonNullable<T[P]>, Prev[D]>}` }[keyof T & string]
      : never;

type TypesLike<P extends string> = Extract<EventType, `${P}${string}`>;
type PathsOf<K extends EventType> = K extends EventType ? Paths<EventPayload<K>> : never;

export interface Fact<P extends string = string> {
  label: string;
  /** Where the value is; with several paths the first present one wins… */
  path: P | readonly P[];
  /** …unless `join` is set: then every present value is shown, joined. */
  join?: string;
  kind?: Kind;
  /** For `list` of objects: the member shown for each item. */
  item?: string;
}

export interface Spec<K extends EventType = EventType, X extends string = never> {
  /** What the event is about, for the top line (first present path wins). */
  subject?: readonly (PathsOf<K> | X)[];
  facts: readonly Fact<PathsOf<K> | X>[];
  /** Something that must stand out: rendered as a warning section at the top. */
  warning?: (data: Json) => string | undefined;
}

/** Any family's spec, paths widened to `string`. */
export interface AnySpec {
  subject?: readonly string[];
  facts: readonly Fact[];
  warning?: (data: Json) => string | undefined;
}

// ---------------------------------------------------------------------------
// The table

/** "First Last" from `<prefix>first_name` and `<prefix>last_name`. */
const name = <P extends string>(prefix: P) =>
  ({ path: [`${prefix}first_name`, `${prefix}last_name`], join: ' ' }) as const;

const AUTHENTICATION: Spec<TypesLike<'authentication.'>, 'verdict' | 'radar_detection_id'> = {
  subject: ['email', 'user_id', 'ip_address'],
  facts: [
    { label: 'Method', path: ['type', 'auth_method'] },
    { label: 'Email', path: 'email' },
    { label: 'User', path: 'user_id', kind: 'id' },
    { label: 'IP address', path: 'ip_address', kind: 'id' },
    { label: 'User agent', path: 'user_agent' },
    { label: 'Error code', path: 'error.code', kind: 'id' },
    { label: 'Error', path: 'error.message', kind: 'long' },
    { label: 'Radar verdict', path: 'verdict', kind: 'id' },
    { label: 'Radar action', path: 'action', kind: 'id' },
    { label: 'Radar control', path: 'control', kind: 'id' },
    { label: 'Blocklist', path: 'blocklist_type', kind: 'id' },
    { label: 'Radar detection', path: 'radar_detection_id', kind: 'id' },
    { label: 'SSO connection', path: 'sso.connection_id', kind: 'id' },
    { label: 'Organization', path: 'sso.organization_id', kind: 'id' },
  ],
};

const DSYNC_DIRECTORY: Spec<'dsync.activated' | 'dsync.deleted'> = {
  subject: ['name', 'id'],
  facts: [
    { label: 'Directory', path: 'name' },
    { label: 'Directory ID', path: 'id', kind: 'id' },
    { label: 'Type', path: 'type' },
    { label: 'State', path: 'state', kind: 'id' },
    { label: 'Organization', path: 'organization_id', kind: 'id' },
    { label: 'Domains', path: 'domains', kind: 'list', item: 'domain' },
  ],
};

const DSYNC_USER: Spec<TypesLike<'dsync.user.'>> = {
  subject: ['email', 'id'],
  facts: [
    { label: 'Name', ...name('') },
    { label: 'Email', path: 'email' },
    { label: 'State', path: 'state', kind: 'id' },
    { label: 'Directory', path: 'directory_id', kind: 'id' },
    { label: 'Organization', path: 'organization_id', kind: 'id' },
    { label: 'Role', path: 'role.slug', kind: 'id' },
    { label: 'Roles', path: 'roles', kind: 'list', item: 'slug' },
    { label: 'Directory user', path: 'id', kind: 'id' },
    { label: 'Changed', path: 'previous_attributes', kind: 'keys' },
  ],
};

const DSYNC_GROUP: Spec<'dsync.group.created' | 'dsync.group.updated' | 'dsync.group.deleted'> = {
  subject: ['name', 'id'],
  facts: [
    { label: 'Group', path: 'name' },
    { label: 'Group ID', path: 'id', kind: 'id' },
    { label: 'Directory', path: 'directory_id', kind: 'id' },
    { label: 'Organization', path: 'organization_id', kind: 'id' },
    { label: 'Changed', path: 'previous_attributes', kind: 'keys' },
  ],
};

const DSYNC_GROUP_MEMBER: Spec<TypesLike<'dsync.group.user_'>> = {
  subject: ['user.email', 'user.id'],
  facts: [
    { label: 'User', ...name('user.') },
    { label: 'Email', path: 'user.email' },
    { label: 'User state', path: 'user.state', kind: 'id' },
    { label: 'Group', path: 'group.name' },
    { label: 'Group ID', path: 'group.id', kind: 'id' },
    { label: 'Directory', path: 'directory_id', kind: 'id' },
    { label: 'Organization', path: ['group.organization_id', 'user.organization_id'], kind: 'id' },
  ],
};

const CONNECTION: Spec<'connection.activated' | 'connection.deactivated' | 'connection.deleted'> = {
  subject: ['name', 'id'],
  facts: [
    { label: 'Connection', path: 'name' },
    { label: 'Connection ID', path: 'id', kind: 'id' },
    { label: 'Type', path: 'connection_type', kind: 'id' },
    { label: 'State', path: 'state', kind: 'id' },
    { label: 'Organization', path: 'organization_id', kind: 'id' },
    { label: 'Domains', path: 'domains', kind: 'list', item: 'domain' },
  ],
};

const SAML_CERTIFICATE: Spec<TypesLike<'connection.saml_certificate_'>> = {
  subject: ['connection.id'],
  facts: [
    { label: 'Connection', path: 'connection.id', kind: 'id' },
    { label: 'Organization', path: 'connection.organization_id', kind: 'id' },
    { label: 'Certificate', path: 'certificate.certificate_type', kind: 'id' },
    { label: 'Expires', path: 'certificate.expiry_date' },
    { label: 'Days until expiry', path: 'days_until_expiry', kind: 'num' },
    { label: 'Expired', path: 'certificate.is_expired', kind: 'bool' },
    { label: 'Renewed at', path: 'renewed_at' },
  ],
  warning: (d) => {
    const expiry = textAt(d, 'certificate.expiry_date');
    const on = expiry === undefined ? '' : ` (${literal(expiry, 100)})`;
    if (at(d, 'certificate.is_expired') === true) return `:warning: *The SAML certificate has expired*${on}`;
    const days = at(d, 'days_until_expiry');
    if (typeof days === 'number' && Number.isFinite(days)) {
      return `:warning: *The SAML certificate expires in ${days} day${days === 1 ? '' : 's'}*${on}`;
    }
    return undefined;
  },
};

const ORGANIZATION: Spec<TypesLike<'organization.'>> = {
  subject: ['name', 'id'],
  facts: [
    { label: 'Organization', path: 'name' },
    { label: 'Organization ID', path: 'id', kind: 'id' },
    { label: 'External ID', path: 'external_id', kind: 'id' },
    { label: 'Domains', path: 'domains', kind: 'list', item: 'domain' },
    { label: 'Profiles outside organization', path: 'allow_profiles_outside_organization', kind: 'bool' },
  ],
};

const ORGANIZATION_DOMAIN: Spec<TypesLike<'organization_domain.'>> = {
  subject: ['domain', 'organization_domain.domain'],
  facts: [
    { label: 'Domain', path: ['domain', 'organization_domain.domain'] },
    { label: 'State', path: ['state', 'organization_domain.state'], kind: 'id' },
    { label: 'Failure reason', path: 'reason', kind: 'long' },
    { label: 'Verification', path: ['verification_strategy', 'organization_domain.verification_strategy'], kind: 'id' },
    { label: 'Organization', path: ['organization_id', 'organization_domain.organization_id'], kind: 'id' },
    { label: 'Domain ID', path: ['id', 'organization_domain.id'], kind: 'id' },
  ],
};

const ORGANIZATION_MEMBERSHIP: Spec<TypesLike<'organization_membership.'>> = {
  subject: ['user_id'],
  facts: [
    { label: 'User', path: 'user_id', kind: 'id' },
    { label: 'Organization', path: 'organization_name' },
    { label: 'Organization ID', path: 'organization_id', kind: 'id' },
    { label: 'Status', path: 'status', kind: 'id' },
    { label: 'Role', path: 'role.slug', kind: 'id' },
    { label: 'Roles', path: 'roles', kind: 'list', item: 'slug' },
    { label: 'Directory managed', path: 'directory_managed', kind: 'bool' },
    { label: 'Membership ID', path: 'id', kind: 'id' },
  ],
};

const INVITATION: Spec<TypesLike<'invitation.'>> = {
  subject: ['email'],
  facts: [
    { label: 'Email', path: 'email' },
    { label: 'State', path: 'state', kind: 'id' },
    { label: 'Organization', path: 'organization_id', kind: 'id' },
    { label: 'Invited by', path: 'inviter_user_id', kind: 'id' },
    { label: 'Accepted by', path: 'accepted_user_id', kind: 'id' },
    { label: 'Expires', path: 'expires_at' },
    { label: 'Accepted at', path: 'accepted_at' },
    { label: 'Revoked at', path: 'revoked_at' },
    { label: 'Invitation ID', path: 'id', kind: 'id' },
  ],
};

const USER: Spec<TypesLike<'user.'>> = {
  subject: ['email', 'id'],
  facts: [
    { label: 'Name', ...name('') },
    { label: 'Email', path: 'email' },
    { label: 'Email verified', path: 'email_verified', kind: 'bool' },
    { label: 'User ID', path: 'id', kind: 'id' },
    { label: 'External ID', path: 'external_id', kind: 'id' },
    { label: 'Last sign-in', path: 'last_sign_in_at' },
    { label: 'Locale', path: 'locale', kind: 'id' },
  ],
};

const SESSION: Spec<TypesLike<'session.'>> = {
  subject: ['user_id'],
  facts: [
    { label: 'User', path: 'user_id', kind: 'id' },
    { label: 'Organization', path: 'organization_id', kind: 'id' },
    { label: 'Auth method', path: 'auth_method', kind: 'id' },
    { label: 'Status', path: 'status', kind: 'id' },
    { label: 'IP address', path: 'ip_address', kind: 'id' },
    { label: 'User agent', path: 'user_agent' },
    { label: 'Impersonator', path: 'impersonator.email' },
    { label: 'Impersonation reason', path: 'impersonator.reason', kind: 'long' },
    { label: 'Expires', path: 'expires_at' },
    { label: 'Ended at', path: 'ended_at' },
    { label: 'Session ID', path: 'id', kind: 'id' },
  ],
  warning: (d) => {
    if (!isRecord(d.impersonator)) return undefined;
    const who = render(at(d, 'impersonator.email')) ?? 'An unknown admin';
    const whom = render(at(d, 'user_id'), 'id') ?? 'an unknown user';
    const why = render(at(d, 'impersonator.reason'), 'long') ?? 'none given';
    return `:rotating_light: *Impersonated session*: ${who} is impersonating user ${whom}\n*Reason:* ${why}`;
  },
};

const VAULT: Spec<TypesLike<'vault.'>> = {
  subject: ['kv_name', 'key_name', 'actor_name', 'organization_id'],
  facts: [
    { label: 'Actor', path: 'actor_name' },
    { label: 'Actor ID', path: 'actor_id', kind: 'id' },
    { label: 'Source', path: 'actor_source', kind: 'id' },
    { label: 'Object', path: 'kv_name' },
    { label: 'Key name', path: 'key_name' },
    { label: 'Key ID', path: 'key_id', kind: 'id' },
    { label: 'Key IDs', path: 'key_ids', kind: 'list' },
    { label: 'Key context', path: 'key_context', kind: 'pairs' },
    { label: 'Organization', path: 'organization_id', kind: 'id' },
    { label: 'Key provider', path: 'key_provider', kind: 'id' },
    { label: 'Verified', path: 'verified', kind: 'bool' },
  ],
};

const API_KEY: Spec<TypesLike<'api_key.'>> = {
  subject: ['name', 'id'],
  facts: [
    { label: 'Name', path: 'name' },
    { label: 'API key ID', path: 'id', kind: 'id' },
    { label: 'Owner', path: ['owner.type', 'owner.id'], join: ' ', kind: 'id' },
    { label: 'Permissions', path: 'permissions', kind: 'list' },
    { label: 'Last used', path: 'last_used_at' },
    { label: 'Expires', path: 'expires_at' },
  ],
};

const FLAG: Spec<TypesLike<'flag.'>> = {
  subject: ['name', 'slug'],
  facts: [
    { label: 'Flag', path: 'name' },
    { label: 'Slug', path: 'slug', kind: 'id' },
    { label: 'Enabled', path: 'enabled', kind: 'bool' },
    { label: 'Default value', path: 'default_value', kind: 'bool' },
    { label: 'Tags', path: 'tags', kind: 'list' },
    { label: 'Description', path: 'description', kind: 'long' },
    { label: 'Flag ID', path: 'id', kind: 'id' },
  ],
};

const ROLE: Spec<TypesLike<'role.'>> = {
  subject: ['slug'],
  facts: [
    { label: 'Role', path: 'slug', kind: 'id' },
    { label: 'Permissions', path: 'permissions', kind: 'list' },
  ],
};

const ORGANIZATION_ROLE: Spec<TypesLike<'organization_role.'>> = {
  subject: ['name', 'slug'],
  facts: [
    { label: 'Role', path: 'name' },
    { label: 'Slug', path: 'slug', kind: 'id' },
    { label: 'Organization', path: 'organization_id', kind: 'id' },
    { label: 'Resource type', path: 'resource_type_slug', kind: 'id' },
    { label: 'Permissions', path: 'permissions', kind: 'list' },
    { label: 'Description', path: 'description', kind: 'long' },
  ],
};

const PERMISSION: Spec<TypesLike<'permission.'>> = {
  subject: ['name', 'slug'],
  facts: [
    { label: 'Permission', path: 'name' },
    { label: 'Slug', path: 'slug', kind: 'id' },
    { label: 'Resource type', path: 'resource_type_slug', kind: 'id' },
    { label: 'System', path: 'system', kind: 'bool' },
    { label: 'Description', path: 'description', kind: 'long' },
    { label: 'Permission ID', path: 'id', kind: 'id' },
  ],
};

const GROUP: Spec<TypesLike<'group.'>> = {
  subject: ['name', 'group_id'],
  facts: [
    { label: 'Group', path: 'name' },
    { label: 'Group ID', path: ['id', 'group_id'], kind: 'id' },
    { label: 'Organization', path: 'organization_id', kind: 'id' },
    { label: 'Membership', path: 'organization_membership_id', kind: 'id' },
    { label: 'Description', path: 'description', kind: 'long' },
  ],
};

/** password_reset.*, magic_auth.*, email_verification.*: never the code/token/URL. */
const ONE_TIME_CREDENTIAL: Spec<TypesLike<'password_reset.' | 'magic_auth.' | 'email_verification.'>> = {
  subject: ['email', 'user_id'],
  facts: [
    { label: 'Email', path: 'email' },
    { label: 'User', path: 'user_id', kind: 'id' },
    { label: 'Expires', path: 'expires_at' },
    { label: 'ID', path: 'id', kind: 'id' },
  ],
};

const PIPES: Spec<TypesLike<'pipes.'>> = {
  subject: ['provider', 'id'],
  facts: [
    { label: 'Provider', path: 'provider', kind: 'id' },
    { label: 'State', path: 'state', kind: 'id' },
    { label: 'User', path: 'user_id', kind: 'id' },
    { label: 'Organization', path: 'organization_id', kind: 'id' },
    { label: 'Scopes', path: 'scopes', kind: 'list' },
    { label: 'Connected account', path: 'id', kind: 'id' },
  ],
};

/** The spec for a catalog type: a switch on the family (exhaustive). */
export function specFor(type: EventType): AnySpec {
  const family = eventFamily(type) as EventFamily;
  switch (family) {
    case 'api_key':
      return API_KEY;
    case 'authentication':
      return AUTHENTICATION;
    case 'connection':
      return type.startsWith('connection.saml_certificate_') ? SAML_CERTIFICATE : CONNECTION;
    case 'dsync':
      if (type.startsWith('dsync.user.')) return DSYNC_USER;
      if (type.startsWith('dsync.group.user_')) return DSYNC_GROUP_MEMBER;
      if (type.startsWith('dsync.group.')) return DSYNC_GROUP;
      return DSYNC_DIRECTORY;
    case 'email_verification':
    case 'magic_auth':
    case 'password_reset':
      return ONE_TIME_CREDENTIAL;
    case 'flag':
      return FLAG;
    case 'group':
      return GROUP;
    case 'invitation':
      return INVITATION;
    case 'organization':
      return ORGANIZATION;
    case 'organization_domain':
      return ORGANIZATION_DOMAIN;
    case 'organization_membership':
      return ORGANIZATION_MEMBERSHIP;
    case 'organization_role':
      return ORGANIZATION_ROLE;
    case 'permission':
      return PERMISSION;
    case 'pipes':
      return PIPES;
    case 'role':
      return ROLE;
    case 'session':
      return SESSION;
    case 'user':
      return USER;
    case 'vault':
      return VAULT;
    default: {
      const unhandled: never = family;
      return unhandled;
    }
  }
}

// ---------------------------------------------------------------------------
// Titles

const FAMILY_LABELS: Record<EventFamily, string> = {
  api_key: 'API key',
  authentication: 'Authentication',
  connection: 'SSO connection',
  dsync: 'Directory Sync',
  email_verification: 'Email verification',
  flag: 'Feature flag',
  group: 'Group',
  invitation: 'Invitation',
  magic_auth: 'Magic Auth',
  organization: 'Organization',
  organization_domain: 'Organization domain',
  organization_membership: 'Organization membership',
  organization_role: 'Organization role',
  password_reset: 'Password reset',
  permission: 'Permission',
  pipes: 'Pipes',
  role: 'Role',
  session: 'Session',
  user: 'User',
  vault: 'Vault',
};

const ACRONYMS: Record<string, string> = {
  saml: 'SAML',
  sso: 'SSO',
  mfa: 'MFA',
  oauth: 'OAuth',
  byok: 'BYOK',
  kek: 'KEK',
  dek: 'DEK',
  api: 'API',
};

const ALERTING = /(failed|risk_detected|renewal_required|reauthorization_needed|deactivated)$/;

/**
 * An event type for plain text (headers are not escaped): as is when it looks
 * like an event type, otherwise a placeholder (the escaped type is still shown
 * in the message body).
 */
export function plainType(type: string): string {
  return /^[\w.:-]{1,100}$/.test(type) ? type : '(unrecognized type)';
}

/** Default header text (plain text): "Authentication: password failed". */
export function titleOf(type: string): string {
  const words = (s: string) =>
    s
      .split(/[._]/)
      .filter((w) => w !== '')
      .map((w) => ACRONYMS[w] ?? w)
      .join(' ');
  if (!isCatalogEventType(type)) return `WorkOS event: ${plainType(type)}`;
  const family = eventFamily(type) as EventFamily;
  const title = `${FAMILY_LABELS[family]}: ${words(type.slice(family.length + 1))}`;
  return ALERTING.test(type) ? `:warning: ${title}` : title;
}

// ---------------------------------------------------------------------------
// Describing an event

export interface Description {
  /** Safe mrkdwn: what the event is about. */
  subject?: string;
  /** Safe mrkdwn warning that must stand out. */
  warning?: string;
  fields: Field[];
}

function isDefined<T>(value: T | undefined): value is T {
  return value !== undefined;
}

function fromSpec(spec: AnySpec, data: Json): Description {
  const fields: Field[] = [];
  for (const f of spec.facts) {
    const paths = typeof f.path === 'string' ? [f.path] : f.path;
    const values = paths.map((p) => render(at(data, p), f.kind, f.item)).filter(isDefined);
    const first = values[0];
    if (first === undefined) continue;
    fields.push({ label: f.label, value: f.join !== undefined ? values.join(f.join) : first });
  }
  const description: Description = { fields };
  // The first subject path with something visible in it.
  for (const path of spec.subject ?? []) {
    const text = textAt(data, path);
    const subject = text === undefined ? '' : sanitize(text).replace(/\s+/g, ' ').trim();
    if (subject === '') continue;
    description.subject = `*${literal(subject, 200)}*`;
    break;
  }
  const warning = spec.warning?.(data);
  if (warning !== undefined) description.warning = warning;
  return description;
}

const GENERIC_MAX_FIELDS = 8;

/** Any event: a few top-level scalar fields of `data`, never the whole payload. */
export function genericDescription(data: Json): Description {
  const fields: Field[] = [];
  for (const [key, value] of Object.entries(data)) {
    if (fields.length >= GENERIC_MAX_FIELDS) break;
    if (isSensitiveKey(key) || (typeof value === 'object' && value !== null)) continue;
    const rendered = renderAny(value);
    const label = literal(key, 60);
    if (rendered !== undefined && label.trim() !== '') fields.push({ label, value: rendered });
  }
  return { fields };
}

/** Facts for any event: the family's table for catalog types, generic otherwise. */
export function describe(type: string, data: Json): Description {
  if (isCatalogEventType(type)) {
    try {
      return fromSpec(specFor(type), data);
    } catch {
      // Defensive: a bug in a family table must not lose the message.
    }
  }
  return genericDescription(data);
}
