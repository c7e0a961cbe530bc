/** Calls to /api/auth. */

import { api } from "./client";
import type { ApiKey, ApiKeyCreated, Invite, InviteCreate, RegisterRequest, TokenResponse, User } from "./types";

const BASE = "/api/auth";

export const authApi = {
  login: (username: string, password: string) =>
    api.post<TokenResponse>(`${BASE}/login`, { username, password }, { auth: false }),
  register: (data: RegisterRequest) => api.post<User>(`${BASE}/register`, data, { auth: false }),
  logout: () => api.post<void>(`${BASE}/logout`),
  me: (signal?: AbortSignal) => api.get<User>(`${BASE}/me`, { signal }),

  listApiKeys: (signal?: AbortSignal) => api.get<ApiKey[]>(`${BASE}/api-keys`, { signal }),
  createApiKey: (name: string) => api.post<ApiKeyCreated>(`${BASE}/api-keys`, { name }),
  revokeApiKey: (id: string) => api.delete(`${BASE}/api-keys/${encodeURIComponent(id)}`),

  listInvites: (signal?: AbortSignal) => api.get<Invite[]>(`${BASE}/invites`, { signal }),
  createInvite: (data: InviteCreate) => api.post<Invite>(`${BASE}/invites`, data),
  revokeInvite: (code: string) => api.delete(`${BASE}/invites/${encodeURIComponent(code)}`),
};
