import { useState, type FormEvent } from "react";

import type { EvalRequest, JobDetail } from "../../api/jobs";
import { Alert } from "../../components/Alert";
import { Button } from "../../components/Button";
import { DatasetPicker } from "../../components/DatasetPicker";
import { Field } from "../../components/Field";
import { CheckboxField, SelectField } from "../../components/Fields";
import { ModelSelect } from "../../components/ModelSelect";
import { useI18n } from "../../i18n";
import { modelsFor, useCatalog } from "../../lib/catalog";
import { useJobSubmit } from "./useJobSubmit";

const FIELDS = [
  "model", "evaluation", "datasets", "task", "split", "n_shot", "lang", "max_samples", "per_device_eval_batch_size",
  "cutoff_len", "max_new_tokens", "temperature", "top_p", "gpu_count",
] as const;
type EvalField = (typeof FIELDS)[number];
type Evaluation = "loss" | "generation" | "benchmark";

/** Evaluate a model: loss/perplexity on datasets, generation scored with BLEU/ROUGE, or a benchmark task. */
export function EvalJobForm({ onSubmitted, initialModel }: { onSubmitted: (job: JobDetail) => void; initialModel?: string }) {
  const { t } = useI18n();
  const { models, datasets } = useCatalog();
  const [model, setModel] = useState(initialModel ?? "");
  const [evaluation, setEvaluation] = useState<Evaluation>("loss");
  const [picked, setPicked] = useState<string[]>([]);
  const [values, setValues] = useState({
    task: "", split: "test", n_shot: "5", lang: "en", max_samples: "100", per_device_eval_batch_size: "4",
    cutoff_len: "1024", max_new_tokens: "128", temperature: "0.95", top_p: "0.7", gpu_count: "1",
  });
  const [doSample, setDoSample] = useState(false);
  const { busy, errors, formError, submit, clear } = useJobSubmit<EvalField>(FIELDS, onSubmitted);
  const choices = modelsFor(models.data?.items, "eval");
  const set = (field: keyof typeof values & EvalField, value: string) => {
    setValues((v) => ({ ...v, [field]: value }));
    clear(field);
  };
  const num = (text: string) => (text.trim() === "" ? undefined : Number(text));

  const onSubmit = (event: FormEvent) => {
    event.preventDefault();
    const body: EvalRequest = {
      kind: "eval",
      model,
      evaluation,
      per_device_eval_batch_size: num(values.per_device_eval_batch_size),
      cutoff_len: num(values.cutoff_len),
      gpu_count: num(values.gpu_count),
    };
    if (values.max_samples.trim()) body.max_samples = num(values.max_samples);
    if (evaluation === "benchmark") {
      Object.assign(body, { task: values.task.trim(), split: values.split, n_shot: num(values.n_shot), lang: values.lang });
    } else {
      body.datasets = picked;
    }
    if (evaluation === "generation") {
      Object.assign(body, { max_new_tokens: num(values.max_new_tokens), temperature: num(values.temperature), top_p: num(values.top_p), do_sample: doSample });
    }
    void submit(body);
  };

  const field = (name: keyof typeof values & EvalField, label: string, hint?: string) => (
    <Field label={label} name={name} inputMode="decimal" value={values[name]} error={errors[name]} hint={hint} onChange={(e) => set(name, e.target.value)} />
  );

  return (
    <form className="form staged" onSubmit={onSubmit} noValidate aria-label={t("eval.formLabel")}>
      {formError && <Alert tone="error">{formError}</Alert>}
      <fieldset className="step">
        <legend>{t("eval.what")}</legend>
        <ModelSelect label={t("eval.model")} name="model" value={model} onChange={(m) => { setModel(m); clear("model"); }} own={choices.own} presets={choices.presets} error={errors.model} hint={t("eval.modelHint")} />
        <SelectField
          label={t("eval.evaluation")}
          name="evaluation"
          value={evaluation}
          options={(["loss", "generation", "benchmark"] as const).map((v) => ({ value: v, label: t(`eval.kind.${v}`) }))}
          onChange={(e) => setEvaluation(e.target.value as Evaluation)}
          hint={t(`eval.kindHint.${evaluation}`)}
          error={errors.evaluation}
        />
        {evaluation === "benchmark" ? (
          <div className="grid-4">
            <Field label={t("eval.task")} name="task" value={values.task} placeholder="tinymc" error={errors.task} hint={t("eval.taskHint")} onChange={(e) => set("task", e.target.value)} />
            <SelectField label={t("eval.split")} name="split" value={values.split} options={["test", "validation", "train"].map((v) => ({ value: v, label: v }))} onChange={(e) => set("split", e.target.value)} />
            {field("n_shot", t("eval.nShot"))}
            <SelectField label={t("eval.lang")} name="lang" value={values.lang} options={[{ value: "en", label: "English" }, { value: "zh", label: "中文" }]} onChange={(e) => set("lang", e.target.value)} />
          </div>
        ) : (
          <div data-field="datasets">
            <DatasetPicker legend={t("eval.datasets")} datasets={datasets.data?.items ?? []} selected={picked} onChange={(n) => { setPicked(n); clear("datasets"); }} error={errors.datasets} />
          </div>
        )}
      </fieldset>
      <fieldset className="step">
        <legend>{t("eval.settings")}</legend>
        <div className="grid-4">
          {field("max_samples", t("eval.maxSamples"), t("eval.maxSamplesHint"))}
          {field("per_device_eval_batch_size", t("eval.batchSize"))}
          {field("cutoff_len", t("train.cutoff"))}
          {field("gpu_count", t("train.gpus"), t("train.gpusHint"))}
        </div>
        {evaluation === "generation" && (
          <div className="grid-4">
            {field("max_new_tokens", t("eval.maxNewTokens"))}
            {field("temperature", t("eval.temperature"))}
            {field("top_p", t("eval.topP"))}
            <CheckboxField label={t("eval.doSample")} checked={doSample} onChange={setDoSample} hint={t("eval.doSampleHint")} />
          </div>
        )}
      </fieldset>
      <div className="form-actions">
        <Button type="submit" variant="primary" busy={busy}>
          {t("eval.submit")}
        </Button>
      </div>
    </form>
  );
}
