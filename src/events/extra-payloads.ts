/**
 * Payload types for catalog events that `@workos-inc/node` 8.13 does not type.
 * Names and shapes follow the WorkOS Events reference and WorkOS's own
 * generated event lists (see README, "Event catalog"). Keep them snake_case:
 * they describe wire bytes.
 */
import type { AuthenticationEventResponse, SerializedApiKey } from '@workos-inc/node';

export type SamlCertificateType = 'ResponseSigning' | 'RequestSigning' | 'ResponseEncryption';

export interface SamlCertificateConnectionRef {
  id: string;
  organization_id?: string;
}

export interface ConnectionSamlCertificateRenewedPayload {
  connection: SamlCertificateConnectionRef;
  certificate: { certificate_type: SamlCertificateType; expiry_date: string };
  renewed_at: string;
}

export interface ConnectionSamlCertificateRenewalRequiredPayload {
  connection: SamlCertificateConnectionRef;
  certificate: { certificate_type: SamlCertificateType; expiry_date: string; is_expired: boolean };
  days_until_expiry: number;
}

export interface GroupPayload {
  object: 'group';
  id: string;
  organization_id: string;
  name: string;
  description?: string | null;
  created_at: string;
  updated_at: string;
}

export interface GroupMemberPayload {
  group_id: string;
  organization_membership_id: string;
}

export interface PipesConnectedAccountPayload {
  object: 'connected_account';
  id: string;
  user_id: string;
  organization_id?: string | null;
  /** The provider slug, for example `github` or `salesforce`. */
  provider: string;
  state: 'connected' | 'disconnected' | 'needs_reauthorization';
  scopes?: string[];
  created_at: string;
  updated_at: string;
}

export interface VaultByokKeyDeletedPayload {
  organization_id: string;
  key_provider: 'AWS_KMS' | 'GCP_KMS' | 'AZURE_KEY_VAULT';
}

export interface ApiKeyUpdatedPayload extends SerializedApiKey {
  expires_at?: string | null;
}

/** WorkOS sends `type: 'passkey'`; the SDK's AuthenticationEventType (8.13) lacks it. */
export type PasskeyAuthenticationPayload = Omit<AuthenticationEventResponse, 'type'> & { type: 'passkey' };

/** Catalog types whose SDK payload type is wrong on the wire: ours wins. */
export interface PayloadOverrides {
  'authentication.passkey_failed': PasskeyAuthenticationPayload;
  'authentication.passkey_succeeded': PasskeyAuthenticationPayload;
}

export interface ExtraPayloads {
  'api_key.updated': ApiKeyUpdatedPayload;
  'authentication.email_verification_failed': AuthenticationEventResponse;
  'authentication.mfa_failed': AuthenticationEventResponse;
  'connection.saml_certificate_renewed': ConnectionSamlCertificateRenewedPayload;
  'connection.saml_certificate_renewal_required': ConnectionSamlCertificateRenewalRequiredPayload;
  'group.created': GroupPayload;
  'group.updated': GroupPayload;
  'group.deleted': GroupPayload;
  'group.member_added': GroupMemberPayload;
  'group.member_removed': GroupMemberPayload;
  'pipes.connected_account.connected': PipesConnectedAccountPayload;
  'pipes.connected_account.disconnected': PipesConnectedAccountPayload;
  'pipes.connected_account.reauthorization_needed': PipesConnectedAccountPayload;
  'vault.byok_key.deleted': VaultByokKeyDeletedPayload;
}
