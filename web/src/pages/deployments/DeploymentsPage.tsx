import { Link } from "wouter";

import { LIVE_DEPLOYMENT_STATES, deploymentsApi, type Deployment, type DeploymentPage } from "../../api/deployments";
import { useUser } from "../../auth/session";
import { Alert } from "../../components/Alert";
import { Button } from "../../components/Button";
import type { Column } from "../../components/DataTable";
import { DeploymentBadge } from "../../components/DeploymentBadge";
import { EngineBadge } from "../../components/EngineBadge";
import { choices, Empty, FilterBar, ListSection, PagedTable, PageTop, type Filter } from "../../components/ListPage";
import { Timestamp } from "../../components/Timestamp";
import { useI18n, type Translate } from "../../i18n";
import { formatCount, formatDuration } from "../../lib/format";
import { useInterval } from "../../lib/live";
import { useFailure } from "../../lib/useFailure";
import { PAGE_SIZE, usePagedList } from "../../lib/usePagedList";
import { endReason } from "./DeploymentStatus";

/** Deployments past and present (admins: everyone's, with owner, agent, GPU memory), newest first. */
export function DeploymentsPage() {
  const { t } = useI18n();
  const admin = useUser().role === "admin";
  const list = usePagedList({
    filters: ["show"],
    load: ({ show }, cursor, signal) => deploymentsApi.list({ active: show === "active", cursor, limit: PAGE_SIZE }, signal),
    next: (page: DeploymentPage) => page.next_cursor,
  });
  const onlyLive = list.filters.show === "active";
  const { failure, fail, clear } = useFailure();
  useInterval(list.query.refresh, 3000, list.items.some((d) => LIVE_DEPLOYMENT_STATES.has(d.state)));

  const stop = (d: Deployment) => {
    clear();
    deploymentsApi.stop(d.id).then(list.query.refresh, fail);
  };
  const saveLog = (d: Deployment) => deploymentsApi.downloadLog(d.id, `${d.id}.log`).catch(fail);

  const showFilter: Filter<"show"> = {
    name: "show",
    label: t("deployments.show"),
    options: choices(t("deployments.showAll"), ["active"], () => t("deployments.showActive")),
  };
  return (
    <>
      <PageTop title={t("deployments.title")}>
        <Link href="/playground" className="button button--primary">
          {t("deployments.openPlayground")}
        </Link>
      </PageTop>
      <ListSection
        titleId="deployments-list"
        title={admin ? t("deployments.allTitle") : t("deployments.listTitle")}
        intro={admin && t("deployments.adminNote")}
      >
        <FilterBar label={t("deployments.filters")} list={list} fields={[showFilter]} />
        {failure && <Alert tone="error">{failure}</Alert>}
        <PagedTable
          list={list}
          failed={t("deployments.loadFailed")}
          empty={<Empty text={onlyLive ? t("deployments.noneActive") : t("deployments.none")} link={{ href: "/playground", label: t("deployments.first") }} />}
          labelledBy="deployments-list"
          className="table--rows"
          columns={deploymentColumns(t, admin, stop, saveLog)}
          items={list.items}
          rowKey={(d) => d.id}
        />
      </ListSection>
    </>
  );
}

function deploymentColumns(t: Translate, admin: boolean, onStop: (d: Deployment) => void, onLog: (d: Deployment) => void): Column<Deployment>[] {
  const adminOnly: Column<Deployment>[] = [
    { key: "owner", header: t("deployments.colOwner"), cell: (d) => d.owner ?? "—" },
    { key: "agent", header: t("deployments.colAgent"), className: "mono", cell: (d) => d.agent_id ?? "—" },
    { key: "gpuMemory", header: t("deployments.colGpuMemory"), numeric: true, cell: (d) => (d.gpu_memory_mb ? `${formatCount(d.gpu_memory_mb)} MB` : "—") },
  ];
  return [
    {
      key: "id",
      header: t("deployments.colId"),
      rowHeader: true,
      cell: (d) => (
        <Link href={`/playground?deployment=${encodeURIComponent(d.id)}`} className="mono">
          {d.id}
        </Link>
      ),
    },
    {
      key: "model",
      header: t("deployments.colModel"),
      className: "cell--wrap",
      cell: (d) => (
        <>
          {d.model} <EngineBadge engine={d.engine} />
        </>
      ),
    },
    {
      key: "state",
      header: t("deployments.colState"),
      cell: (d) => (
        <>
          <DeploymentBadge state={d.state} />
          {(d.state === "failed" || d.state === "stopped") && d.reason && <span className="muted cell-note">{endReason(t, d.reason)}</span>}
        </>
      ),
    },
    ...(admin ? adminOnly : []),
    { key: "created", header: t("deployments.colCreated"), cell: (d) => <Timestamp iso={d.created_at} /> },
    { key: "uptime", header: t("deployments.colUptime"), numeric: true, cell: (d) => formatDuration(d.uptime_s) ?? "—" },
    { key: "requests", header: t("deployments.colRequests"), numeric: true, cell: (d) => formatCount(d.requests_served) },
    { key: "lastRequest", header: t("deployments.colLastRequest"), cell: (d) => <Timestamp iso={d.last_request_at} /> },
    {
      key: "actions",
      header: t("deployments.colActions"),
      cell: (d) => (
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
      ),
    },
  ];
}
