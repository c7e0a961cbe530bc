import { evalsApi } from "../../api/jobs";
import { LoadState } from "../../components/LoadState";
import { useI18n } from "../../i18n";
import { useQuery } from "../../lib/useQuery";

/** The generated samples of a finished evaluation: prompt, what the model said, what was expected. */
export function EvalSamples({ id }: { id: string }) {
  const { t } = useI18n();
  const detail = useQuery((signal) => evalsApi.get(id, signal), [id]);
  const samples = detail.data?.samples ?? [];
  if (detail.data && samples.length === 0) return null;
  return (
    <section className="card" aria-labelledby="eval-samples">
      <h2 id="eval-samples">{t("evals.samples")}</h2>
      <LoadState loading={detail.loading} error={detail.error} reload={detail.reload} failed={t("evals.loadFailed")}>
        <p className="muted">{t("evals.samplesShown", { shown: samples.length, total: detail.data?.samples_total ?? 0 })}</p>
        <ol className="samples">
          {samples.map((sample) => (
            <li key={sample.index} className="sample">
              <p className="sample__label">{t("evals.prompt")}</p>
              <pre className="sample__text">{sample.prompt}</pre>
              <p className="sample__label">{t("evals.prediction")}</p>
              <pre className="sample__text">{sample.prediction}</pre>
              <p className="sample__label">{t("evals.reference")}</p>
              <pre className="sample__text">{sample.label}</pre>
            </li>
          ))}
        </ol>
      </LoadState>
    </section>
  );
}
