/** Calls to /api/auth. */

import { anonymousApi, api, ok } from "./client";
import type {
  ApiKey,
  ApiKeyCreated,
  ApiKeyScope,
  Invite,
  InviteCreate,
  RegisterRequest,
  TokenResponse,
  User,
  UserChange,
} from "./types";

export const authApi = {
  login: (username: string, password: string): Promise<TokenResponse> =>
    ok(anonymousApi.POST("/api/auth/login", { body: { username, password } })),
  register: (data: RegisterRequest): Promise<User> => ok(anonymousApi.POST("/api/auth/register", { body: data })),
  logout: () => ok(api.POST("/api/auth/logout")),
  me: (signal?: AbortSignal): Promise<User> => ok(api.GET("/api/auth/me", { signal })),

  listApiKeys: (signal?: AbortSignal): Promise<ApiKey[]> => ok(api.GET("/api/auth/api-keys", { signal })),
  createApiKey: (name: string, scope: ApiKeyScope = "full", expires_in_days: number | null = null): Promise<ApiKeyCreated> =>
    ok(api.POST("/api/auth/api-keys", { body: { name, scope, expires_in_days } })),
  revokeApiKey: (key_id: string) => ok(api.DELETE("/api/auth/api-keys/{key_id}", { params: { path: { key_id } } })),

  listInvites: (signal?: AbortSignal): Promise<Invite[]> => ok(api.GET("/api/auth/invites", { signal })),
  createInvite: (data: InviteCreate): Promise<Invite> => ok(api.POST("/api/auth/invites", { body: data })),
  changeUser: (user_id: string, change: UserChange): Promise<User> =>
    ok(api.PATCH("/api/auth/users/{user_id}", { params: { path: { user_id } }, body: change })),
  resetPassword: (user_id: string, password: string) =>
    ok(api.POST("/api/auth/users/{user_id}/password", { params: { path: { user_id } }, body: { password } })),
  revokeUser: (user_id: string) => ok(api.POST("/api/auth/users/{user_id}/revoke", { params: { path: { user_id } } })),

  revokeInvite: (code: string) => ok(api.DELETE("/api/auth/invites/{code}", { params: { path: { code } } })),
};
