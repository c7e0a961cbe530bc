import { useRef, useState, type FormEvent } from "react";

import { DATASET_FORMATS, datasetsApi, type Dataset, type DatasetFormat } from "../../api/catalog";
import { ApiError } from "../../api/client";
import { Alert } from "../../components/Alert";
import { Button } from "../../components/Button";
import { Field } from "../../components/Field";
import { SelectField, TextAreaField } from "../../components/Fields";
import { useI18n } from "../../i18n";
import type { MessageKey } from "../../i18n/en";
import { formatBytes } from "../../lib/format";
import { rowProblems } from "./uploadErrors";

type UploadField = "name" | "format" | "remark" | "file";

/** Upload one dataset: files streamed with a progress bar; rows that do not fit the format listed one by one. */
export function UploadForm({ onDone, onCancel }: { onDone: (dataset: Dataset) => void; onCancel: () => void }) {
  const { t } = useI18n();
  const [name, setName] = useState("");
  const [format, setFormat] = useState<DatasetFormat>("alpaca");
  const [remark, setRemark] = useState("");
  const [files, setFiles] = useState<File[]>([]);
  const [progress, setProgress] = useState<number | null>(null);
  const [errors, setErrors] = useState<Partial<Record<UploadField, string>>>({});
  const [problem, setProblem] = useState<{ summary: string; rows: string[] } | null>(null);
  const controller = useRef<AbortController | null>(null);

  const submit = async (event: FormEvent) => {
    event.preventDefault();
    setErrors({});
    setProblem(null);
    const missing: Partial<Record<UploadField, string>> = {};
    if (!name.trim()) missing.name = t("form.required");
    if (files.length === 0) missing.file = t("datasets.pickFile");
    if (Object.keys(missing).length) return setErrors(missing);
    controller.current = new AbortController();
    setProgress(0);
    try {
      onDone(await datasetsApi.upload({ name: name.trim(), format, remark, files }, setProgress, controller.current.signal));
    } catch (error) {
      setProgress(null);
      if (error instanceof DOMException && error.name === "AbortError") return;
      if (error instanceof ApiError && (error.code === "invalid_dataset" || error.code === "empty_dataset")) {
        setProblem(rowProblems(error.message));
      } else if (error instanceof ApiError && error.field && ["name", "format", "remark", "file"].includes(error.field)) {
        setErrors({ [error.field as UploadField]: error.message });
      } else {
        setProblem({ summary: error instanceof Error ? error.message : String(error), rows: [] });
      }
    }
  };
  const busy = progress !== null;

  return (
    <section className="card" aria-labelledby="upload-title">
      <h2 id="upload-title">{t("datasets.uploadTitle")}</h2>
      <p className="muted">{t("datasets.uploadIntro")}</p>
      <form className="form" onSubmit={submit} noValidate>
        <div className="grid-2">
          <Field label={t("datasets.name")} name="name" value={name} required maxLength={64} autoComplete="off" error={errors.name} hint={t("datasets.nameHint")} onChange={(e) => setName(e.target.value)} />
          <SelectField
            label={t("datasets.format")}
            name="format"
            value={format}
            options={DATASET_FORMATS.map((f) => ({ value: f, label: t(`format.${f}` as MessageKey) }))}
            onChange={(e) => setFormat(e.target.value as DatasetFormat)}
            error={errors.format}
            hint={t(`formatHint.${format}` as MessageKey)}
          />
        </div>
        <Field
          label={t("datasets.files")}
          name="file"
          type="file"
          multiple
          accept=".json,.jsonl,.csv,.parquet,.zip,.tar,.gz,.tgz"
          error={errors.file}
          hint={t("datasets.filesHint")}
          onChange={(e) => setFiles(Array.from(e.target.files ?? []))}
        />
        {files.length > 0 && (
          <ul className="file-list">
            {files.map((f) => (
              <li key={f.name}>
                {f.name} · {formatBytes(f.size)}
              </li>
            ))}
          </ul>
        )}
        <TextAreaField label={t("datasets.remark")} name="remark" rows={2} maxLength={2000} value={remark} onChange={(e) => setRemark(e.target.value)} />
        {busy && (
          <div className="progress">
            <div className="progress__track" role="progressbar" aria-label={t("datasets.uploadProgress")} aria-valuemin={0} aria-valuemax={100} aria-valuenow={Math.round(progress * 100)}>
              <div className="progress__bar" style={{ width: `${progress * 100}%` }} />
            </div>
            <span className="progress__text">{progress < 1 ? t("datasets.sending", { percent: Math.round(progress * 100) }) : t("datasets.checking")}</span>
          </div>
        )}
        {problem && (
          <Alert tone="error">
            <p>{problem.summary}</p>
            {problem.rows.length > 0 && (
              <ul className="row-problems">
                {problem.rows.map((row) => (
                  <li key={row}>{row}</li>
                ))}
              </ul>
            )}
          </Alert>
        )}
        <div className="form-actions">
          <Button type="submit" variant="primary" busy={busy}>
            {busy ? t("datasets.uploading") : t("datasets.uploadSubmit")}
          </Button>
          <Button onClick={() => (busy ? controller.current?.abort() : onCancel())}>{t("common.cancel")}</Button>
        </div>
      </form>
    </section>
  );
}
