import type { JobDetail } from "../../api/jobs";
import { useI18n } from "../../i18n";

const NAMES = { mlflow: "MLflow", wandb: "Weights & Biases", tensorboard: "TensorBoard" } as const;

/** Where the job reports its experiment (docs/tracking.md): a link to each run that has a page, else where it is. */
export function TrackingLinks({ job }: { job: JobDetail }) {
  const { t } = useI18n();
  const runs = job.tracking ?? [];
  if (runs.length === 0) return null;
  return (
    <section className="card" aria-labelledby="job-tracking">
      <h2 id="job-tracking">{t("job.tracking")}</h2>
      <dl className="details">
        {runs.map((run) => (
          <div key={run.kind}>
            <dt>{NAMES[run.kind]}</dt>
            <dd>
              {run.url ? (
                <a href={safeUrl(run.url)} target="_blank" rel="noopener noreferrer">
                  {t("job.trackingOpen")}
                </a>
              ) : (
                <span className="muted">{describe(run, t)}</span>
              )}
            </dd>
          </div>
        ))}
      </dl>
    </section>
  );
}

type Run = NonNullable<JobDetail["tracking"]>[number];

function describe(run: Run, t: ReturnType<typeof useI18n>["t"]): string {
  const folder = run.folder ?? "";
  if (run.kind === "mlflow") return t("job.trackingMlflowPending");
  if (run.kind === "tensorboard") return t("job.trackingTensorboard", { folder });
  if (run.mode === "offline") return t("job.trackingWandbOffline", { folder });
  return t("job.trackingWandbNoLink", { run: run.run_id ?? "" });
}

/** Only http(s) links are rendered as such (the scheduler builds them from checked URLs; this is the last guard). */
function safeUrl(url: string): string | undefined {
  return /^https?:\/\//i.test(url) ? url : undefined;
}
