import { useMemo, useState } from "react";
import { Link } from "wouter";

import { modelsApi, type Model } from "../../api/catalog";
import { download } from "../../api/client";
import { ACTIVE_STATES, jobsApi, type JobSummary } from "../../api/jobs";
import { Alert } from "../../components/Alert";
import { Button } from "../../components/Button";
import { LoadState } from "../../components/LoadState";
import { PageHeading } from "../../components/PageHeading";
import { StateBadge } from "../../components/StateBadge";
import { useI18n } from "../../i18n";
import { useInterval, useJobFeed } from "../../lib/live";
import { useQuery } from "../../lib/useQuery";

const PAGE_SIZE = 25;

/** The model each export job produced (the registry links it to the job), by job id. */
export function modelsByJob(models: Model[] | undefined): Map<string, Model> {
  const byJob = new Map<string, Model>();
  for (const m of models ?? []) if (m.job_id) byJob.set(m.job_id, m);
  return byJob;
}

/** Export jobs with what they made: download the files, or deploy the model in the playground. */
export function ExportsPage() {
  const { t } = useI18n();
  const [cursors, setCursors] = useState<(string | null)[]>([null]);
  const cursor = cursors[cursors.length - 1] ?? null;
  const jobs = useQuery((signal) => jobsApi.list({ kind: "export", cursor, limit: PAGE_SIZE }, signal), [cursor]);
  const models = useQuery((signal) => modelsApi.list({ source: "export", limit: 200 }, signal), []);
  const byJob = useMemo(() => modelsByJob(models.data?.items), [models.data]);
  const [notice, setNotice] = useState<string | null>(null);
  const items = jobs.data?.items ?? [];
  const refresh = () => {
    jobs.refresh();
    models.refresh();
  };
  useJobFeed(refresh);
  useInterval(refresh, 3000, items.some((j) => ACTIVE_STATES.has(j.state)));

  const save = (job: JobSummary) =>
    download(jobsApi.artifactsPath(job.id), `${job.id}.zip`).catch((error: unknown) =>
      setNotice(error instanceof Error ? error.message : String(error)),
    );

  return (
    <>
      <div className="page-top">
        <PageHeading title={t("exports.title")} />
        <div className="page-top__actions">
          <Link href="/jobs/new?kind=export" className="button button--primary">
            {t("exports.new")}
          </Link>
        </div>
      </div>
      <section className="card" aria-labelledby="exports-list">
        <h2 id="exports-list" className="visually-hidden">
          {t("exports.listTitle")}
        </h2>
        <p className="muted">{t("exports.intro")}</p>
        {notice && <Alert tone="error">{notice}</Alert>}
        <LoadState loading={jobs.loading && !jobs.data} error={jobs.error} reload={jobs.reload} failed={t("exports.loadFailed")}>
          {items.length === 0 ? (
            <div className="empty">
              <p>{t("exports.none")}</p>
              <Link href="/jobs/new?kind=export" className="button button--primary">
                {t("exports.first")}
              </Link>
            </div>
          ) : (
            <ExportTable items={items} byJob={byJob} onDownload={save} />
          )}
          <div className="pager">
            <Button disabled={cursors.length === 1} onClick={() => setCursors((c) => c.slice(0, -1))}>
              {t("pager.newer")}
            </Button>
            <span className="muted">{t("pager.page", { page: cursors.length })}</span>
            <Button disabled={!jobs.data?.next_cursor} onClick={() => jobs.data?.next_cursor && setCursors((c) => [...c, jobs.data!.next_cursor])}>
              {t("pager.older")}
            </Button>
          </div>
        </LoadState>
      </section>
    </>
  );
}

function ExportTable({ items, byJob, onDownload }: { items: JobSummary[]; byJob: Map<string, Model>; onDownload: (job: JobSummary) => void }) {
  const { t, formatDateTime } = useI18n();
  return (
    <div className="table-scroll" role="region" aria-labelledby="exports-list" tabIndex={0}>
      <table className="table--rows">
        <thead>
          <tr>
            <th scope="col">{t("jobs.colJob")}</th>
            <th scope="col">{t("exports.colFrom")}</th>
            <th scope="col">{t("jobs.colState")}</th>
            <th scope="col">{t("exports.colModel")}</th>
            <th scope="col">{t("jobs.colCreated")}</th>
            <th scope="col">{t("deployments.colActions")}</th>
          </tr>
        </thead>
        <tbody>
          {items.map((job) => {
            const made = byJob.get(job.id);
            return (
              <tr key={job.id}>
                <th scope="row">
                  <Link href={`/jobs/${job.id}`} className="mono">
                    {job.id}
                  </Link>
                </th>
                <td className="cell--wrap">{job.base_model ?? "—"}</td>
                <td>
                  <StateBadge state={job.state} />
                  {job.reason && job.state === "failed" && <span className="muted cell-note">{job.reason}</span>}
                </td>
                <td className="cell--wrap">{made ? <Link href={`/models/${made.id}`}>{made.name}</Link> : "—"}</td>
                <td>
                  <time dateTime={job.created_at}>{formatDateTime(job.created_at)}</time>
                </td>
                <td>
                  {job.state === "succeeded" && (
                    <div className="row-actions">
                      <Button onClick={() => onDownload(job)} aria-label={t("exports.downloadNamed", { id: job.id })}>
                        {t("exports.download")}
                      </Button>
                      {made && made.usable_for.includes("deploy") && (
                        <Link
                          href={`/playground?model=${encodeURIComponent(made.name)}`}
                          className="button button--primary"
                          aria-label={t("exports.deployNamed", { model: made.name })}
                        >
                          {t("exports.deploy")}
                        </Link>
                      )}
                    </div>
                  )}
                </td>
              </tr>
            );
          })}
        </tbody>
      </table>
    </div>
  );
}
