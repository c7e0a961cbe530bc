import { useState, type FormEvent } from "react";
import { Link, useLocation } from "wouter";

import { datasetsApi, type Dataset, type PreviewRow } from "../../api/catalog";
import { Alert } from "../../components/Alert";
import { Button } from "../../components/Button";
import { ConfirmButton } from "../../components/ConfirmButton";
import { TextAreaField } from "../../components/Fields";
import { LoadState } from "../../components/LoadState";
import { PageHeading } from "../../components/PageHeading";
import { useI18n } from "../../i18n";
import { formatBytes, formatCount } from "../../lib/format";
import { useQuery } from "../../lib/useQuery";

export interface Turn {
  role: string;
  content: string;
}

/** A preview row as the chat template receives it, flattened into turns (system first, answers last). */
export function renderedTurns(rendered: Record<string, unknown> | null | undefined): Turn[] {
  if (!rendered) return [];
  const turns: Turn[] = [];
  const text = (value: unknown) => (typeof value === "string" ? value : JSON.stringify(value));
  const add = (role: string, value: unknown) => {
    if (value !== null && value !== undefined && value !== "") turns.push({ role, content: text(value) });
  };
  const addMessages = (value: unknown, fallback: string) => {
    for (const message of Array.isArray(value) ? value : value ? [value] : []) {
      const m = message as { role?: string; content?: unknown };
      add(m.role ?? fallback, m.content);
    }
  };
  add("system", rendered.system);
  add("text", rendered.text);
  addMessages(rendered.prompt, "user");
  addMessages(rendered.response, "assistant");
  if (rendered.chosen) addMessages({ ...(rendered.chosen as object), role: "chosen" }, "chosen");
  if (rendered.rejected) addMessages({ ...(rendered.rejected as object), role: "rejected" }, "rejected");
  return turns;
}

export function DatasetDetailPage({ id }: { id: string }) {
  const { t } = useI18n();
  const dataset = useQuery((signal) => datasetsApi.get(id, signal), [id]);
  return (
    <>
      <p className="breadcrumb">
        <Link href="/datasets">{t("datasets.title")}</Link> / {dataset.data?.name ?? id}
      </p>
      <PageHeading title={dataset.data ? t("dataset.title", { name: dataset.data.name }) : t("datasets.title")} />
      <LoadState loading={dataset.loading && !dataset.data} error={dataset.error} reload={dataset.reload} failed={t("dataset.loadFailed")}>
        {dataset.data && <DatasetBody dataset={dataset.data} onChange={(d) => dataset.update(() => d)} />}
      </LoadState>
    </>
  );
}

function DatasetBody({ dataset, onChange }: { dataset: Dataset; onChange: (d: Dataset) => void }) {
  const { t, formatDateTime } = useI18n();
  const [, navigate] = useLocation();
  const [error, setError] = useState<string | null>(null);
  const remove = async () => {
    try {
      await datasetsApi.remove(dataset.id);
      navigate("/datasets");
    } catch (e) {
      setError(e instanceof Error ? e.message : String(e));
    }
  };
  return (
    <div className="stack">
      <section className="card" aria-labelledby="dataset-about">
        <div className="card__header">
          <h2 id="dataset-about">{t("dataset.about")}</h2>
          <div className="inline-row">
            <Link href={`/jobs/new?kind=train`} className="button">
              {t("dataset.train")}
            </Link>
            <Button onClick={() => datasetsApi.download(dataset.id, dataset.name).catch((e: Error) => setError(e.message))}>
              {t("dataset.download")}
            </Button>
            {dataset.can_edit && (
              <ConfirmButton label={t("dataset.delete")} question={t("dataset.confirmDelete", { name: dataset.name })} confirmLabel={t("dataset.confirmDeleteYes")} onConfirm={remove} />
            )}
          </div>
        </div>
        {error && <Alert tone="error">{error}</Alert>}
        <dl className="details">
          <div>
            <dt>{t("datasets.format")}</dt>
            <dd>{dataset.format}</dd>
          </div>
          <div>
            <dt>{t("datasets.rows")}</dt>
            <dd>{formatCount(dataset.rows)}</dd>
          </div>
          <div>
            <dt>{t("datasets.size")}</dt>
            <dd>{formatBytes(dataset.size_bytes)}</dd>
          </div>
          <div>
            <dt>{t("datasets.visibility")}</dt>
            <dd>{dataset.visibility === "public" ? t("datasets.public") : t("datasets.private")}</dd>
          </div>
          <div>
            <dt>{t("dataset.key")}</dt>
            <dd className="mono">{dataset.key}</dd>
          </div>
          <div>
            <dt>{t("datasets.updated")}</dt>
            <dd>{formatDateTime(dataset.updated_at)}</dd>
          </div>
        </dl>
        <RemarkForm dataset={dataset} onChange={onChange} />
      </section>
      <PreviewSection id={dataset.id} />
    </div>
  );
}

function RemarkForm({ dataset, onChange }: { dataset: Dataset; onChange: (d: Dataset) => void }) {
  const { t } = useI18n();
  const [remark, setRemark] = useState(dataset.remark);
  const [state, setState] = useState<{ busy: boolean; error: string | null; saved: boolean }>({ busy: false, error: null, saved: false });
  if (!dataset.can_edit) return dataset.remark ? <p className="remark">{dataset.remark}</p> : null;
  const save = async (event: FormEvent) => {
    event.preventDefault();
    setState({ busy: true, error: null, saved: false });
    try {
      onChange(await datasetsApi.patch(dataset.id, { remark }));
      setState({ busy: false, error: null, saved: true });
    } catch (e) {
      setState({ busy: false, error: e instanceof Error ? e.message : String(e), saved: false });
    }
  };
  return (
    <form className="form form--remark" onSubmit={save}>
      <TextAreaField label={t("datasets.remark")} rows={2} maxLength={2000} value={remark} error={state.error} onChange={(e) => setRemark(e.target.value)} />
      <div className="inline-row">
        <Button type="submit" busy={state.busy} disabled={remark === dataset.remark}>
          {t("dataset.saveRemark")}
        </Button>
        {state.saved && <span role="status">{t("dataset.remarkSaved")}</span>}
      </div>
    </form>
  );
}

function PreviewSection({ id }: { id: string }) {
  const { t } = useI18n();
  const [rows, setRows] = useState(5);
  const preview = useQuery((signal) => datasetsApi.preview(id, rows, signal), [id, rows]);
  return (
    <section className="card" aria-labelledby="dataset-preview">
      <div className="card__header">
        <h2 id="dataset-preview">{t("dataset.preview")}</h2>
        {rows < 50 && <Button onClick={() => setRows(50)}>{t("dataset.moreRows")}</Button>}
      </div>
      <p className="muted">{t("dataset.previewHint")}</p>
      <LoadState loading={preview.loading && !preview.data} error={preview.error} reload={preview.reload} failed={t("dataset.previewFailed")}>
        <ol className="samples">
          {(preview.data?.rows ?? []).map((row: PreviewRow) => (
            <li key={row.where} className="sample">
              <p className="sample__label mono">{row.where}</p>
              {row.problem && <Alert tone="warning">{row.problem}</Alert>}
              <div className="chat">
                {renderedTurns(row.rendered as Record<string, unknown> | null).map((turn, i) => (
                  <div key={i} className={`chat__turn chat__turn--${turn.role}`}>
                    <span className="chat__role">{turn.role}</span>
                    <pre className="sample__text">{turn.content}</pre>
                  </div>
                ))}
              </div>
              <details>
                <summary>{t("dataset.raw")}</summary>
                <pre className="code">{JSON.stringify(row.raw, null, 2)}</pre>
              </details>
            </li>
          ))}
        </ol>
      </LoadState>
    </section>
  );
}
