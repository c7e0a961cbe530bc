import { useState } from "react";

import { filesApi, type FineTuning } from "../../api/jobs";
import { Alert } from "../../components/Alert";
import { Button } from "../../components/Button";
import { CopyButton } from "../../components/CopyButton";
import { DataTable, type Column } from "../../components/DataTable";
import { useI18n, type Translate } from "../../i18n";
import { formatExact, formatMetric } from "../../lib/format";

type Checkpoint = FineTuning["checkpoints"][number];

/** What a fine-tuned model is called from the `openai` package: `base` is this site's /v1. */
export function openaiSnippet(base: string, model: string): string {
  return [
    "from openai import OpenAI",
    "",
    `client = OpenAI(base_url="${base}", api_key="YOUR_API_KEY")`,
    "reply = client.chat.completions.create(",
    `    model="${model}",`,
    '    messages=[{"role": "user", "content": "Hello"}],',
    ")",
    "print(reply.choices[0].message.content)",
  ].join("\n");
}

/** OpenAI's face of a job created through /v1/fine_tuning/jobs: its id, status, `ft:` name, hyperparameters,
 * tokens trained on, checkpoints, results file, and how to call the model from the `openai` package. */
export function FineTuningPanel({ fineTuning }: { fineTuning: FineTuning }) {
  const { t } = useI18n();
  const [failure, setFailure] = useState<string | null>(null);
  const model = fineTuning.fine_tuned_model;
  const download = (fileId: string) =>
    filesApi.downloadContent(fileId, `${fineTuning.id}-results.csv`).catch((error: unknown) =>
      setFailure(error instanceof Error ? error.message : String(error)),
    );
  return (
    <section className="card" aria-labelledby="job-openai">
      <h2 id="job-openai">{t("ft.title")}</h2>
      <dl className="details">
        <div>
          <dt>{t("ft.id")}</dt>
          <dd className="inline-row">
            <code>{fineTuning.id}</code>
            <CopyButton text={fineTuning.id} />
          </dd>
        </div>
        <div>
          <dt>{t("ft.status")}</dt>
          <dd className="mono">{fineTuning.status}</dd>
        </div>
        <div>
          <dt>{t("ft.model")}</dt>
          <dd className="inline-row">
            {model ? (
              <>
                <code>{model}</code>
                <CopyButton text={model} />
              </>
            ) : (
              <span className="muted">{t("ft.modelLater")}</span>
            )}
          </dd>
        </div>
        <div>
          <dt>{t("ft.method")}</dt>
          <dd className="mono">{fineTuning.method}</dd>
        </div>
        {Object.entries(fineTuning.hyperparameters).map(([name, value]) => (
          <div key={name}>
            <dt className="mono">{name}</dt>
            <dd>{typeof value === "number" ? formatMetric(value) : String(value)}</dd>
          </div>
        ))}
        <div>
          <dt>{t("ft.trainedTokens")}</dt>
          <dd>{fineTuning.trained_tokens === null ? t("ft.tokensLater") : formatExact(fineTuning.trained_tokens)}</dd>
        </div>
        <div>
          <dt>{t("ft.results")}</dt>
          <dd>
            {fineTuning.result_files.length === 0 ? (
              <span className="muted">{t("ft.resultsLater")}</span>
            ) : (
              fineTuning.result_files.map((fileId) => (
                <Button key={fileId} onClick={() => download(fileId)} title={fileId}>
                  {t("ft.downloadResults")}
                </Button>
              ))
            )}
          </dd>
        </div>
      </dl>
      {failure && <Alert tone="error">{failure}</Alert>}

      <h3 id="job-openai-checkpoints">{t("ft.checkpoints")}</h3>
      {fineTuning.checkpoints.length === 0 ? (
        <p className="muted">{t("ft.noCheckpoints")}</p>
      ) : (
        <DataTable
          columns={checkpointColumns(t)}
          items={fineTuning.checkpoints}
          rowKey={(c) => c.id}
          labelledBy="job-openai-checkpoints"
        />
      )}

      {model && <Snippet model={model} />}
    </section>
  );
}

function checkpointColumns(t: Translate): Column<Checkpoint>[] {
  return [
    { key: "step", header: t("ft.colStep"), rowHeader: true, numeric: true, cell: (c) => c.step_number },
    { key: "time", header: t("ft.colTime"), cell: (c) => <CheckpointTime unix={c.created_at} /> },
    { key: "train", header: t("ft.colTrainLoss"), numeric: true, cell: (c) => formatMetric(c.metrics.train_loss) },
    { key: "valid", header: t("ft.colValidLoss"), numeric: true, cell: (c) => formatMetric(c.metrics.valid_loss) },
    {
      key: "name",
      header: t("ft.colModel"),
      className: "cell--wrap",
      cell: (c) => <code>{c.fine_tuned_model_checkpoint}</code>,
    },
  ];
}

function CheckpointTime({ unix }: { unix: number }) {
  const { formatDateTime } = useI18n();
  const iso = new Date(unix * 1000).toISOString();
  return <time dateTime={iso}>{formatDateTime(iso)}</time>;
}

function Snippet({ model }: { model: string }) {
  const { t } = useI18n();
  const code = openaiSnippet(`${window.location.origin}/v1`, model);
  return (
    <>
      <div className="card__header">
        <h3 id="job-openai-snippet">{t("ft.snippet")}</h3>
        <CopyButton text={code} label={t("ft.copySnippet")} />
      </div>
      <p className="muted">{t("ft.snippetHint")}</p>
      <pre className="code" tabIndex={0} aria-labelledby="job-openai-snippet">
        {code}
      </pre>
    </>
  );
}
