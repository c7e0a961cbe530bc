import { fleetApi } from "../../api/fleet";
import type { JobDetail } from "../../api/jobs";
import { GpuCharts } from "../../components/GpuCharts";
import { useI18n } from "../../i18n";
import { useInterval } from "../../lib/live";
import { useQuery } from "../../lib/useQuery";

/** The utilisation and memory of the GPUs a job held, over its run (GET /api/jobs/{id}/gpu). */
export function JobGpu({ job, active }: { job: JobDetail; active: boolean }) {
  const { t } = useI18n();
  const wanted = job.gpu_count > 0 && job.started_at !== null;
  const gpu = useQuery((signal) => fleetApi.jobGpu(job.id, signal), [job.id, job.state], wanted);
  useInterval(gpu.refresh, 15_000, wanted && active);
  if (!wanted) return null;
  const series = gpu.data?.gpus ?? [];
  return (
    <section className="card" aria-labelledby="job-gpu">
      <div className="card__header">
        <h2 id="job-gpu">{t("jobGpu.title")}</h2>
        {gpu.data?.agent_id && (
          <span className="muted">
            {t("jobGpu.on", { agent: gpu.data.agent_id, gpus: (gpu.data.gpu_ids ?? []).join(", ") })}
          </span>
        )}
      </div>
      {gpu.error ? (
        <p className="muted">{t("jobGpu.unavailable")}</p>
      ) : gpu.loading && !gpu.data ? (
        <p className="muted">{t("app.loading")}</p>
      ) : series.length === 0 ? (
        <p className="muted">{t("jobGpu.empty")}</p>
      ) : (
        <GpuCharts gpus={series} metrics={["utilization_pct", "memory_used_mb"]} />
      )}
    </section>
  );
}
