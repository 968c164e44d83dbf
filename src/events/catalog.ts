/**
 * The WorkOS event catalog: every event type in the WorkOS Events reference,
 * as a const list, and `WorkOSEvent`, a discriminated union on `event` with a
 * payload type for each.
 *
 * Payload types come from `@workos-inc/node`'s exported wire types (the
 * snake_case `*Response` interfaces; type-only imports, erased at build time).
 * The SDK (8.13) lacks 14 of the catalog's types; their payloads are
 * hand-written in `./extra-payloads.ts`.
 */
import type { EventResponse as SdkEventResponse } from '@workos-inc/node';
import type { ExtraPayloads, PayloadOverrides } from './extra-payloads';

export const EVENT_TYPES = [
  // API keys
  'api_key.created',
  'api_key.revoked',
  'api_key.updated',
  // Authentication
  'authentication.email_verification_failed',
  'authentication.email_verification_succeeded',
  'authentication.magic_auth_failed',
  'authentication.magic_auth_succeeded',
  'authentication.mfa_failed',
  'authentication.mfa_succeeded',
  'authentication.oauth_failed',
  'authentication.oauth_succeeded',
  'authentication.password_failed',
  'authentication.password_succeeded',
  'authentication.passkey_failed',
  'authentication.passkey_succeeded',
  'authentication.sso_failed',
  'authentication.sso_succeeded',
  'authentication.radar_risk_detected',
  // SSO connections
  'connection.activated',
  'connection.deactivated',
  'connection.deleted',
  'connection.saml_certificate_renewed',
  'connection.saml_certificate_renewal_required',
  // Directory Sync
  'dsync.activated',
  'dsync.deleted',
  'dsync.group.created',
  'dsync.group.deleted',
  'dsync.group.updated',
  'dsync.group.user_added',
  'dsync.group.user_removed',
  'dsync.user.created',
  'dsync.user.deleted',
  'dsync.user.updated',
  // Email verification
  'email_verification.created',
  // Feature flags
  'flag.created',
  'flag.updated',
  'flag.deleted',
  'flag.rule_updated',
  // Groups
  'group.created',
  'group.updated',
  'group.deleted',
  'group.member_added',
  'group.member_removed',
  // Invitations
  'invitation.accepted',
  'invitation.created',
  'invitation.resent',
  'invitation.revoked',
  // Magic Auth
  'magic_auth.created',
  // Organizations
  'organization.created',
  'organization.updated',
  'organization.deleted',
  // Organization domains
  'organization_domain.created',
  'organization_domain.updated',
  'organization_domain.deleted',
  'organization_domain.verified',
  'organization_domain.verification_failed',
  // Organization memberships
  'organization_membership.created',
  'organization_membership.deleted',
  'organization_membership.updated',
  // Custom (organization) roles
  'organization_role.created',
  'organization_role.deleted',
  'organization_role.updated',
  // Password reset
  'password_reset.created',
  'password_reset.succeeded',
  // Permissions
  'permission.created',
  'permission.deleted',
  'permission.updated',
  // Pipes
  'pipes.connected_account.connected',
  'pipes.connected_account.disconnected',
  'pipes.connected_account.reauthorization_needed',
  // Environment roles
  'role.created',
  'role.deleted',
  'role.updated',
  // Sessions
  'session.created',
  'session.revoked',
  // Users
  'user.created',
  'user.deleted',
  'user.updated',
  // Vault
  'vault.byok_key.deleted',
  'vault.byok_key.verification_completed',
  'vault.data.created',
  'vault.data.deleted',
  'vault.data.read',
  'vault.data.updated',
  'vault.dek.decrypted',
  'vault.dek.read',
  'vault.kek.created',
  'vault.metadata.read',
  'vault.names.listed',
] as const;

export type EventType = (typeof EVENT_TYPES)[number];

/** The event families: the part of the name before the first dot. */
export type EventFamily = EventType extends `${infer F}.${string}` ? F : never;

type SdkEventType = SdkEventResponse['event'];

/** Payload of event type K: the SDK's wire type where it has one, ours otherwise. */
export type EventPayload<K extends EventType> = K extends keyof PayloadOverrides
  ? PayloadOverrides[K]
  : K extends SdkEventType
  ? Extract<SdkEventResponse, { event: K }>['data']
  : K extends keyof ExtraPayloads
    ? ExtraPayloads[K]
    : never;

/** The envelope every WorkOS event shares (webhook body and Events API item). */
export interface EventEnvelope<K extends string = string, D = Record<string, unknown>> {
  id: string;
  event: K;
  data: D;
  created_at: string;
  context?: Record<string, unknown>;
  /** Present on Events API items. */
  object?: 'event';
}

/** Every catalog event, discriminated on `event`. */
export type WorkOSEvent = { [K in EventType]: EventEnvelope<K, EventPayload<K>> }[EventType];

/** An envelope whose type is not (yet) in the catalog: still routed by pattern. */
export type UnknownEvent = EventEnvelope<string, Record<string, unknown>>;

const CATALOG: ReadonlySet<string> = new Set(EVENT_TYPES);

export function isCatalogEventType(name: string): name is EventType {
  return CATALOG.has(name);
}

export function eventFamily(name: string): string {
  const dot = name.indexOf('.');
  return dot === -1 ? name : name.slice(0, dot);
}

// Compile-time guards: every SDK event type is in the catalog, and every
// catalog type has a payload type (neither list may drift silently).
type Assert<T extends true> = T;
export type _SdkTypesInCatalog = Assert<SdkEventType extends EventType ? true : false>;
export type _EveryTypeHasPayload = Assert<
  { [K in EventType]: [EventPayload<K>] extends [never] ? K : never }[EventType] extends never ? true : false
>;
