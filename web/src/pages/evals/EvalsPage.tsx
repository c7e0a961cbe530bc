import { useState } from "react";
import { Link, useLocation } from "wouter";

import { oneOf } from "../../api/client";
import { ACTIVE_STATES, evalsApi, type EvalFilters, type EvalPage, type EvalSummary } from "../../api/jobs";
import { Button } from "../../components/Button";
import type { Column } from "../../components/DataTable";
import { JobLink } from "../../components/JobCells";
import { choices, Empty, FilterBar, ListSection, PagedTable, PageTop, type Filter } from "../../components/ListPage";
import { StateBadge } from "../../components/StateBadge";
import { Timestamp } from "../../components/Timestamp";
import { useI18n, type Translate } from "../../i18n";
import type { MessageKey } from "../../i18n/en";
import { formatMetric } from "../../lib/format";
import { useInterval, useJobFeed } from "../../lib/live";
import { PAGE_SIZE, usePagedList } from "../../lib/usePagedList";

/** Metrics worth a column first; the rest follow by name. */
const PREFERRED = ["eval_loss", "perplexity", "bleu_4", "rouge_1", "rouge_2", "rouge_l", "accuracy", "latency_ms", "samples_per_second"];
const MAX_METRIC_COLUMNS = 6;
const EVALUATIONS: NonNullable<EvalFilters["evaluation"]>[] = ["loss", "generation", "benchmark"];

/** The metric columns of a page of evaluations: the ones people look at first, at most six. */
export function metricColumns(runs: Pick<EvalSummary, "metrics">[]): string[] {
  const present = new Set(runs.flatMap((run) => Object.keys(run.metrics)));
  const ordered = [...PREFERRED.filter((name) => present.has(name)), ...[...present].filter((n) => !PREFERRED.includes(n)).sort()];
  return ordered.filter((name) => name !== "samples").slice(0, MAX_METRIC_COLUMNS);
}

export function EvalsPage() {
  const { t } = useI18n();
  const [, navigate] = useLocation();
  const evals = usePagedList({
    filters: ["evaluation"],
    load: ({ evaluation }, cursor, signal) => evalsApi.list({ evaluation: oneOf(evaluation, EVALUATIONS), cursor, limit: PAGE_SIZE }, signal),
    next: (page: EvalPage) => page.next_cursor,
  });
  const [selected, setSelected] = useState<string[]>([]);

  useJobFeed(evals.query.refresh);
  useInterval(evals.query.refresh, 5000, evals.items.some((e) => ACTIVE_STATES.has(e.state)));

  const toggle = (id: string, on: boolean) => setSelected((s) => (on ? [...s, id].slice(-10) : s.filter((x) => x !== id)));
  const selection = { selected, toggle };
  const evaluationFilter: Filter<"evaluation"> = {
    name: "evaluation",
    label: t("eval.evaluation"),
    options: choices(t("evals.anyKind"), EVALUATIONS, (kind) => t(`eval.kind.${kind}` as MessageKey)),
  };

  return (
    <>
      <PageTop title={t("evals.title")}>
        <Button variant="primary" disabled={selected.length < 2} onClick={() => navigate(`/evals/compare?ids=${selected.join(",")}`)}>
          {t("evals.compare", { count: selected.length })}
        </Button>
        <Link href="/jobs/new?kind=eval" className="button">
          {t("evals.new")}
        </Link>
      </PageTop>
      <ListSection titleId="evals-title" title={t("evals.title")} intro={t("evals.intro")}>
        <FilterBar list={evals} fields={[evaluationFilter]} />
        <PagedTable
          list={evals}
          failed={t("evals.loadFailed")}
          empty={<Empty text={t("evals.empty")} link={{ href: "/jobs/new?kind=eval", label: t("evals.new") }} />}
          labelledBy="evals-title"
          columns={evalColumns(t, metricColumns(evals.items), selection)}
          items={evals.items}
          rowKey={(run) => run.id}
        />
      </ListSection>
    </>
  );
}

interface Selection {
  selected: string[];
  toggle: (id: string, on: boolean) => void;
}

function evalColumns(t: Translate, metrics: string[], { selected, toggle }: Selection): Column<EvalSummary>[] {
  return [
    {
      key: "select",
      header: <span className="visually-hidden">{t("evals.select")}</span>,
      cell: (run) => (
        <input
          type="checkbox"
          aria-label={t("evals.selectRun", { id: run.id })}
          checked={selected.includes(run.id)}
          disabled={run.state !== "succeeded"}
          onChange={(e) => toggle(run.id, e.target.checked)}
        />
      ),
    },
    { key: "id", header: t("jobs.colJob"), rowHeader: true, cell: (run) => <JobLink id={run.id} /> },
    { key: "model", header: t("jobs.colModel"), cell: (run) => run.model },
    { key: "evaluation", header: t("eval.evaluation"), cell: (run) => t(`eval.kind.${run.evaluation}` as "eval.kind.loss") },
    { key: "data", header: t("evals.data"), className: "cell--wrap", cell: (run) => run.task ?? run.datasets.join(", ") },
    { key: "state", header: t("jobs.colState"), cell: (run) => <StateBadge state={run.state} /> },
    ...metrics.map((name): Column<EvalSummary> => ({ key: `metric:${name}`, header: name, numeric: true, cell: (run) => formatMetric(run.metrics[name]) })),
    { key: "created", header: t("jobs.colCreated"), cell: (run) => <Timestamp iso={run.created_at} /> },
  ];
}
