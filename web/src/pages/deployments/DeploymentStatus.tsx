import { useMemo, useState } from "react";
import { Link } from "wouter";

import { LIVE_DEPLOYMENT_STATES, deploymentsApi, type Deployment } from "../../api/deployments";
import { Alert } from "../../components/Alert";
import { Button } from "../../components/Button";
import { DeploymentBadge } from "../../components/DeploymentBadge";
import { EngineBadge } from "../../components/EngineBadge";
import { useI18n } from "../../i18n";
import type { MessageKey } from "../../i18n/en";
import { useCountdown } from "../../lib/countdown";
import { formatCount, formatDuration } from "../../lib/format";
import { ServingFacts } from "./ServingPanel";

/** Why a deployment ended, in words where the reason is one we know. */
export function endReason(t: (key: MessageKey) => string, reason: string | null): string | null {
  if (!reason) return null;
  const known: Record<string, MessageKey> = {
    idle_timeout: "deploy.reason.idle",
    cancelled: "deploy.reason.cancelled",
    start_timeout: "deploy.reason.startTimeout",
  };
  return known[reason] ? t(known[reason]) : reason;
}

interface Props {
  deployment: Deployment;
  /** When `deployment` was fetched (ms): the idle countdown runs from there. */
  fetchedAt: number;
  onChanged: () => void;
}

/** One deployment: state and engine, idle countdown, load and limits, usage, stop, log. */
export function DeploymentStatus({ deployment: d, fetchedAt, onChanged }: Props) {
  const { t, formatDateTime } = useI18n();
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const idle = useCountdown(d.state === "ready" ? d.idle_seconds_left : null, fetchedAt);
  const live = LIVE_DEPLOYMENT_STATES.has(d.state);
  const ended = endReason(t, d.reason);
  const uptime = useMemo(() => formatDuration(d.uptime_s), [d.uptime_s]);

  const stop = async () => {
    setBusy(true);
    setError(null);
    try {
      await deploymentsApi.stop(d.id);
      onChanged();
    } catch (cause) {
      setError(cause instanceof Error ? cause.message : String(cause));
    } finally {
      setBusy(false);
    }
  };
  const saveLog = () =>
    deploymentsApi.downloadLog(d.id, `${d.id}.log`).catch((cause: unknown) =>
      setError(cause instanceof Error ? cause.message : String(cause)),
    );

  return (
    <div className="deployment">
      <div className="job-head">
        <DeploymentBadge state={d.state} />
        <EngineBadge engine={d.engine} />
        <strong>{d.model}</strong>
        <span className="mono muted" title={d.id}>
          {d.id}
        </span>
      </div>
      {/* The state is announced when it changes; the ticking countdown is not (it would speak every second). */}
      <p className="deployment__note" role="status">
        {d.state === "queued" && t("deploy.note.queued")}
        {d.state === "starting" && t("deploy.note.starting")}
        {d.state === "ready" && t("deploy.note.readyState")}
        {d.state === "stopping" && t("deploy.note.stopping")}
        {d.state === "stopped" && t("deploy.note.stopped", { reason: ended ?? "—" })}
      </p>
      {d.state === "ready" && idle !== null && (
        <p className="deployment__countdown" data-testid="idle-countdown">
          {t("deploy.note.ready", { left: formatDuration(idle) ?? "0:00" })}
        </p>
      )}
      {d.state === "ready" && idle !== null && (
        <div className="idle" aria-hidden="true">
          <div className="idle__bar" style={{ width: `${Math.min(100, (idle / Math.max(1, d.idle_timeout_s)) * 100)}%` }} />
        </div>
      )}
      {d.state === "failed" && (
        <Alert tone="error">
          <strong>{t("deploy.failedBecause", { reason: ended ?? "?" })}</strong>
          {d.message && <pre className="message">{d.message}</pre>}
        </Alert>
      )}
      {error && <Alert tone="error">{error}</Alert>}
      <dl className="details details--compact">
        <ServingFacts deployment={d} />
        <div>
          <dt>{t("deploy.resources")}</dt>
          <dd>{d.gpu_count > 0 ? t("job.gpus", { count: d.gpu_count }) : t("job.cpuOnly")}</dd>
        </div>
        <div>
          <dt>{t("deploy.idleTimeout")}</dt>
          <dd>{formatDuration(d.idle_timeout_s)}</dd>
        </div>
        <div>
          <dt>{t("deploy.requests")}</dt>
          <dd>
            {formatCount(d.requests_served)} · {t("deploy.tokensShort", { count: formatCount(d.tokens_generated) })}
          </dd>
        </div>
        <div>
          <dt>{t("deploy.uptime")}</dt>
          <dd>{uptime ?? "—"}</dd>
        </div>
        <div>
          <dt>{t("deploy.lastRequest")}</dt>
          <dd>{d.last_request_at ? formatDateTime(d.last_request_at) : "—"}</dd>
        </div>
        <div>
          <dt>{t("deploy.created")}</dt>
          <dd>{formatDateTime(d.created_at)}</dd>
        </div>
      </dl>
      <div className="inline-row">
        {live && d.state !== "stopping" && (
          <Button variant="danger" busy={busy} onClick={stop}>
            {t("deploy.stop")}
          </Button>
        )}
        <Button onClick={saveLog}>{t("deploy.downloadLog")}</Button>
        <Link href={`/jobs/${d.id}`} className="button button--link">
          {t("deploy.liveLog")}
        </Link>
      </div>
    </div>
  );
}
