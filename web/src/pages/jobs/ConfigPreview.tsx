import { useEffect, useState } from "react";

import { ApiError } from "../../api/client";
import { jobsApi, type JobPreview, type JobRequest } from "../../api/jobs";
import { Alert } from "../../components/Alert";
import { CopyButton } from "../../components/CopyButton";
import { useI18n } from "../../i18n";

/** How long the form must stay still before the server is asked again. */
export const PREVIEW_DELAY_MS = 400;

type Preview =
  | { state: "idle" }
  | { state: "loading"; last: JobPreview | null }
  | { state: "ready"; preview: JobPreview }
  | { state: "refused"; message: string; field: string | null; last: JobPreview | null };

/**
 * The exact YAML a job would run with, rendered by the scheduler itself (`POST /api/jobs?dry_run=true`):
 * the same code that freezes the job's config, so the preview cannot drift from what runs. Asked again a
 * moment after the form stops changing; an answer to an older form is dropped.
 */
export function ConfigPreview({ body }: { body: JobRequest | null }) {
  const { t } = useI18n();
  const preview = useDryRun(body);
  const last = preview.state === "ready" ? preview.preview : preview.state === "idle" ? null : preview.last;

  return (
    <aside className="preview" aria-labelledby="yaml-preview" aria-busy={preview.state === "loading"}>
      <div className="card__header">
        <h2 id="yaml-preview">{t("train.previewTitle")}</h2>
        {last && <CopyButton text={last.config_yaml} label={t("job.copyYaml")} />}
      </div>
      <p className="muted">{t("train.previewNote")}</p>
      {preview.state === "refused" && (
        <Alert tone="error">
          {preview.field ? t("train.previewRefusedField", { field: preview.field, message: preview.message }) : preview.message}
        </Alert>
      )}
      {last && last.stages.length > 1 && <p className="muted">{t("train.previewStages", { stages: last.stages.join(" → ") })}</p>}
      {last?.model_hub && <p className="muted">{t(last.model_hub === "modelscope" ? "hub.modelscope" : "hub.huggingface")}</p>}
      {last ? (
        <pre
          className={preview.state === "ready" ? "code" : "code code--stale"}
          tabIndex={0}
          aria-label={t("train.previewTitle")}
          data-testid="yaml-preview"
        >
          {last.config_yaml}
        </pre>
      ) : (
        <p className="muted">{preview.state === "loading" ? t("train.previewLoading") : t("train.previewIncomplete")}</p>
      )}
    </aside>
  );
}

function useDryRun(body: JobRequest | null): Preview {
  const [preview, setPreview] = useState<Preview>({ state: "idle" });
  const key = body ? JSON.stringify(body) : null;

  useEffect(() => {
    if (key === null) {
      setPreview({ state: "idle" });
      return;
    }
    const controller = new AbortController();
    setPreview((current) => ({ state: "loading", last: lastOf(current) }));
    const timer = window.setTimeout(() => {
      jobsApi.preview(JSON.parse(key) as JobRequest, controller.signal).then(
        (answer) => setPreview({ state: "ready", preview: answer }),
        (error: unknown) => {
          if (controller.signal.aborted) return;
          const message = error instanceof Error ? error.message : String(error);
          const field = error instanceof ApiError ? (error.field ?? null) : null;
          setPreview((current) => ({ state: "refused", message, field, last: lastOf(current) }));
        },
      );
    }, PREVIEW_DELAY_MS);
    return () => {
      window.clearTimeout(timer);
      controller.abort();
    };
  }, [key]);
  return preview;
}

function lastOf(preview: Preview): JobPreview | null {
  if (preview.state === "ready") return preview.preview;
  return preview.state === "idle" ? null : preview.last;
}
