import { useState } from "react";
import { Link, useLocation, useSearchParams } from "wouter";

import { ACTIVE_STATES, evalsApi, type EvalSummary } from "../../api/jobs";
import { Button } from "../../components/Button";
import { SelectField } from "../../components/Fields";
import { LoadState } from "../../components/LoadState";
import { PageHeading } from "../../components/PageHeading";
import { StateBadge } from "../../components/StateBadge";
import { useI18n } from "../../i18n";
import { formatMetric } from "../../lib/format";
import { useInterval, useJobFeed } from "../../lib/live";
import { useQuery } from "../../lib/useQuery";

const PAGE_SIZE = 25;
/** Metrics worth a column first; the rest follow by name. */
const PREFERRED = ["eval_loss", "perplexity", "bleu_4", "rouge_1", "rouge_2", "rouge_l", "accuracy", "latency_ms", "samples_per_second"];
const MAX_METRIC_COLUMNS = 6;

/** The metric columns of a page of evaluations: the ones people look at first, at most six. */
export function metricColumns(runs: Pick<EvalSummary, "metrics">[]): string[] {
  const present = new Set(runs.flatMap((run) => Object.keys(run.metrics)));
  const ordered = [...PREFERRED.filter((name) => present.has(name)), ...[...present].filter((n) => !PREFERRED.includes(n)).sort()];
  return ordered.filter((name) => name !== "samples").slice(0, MAX_METRIC_COLUMNS);
}

export function EvalsPage() {
  const { t, formatDateTime } = useI18n();
  const [, navigate] = useLocation();
  const [params, setParams] = useSearchParams();
  const evaluation = params.get("evaluation") ?? "";
  const [cursors, setCursors] = useState<(string | null)[]>([null]);
  const cursor = cursors[cursors.length - 1] ?? null;
  const evals = useQuery((signal) => evalsApi.list({ evaluation, cursor, limit: PAGE_SIZE }, signal), [evaluation, cursor]);
  const [selected, setSelected] = useState<string[]>([]);
  const items = evals.data?.items ?? [];
  const columns = metricColumns(items);

  useJobFeed(evals.refresh);
  useInterval(evals.refresh, 5000, items.some((e) => ACTIVE_STATES.has(e.state)));

  const toggle = (id: string, on: boolean) => setSelected((s) => (on ? [...s, id].slice(-10) : s.filter((x) => x !== id)));

  return (
    <>
      <div className="page-top">
        <PageHeading title={t("evals.title")} />
        <div className="page-top__actions">
          <Button variant="primary" disabled={selected.length < 2} onClick={() => navigate(`/evals/compare?ids=${selected.join(",")}`)}>
            {t("evals.compare", { count: selected.length })}
          </Button>
          <Link href="/jobs/new?kind=eval" className="button">
            {t("evals.new")}
          </Link>
        </div>
      </div>
      <section className="card" aria-labelledby="evals-title">
        <h2 id="evals-title" className="visually-hidden">
          {t("evals.title")}
        </h2>
        <p className="muted">{t("evals.intro")}</p>
        <div className="filters">
          <SelectField
            label={t("eval.evaluation")}
            value={evaluation}
            options={[
              { value: "", label: t("evals.anyKind") },
              { value: "loss", label: t("eval.kind.loss") },
              { value: "generation", label: t("eval.kind.generation") },
              { value: "benchmark", label: t("eval.kind.benchmark") },
            ]}
            onChange={(e) => {
              setCursors([null]);
              setParams(e.target.value ? { evaluation: e.target.value } : {}, { replace: true });
            }}
          />
        </div>
        <LoadState loading={evals.loading && !evals.data} error={evals.error} reload={evals.reload} failed={t("evals.loadFailed")}>
          {items.length === 0 ? (
            <div className="empty">
              <p>{t("evals.empty")}</p>
              <Link href="/jobs/new?kind=eval" className="button button--primary">
                {t("evals.new")}
              </Link>
            </div>
          ) : (
            <div className="table-scroll" role="region" aria-labelledby="evals-title" tabIndex={0}>
              <table>
                <thead>
                  <tr>
                    <th scope="col">
                      <span className="visually-hidden">{t("evals.select")}</span>
                    </th>
                    <th scope="col">{t("jobs.colJob")}</th>
                    <th scope="col">{t("jobs.colModel")}</th>
                    <th scope="col">{t("eval.evaluation")}</th>
                    <th scope="col">{t("evals.data")}</th>
                    <th scope="col">{t("jobs.colState")}</th>
                    {columns.map((name) => (
                      <th key={name} scope="col" className="num">
                        {name}
                      </th>
                    ))}
                    <th scope="col">{t("jobs.colCreated")}</th>
                  </tr>
                </thead>
                <tbody>
                  {items.map((run) => (
                    <tr key={run.id}>
                      <td>
                        <input
                          type="checkbox"
                          aria-label={t("evals.selectRun", { id: run.id })}
                          checked={selected.includes(run.id)}
                          disabled={run.state !== "succeeded"}
                          onChange={(e) => toggle(run.id, e.target.checked)}
                        />
                      </td>
                      <th scope="row">
                        <Link href={`/jobs/${run.id}`} className="mono">
                          {run.id}
                        </Link>
                      </th>
                      <td>{run.model}</td>
                      <td>{t(`eval.kind.${run.evaluation}` as "eval.kind.loss")}</td>
                      <td className="cell--wrap">{run.task ?? run.datasets.join(", ")}</td>
                      <td>
                        <StateBadge state={run.state} />
                      </td>
                      {columns.map((name) => (
                        <td key={name} className="num">
                          {formatMetric(run.metrics[name])}
                        </td>
                      ))}
                      <td>
                        <time dateTime={run.created_at}>{formatDateTime(run.created_at)}</time>
                      </td>
                    </tr>
                  ))}
                </tbody>
              </table>
            </div>
          )}
          <div className="pager">
            <Button disabled={cursors.length === 1} onClick={() => setCursors((c) => c.slice(0, -1))}>
              {t("pager.newer")}
            </Button>
            <span className="muted">{t("pager.page", { page: cursors.length })}</span>
            <Button disabled={!evals.data?.next_cursor} onClick={() => evals.data?.next_cursor && setCursors((c) => [...c, evals.data!.next_cursor])}>
              {t("pager.older")}
            </Button>
          </div>
        </LoadState>
      </section>
    </>
  );
}
