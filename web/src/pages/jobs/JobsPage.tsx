import { useEffect, useRef } from "react";
import { Link } from "wouter";

import { oneOf } from "../../api/client";
import { JOB_KINDS, JOB_STATES, jobsApi, type JobPage, type JobSummary } from "../../api/jobs";
import type { Column } from "../../components/DataTable";
import { JobLink, JobStateCell } from "../../components/JobCells";
import { choices, Empty, FilterBar, ListSection, PagedTable, PageTop, type Filter } from "../../components/ListPage";
import { ProgressBar } from "../../components/ProgressBar";
import { Timestamp } from "../../components/Timestamp";
import { useI18n, type Translate } from "../../i18n";
import type { MessageKey } from "../../i18n/en";
import { formatDuration } from "../../lib/format";
import { useInterval, useJobFeed } from "../../lib/live";
import { PAGE_SIZE, usePagedList } from "../../lib/usePagedList";

/** Seconds a job ran (or has been running), or null before it started. */
export function runSeconds(job: Pick<JobSummary, "started_at" | "finished_at">, now = Date.now()): number | null {
  if (!job.started_at) return null;
  const end = job.finished_at ? Date.parse(job.finished_at) : now;
  return Math.max(0, (end - Date.parse(job.started_at)) / 1000);
}

export function JobsPage() {
  const { t } = useI18n();
  const jobs = usePagedList({
    filters: ["state", "kind", "q"],
    // Filters and search are the API's (`q`: part of the id or the model), so every page is a page of matches.
    load: ({ state, kind, q }, cursor, signal) =>
      jobsApi.list(
        { state: oneOf(state, JOB_STATES), kind: oneOf(kind, JOB_KINDS), q: q.trim() || undefined, cursor, limit: PAGE_SIZE },
        signal,
      ),
    next: (page: JobPage) => page.next_cursor,
  });
  const { state, kind } = jobs.filters;

  // Live from the feed: a progress point moves its job's bar in place; a state change (a job started, ended,
  // was submitted) may move jobs in or out of the filtered page, so the page is asked again (debounced).
  const pendingRefresh = useRef<number | null>(null);
  const refreshSoon = () => {
    if (pendingRefresh.current) window.clearTimeout(pendingRefresh.current);
    pendingRefresh.current = window.setTimeout(jobs.query.refresh, 300);
  };
  useEffect(() => () => window.clearTimeout(pendingRefresh.current ?? undefined), []);
  useJobFeed(
    (change) => {
      const job = jobs.items.find((item) => item.id === change.job_id);
      if (change.progress && job?.state === change.state) {
        const progress = change.progress;
        jobs.query.update((page) => page && { ...page, items: page.items.map((item) => (item.id === job.id ? { ...item, progress } : item)) });
      } else if (!change.progress || job) {
        refreshSoon();
      }
    },
    true,
    refreshSoon, // back after a drop: changes may have been missed
  );
  // A queued job's place and reason change with other people's jobs, which this feed does not carry.
  useInterval(jobs.query.refresh, 10_000, jobs.items.some((job) => job.state === "pending"));

  const firstEver = jobs.items.length === 0 && !state && !kind;
  return (
    <>
      <PageTop title={t("jobs.title")}>
        <Link href="/jobs/new" className="button button--primary">
          {t("jobs.new")}
        </Link>
      </PageTop>
      <ListSection titleId="jobs-list-title" title={t("jobs.listTitle")}>
        <FilterBar label={t("jobs.filters")} list={jobs} fields={jobFilters(t)} />
        <PagedTable
          list={jobs}
          failed={t("jobs.loadFailed")}
          empty={
            <Empty
              text={firstEver && jobs.pages.number === 1 ? t("jobs.emptyFirst") : t("jobs.emptyFiltered")}
              link={firstEver ? { href: "/jobs/new", label: t("jobs.startFirst") } : null}
            />
          }
          labelledBy="jobs-list-title"
          className="table--rows"
          columns={jobColumns(t)}
          items={jobs.items}
          rowKey={(job) => job.id}
        />
      </ListSection>
    </>
  );
}

function jobFilters(t: Translate): Filter<"state" | "kind" | "q">[] {
  return [
    { name: "state", label: t("jobs.state"), options: choices(t("jobs.anyState"), JOB_STATES, (s) => t(`state.${s}` as MessageKey)) },
    { name: "kind", label: t("jobs.kind"), options: choices(t("jobs.anyKind"), JOB_KINDS, (k) => t(`kind.${k}` as MessageKey)) },
    { name: "q", label: t("jobs.search"), search: true, placeholder: t("jobs.searchPlaceholder"), maxLength: 128 },
  ];
}

function jobColumns(t: Translate): Column<JobSummary>[] {
  return [
    {
      key: "id",
      header: t("jobs.colJob"),
      rowHeader: true,
      cell: (job) => (
        <>
          <JobLink id={job.id} />
          {job.openai_id && (
            <span className="badge badge--openai" title={job.openai_id}>
              {t("jobs.openaiTag")}
            </span>
          )}
        </>
      ),
    },
    { key: "kind", header: t("jobs.colKind"), cell: (job) => t(`kind.${job.kind}` as MessageKey) },
    { key: "model", header: t("jobs.colModel"), className: "cell--wrap", cell: (job) => job.base_model ?? "—" },
    { key: "state", header: t("jobs.colState"), cell: (job) => <JobStateCell job={job} /> },
    {
      key: "progress",
      header: t("jobs.colProgress"),
      className: "cell--progress",
      cell: (job) => (job.state === "running" ? <ProgressBar progress={job.progress} compact /> : job.state === "succeeded" ? "100%" : "—"),
    },
    { key: "created", header: t("jobs.colCreated"), cell: (job) => <Timestamp iso={job.created_at} /> },
    { key: "duration", header: t("jobs.colDuration"), cell: (job) => formatDuration(runSeconds(job)) ?? "—" },
  ];
}
