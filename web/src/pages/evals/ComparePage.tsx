import { Link, useSearchParams } from "wouter";

import { evalsApi, type Comparison } from "../../api/jobs";
import { LoadState } from "../../components/LoadState";
import { PageHeading } from "../../components/PageHeading";
import { useI18n } from "../../i18n";
import { formatMetric } from "../../lib/format";
import { useQuery } from "../../lib/useQuery";

const COLORS = ["#2f5bd3", "#c2410c", "#15803d", "#7c3aed", "#be123c", "#0e7490", "#a16207", "#4d7c0f", "#9d174d", "#334155"];
/** Metrics where smaller is better; the rest are better larger. */
const LOWER_IS_BETTER = new Set(["eval_loss", "perplexity", "latency_ms"]);

/** Index of the best run on a metric, or -1 when fewer than two runs report it. */
export function bestRun(values: (number | undefined)[], metric: string): number {
  const present = values.map((v, i) => [v, i] as const).filter((pair): pair is readonly [number, number] => typeof pair[0] === "number");
  if (present.length < 2) return -1;
  const lower = LOWER_IS_BETTER.has(metric);
  return present.reduce((best, cur) => ((lower ? cur[0] < best[0] : cur[0] > best[0]) ? cur : best))[1];
}

export function ComparePage() {
  const { t } = useI18n();
  const [params] = useSearchParams();
  const ids = (params.get("ids") ?? "").split(",").filter(Boolean);
  const comparison = useQuery((signal) => evalsApi.compare(ids, 20, signal), [ids.join(",")], ids.length >= 2);

  return (
    <>
      <p className="breadcrumb">
        <Link href="/evals">{t("evals.title")}</Link> / {t("compare.title")}
      </p>
      <PageHeading title={t("compare.title")} />
      {ids.length < 2 ? (
        <p className="empty">{t("compare.pickTwo")}</p>
      ) : (
        <LoadState loading={comparison.loading} error={comparison.error} reload={comparison.reload} failed={t("compare.loadFailed")}>
          {comparison.data && <CompareBody data={comparison.data} />}
        </LoadState>
      )}
    </>
  );
}

function CompareBody({ data }: { data: Comparison }) {
  const { t } = useI18n();
  const names = data.metric_names.filter((n) => n !== "samples");
  return (
    <div className="stack">
      <section className="card" aria-labelledby="compare-metrics">
        <h2 id="compare-metrics">{t("compare.metrics")}</h2>
        <ul className="legend" aria-label={t("compare.runs")}>
          {data.runs.map((run, i) => (
            <li key={run.id}>
              <span className="legend__swatch" style={{ background: COLORS[i % COLORS.length] }} aria-hidden="true" />
              <Link href={`/jobs/${run.id}`} className="mono">
                {run.id}
              </Link>{" "}
              · {run.model} · {t(`eval.kind.${run.evaluation}` as "eval.kind.loss")}
            </li>
          ))}
        </ul>
        <div className="table-scroll" role="region" aria-labelledby="compare-metrics" tabIndex={0}>
          <table>
            <thead>
              <tr>
                <th scope="col">{t("compare.metric")}</th>
                {data.runs.map((run) => (
                  <th key={run.id} scope="col" className="num mono">
                    {run.id.slice(-8)}
                  </th>
                ))}
              </tr>
            </thead>
            <tbody>
              {names.map((name) => {
                const values = data.runs.map((run) => run.metrics[name]);
                const best = bestRun(values, name);
                return (
                  <tr key={name}>
                    <th scope="row" className="mono">
                      {name}
                    </th>
                    {values.map((value, i) => (
                      <td key={i} className={i === best ? "num best" : "num"}>
                        {formatMetric(value)}
                        {i === best && <span className="visually-hidden"> ({t("compare.best")})</span>}
                      </td>
                    ))}
                  </tr>
                );
              })}
            </tbody>
          </table>
        </div>
        <div className="bars" aria-hidden="true">
          {names.map((name) => {
            const values = data.runs.map((run) => run.metrics[name] ?? 0);
            const max = Math.max(...values.map(Math.abs), 1e-12);
            return (
              <div key={name} className="bars__group">
                <p className="bars__name mono">{name}</p>
                {values.map((value, i) => (
                  <div key={i} className="bars__row">
                    <div className="bars__bar" style={{ width: `${(Math.abs(value) / max) * 100}%`, background: COLORS[i % COLORS.length] }} />
                    <span className="bars__value">{formatMetric(value)}</span>
                  </div>
                ))}
              </div>
            );
          })}
        </div>
      </section>
      <section className="card" aria-labelledby="compare-samples">
        <h2 id="compare-samples">{t("compare.samples")}</h2>
        {data.samples.length === 0 ? (
          <p className="muted">{t("compare.noSamples")}</p>
        ) : (
          <ol className="samples">
            {data.samples.map((sample) => (
              <li key={sample.index} className="sample">
                <p className="sample__label">{t("evals.prompt")}</p>
                <pre className="sample__text">{sample.prompt}</pre>
                <p className="sample__label">{t("evals.reference")}</p>
                <pre className="sample__text">{sample.label}</pre>
                <div className="sample__runs">
                  {sample.predictions.map((prediction, i) => (
                    <div key={i} className="sample__run" style={{ borderColor: COLORS[i % COLORS.length] }}>
                      <p className="sample__label mono">{data.runs[i]?.id.slice(-8)}</p>
                      <pre className="sample__text">{prediction ?? t("compare.noPrediction")}</pre>
                    </div>
                  ))}
                </div>
              </li>
            ))}
          </ol>
        )}
      </section>
    </div>
  );
}
