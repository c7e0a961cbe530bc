/** Where the sign-in flow sends people, and the checks that keep `next` on this site. */

export const HOME_PATH = "/jobs";

export type LoginReason = "expired" | "logged-out" | "registered";

export function loginPath({ reason, next, username }: { reason?: LoginReason; next?: string; username?: string } = {}) {
  const params = new URLSearchParams();
  if (reason) params.set("reason", reason);
  if (username) params.set("username", username);
  if (next && isSafeNext(next) && next !== "/login") params.set("next", next);
  const query = params.toString();
  return query ? `/login?${query}` : "/login";
}

/** Only same-site paths: "/x" but never "//host" or "/\\host", which browsers treat as another site. */
export function isSafeNext(next: string): boolean {
  return next.startsWith("/") && !next.startsWith("//") && !next.startsWith("/\\");
}

export function nextOrHome(next: string | null): string {
  return next && isSafeNext(next) ? next : HOME_PATH;
}
