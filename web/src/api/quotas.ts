/** Calls to /api/quotas (the caller's limits; admins: anyone's) and the admins' list of accounts. */

import { api, ok } from "./client";
import type { components } from "./schema";

type Schemas = components["schemas"];

export type Quota = Schemas["Quota"];
/** What an admin sets: every limit at once, null for the platform's default. */
export type QuotaSettings = Required<Schemas["QuotaSettings"]>;
export type UserPage = Schemas["UserPage"];

const userPath = (user_id: string) => ({ params: { path: { user_id } } });

export const quotasApi = {
  mine: (signal?: AbortSignal) => ok(api.GET("/api/quotas/me", { signal })),
  of: (userId: string, signal?: AbortSignal) => ok(api.GET("/api/quotas/{user_id}", { ...userPath(userId), signal })),
  set: (userId: string, settings: QuotaSettings) => ok(api.PUT("/api/quotas/{user_id}", { ...userPath(userId), body: settings })),
  users: (cursor: string | null, signal?: AbortSignal) =>
    ok(api.GET("/api/auth/users", { params: { query: { cursor, limit: 50 } }, signal })),
};
