import { useMemo } from "react";
import { Link } from "wouter";

import { modelsApi, type Model } from "../../api/catalog";
import { ACTIVE_STATES, jobsApi, type JobPage, type JobSummary } from "../../api/jobs";
import { Alert } from "../../components/Alert";
import { Button } from "../../components/Button";
import type { Column } from "../../components/DataTable";
import { JobLink, JobStateCell } from "../../components/JobCells";
import { Empty, ListSection, PagedTable, PageTop } from "../../components/ListPage";
import { Timestamp } from "../../components/Timestamp";
import { useI18n, type Translate } from "../../i18n";
import { useInterval, useJobFeed } from "../../lib/live";
import { useFailure } from "../../lib/useFailure";
import { PAGE_SIZE, usePagedList } from "../../lib/usePagedList";
import { useQuery } from "../../lib/useQuery";

/** The model each export job produced (the registry links it to the job), by job id. */
export function modelsByJob(models: Model[] | undefined): Map<string, Model> {
  const byJob = new Map<string, Model>();
  for (const m of models ?? []) if (m.job_id) byJob.set(m.job_id, m);
  return byJob;
}

/** Export jobs with what they made: download the files, or deploy the model in the playground. */
export function ExportsPage() {
  const { t } = useI18n();
  const jobs = usePagedList({
    filters: [],
    load: (_, cursor, signal) => jobsApi.list({ kind: "export", cursor, limit: PAGE_SIZE }, signal),
    next: (page: JobPage) => page.next_cursor,
  });
  const models = useQuery((signal) => modelsApi.list({ source: "export", limit: 200 }, signal), []);
  const byJob = useMemo(() => modelsByJob(models.data?.items), [models.data]);
  const { failure, fail } = useFailure();
  const refresh = () => {
    jobs.query.refresh();
    models.refresh();
  };
  useJobFeed(refresh);
  useInterval(refresh, 3000, jobs.items.some((j) => ACTIVE_STATES.has(j.state)));

  const save = (job: JobSummary) => jobsApi.downloadArtifacts(job.id, `${job.id}.zip`).catch(fail);

  return (
    <>
      <PageTop title={t("exports.title")}>
        <Link href="/jobs/new?kind=export" className="button button--primary">
          {t("exports.new")}
        </Link>
      </PageTop>
      <ListSection titleId="exports-list" title={t("exports.listTitle")} intro={t("exports.intro")}>
        {failure && <Alert tone="error">{failure}</Alert>}
        <PagedTable
          list={jobs}
          failed={t("exports.loadFailed")}
          empty={<Empty text={t("exports.none")} link={{ href: "/jobs/new?kind=export", label: t("exports.first") }} />}
          labelledBy="exports-list"
          className="table--rows"
          columns={exportColumns(t, byJob, save)}
          items={jobs.items}
          rowKey={(job) => job.id}
        />
      </ListSection>
    </>
  );
}

function exportColumns(t: Translate, byJob: Map<string, Model>, onDownload: (job: JobSummary) => void): Column<JobSummary>[] {
  return [
    { key: "id", header: t("jobs.colJob"), rowHeader: true, cell: (job) => <JobLink id={job.id} /> },
    { key: "from", header: t("exports.colFrom"), className: "cell--wrap", cell: (job) => job.base_model ?? "—" },
    { key: "state", header: t("jobs.colState"), cell: (job) => <JobStateCell job={job} /> },
    {
      key: "model",
      header: t("exports.colModel"),
      className: "cell--wrap",
      cell: (job) => {
        const made = byJob.get(job.id);
        return made ? <Link href={`/models/${made.id}`}>{made.name}</Link> : "—";
      },
    },
    { key: "created", header: t("jobs.colCreated"), cell: (job) => <Timestamp iso={job.created_at} /> },
    { key: "actions", header: t("deployments.colActions"), cell: (job) => <ExportActions job={job} made={byJob.get(job.id)} onDownload={onDownload} /> },
  ];
}

function ExportActions({ job, made, onDownload }: { job: JobSummary; made: Model | undefined; onDownload: (job: JobSummary) => void }) {
  const { t } = useI18n();
  if (job.state !== "succeeded") return null;
  return (
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
  );
}
