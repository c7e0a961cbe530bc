import { lazy, Suspense, useMemo } from "react";

import type { ProgressPoint } from "../../api/jobs";
import { useI18n } from "../../i18n";
import { formatMetric } from "../../lib/format";

const LineChart = lazy(() => import("../../components/LineChart"));

/** The curves of a progress series: x = step; loss, validation loss and learning rate (null where not logged). */
export function curves(series: ProgressPoint[]) {
  const points = [...series].sort((a, b) => a.step - b.step);
  return {
    steps: points.map((p) => p.step),
    loss: points.map((p) => p.loss ?? null),
    evalLoss: points.map((p) => p.eval_loss ?? null),
    evaluated: points.some((p) => p.eval_loss !== null && p.eval_loss !== undefined),
    learningRate: points.map((p) => p.learning_rate ?? null),
    /** The newest point with a training loss (a validation pass may come after it at a new step). */
    latest: points.filter((p) => p.loss !== null && p.loss !== undefined).at(-1),
  };
}

/** Loss (with the validation loss when the job evaluates) and learning-rate charts, drawn as points arrive. */
export function TrainingCurves({ series }: { series: ProgressPoint[] }) {
  const { t } = useI18n();
  const data = useMemo(() => curves(series), [series]);
  const loss = useMemo(
    () => [
      { label: t("curves.loss"), values: data.loss, color: "#2f5bd3" },
      ...(data.evaluated ? [{ label: t("curves.evalLoss"), values: data.evalLoss, color: "#15803d" }] : []),
    ],
    [data, t],
  );
  const lr = useMemo(() => [{ label: t("curves.learningRate"), values: data.learningRate, color: "#c2410c" }], [data, t]);
  const last = data.latest;

  return (
    <section className="card" aria-labelledby="job-curves">
      <div className="card__header">
        <h2 id="job-curves">{t("curves.title")}</h2>
        {last && (
          <span className="muted" role="status">
            {t("curves.latest", { step: last.step, loss: formatMetric(last.loss) })}
          </span>
        )}
      </div>
      {data.steps.length === 0 ? (
        <p className="muted">{t("curves.empty")}</p>
      ) : (
        <Suspense fallback={<p className="muted">{t("app.loading")}</p>}>
          <div className="charts">
            <LineChart title={t("curves.loss")} xLabel={t("curves.step")} x={data.steps} series={loss} />
            <LineChart title={t("curves.learningRate")} xLabel={t("curves.step")} x={data.steps} series={lr} />
          </div>
          <details>
            <summary>{t("curves.asTable")}</summary>
            <div className="table-scroll">
              <table>
                <thead>
                  <tr>
                    <th scope="col">{t("curves.step")}</th>
                    <th scope="col">{t("curves.loss")}</th>
                    {data.evaluated && <th scope="col">{t("curves.evalLoss")}</th>}
                    <th scope="col">{t("curves.learningRate")}</th>
                    <th scope="col">{t("curves.epoch")}</th>
                  </tr>
                </thead>
                <tbody>
                  {series.map((p) => (
                    <tr key={p.step}>
                      <td>{p.step}</td>
                      <td>{formatMetric(p.loss)}</td>
                      {data.evaluated && <td>{formatMetric(p.eval_loss)}</td>}
                      <td>{formatMetric(p.learning_rate)}</td>
                      <td>{formatMetric(p.epoch)}</td>
                    </tr>
                  ))}
                </tbody>
              </table>
            </div>
          </details>
        </Suspense>
      )}
    </section>
  );
}
