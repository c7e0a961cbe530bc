import type { ReactNode } from "react";

import { ApiError } from "../api/client";
import { useI18n } from "../i18n";
import { Alert } from "./Alert";
import { Button } from "./Button";

/** What a section shows while its data loads or after it failed; renders children once there is data. */
export function LoadState({
  loading,
  error,
  reload,
  children,
  failed,
}: {
  loading: boolean;
  error: unknown;
  reload: () => void;
  children: ReactNode;
  /** What could not be loaded, e.g. "Could not load your jobs." */
  failed: string;
}) {
  const { t } = useI18n();
  if (error) {
    const detail = error instanceof ApiError ? (error.status === 0 ? t("app.unreachable") : error.message) : String(error);
    return (
      <div className="load-state">
        <Alert tone="error">
          {failed} {detail}
        </Alert>
        <Button onClick={reload}>{t("app.retry")}</Button>
      </div>
    );
  }
  if (loading) {
    return (
      <p className="load-state muted" role="status">
        {t("app.loading")}
      </p>
    );
  }
  return <>{children}</>;
}
