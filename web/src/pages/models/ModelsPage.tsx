import { useState } from "react";
import { Link, useLocation } from "wouter";

import { modelsApi, type Model, type ModelFilters, type ModelPage } from "../../api/catalog";
import { oneOf } from "../../api/client";
import type { Column } from "../../components/DataTable";
import { useUser } from "../../auth/session";
import { Button } from "../../components/Button";
import { choices, FilterBar, ListSection, PagedTable, PageTop, type Filter } from "../../components/ListPage";
import { Timestamp } from "../../components/Timestamp";
import { useI18n, type Translate } from "../../i18n";
import type { MessageKey } from "../../i18n/en";
import { formatBytes, formatCount } from "../../lib/format";
import { PAGE_SIZE, usePagedList } from "../../lib/usePagedList";
import { ModelForm } from "./ModelForm";

const SOURCES: NonNullable<ModelFilters["source"]>[] = ["preset", "train", "export"];
const KINDS: NonNullable<ModelFilters["kind"]>[] = ["base", "lora", "full", "quantized"];

export function ModelsPage() {
  const { t } = useI18n();
  const list = usePagedList({
    filters: ["q", "source", "kind"],
    load: ({ q, source, kind }, page, signal) =>
      modelsApi.list({ q, source: oneOf(source, SOURCES), kind: oneOf(kind, KINDS), page: page ?? 1, limit: PAGE_SIZE }, signal),
    next: (answer: ModelPage) => answer.next_page,
  });

  const admin = useUser().role === "admin";
  const [adding, setAdding] = useState(false);
  const [, navigate] = useLocation();

  return (
    <>
      <PageTop title={t("models.title")}>
        {admin && !adding && <Button onClick={() => setAdding(true)}>{t("models.addPreset")}</Button>}
      </PageTop>
      {adding && (
        <section className="card" aria-labelledby="add-preset">
          <h2 id="add-preset">{t("modelForm.create")}</h2>
          <ModelForm admin onCancel={() => setAdding(false)} onDone={(model) => navigate(`/models/${model.id}`)} />
        </section>
      )}
      <ListSection titleId="models-title" title={t("models.title")} intro={t("models.intro")}>
        <FilterBar label={t("models.filters")} list={list} fields={modelFilters(t)} />
        <PagedTable
          list={list}
          failed={t("models.loadFailed")}
          empty={<p className="empty">{t("models.empty")}</p>}
          total={list.query.data?.total ?? 0}
          labelledBy="models-title"
          columns={modelColumns(t)}
          items={list.items}
          rowKey={(m) => m.id}
        />
      </ListSection>
    </>
  );
}

function modelFilters(t: Translate): Filter<"q" | "source" | "kind">[] {
  return [
    { name: "q", label: t("models.search"), search: true, maxLength: 128 },
    { name: "source", label: t("models.source"), options: choices(t("models.anySource"), SOURCES, (s) => t(`source.${s}` as MessageKey)) },
    { name: "kind", label: t("models.kind"), options: choices(t("models.anyKind"), KINDS, (k) => t(`modelKind.${k}` as MessageKey)) },
  ];
}

function modelColumns(t: Translate): Column<Model>[] {
  return [
    {
      key: "name",
      header: t("models.name"),
      rowHeader: true,
      cell: (m) => (
        <>
          <Link href={`/models/${m.id}`}>{m.name}</Link>
          {m.retired_at && <span className="pill cell-note">{t("models.retired")}</span>}
        </>
      ),
    },
    { key: "kind", header: t("models.kind"), cell: (m) => t(`modelKind.${m.kind}` as MessageKey) },
    { key: "source", header: t("models.source"), cell: (m) => t(`source.${m.source}` as MessageKey) },
    { key: "parent", header: t("models.parent"), cell: (m) => m.base_model ?? "—" },
    { key: "params", header: t("models.params"), numeric: true, cell: (m) => formatCount(m.parameter_count) },
    { key: "size", header: t("models.size"), numeric: true, cell: (m) => formatBytes(m.size_bytes) },
    { key: "created", header: t("jobs.colCreated"), cell: (m) => <Timestamp iso={m.created_at} /> },
  ];
}
