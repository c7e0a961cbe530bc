import { useState } from "react";
import { Link, useSearchParams } from "wouter";

import { DATASET_FORMATS, datasetsApi, type Dataset } from "../../api/catalog";
import { Button } from "../../components/Button";
import { Field } from "../../components/Field";
import { SelectField } from "../../components/Fields";
import { LoadState } from "../../components/LoadState";
import { PageHeading } from "../../components/PageHeading";
import { useI18n } from "../../i18n";
import { formatBytes, formatCount } from "../../lib/format";
import { useQuery } from "../../lib/useQuery";
import { UploadForm } from "./UploadForm";

const PAGE_SIZE = 25;

export function DatasetsPage() {
  const { t, formatDateTime } = useI18n();
  const [params, setParams] = useSearchParams();
  const q = params.get("q") ?? "";
  const format = params.get("format") ?? "";
  const visibility = params.get("visibility") ?? "";
  const [cursors, setCursors] = useState<(string | null)[]>([null]);
  const cursor = cursors[cursors.length - 1] ?? null;
  const list = useQuery((signal) => datasetsApi.list({ q, format, visibility, cursor, limit: PAGE_SIZE }, signal), [q, format, visibility, cursor]);
  const [uploading, setUploading] = useState(false);
  const [uploaded, setUploaded] = useState<Dataset | null>(null);

  const setFilter = (name: string, value: string) => {
    setCursors([null]);
    setParams((current) => {
      const next = new URLSearchParams(current);
      if (value) next.set(name, value);
      else next.delete(name);
      return next;
    }, { replace: true });
  };
  const items = list.data?.items ?? [];

  return (
    <>
      <div className="page-top">
        <PageHeading title={t("datasets.title")} />
        <div className="page-top__actions">
          <Button variant="primary" aria-expanded={uploading} onClick={() => setUploading((u) => !u)}>
            {t("datasets.upload")}
          </Button>
        </div>
      </div>
      <div className="stack">
        {uploading && (
          <UploadForm
            onDone={(dataset) => {
              setUploaded(dataset);
              setUploading(false);
              list.reload();
            }}
            onCancel={() => setUploading(false)}
          />
        )}
        {uploaded && (
          <p className="alert alert--success" role="status">
            {t("datasets.uploaded", { name: uploaded.name, rows: uploaded.rows ?? 0 })}{" "}
            <Link href={`/datasets/${uploaded.id}`}>{t("datasets.openPreview")}</Link>
          </p>
        )}
        <section className="card" aria-labelledby="datasets-title">
          <h2 id="datasets-title" className="visually-hidden">
            {t("datasets.title")}
          </h2>
          <div className="filters" role="search" aria-label={t("datasets.filters")}>
            <Field label={t("datasets.search")} type="search" value={q} onChange={(e) => setFilter("q", e.target.value)} maxLength={64} />
            <SelectField
              label={t("datasets.format")}
              value={format}
              options={[{ value: "", label: t("datasets.anyFormat") }, ...DATASET_FORMATS.map((f) => ({ value: f, label: f }))]}
              onChange={(e) => setFilter("format", e.target.value)}
            />
            <SelectField
              label={t("datasets.visibility")}
              value={visibility}
              options={[
                { value: "", label: t("datasets.anyVisibility") },
                { value: "public", label: t("datasets.public") },
                { value: "private", label: t("datasets.private") },
              ]}
              onChange={(e) => setFilter("visibility", e.target.value)}
            />
          </div>
          <LoadState loading={list.loading && !list.data} error={list.error} reload={list.reload} failed={t("datasets.loadFailed")}>
            {items.length === 0 ? (
              <p className="empty">{q || format || visibility ? t("datasets.noMatch") : t("datasets.empty")}</p>
            ) : (
              <div className="table-scroll" role="region" aria-labelledby="datasets-title" tabIndex={0}>
                <table>
                  <thead>
                    <tr>
                      <th scope="col">{t("datasets.name")}</th>
                      <th scope="col">{t("datasets.format")}</th>
                      <th scope="col" className="num">
                        {t("datasets.rows")}
                      </th>
                      <th scope="col" className="num">
                        {t("datasets.size")}
                      </th>
                      <th scope="col">{t("datasets.visibility")}</th>
                      <th scope="col">{t("datasets.remark")}</th>
                      <th scope="col">{t("datasets.updated")}</th>
                    </tr>
                  </thead>
                  <tbody>
                    {items.map((d) => (
                      <tr key={d.id}>
                        <th scope="row">
                          <Link href={`/datasets/${d.id}`}>{d.name}</Link>
                        </th>
                        <td>{d.format}</td>
                        <td className="num">{formatCount(d.rows)}</td>
                        <td className="num">{formatBytes(d.size_bytes)}</td>
                        <td>
                          <span className={d.visibility === "public" ? "pill" : "pill pill--active"}>
                            {d.visibility === "public" ? t("datasets.public") : t("datasets.private")}
                          </span>
                        </td>
                        <td className="cell--wrap muted">{d.remark || "—"}</td>
                        <td>
                          <time dateTime={d.updated_at}>{formatDateTime(d.updated_at)}</time>
                        </td>
                      </tr>
                    ))}
                  </tbody>
                </table>
              </div>
            )}
            <div className="pager">
              <Button disabled={cursors.length === 1} onClick={() => setCursors((c) => c.slice(0, -1))}>
                {t("pager.previous")}
              </Button>
              <span className="muted">{t("pager.total", { page: cursors.length, total: list.data?.total ?? 0 })}</span>
              <Button disabled={!list.data?.next_cursor} onClick={() => list.data?.next_cursor && setCursors((c) => [...c, list.data!.next_cursor])}>
                {t("pager.next")}
              </Button>
            </div>
          </LoadState>
        </section>
      </div>
    </>
  );
}
