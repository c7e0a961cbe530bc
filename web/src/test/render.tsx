import { render } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { Router } from "wouter";
import { memoryLocation } from "wouter/memory-location";

import { AppRoutes } from "../App";
import { SessionProvider } from "../auth/session";
import { I18nProvider } from "../i18n";

/** The whole client at `path`, in memory (no browser history), in English. */
export function renderApp(path: string) {
  const location = memoryLocation({ path, record: true });
  const user = userEvent.setup();
  const view = render(
    <I18nProvider lang="en">
      <Router hook={location.hook} searchHook={location.searchHook}>
        <SessionProvider>
          <AppRoutes />
        </SessionProvider>
      </Router>
    </I18nProvider>,
  );
  /** The current path and query, as the router sees it. */
  const current = () => location.history.at(-1) ?? path;
  return { ...view, user, location, current };
}

export const USER = { id: "usr_1", username: "ada", role: "user", created_at: "2025-01-02T03:04:05Z" };
export const ADMIN = { id: "usr_0", username: "root-admin", role: "admin", created_at: "2025-01-01T00:00:00Z" };

export function signIn(token = "tok-123") {
  window.localStorage.setItem("llmct.access_token", token);
}
