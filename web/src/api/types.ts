/**
 * Shapes of /api/auth, as the auth service declares them (services/auth/schemas.py).
 * Times are ISO 8601 strings in UTC; ids are opaque.
 * TODO: generate these from the gateway's OpenAPI schema once it aggregates every service.
 */

export type Role = "admin" | "user";

export interface User {
  id: string;
  username: string;
  role: Role | string;
  created_at: string;
}

export interface TokenResponse {
  access_token: string;
  token_type: string;
  expires_in: number;
}

export interface RegisterRequest {
  username: string;
  password: string;
  invite_code: string;
}

export interface ApiKey {
  id: string;
  name: string;
  prefix: string;
  created_at: string;
  last_used_at: string | null;
}

/** Returned once, at creation: `key` is never shown again. */
export interface ApiKeyCreated extends ApiKey {
  key: string;
}

export interface InviteCreate {
  max_uses: number;
  /** null: never expires. */
  expires_in_hours: number | null;
}

export interface Invite {
  code: string;
  max_uses: number;
  uses: number;
  expires_at: string | null;
  revoked_at: string | null;
  created_at: string;
}
