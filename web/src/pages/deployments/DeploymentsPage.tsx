import { useState } from "react";
import { Link, useSearchParams } from "wouter";

import { download } from "../../api/client";
import { LIVE_DEPLOYMENT_STATES, deploymentsApi, type Deployment } from "../../api/deployments";
import { useUser } from "../../auth/session";
import { Alert } from "../../components/Alert";
import { Button } from "../../components/Button";
import { DeploymentBadge } from "../../components/DeploymentBadge";
import { SelectField } from "../../components/Fields";
import { LoadState } from "../../components/LoadState";
import { PageHeading } from "../../components/PageHeading";
import { useI18n } from "../../i18n";
import { formatCount, formatDuration } from "../../lib/format";
import { useInterval } from "../../lib/live";
import { useQuery } from "../../lib/useQuery";
import { endReason } from "./DeploymentStatus";

const PAGE_SIZE = 25;

/** Deployments past and present (admins: everyone's, with owner, agent, GPU memory), newest first. */
export function DeploymentsPage() {
  const { t } = useI18n();
  const admin = useUser().role === "admin";
  const [params, setParams] = useSearchParams();
  const onlyLive = params.get("show") === "active";
  const [cursors, setCursors] = useState<(string | null)[]>([null]);
  const cursor = cursors[cursors.length - 1] ?? null;
  const list = useQuery((signal) => deploymentsApi.list({ active: onlyLive, cursor, limit: PAGE_SIZE }, signal), [onlyLive, cursor]);
  const [notice, setNotice] = useState<string | null>(null);
  const items = list.data?.items ?? [];
  useInterval(list.refresh, 3000, items.some((d) => LIVE_DEPLOYMENT_STATES.has(d.state)));

  const stop = async (d: Deployment) => {
    setNotice(null);
    try {
      await deploymentsApi.stop(d.id);
      list.refresh();
    } catch (error) {
      setNotice(error instanceof Error ? error.message : String(error));
    }
  };
  const saveLog = (d: Deployment) =>
    download(deploymentsApi.logPath(d.id), `${d.id}.log`).catch((error: unknown) =>
      setNotice(error instanceof Error ? error.message : String(error)),
    );

  return (
    <>
      <div className="page-top">
        <PageHeading title={t("deployments.title")} />
        <div className="page-top__actions">
          <Link href="/playground" className="button button--primary">
            {t("deployments.openPlayground")}
          </Link>
        </div>
      </div>
      <section className="card" aria-labelledby="deployments-list">
        <h2 id="deployments-list" className="visually-hidden">
          {admin ? t("deployments.allTitle") : t("deployments.listTitle")}
        </h2>
        {admin && <p className="muted">{t("deployments.adminNote")}</p>}
        <div className="filters" role="search" aria-label={t("deployments.filters")}>
          <SelectField
            label={t("deployments.show")}
            value={onlyLive ? "active" : ""}
            options={[
              { value: "", label: t("deployments.showAll") },
              { value: "active", label: t("deployments.showActive") },
            ]}
            onChange={(e) => {
              setCursors([null]);
              setParams(e.target.value ? { show: e.target.value } : {}, { replace: true });
            }}
          />
        </div>
        {notice && <Alert tone="error">{notice}</Alert>}
        <LoadState loading={list.loading && !list.data} error={list.error} reload={list.reload} failed={t("deployments.loadFailed")}>
          {items.length === 0 ? (
            <div className="empty">
              <p>{onlyLive ? t("deployments.noneActive") : t("deployments.none")}</p>
              <Link href="/playground" className="button button--primary">
                {t("deployments.first")}
              </Link>
            </div>
          ) : (
            <DeploymentTable items={items} admin={admin} onStop={stop} onLog={saveLog} />
          )}
          <div className="pager">
            <Button disabled={cursors.length === 1} onClick={() => setCursors((c) => c.slice(0, -1))}>
              {t("pager.newer")}
            </Button>
            <span className="muted">{t("pager.page", { page: cursors.length })}</span>
            <Button disabled={!list.data?.next_cursor} onClick={() => list.data?.next_cursor && setCursors((c) => [...c, list.data!.next_cursor])}>
              {t("pager.older")}
            </Button>
          </div>
        </LoadState>
      </section>
    </>
  );
}

interface TableProps {
  items: Deployment[];
  admin: boolean;
  onStop: (d: Deployment) => Promise<void>;
  onLog: (d: Deployment) => void;
}

function DeploymentTable({ items, admin, onStop, onLog }: TableProps) {
  const { t, formatDateTime } = useI18n();
  return (
    <div className="table-scroll" role="region" aria-labelledby="deployments-list" tabIndex={0}>
      <table className="table--rows">
        <thead>
          <tr>
            <th scope="col">{t("deployments.colId")}</th>
            <th scope="col">{t("deployments.colModel")}</th>
            <th scope="col">{t("deployments.colState")}</th>
            {admin && <th scope="col">{t("deployments.colOwner")}</th>}
            {admin && <th scope="col">{t("deployments.colAgent")}</th>}
            {admin && <th scope="col" className="num">{t("deployments.colGpuMemory")}</th>}
            <th scope="col">{t("deployments.colCreated")}</th>
            <th scope="col" className="num">{t("deployments.colUptime")}</th>
            <th scope="col" className="num">{t("deployments.colRequests")}</th>
            <th scope="col">{t("deployments.colLastRequest")}</th>
            <th scope="col">{t("deployments.colActions")}</th>
          </tr>
        </thead>
        <tbody>
          {items.map((d) => (
            <tr key={d.id}>
              <th scope="row">
                <Link href={`/playground?deployment=${encodeURIComponent(d.id)}`} className="mono">
                  {d.id}
                </Link>
              </th>
              <td className="cell--wrap">{d.model}</td>
              <td>
                <DeploymentBadge state={d.state} />
                {(d.state === "failed" || d.state === "stopped") && d.reason && <span className="muted cell-note">{endReason(t, d.reason)}</span>}
              </td>
              {admin && <td>{d.owner ?? "—"}</td>}
              {admin && <td className="mono">{d.agent_id ?? "—"}</td>}
              {admin && <td className="num">{d.gpu_memory_mb ? `${formatCount(d.gpu_memory_mb)} MB` : "—"}</td>}
              <td>
                <time dateTime={d.created_at}>{formatDateTime(d.created_at)}</time>
              </td>
              <td className="num">{formatDuration(d.uptime_s) ?? "—"}</td>
              <td className="num">{formatCount(d.requests_served)}</td>
              <td>{d.last_request_at ? <time dateTime={d.last_request_at}>{formatDateTime(d.last_request_at)}</time> : "—"}</td>
              <td>
                <div className="row-actions">
                  {LIVE_DEPLOYMENT_STATES.has(d.state) && d.state !== "stopping" && (
                    <Button variant="danger" onClick={() => onStop(d)} aria-label={t("deploy.stopNamed", { id: d.id })}>
                      {t("deploy.stop")}
                    </Button>
                  )}
                  <Button onClick={() => onLog(d)} aria-label={t("deploy.logNamed", { id: d.id })}>
                    {t("deploy.log")}
                  </Button>
                </div>
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}
