import { useMemo, useRef, useState } from "react";
import { Link, useSearchParams } from "wouter";

import { ACTIVE_STATES, JOB_KINDS, JOB_STATES, jobsApi, type JobSummary } from "../../api/jobs";
import { Button } from "../../components/Button";
import { Field } from "../../components/Field";
import { SelectField } from "../../components/Fields";
import { LoadState } from "../../components/LoadState";
import { PageHeading } from "../../components/PageHeading";
import { ProgressBar } from "../../components/ProgressBar";
import { StateBadge } from "../../components/StateBadge";
import { useI18n } from "../../i18n";
import type { MessageKey } from "../../i18n/en";
import { formatDuration } from "../../lib/format";
import { useInterval, useJobFeed } from "../../lib/live";
import { useQuery } from "../../lib/useQuery";

const PAGE_SIZE = 25;

/** Whether a job matches the search box: part of its id or its model's name. */
export function matchesSearch(job: JobSummary, search: string): boolean {
  const needle = search.trim().toLowerCase();
  if (!needle) return true;
  return job.id.toLowerCase().includes(needle) || (job.base_model ?? "").toLowerCase().includes(needle);
}

/** Seconds a job ran (or has been running), or null before it started. */
export function runSeconds(job: Pick<JobSummary, "started_at" | "finished_at">, now = Date.now()): number | null {
  if (!job.started_at) return null;
  const end = job.finished_at ? Date.parse(job.finished_at) : now;
  return Math.max(0, (end - Date.parse(job.started_at)) / 1000);
}

export function JobsPage() {
  const { t, formatDateTime } = useI18n();
  const [params, setParams] = useSearchParams();
  const state = params.get("state") ?? "";
  const kind = params.get("kind") ?? "";
  const search = params.get("q") ?? "";
  // Cursors of the pages before this one, so "Newer" can go back (the API pages one way).
  const [cursors, setCursors] = useState<(string | null)[]>([null]);
  const cursor = cursors[cursors.length - 1] ?? null;
  const jobs = useQuery((signal) => jobsApi.list({ state, kind, cursor, limit: PAGE_SIZE }, signal), [state, kind, cursor]);

  const setFilter = (name: string, value: string) => {
    setCursors([null]);
    setParams(
      (current) => {
        const next = new URLSearchParams(current);
        if (value) next.set(name, value);
        else next.delete(name);
        return next;
      },
      { replace: true },
    );
  };

  const items = jobs.data?.items ?? [];
  const shown = useMemo(() => items.filter((job) => matchesSearch(job, search)), [items, search]);
  const anyActive = items.some((job) => ACTIVE_STATES.has(job.state));

  // A state change of any of my jobs (feed), or progress of the running ones (polled: the feed has no progress).
  const pendingRefresh = useRef<number | null>(null);
  useJobFeed(() => {
    if (pendingRefresh.current) window.clearTimeout(pendingRefresh.current);
    pendingRefresh.current = window.setTimeout(jobs.refresh, 300);
  });
  useInterval(jobs.refresh, 3000, anyActive);

  const stateOptions = [{ value: "", label: t("jobs.anyState") }, ...JOB_STATES.map((s) => ({ value: s, label: t(`state.${s}` as MessageKey) }))];
  const kindOptions = [{ value: "", label: t("jobs.anyKind") }, ...JOB_KINDS.map((k) => ({ value: k, label: t(`kind.${k}` as MessageKey) }))];

  return (
    <>
      <div className="page-top">
        <PageHeading title={t("jobs.title")} />
        <div className="page-top__actions">
          <Link href="/jobs/new" className="button button--primary">
            {t("jobs.new")}
          </Link>
        </div>
      </div>
      <section className="card" aria-labelledby="jobs-list-title">
        <h2 id="jobs-list-title" className="visually-hidden">
          {t("jobs.listTitle")}
        </h2>
        <div className="filters" role="search" aria-label={t("jobs.filters")}>
          <SelectField label={t("jobs.state")} value={state} options={stateOptions} onChange={(e) => setFilter("state", e.target.value)} />
          <SelectField label={t("jobs.kind")} value={kind} options={kindOptions} onChange={(e) => setFilter("kind", e.target.value)} />
          <Field
            label={t("jobs.search")}
            type="search"
            value={search}
            placeholder={t("jobs.searchPlaceholder")}
            onChange={(e) => setFilter("q", e.target.value)}
          />
        </div>
        <LoadState loading={jobs.loading && !jobs.data} error={jobs.error} reload={jobs.reload} failed={t("jobs.loadFailed")}>
          {shown.length === 0 ? (
            <div className="empty">
              <p>{items.length === 0 && !state && !kind && cursors.length === 1 ? t("jobs.emptyFirst") : t("jobs.emptyFiltered")}</p>
              {items.length === 0 && !state && !kind && (
                <Link href="/jobs/new" className="button button--primary">
                  {t("jobs.startFirst")}
                </Link>
              )}
            </div>
          ) : (
            <JobTable jobs={shown} formatDateTime={formatDateTime} />
          )}
          <div className="pager">
            <Button disabled={cursors.length === 1} onClick={() => setCursors((c) => c.slice(0, -1))}>
              {t("pager.newer")}
            </Button>
            <span className="muted">{t("pager.page", { page: cursors.length })}</span>
            <Button
              disabled={!jobs.data?.next_cursor}
              onClick={() => jobs.data?.next_cursor && setCursors((c) => [...c, jobs.data!.next_cursor])}
            >
              {t("pager.older")}
            </Button>
          </div>
        </LoadState>
      </section>
    </>
  );
}

function JobTable({ jobs, formatDateTime }: { jobs: JobSummary[]; formatDateTime: (iso: string) => string }) {
  const { t } = useI18n();
  return (
    <div className="table-scroll" role="region" aria-labelledby="jobs-list-title" tabIndex={0}>
      <table className="table--rows">
        <thead>
          <tr>
            <th scope="col">{t("jobs.colJob")}</th>
            <th scope="col">{t("jobs.colKind")}</th>
            <th scope="col">{t("jobs.colModel")}</th>
            <th scope="col">{t("jobs.colState")}</th>
            <th scope="col">{t("jobs.colProgress")}</th>
            <th scope="col">{t("jobs.colCreated")}</th>
            <th scope="col">{t("jobs.colDuration")}</th>
          </tr>
        </thead>
        <tbody>
          {jobs.map((job) => (
            <tr key={job.id}>
              <th scope="row">
                <Link href={`/jobs/${job.id}`} className="mono">
                  {job.id}
                </Link>
              </th>
              <td>{t(`kind.${job.kind}` as MessageKey)}</td>
              <td className="cell--wrap">{job.base_model ?? "—"}</td>
              <td>
                <StateBadge state={job.state} />
                {job.reason && job.state === "failed" && <span className="muted cell-note">{job.reason}</span>}
              </td>
              <td className="cell--progress">
                {job.state === "running" ? <ProgressBar progress={job.progress} compact /> : job.state === "succeeded" ? "100%" : "—"}
              </td>
              <td>
                <time dateTime={job.created_at}>{formatDateTime(job.created_at)}</time>
              </td>
              <td>{formatDuration(runSeconds(job)) ?? "—"}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}
