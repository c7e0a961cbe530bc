import { Link } from "wouter";

import { modelsApi } from "../../api/catalog";
import type { JobDetail } from "../../api/jobs";
import { useI18n } from "../../i18n";
import { useQuery } from "../../lib/useQuery";

/** The model a succeeded training or export job produced, with what may be done with it next. */
export function ProducedModel({ job }: { job: JobDetail }) {
  const { t } = useI18n();
  const source = job.kind === "export" ? "export" : "train";
  const wanted = job.state === "succeeded" && (job.kind === "train" || job.kind === "export");
  const models = useQuery((signal) => modelsApi.list({ source, limit: 200 }, signal), [source, job.state], wanted);
  // Its own output, not a checkpoint of it registered as a model (Checkpoints.tsx).
  const model = models.data?.items.find((m) => m.job_id === job.id && m.details?.checkpoint_step === undefined);
  if (!wanted || !model) return null;
  const query = `model=${encodeURIComponent(model.name)}`;
  return (
    <p className="inline-row produced">
      <span>
        {t("job.produced")} <Link href={`/models/${model.id}`}>{model.name}</Link>
      </span>
      {model.usable_for.includes("deploy") && (
        <Link href={`/playground?${query}`} className="button button--primary">
          {t("job.deploy")}
        </Link>
      )}
      {model.usable_for.includes("eval") && (
        <Link href={`/jobs/new?kind=eval&${query}`} className="button">
          {t("job.evaluate")}
        </Link>
      )}
    </p>
  );
}
