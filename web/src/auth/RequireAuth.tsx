import type { ReactNode } from "react";
import { Redirect, useLocation, useSearch, useSearchParams } from "wouter";

import { Alert } from "../components/Alert";
import { Button } from "../components/Button";
import { useI18n } from "../i18n";
import { loginPath, nextOrHome } from "./paths";
import { useSession } from "./session";

/** Renders its children only for a signed-in user; anyone else goes to login and comes back. */
export function RequireAuth({ children }: { children: ReactNode }) {
  const { state, reload } = useSession();
  const { t } = useI18n();
  const [location] = useLocation();
  const search = useSearch();

  switch (state.status) {
    case "signed-in":
      return <>{children}</>;
    case "signed-out":
      return <Redirect to={loginPath({ next: search ? `${location}?${search}` : location })} replace />;
    case "loading":
      return (
        <p className="page-status" role="status">
          {t("app.loading")}
        </p>
      );
    case "error":
      return (
        <div className="page-status">
          <Alert tone="error">
            {state.error.status === 0 ? t("app.unreachable") : state.error.message}
          </Alert>
          <Button onClick={reload}>{t("app.retry")}</Button>
        </div>
      );
  }
}

/** Signed-in people have no business on login or register: send them where they were going. */
export function RedirectIfSignedIn({ children }: { children: ReactNode }) {
  const { state } = useSession();
  const [params] = useSearchParams();
  if (state.status === "signed-in") return <Redirect to={nextOrHome(params.get("next"))} replace />;
  return <>{children}</>;
}
