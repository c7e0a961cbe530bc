import { useState } from "react";
import { Link, useLocation } from "wouter";

import { modelsApi, type Model } from "../../api/catalog";
import type { JobDetail } from "../../api/jobs";
import { useUser } from "../../auth/session";
import { Alert } from "../../components/Alert";
import { Button } from "../../components/Button";
import { useI18n } from "../../i18n";
import { formatMetric } from "../../lib/format";
import { useQuery } from "../../lib/useQuery";

/** The model each checkpoint of `models` was registered as, by step. */
export function modelsByStep(models: Model[] | undefined): Map<number, Model> {
  const found = new Map<number, Model>();
  for (const model of models ?? []) {
    const step = model.details?.checkpoint_step;
    if (typeof step === "number") found.set(step, model);
  }
  return found;
}

/** The checkpoints a training job keeps; its owner deploys one: registered as a model, then to the playground. */
export function Checkpoints({ job }: { job: JobDetail }) {
  const { t, formatDateTime } = useI18n();
  const user = useUser();
  const [, navigate] = useLocation();
  const [busy, setBusy] = useState<number | null>(null);
  const [failure, setFailure] = useState<string | null>(null);
  const owner = job.owner_id === user.id;
  const checkpoints = job.checkpoints ?? [];
  const models = useQuery(
    (signal) => modelsApi.list({ job: job.id, limit: 200 }, signal),
    [job.id, checkpoints.length],
    owner && checkpoints.length > 0,
  );
  const registered = modelsByStep(models.data?.items);

  const deploy = async (step: number) => {
    setBusy(step);
    setFailure(null);
    try {
      const model = await modelsApi.registerCheckpoint(job.id, step);
      navigate(`/playground?model=${encodeURIComponent(model.name)}`);
    } catch (error) {
      setFailure(error instanceof Error ? error.message : String(error));
      setBusy(null);
    }
  };

  if (job.kind !== "train" || checkpoints.length === 0) return null;
  return (
    <section className="card" aria-labelledby="job-checkpoints">
      <h2 id="job-checkpoints">{t("job.checkpoints")}</h2>
      {failure && <Alert tone="error">{failure}</Alert>}
      <table>
        <thead>
          <tr>
            <th scope="col">{t("job.checkpointStep")}</th>
            <th scope="col">{t("job.checkpointSaved")}</th>
            <th scope="col">{t("job.checkpointTrainLoss")}</th>
            <th scope="col">{t("job.checkpointValidLoss")}</th>
            {owner && <th scope="col">{t("job.checkpointModel")}</th>}
          </tr>
        </thead>
        <tbody>
          {checkpoints.map((checkpoint) => {
            const model = registered.get(checkpoint.step);
            return (
              <tr key={checkpoint.step}>
                <td className="mono">checkpoint-{checkpoint.step}</td>
                <td>
                  <time dateTime={checkpoint.saved_at}>{formatDateTime(checkpoint.saved_at)}</time>
                </td>
                <td>{checkpoint.train_loss === null ? "—" : formatMetric(checkpoint.train_loss)}</td>
                <td>{checkpoint.valid_loss === null ? "—" : formatMetric(checkpoint.valid_loss)}</td>
                {owner && (
                  <td className="inline-row">
                    {model && <Link href={`/models/${model.id}`}>{model.name}</Link>}
                    <Button
                      variant={model ? "secondary" : "primary"}
                      busy={busy === checkpoint.step}
                      disabled={busy !== null}
                      aria-label={t("job.deployCheckpoint", { step: checkpoint.step })}
                      title={model ? undefined : t("job.deployCheckpointHint")}
                      onClick={() => void deploy(checkpoint.step)}
                    >
                      {t("job.deploy")}
                    </Button>
                  </td>
                )}
              </tr>
            );
          })}
        </tbody>
      </table>
    </section>
  );
}
