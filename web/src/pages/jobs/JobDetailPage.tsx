import { lazy, Suspense, useState } from "react";
import { Link } from "wouter";

import { socketUrl } from "../../api/client";
import { ACTIVE_STATES, jobsApi, type JobDetail } from "../../api/jobs";
import { Alert } from "../../components/Alert";
import { Button } from "../../components/Button";
import { ConfirmButton } from "../../components/ConfirmButton";
import { CopyButton } from "../../components/CopyButton";
import { LoadState } from "../../components/LoadState";
import { PageHeading } from "../../components/PageHeading";
import { FetchBar, ProgressBar } from "../../components/ProgressBar";
import { StateBadge } from "../../components/StateBadge";
import { useI18n } from "../../i18n";
import type { MessageKey } from "../../i18n/en";
import { formatExact, formatMetric } from "../../lib/format";
import { useInterval, useJobFeed } from "../../lib/live";
import type { SocketStatus } from "../../lib/socket";
import { useQuery } from "../../lib/useQuery";
import { Checkpoints } from "./Checkpoints";
import { EvalSamples } from "./EvalSamples";
import { FineTuningPanel } from "./FineTuningPanel";
import { JobGpu } from "./JobGpu";
import { ProducedModel } from "./ProducedModel";
import { TrackingLinks } from "./TrackingLinks";
import { TrainingCurves } from "./TrainingCurves";

const LogTerminal = lazy(() => import("../../components/LogTerminal"));

export function JobDetailPage({ id }: { id: string }) {
  const { t } = useI18n();
  const job = useQuery((signal) => jobsApi.get(id, signal), [id]);
  const active = job.data ? ACTIVE_STATES.has(job.data.state) : false;

  useJobFeed((change) => {
    if (change.job_id === id) job.refresh();
  });
  // Progress points are not on the feed: poll the detail while the job runs.
  useInterval(job.refresh, 2000, active);

  return (
    <>
      <p className="breadcrumb">
        <Link href="/jobs">{t("nav.jobs")}</Link> / <span className="mono">{id}</span>
      </p>
      <PageHeading title={t("job.title", { id })}>
        {t("job.heading")} <span className="mono heading-id">{id}</span>
      </PageHeading>
      <LoadState loading={job.loading && !job.data} error={job.error} reload={job.reload} failed={t("job.loadFailed")}>
        {job.data && <JobBody job={job.data} onChanged={job.refresh} />}
      </LoadState>
    </>
  );
}

function JobBody({ job, onChanged }: { job: JobDetail; onChanged: () => void }) {
  const { t, formatDateTime } = useI18n();
  const active = ACTIVE_STATES.has(job.state);
  const [notice, setNotice] = useState<{ tone: "error" | "success"; text: string } | null>(null);

  const cancel = async () => {
    try {
      const answer = await jobsApi.cancel(job.id);
      setNotice({ tone: "success", text: answer.state === "cancelled" ? t("job.cancelled") : t("job.cancelAsked") });
      onChanged();
    } catch (error) {
      setNotice({ tone: "error", text: error instanceof Error ? error.message : String(error) });
    }
  };
  const pause = async () => {
    try {
      await jobsApi.pause(job.id);
      setNotice({ tone: "success", text: t("job.pauseAsked") });
      onChanged();
    } catch (error) {
      setNotice({ tone: "error", text: error instanceof Error ? error.message : String(error) });
    }
  };
  const rerun = async (how: "retry" | "resume") => {
    try {
      await jobsApi.rerun(job.id, how);
      setNotice({ tone: "success", text: t(how === "retry" ? "job.retried" : "job.resumed") });
      onChanged();
    } catch (error) {
      setNotice({ tone: "error", text: error instanceof Error ? error.message : String(error) });
    }
  };
  const rerunnable = (job.state === "failed" || job.state === "cancelled") && job.kind !== "deploy";
  const save = (saving: Promise<void>) =>
    saving.catch((error: unknown) =>
      setNotice({ tone: "error", text: error instanceof Error ? error.message : String(error) }),
    );
  const model = (job.base_model ?? (job.request.model as string | undefined)) || "—";

  return (
    <div className="stack">
      <section className="card" aria-labelledby="job-summary">
        <h2 id="job-summary" className="visually-hidden">
          {t("job.summary")}
        </h2>
        <div className="job-head">
          <StateBadge state={job.state} />
          <span>{t(`kind.${job.kind}` as MessageKey)}</span>
          <span className="muted">·</span>
          <span>{model}</span>
          <div className="job-head__actions">
            {active && !job.cancel_requested && (
              <ConfirmButton
                label={t("job.cancel")}
                question={t("job.confirmCancel")}
                confirmLabel={t("job.confirmCancelYes")}
                onConfirm={cancel}
              />
            )}
            {active && !job.cancel_requested && job.kind === "train" && (
              <ConfirmButton
                label={t("job.pause")}
                question={t("job.confirmPause")}
                confirmLabel={t("job.confirmPauseYes")}
                onConfirm={pause}
              />
            )}
            {rerunnable && job.kind === "train" && (
              <Button
                onClick={() => rerun("resume")}
                disabled={job.resume_step === null}
                title={job.resume_step === null ? t("job.noCheckpoint") : undefined}
              >
                {job.resume_step === null ? t("job.resume") : t("job.resumeFrom", { step: job.resume_step })}
              </Button>
            )}
            {rerunnable && <Button onClick={() => rerun("retry")}>{t("job.retry")}</Button>}
            {job.kind === "train" && (
              <Link href={`/jobs/new?kind=train&from=${encodeURIComponent(job.id)}`} className="button">
                {t("job.copy")}
              </Link>
            )}
            <Button onClick={() => save(jobsApi.downloadArtifacts(job.id, `${job.id}.zip`))}>{t("job.downloadOutputs")}</Button>
            <Button onClick={() => save(jobsApi.downloadLog(job.id, `${job.id}.log`))}>{t("job.downloadLog")}</Button>
          </div>
        </div>
        {notice && <Alert tone={notice.tone}>{notice.text}</Alert>}
        <ProducedModel job={job} />
        {job.kind === "deploy" && (
          <p className="inline-row">
            <Link href={`/playground?deployment=${encodeURIComponent(job.id)}`} className="button button--primary">
              {t("job.openPlayground")}
            </Link>
          </p>
        )}
        {job.cancel_requested && active && <Alert tone="info">{t("job.cancelPending")}</Alert>}
        {job.state === "pending" && (
          <Alert tone="info">
            {job.queue_position !== null && <strong>{t("job.queuePosition", { position: job.queue_position })} </strong>}
            {job.wait_reason ?? t("job.waiting", { gpus: job.gpu_count })}
          </Alert>
        )}
        {rerunnable && job.kind === "train" && job.resume_step === null && (
          <p className="muted">{t("job.noCheckpoint")}</p>
        )}
        {job.state === "failed" && (
          <Alert tone="error">
            <strong>{t("job.failedBecause", { reason: job.reason ?? "?" })}</strong>
            {job.message && <pre className="message">{job.message}</pre>}
          </Alert>
        )}
        {job.state === "running" && job.fetch && job.fetch.done_bytes < job.fetch.total_bytes && (
          <FetchBar fetch={job.fetch} />
        )}
        {job.state === "running" && <ProgressBar progress={job.progress} />}
        <dl className="details">
          <div>
            <dt>{t("job.created")}</dt>
            <dd>{formatDateTime(job.created_at)}</dd>
          </div>
          <div>
            <dt>{t("job.started")}</dt>
            <dd>{job.started_at ? formatDateTime(job.started_at) : "—"}</dd>
          </div>
          <div>
            <dt>{t("job.finished")}</dt>
            <dd>{job.finished_at ? formatDateTime(job.finished_at) : "—"}</dd>
          </div>
          <div>
            <dt>{t("job.resources")}</dt>
            <dd>
              {job.gpu_count > 0 ? t("job.gpus", { count: job.gpu_count }) : t("job.cpuOnly")}
              {job.agent_id ? ` · ${job.agent_id}` : ""}
            </dd>
          </div>
          {job.trained_tokens != null && (
            <div>
              <dt>{t("job.trainedTokens")}</dt>
              <dd>{formatExact(job.trained_tokens)}</dd>
            </div>
          )}
          {job.openai_id && (
            <div>
              <dt>{t("job.openaiId")}</dt>
              <dd>
                <code>{job.openai_id}</code>
              </dd>
            </div>
          )}
          {job.model_hub && (
            <div>
              <dt>{t("hub.title")}</dt>
              <dd>{job.model_hub === "modelscope" ? "ModelScope" : "Hugging Face"}</dd>
            </div>
          )}
        </dl>
      </section>

      {job.fine_tuning && <FineTuningPanel fineTuning={job.fine_tuning} />}

      {job.kind === "train" && <TrainingCurves series={job.progress_series} />}

      <TrackingLinks job={job} />

      <Checkpoints job={job} />

      <JobGpu job={job} active={active} />

      {job.metrics && Object.keys(job.metrics).length > 0 && (
        <section className="card" aria-labelledby="job-metrics">
          <h2 id="job-metrics">{t("job.metrics")}</h2>
          <dl className="details details--metrics">
            {Object.entries(job.metrics).map(([name, value]) => (
              <div key={name}>
                <dt className="mono">{name}</dt>
                <dd>{typeof value === "number" ? formatMetric(value) : String(value)}</dd>
              </div>
            ))}
          </dl>
        </section>
      )}

      {job.kind === "eval" && job.state === "succeeded" && <EvalSamples id={job.id} />}

      <LogSection job={job} />

      <section className="card" aria-labelledby="job-history">
        <h2 id="job-history">{t("job.history")}</h2>
        <ol className="timeline">
          {job.history.map((event, index) => (
            <li key={index}>
              <StateBadge state={event.state} />
              <time dateTime={event.at}>{formatDateTime(event.at)}</time>
              {event.reason && <span className="mono">{event.reason}</span>}
              {event.message && <span className="timeline__message">{event.message.split("\n")[0]}</span>}
            </li>
          ))}
        </ol>
      </section>

      <section className="card" aria-labelledby="job-config">
        <div className="card__header">
          <h2 id="job-config">{t("job.config")}</h2>
          <CopyButton text={job.config_yaml} label={t("job.copyYaml")} />
        </div>
        <p className="muted">{t("job.configHint")}</p>
        <pre className="code" tabIndex={0}>
          {job.config_yaml}
        </pre>
        <details>
          <summary>{t("job.request")}</summary>
          <pre className="code">{JSON.stringify(job.request, null, 2)}</pre>
        </details>
      </section>
    </div>
  );
}

const STATUS_KEYS: Record<SocketStatus, MessageKey> = {
  connecting: "logs.connecting",
  open: "logs.live",
  reconnecting: "logs.reconnecting",
  ended: "logs.ended",
};

function LogSection({ job }: { job: JobDetail }) {
  const { t } = useI18n();
  const [status, setStatus] = useState<SocketStatus>("connecting");
  const [lines, setLines] = useState(0);
  return (
    <section className="card" aria-labelledby="job-logs">
      <div className="card__header">
        <h2 id="job-logs">{t("logs.title")}</h2>
        <span className={`live-status live-status--${status}`} role="status">
          {t(STATUS_KEYS[status])} · {t("logs.lines", { count: lines })}
        </span>
      </div>
      <Suspense fallback={<p className="muted">{t("app.loading")}</p>}>
        <LogTerminal
          label={t("logs.terminal", { id: job.id })}
          url={(after) => socketUrl(jobsApi.logsSocketPath(job.id), { after })}
          texts={{
            attempt: (attempt) => t("logs.attempt", { attempt }),
            notice: (notice) =>
              t("logs.lost", { reason: notice.reason ?? notice.state, message: notice.message ?? "" }),
          }}
          onStatus={setStatus}
          onLines={setLines}
        />
      </Suspense>
      {lines === 0 && job.state === "pending" && <p className="muted">{t("logs.notYet")}</p>}
    </section>
  );
}
