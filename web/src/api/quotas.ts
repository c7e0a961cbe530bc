/** Calls to /api/quotas (the caller's limits; admins: anyone's) and the admins' list of accounts. */

import { api, withQuery } from "./client";
import type { components } from "./schema";

type Schemas = components["schemas"];

export type Quota = Schemas["Quota"];
/** What an admin sets: every limit at once, null for the platform's default. */
export type QuotaSettings = Required<Schemas["QuotaSettings"]>;
export type UserPage = Schemas["UserPage"];

const QUOTAS = "/api/quotas";

export const quotasApi = {
  mine: (signal?: AbortSignal) => api.get<Quota>(`${QUOTAS}/me`, { signal }),
  of: (userId: string, signal?: AbortSignal) => api.get<Quota>(`${QUOTAS}/${encodeURIComponent(userId)}`, { signal }),
  set: (userId: string, settings: QuotaSettings) => api.put<Quota>(`${QUOTAS}/${encodeURIComponent(userId)}`, settings),
  users: (cursor: string | null, signal?: AbortSignal) =>
    api.get<UserPage>(withQuery("/api/auth/users", { cursor, limit: 50 }), { signal }),
};
