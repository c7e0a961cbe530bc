import { Link, useLocation, useSearchParams } from "wouter";

import { jobsApi, type JobDetail, type JobKind } from "../../api/jobs";
import { Alert } from "../../components/Alert";
import { LoadState } from "../../components/LoadState";
import { PageHeading } from "../../components/PageHeading";
import { useI18n } from "../../i18n";
import type { MessageKey } from "../../i18n/en";
import { formFromRequest } from "../../lib/trainForm";
import { useQuery } from "../../lib/useQuery";
import { EvalJobForm } from "./EvalJobForm";
import { ExportJobForm } from "./ExportJobForm";
import { TrainJobForm } from "./TrainJobForm";

const KINDS: JobKind[] = ["train", "eval", "export"];

/** One page for every kind of job; `?kind=eval&model=x` preselects (links from models and jobs), `?from=<job>` starts
 * a training job from an earlier one's settings. */
export function NewJobPage() {
  const { t } = useI18n();
  const [, navigate] = useLocation();
  const [params, setParams] = useSearchParams();
  const kind = (KINDS.find((k) => k === params.get("kind")) ?? "train") as JobKind;
  const model = params.get("model") ?? undefined;
  const from = params.get("from");
  const done = (job: JobDetail) => navigate(`/jobs/${job.id}`);

  return (
    <>
      <p className="breadcrumb">
        <Link href="/jobs">{t("nav.jobs")}</Link> / {t("newJob.title")}
      </p>
      <PageHeading title={t(`newJob.title.${kind}` as MessageKey)} />
      <nav className="tabs" aria-label={t("newJob.kind")}>
        {KINDS.map((k) => (
          <Link
            key={k}
            href={`/jobs/new?kind=${k}${model ? `&model=${encodeURIComponent(model)}` : ""}`}
            className="tab"
            aria-current={k === kind ? "page" : undefined}
            onClick={(event) => {
              event.preventDefault();
              setParams((p) => {
                const next = new URLSearchParams(p);
                next.set("kind", k);
                return next;
              }, { replace: true });
            }}
          >
            {t(`kind.${k}` as MessageKey)}
          </Link>
        ))}
      </nav>
      {kind === "train" && !from && <TrainJobForm key="train" onSubmitted={done} initialModel={model} />}
      {kind === "train" && from && <CopiedTrainJob from={from} onSubmitted={done} />}
      {kind === "eval" && <EvalJobForm key="eval" onSubmitted={done} initialModel={model} />}
      {kind === "export" && <ExportJobForm key="export" onSubmitted={done} initialModel={model} />}
    </>
  );
}

/** The training form filled in from an earlier job of the caller's. */
function CopiedTrainJob({ from, onSubmitted }: { from: string; onSubmitted: (job: JobDetail) => void }) {
  const { t } = useI18n();
  const job = useQuery((signal) => jobsApi.get(from, signal), [from]);
  return (
    <LoadState loading={job.loading} error={job.error} reload={job.reload} failed={t("job.loadFailed")}>
      {job.data && (
        <>
          <Alert tone="info">
            {t("newJob.copiedFrom")} <Link href={`/jobs/${from}`} className="mono">{from}</Link>
          </Alert>
          <TrainJobForm key={from} onSubmitted={onSubmitted} initialForm={formFromRequest(job.data.request)} />
        </>
      )}
    </LoadState>
  );
}
