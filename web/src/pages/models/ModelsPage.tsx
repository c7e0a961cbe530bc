import { useState } from "react";
import { Link, useSearchParams } from "wouter";

import { modelsApi } from "../../api/catalog";
import { Button } from "../../components/Button";
import { Field } from "../../components/Field";
import { SelectField } from "../../components/Fields";
import { LoadState } from "../../components/LoadState";
import { PageHeading } from "../../components/PageHeading";
import { useI18n } from "../../i18n";
import type { MessageKey } from "../../i18n/en";
import { formatBytes, formatCount } from "../../lib/format";
import { useQuery } from "../../lib/useQuery";

const PAGE_SIZE = 25;

export function ModelsPage() {
  const { t, formatDateTime } = useI18n();
  const [params, setParams] = useSearchParams();
  const q = params.get("q") ?? "";
  const source = params.get("source") ?? "";
  const kind = params.get("kind") ?? "";
  const [page, setPage] = useState(1);
  const list = useQuery((signal) => modelsApi.list({ q, source, kind, page, limit: PAGE_SIZE }, signal), [q, source, kind, page]);
  const setFilter = (name: string, value: string) => {
    setPage(1);
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
      <PageHeading title={t("models.title")} />
      <section className="card" aria-labelledby="models-title">
        <h2 id="models-title" className="visually-hidden">
          {t("models.title")}
        </h2>
        <p className="muted">{t("models.intro")}</p>
        <div className="filters" role="search" aria-label={t("models.filters")}>
          <Field label={t("models.search")} type="search" value={q} maxLength={128} onChange={(e) => setFilter("q", e.target.value)} />
          <SelectField
            label={t("models.source")}
            value={source}
            options={[{ value: "", label: t("models.anySource") }, ...["preset", "train", "export"].map((s) => ({ value: s, label: t(`source.${s}` as MessageKey) }))]}
            onChange={(e) => setFilter("source", e.target.value)}
          />
          <SelectField
            label={t("models.kind")}
            value={kind}
            options={[{ value: "", label: t("models.anyKind") }, ...["base", "lora", "full", "quantized"].map((k) => ({ value: k, label: t(`modelKind.${k}` as MessageKey) }))]}
            onChange={(e) => setFilter("kind", e.target.value)}
          />
        </div>
        <LoadState loading={list.loading && !list.data} error={list.error} reload={list.reload} failed={t("models.loadFailed")}>
          {items.length === 0 ? (
            <p className="empty">{t("models.empty")}</p>
          ) : (
            <div className="table-scroll" role="region" aria-labelledby="models-title" tabIndex={0}>
              <table>
                <thead>
                  <tr>
                    <th scope="col">{t("models.name")}</th>
                    <th scope="col">{t("models.kind")}</th>
                    <th scope="col">{t("models.source")}</th>
                    <th scope="col">{t("models.parent")}</th>
                    <th scope="col" className="num">
                      {t("models.params")}
                    </th>
                    <th scope="col" className="num">
                      {t("models.size")}
                    </th>
                    <th scope="col">{t("jobs.colCreated")}</th>
                  </tr>
                </thead>
                <tbody>
                  {items.map((m) => (
                    <tr key={m.id}>
                      <th scope="row">
                        <Link href={`/models/${m.id}`}>{m.name}</Link>
                        {m.retired_at && <span className="pill cell-note">{t("models.retired")}</span>}
                      </th>
                      <td>{t(`modelKind.${m.kind}` as MessageKey)}</td>
                      <td>{t(`source.${m.source}` as MessageKey)}</td>
                      <td>{m.base_model ?? "—"}</td>
                      <td className="num">{formatCount(m.parameter_count)}</td>
                      <td className="num">{formatBytes(m.size_bytes)}</td>
                      <td>
                        <time dateTime={m.created_at}>{formatDateTime(m.created_at)}</time>
                      </td>
                    </tr>
                  ))}
                </tbody>
              </table>
            </div>
          )}
          <div className="pager">
            <Button disabled={page === 1} onClick={() => setPage((p) => p - 1)}>
              {t("pager.previous")}
            </Button>
            <span className="muted">{t("pager.total", { page, total: list.data?.total ?? 0 })}</span>
            <Button disabled={!list.data?.next_page} onClick={() => setPage((p) => p + 1)}>
              {t("pager.next")}
            </Button>
          </div>
        </LoadState>
      </section>
    </>
  );
}
