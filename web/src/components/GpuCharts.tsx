import { lazy, Suspense, useMemo } from "react";

import type { GpuSeries } from "../api/fleet";
import { useI18n } from "../i18n";
import type { MessageKey } from "../i18n/en";
import { SERIES_COLORS, gpuSeries } from "../lib/fleet";

const LineChart = lazy(() => import("./LineChart"));

type Metric = "utilization_pct" | "memory_used_mb" | "temperature_c" | "power_w";

const TITLES: Record<Metric, MessageKey> = {
  utilization_pct: "gpuCharts.utilisation",
  memory_used_mb: "gpuCharts.memory",
  temperature_c: "gpuCharts.temperature",
  power_w: "gpuCharts.power",
};

/** One chart per metric, one line per GPU, over time (memory in GiB). */
export function GpuCharts({ gpus, metrics }: { gpus: GpuSeries[]; metrics: Metric[] }) {
  const { t } = useI18n();
  return (
    <Suspense fallback={<p className="muted">{t("app.loading")}</p>}>
      <div className="charts">
        {metrics.map((metric) => (
          <GpuChart key={metric} gpus={gpus} metric={metric} title={t(TITLES[metric])} />
        ))}
      </div>
    </Suspense>
  );
}

function GpuChart({ gpus, metric, title }: { gpus: GpuSeries[]; metric: Metric; title: string }) {
  const { t } = useI18n();
  const data = useMemo(() => gpuSeries(gpus, metric, metric === "memory_used_mb" ? 1024 : 1), [gpus, metric]);
  const series = useMemo(
    () => data.series.map((s, i) => ({ label: t("gpuCharts.gpu", { index: s.index }), values: s.values, color: SERIES_COLORS[i % SERIES_COLORS.length]! })),
    [data, t],
  );
  return <LineChart title={title} xLabel={t("gpuCharts.time")} x={data.x} series={series} time height={220} />;
}
