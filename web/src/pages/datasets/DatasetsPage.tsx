import { useState } from "react";
import { Link } from "wouter";

import { DATASET_FORMATS, VISIBILITIES, datasetsApi, type Dataset, type DatasetPage } from "../../api/catalog";
import { oneOf } from "../../api/client";
import { Button } from "../../components/Button";
import type { Column } from "../../components/DataTable";
import { choices, FilterBar, ListSection, PagedTable, PageTop, type Filter } from "../../components/ListPage";
import { Timestamp } from "../../components/Timestamp";
import { useI18n, type Translate } from "../../i18n";
import { formatBytes, formatCount } from "../../lib/format";
import { PAGE_SIZE, usePagedList } from "../../lib/usePagedList";
import { UploadForm } from "./UploadForm";

export function DatasetsPage() {
  const { t } = useI18n();
  const list = usePagedList({
    filters: ["q", "format", "visibility"],
    load: ({ q, format, visibility }, cursor, signal) =>
      datasetsApi.list({ q, format: oneOf(format, DATASET_FORMATS), visibility: oneOf(visibility, VISIBILITIES), cursor, limit: PAGE_SIZE }, signal),
    next: (page: DatasetPage) => page.next_cursor,
  });
  const [uploading, setUploading] = useState(false);
  const [uploaded, setUploaded] = useState<Dataset | null>(null);
  const filtered = Object.values(list.filters).some(Boolean);

  return (
    <>
      <PageTop title={t("datasets.title")}>
        <Button variant="primary" aria-expanded={uploading} onClick={() => setUploading((u) => !u)}>
          {t("datasets.upload")}
        </Button>
      </PageTop>
      <div className="stack">
        {uploading && (
          <UploadForm
            onDone={(dataset) => {
              setUploaded(dataset);
              setUploading(false);
              list.query.reload();
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
        <ListSection titleId="datasets-title" title={t("datasets.title")}>
          <FilterBar label={t("datasets.filters")} list={list} fields={datasetFilters(t)} />
          <PagedTable
            list={list}
            failed={t("datasets.loadFailed")}
            empty={<p className="empty">{filtered ? t("datasets.noMatch") : t("datasets.empty")}</p>}
            total={list.query.data?.total ?? 0}
            labelledBy="datasets-title"
            columns={datasetColumns(t)}
            items={list.items}
            rowKey={(d) => d.id}
          />
        </ListSection>
      </div>
    </>
  );
}

function datasetFilters(t: Translate): Filter<"q" | "format" | "visibility">[] {
  return [
    { name: "q", label: t("datasets.search"), search: true, maxLength: 64 },
    { name: "format", label: t("datasets.format"), options: choices(t("datasets.anyFormat"), DATASET_FORMATS) },
    { name: "visibility", label: t("datasets.visibility"), options: choices(t("datasets.anyVisibility"), VISIBILITIES, visibilityLabel(t)) },
  ];
}

function visibilityLabel(t: Translate) {
  return (visibility: string) => (visibility === "public" ? t("datasets.public") : t("datasets.private"));
}

function datasetColumns(t: Translate): Column<Dataset>[] {
  return [
    { key: "name", header: t("datasets.name"), rowHeader: true, cell: (d) => <Link href={`/datasets/${d.id}`}>{d.name}</Link> },
    { key: "format", header: t("datasets.format"), cell: (d) => d.format },
    { key: "rows", header: t("datasets.rows"), numeric: true, cell: (d) => formatCount(d.rows) },
    { key: "size", header: t("datasets.size"), numeric: true, cell: (d) => formatBytes(d.size_bytes) },
    {
      key: "visibility",
      header: t("datasets.visibility"),
      cell: (d) => (
<span className={d.visibility === "public" ? "pill" : "pill pill--active"}>{visibilityLabel(t)(d.visibility)}</span>
      ),
    },
    { key: "remark", header: t("datasets.remark"), className: "cell--wrap muted", cell: (d) => d.remark || "—" },
    { key: "updated", header: t("datasets.updated"), cell: (d) => <Timestamp iso={d.updated_at} /> },
  ];
}
