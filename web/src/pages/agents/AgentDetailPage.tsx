import { lazy, Suspense, useMemo, useState } from "react";
import { Link } from "wouter";

import { fleetApi } from "../../api/fleet";
import { SelectField } from "../../components/Fields";
import { GpuCharts } from "../../components/GpuCharts";
import { LoadState } from "../../components/LoadState";
import { PageHeading } from "../../components/PageHeading";
import { useI18n } from "../../i18n";
import { RANGES, hostSeries, rangeQuery, useNow, type RangeName } from "../../lib/fleet";
import { useInterval } from "../../lib/live";
import { useQuery } from "../../lib/useQuery";
import { AgentCard } from "./AgentsPage";

const LineChart = lazy(() => import("../../components/LineChart"));

/** One agent (admins): its state and GPUs now, and its resource history. */
export function AgentDetailPage({ id }: { id: string }) {
  const { t } = useI18n();
  const agent = useQuery((signal) => fleetApi.get(id, signal), [id]);
  const now = useNow();
  useInterval(agent.refresh, 5000, true);
  return (
    <>
      <p className="breadcrumb">
        <Link href="/agents">{t("fleet.title")}</Link> / <span className="mono">{id}</span>
      </p>
      <PageHeading title={t("fleet.agentTitle", { id })} />
      <div className="stack">
        <LoadState loading={agent.loading && !agent.data} error={agent.error} reload={agent.reload} failed={t("fleet.agentFailed")}>
          {agent.data && (
            <section className="card" aria-label={t("fleet.now")}>
              <AgentCard agent={agent.data} now={now} detailLink={false} onChanged={(a) => (a ? agent.update(() => a) : agent.refresh())} />
            </section>
          )}
        </LoadState>
        <History id={id} />
      </div>
    </>
  );
}

function History({ id }: { id: string }) {
  const { t } = useI18n();
  const [range, setRange] = useState<RangeName>("1h");
  const [tick, setTick] = useState(0);
  // The window moves with time: asked again every 30 s.
  useInterval(() => setTick((n) => n + 1), 30_000, true);
  const metrics = useQuery((signal) => fleetApi.metrics(id, rangeQuery(range, Date.now()), signal), [id, range, tick]);
  const host = useMemo(() => hostSeries(metrics.data?.host ?? []), [metrics.data]);
  const cpu = useMemo(() => [{ label: t("fleet.cpu"), values: host.cpu, color: "#2f5bd3" }], [host, t]);
  const memory = useMemo(() => [{ label: t("fleet.hostMemoryGib"), values: host.memory, color: "#15803d" }], [host, t]);
  const gpus = metrics.data?.gpus ?? [];
  return (
    <section className="card" aria-labelledby="agent-history">
      <div className="card__header">
        <h2 id="agent-history">{t("fleet.history")}</h2>
        <SelectField
          label={t("fleet.range")}
          value={range}
          onChange={(e) => setRange(e.target.value as RangeName)}
          options={(Object.keys(RANGES) as RangeName[]).map((r) => ({ value: r, label: t(`fleet.range.${r}` as "fleet.range.1h") }))}
        />
      </div>
      <LoadState loading={metrics.loading && !metrics.data} error={metrics.error} reload={metrics.reload} failed={t("fleet.historyFailed")}>
        {host.x.length === 0 && gpus.length === 0 ? (
          <p className="muted">{t("fleet.noHistory")}</p>
        ) : (
          <>
            {metrics.data && <p className="muted">{t("fleet.step", { step: metrics.data.step_s })}</p>}
            <Suspense fallback={<p className="muted">{t("app.loading")}</p>}>
              <div className="charts">
                <LineChart title={t("fleet.cpuChart")} xLabel={t("gpuCharts.time")} x={host.x} series={cpu} time height={220} />
                <LineChart title={t("fleet.memoryChart")} xLabel={t("gpuCharts.time")} x={host.x} series={memory} time height={220} />
              </div>
            </Suspense>
            {gpus.length > 0 && <GpuCharts gpus={gpus} metrics={["utilization_pct", "memory_used_mb", "temperature_c", "power_w"]} />}
          </>
        )}
      </LoadState>
    </section>
  );
}
