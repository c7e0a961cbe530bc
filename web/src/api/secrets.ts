/** Calls to /api/secrets: the caller's own secrets (trackers' credentials their jobs get). A value goes in and never
 * comes back: the list says only whether each is set and when. */

import { api, ok } from "./client";
import type { components } from "./schema";

export type SecretStatus = components["schemas"]["SecretStatus"];

const named = (name: string) => ({ params: { path: { name } } });

export const secretsApi = {
  list: (signal?: AbortSignal) => ok(api.GET("/api/secrets", { signal })).then((list) => list.items),
  set: (name: string, value: string) => ok(api.PUT("/api/secrets/{name}", { ...named(name), body: { value } })),
  remove: (name: string) => ok(api.DELETE("/api/secrets/{name}", named(name))),
};
