/**
 * Shapes of /api/auth, from the gateway's OpenAPI document (services/auth/schemas.py).
 * Times are ISO 8601 strings in UTC; ids are opaque.
 */

import type { components } from "./schema";

type Schemas = components["schemas"];

export type Role = "admin" | "user";

export type User = Schemas["User"];
export type TokenResponse = Schemas["TokenResponse"];
export type ApiKey = Schemas["ApiKey"];
/** Returned once, at creation: `key` is never shown again. */
export type ApiKeyCreated = Schemas["ApiKeyCreated"];
export type ApiKeyScope = Schemas["ApiKeyCreate"]["scope"];
export type UserChange = Schemas["UserChange"];
/** `expires_in_hours` null: never expires. */
export type InviteCreate = Schemas["InviteCreate"];
export type Invite = Schemas["Invite"];

export type RegisterRequest = Schemas["AuthRegisterRequest"];
