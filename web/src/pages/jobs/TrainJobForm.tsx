import { useEffect, useMemo, useRef, useState, type FormEvent, type ReactNode } from "react";

import type { Dataset } from "../../api/catalog";
import { ApiError } from "../../api/client";
import { jobsApi, type JobDetail } from "../../api/jobs";
import { Alert } from "../../components/Alert";
import { Button } from "../../components/Button";
import { DatasetPicker } from "../../components/DatasetPicker";
import { Field } from "../../components/Field";
import { CheckboxField, SelectField, TextAreaField } from "../../components/Fields";
import { ModelSelect } from "../../components/ModelSelect";
import { useI18n } from "../../i18n";
import type { MessageKey } from "../../i18n/en";
import { formFieldOf, modelsFor, useCatalog, useFleetGpus } from "../../lib/catalog";
import { SubmitKeys } from "../../lib/submitKeys";
import {
  applies,
  buildTrainRequest,
  datasetFits,
  defaultTrainForm,
  FINETUNING,
  OVERRIDES_EXAMPLE,
  STAGES,
  TRAIN_LIMITS,
  trackingFieldOf,
  type NumberField,
  type Problem,
  type TrainField,
  type TrainForm,
} from "../../lib/trainForm";
import { ConfigPreview } from "./ConfigPreview";

/** The seed's staged training form: model and data, method, training, evaluation, resources, extras. */
export function TrainJobForm({
  onSubmitted,
  initialModel,
  initialForm,
}: {
  onSubmitted: (job: JobDetail) => void;
  initialModel?: string;
  /** A job's settings to start from (a copy of an earlier job): every field counts as chosen. */
  initialForm?: TrainForm;
}) {
  const { t } = useI18n();
  const { models, datasets } = useCatalog();
  const [form, setForm] = useState<TrainForm>(() => initialForm ?? { ...defaultTrainForm(), base_model: initialModel ?? "" });
  const [problems, setProblems] = useState<Partial<Record<TrainField, string>>>({});
  const [formError, setFormError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const formRef = useRef<HTMLFormElement>(null);
  const keys = useRef(new SubmitKeys());
  const fleetGpus = useFleetGpus();
  const touched = useRef(new Set<TrainField>(initialForm ? (Object.keys(initialForm) as TrainField[]) : []));

  // Default to what the fleet can run: no GPU anywhere means a CPU slot, unless the user chose otherwise.
  useEffect(() => {
    if (fleetGpus === 0 && !touched.current.has("gpu_count")) setForm((f) => ({ ...f, gpu_count: "0" }));
  }, [fleetGpus]);

  const choices = modelsFor(models.data?.items, "train");
  const allDatasets = datasets.data?.items ?? [];
  const use = applies(form);
  const chosen = [...choices.own, ...choices.presets].find((m) => m.name === form.base_model);

  const set = <K extends TrainField>(field: K, value: TrainForm[K]) => {
    touched.current.add(field);
    setForm((current) => ({ ...current, [field]: value }));
    setProblems((current) => ({ ...current, [field]: undefined }));
  };
  const say = (problem: Problem) => t(problem.key, problem.values);

  const built = useMemo(() => buildTrainRequest(form), [form]);

  const focusField = (field: string) => {
    const element = formRef.current?.querySelector<HTMLElement>(`[name="${field}"], [data-field="${field}"] input`);
    element?.focus();
  };

  const submit = async (event: FormEvent) => {
    event.preventDefault();
    setFormError(null);
    const result = buildTrainRequest(form);
    if (!result.ok) {
      setProblems(Object.fromEntries(Object.entries(result.problems).map(([k, p]) => [k, say(p as Problem)])));
      setFormError(t("form.fixBelow"));
      // The first problem in the order of the form, not in the order it was found.
      const order = Object.keys(defaultTrainForm()) as TrainField[];
      focusField(order.find((field) => result.problems[field]) ?? "base_model");
      return;
    }
    setBusy(true);
    try {
      const job = await jobsApi.submit(result.body, keys.current.keyFor(result.body));
      keys.current.succeeded();
      onSubmitted(job);
    } catch (error) {
      setBusy(false);
      const field = error instanceof ApiError ? (trackingFieldOf(error.field ?? "") ?? formFieldOf(error.field)) : null;
      if (error instanceof ApiError && field && field in form) {
        setProblems({ [field]: error.message });
        setFormError(t("form.fixBelow"));
        focusField(field);
      } else {
        setFormError(error instanceof Error ? error.message : String(error));
      }
    }
  };

  const number = (field: NumberField, label: string, hint?: string, extra: { placeholder?: string } = {}) => {
    const limit: { min: number; max: number; exclusiveMin?: boolean; exclusiveMax?: boolean } = TRAIN_LIMITS[field];
    const range = t("form.rangeHint", {
      min: `${limit.exclusiveMin ? ">" : ""}${limit.min}`,
      max: `${limit.exclusiveMax ? "<" : ""}${limit.max}`,
    });
    return (
      <Field
        label={label}
        name={field}
        inputMode="decimal"
        autoComplete="off"
        value={form[field]}
        error={problems[field]}
        hint={hint ? `${hint} ${range}` : range}
        onChange={(e) => set(field, e.target.value)}
        {...extra}
      />
    );
  };

  const unfit = (dataset: Dataset) => (datasetFits(form.stage, dataset.format) ? null : t("train.notForStage"));
  const loadError = models.error ?? datasets.error;

  return (
    <div className="form-with-preview">
      <form ref={formRef} className="form staged" onSubmit={submit} noValidate aria-label={t("train.formLabel")}>
        {formError && <Alert tone="error">{formError}</Alert>}
        {loadError ? <Alert tone="error">{t("train.catalogFailed")}</Alert> : null}

        <Step n={1} title={t("train.stepData")}>
          <ModelSelect
            label={t("train.baseModel")}
            name="base_model"
            value={form.base_model}
            onChange={(name) => set("base_model", name)}
            own={choices.own}
            presets={choices.presets}
            error={problems.base_model}
            hint={models.loading ? t("app.loading") : t("train.baseModelHint")}
          />
          <div data-field="datasets">
            <DatasetPicker
              legend={t("train.datasets")}
              datasets={allDatasets}
              selected={form.datasets}
              onChange={(names) => set("datasets", names)}
              unfit={unfit}
              error={problems.datasets}
              hint={t("train.datasetsHint")}
            />
          </div>
        </Step>

        <Step n={2} title={t("train.stepMethod")}>
          <div className="grid-2">
            <SelectField
              label={t("train.stage")}
              name="stage"
              value={form.stage}
              options={STAGES.map((s) => ({ value: s, label: t(`stage.${s}` as MessageKey) }))}
              onChange={(e) => set("stage", e.target.value as TrainForm["stage"])}
              error={problems.stage}
            />
            <SelectField
              label={t("train.finetuning")}
              name="finetuning_type"
              value={use.fromScratch ? "full" : form.finetuning_type}
              disabled={use.fromScratch}
              options={FINETUNING.map((f) => ({ value: f, label: t(`finetuning.${f}` as MessageKey) }))}
              onChange={(e) => set("finetuning_type", e.target.value as TrainForm["finetuning_type"])}
              error={problems.finetuning_type}
              hint={use.fromScratch ? t("train.ptIsFull") : use.qlora ? t("train.qloraHint") : undefined}
            />
          </div>
          {use.fromScratch && (
            <CheckboxField
              label={t("train.fromScratch")}
              name="train_from_scratch"
              checked={form.train_from_scratch}
              onChange={(v) => set("train_from_scratch", v)}
              hint={t("train.fromScratchHint")}
              error={problems.train_from_scratch}
            />
          )}
          {use.lora && (
            <div className="grid-4">
              {number("lora_rank", t("train.loraRank"))}
              {number("lora_alpha", t("train.loraAlpha"), t("train.loraAlphaHint"), { placeholder: String(2 * (Number(form.lora_rank) || 8)) })}
              {number("lora_dropout", t("train.loraDropout"))}
              <Field
                label={t("train.loraTarget")}
                name="lora_target"
                value={form.lora_target}
                error={problems.lora_target}
                hint={t("train.loraTargetHint")}
                onChange={(e) => set("lora_target", e.target.value)}
              />
            </div>
          )}
          {use.qlora && (
            <div className="grid-4">
              <SelectField
                label={t("train.quantBits")}
                name="quantization_bit"
                value={form.quantization_bit}
                options={[{ value: "4", label: "4-bit" }, { value: "8", label: "8-bit" }]}
                onChange={(e) => set("quantization_bit", e.target.value as "4" | "8")}
                error={problems.quantization_bit}
              />
              <SelectField
                label={t("train.quantMethod")}
                name="quantization_method"
                value={form.quantization_method}
                options={["bitsandbytes", "hqq", "eetq"].map((v) => ({ value: v, label: v }))}
                onChange={(e) => set("quantization_method", e.target.value as TrainForm["quantization_method"])}
              />
              <SelectField
                label={t("train.quantType")}
                name="quantization_type"
                value={form.quantization_type}
                options={["nf4", "fp4"].map((v) => ({ value: v, label: v }))}
                onChange={(e) => set("quantization_type", e.target.value as TrainForm["quantization_type"])}
              />
              <CheckboxField
                label={t("train.doubleQuant")}
                checked={form.double_quantization}
                onChange={(v) => set("double_quantization", v)}
              />
            </div>
          )}
        </Step>

        <Step n={3} title={t("train.stepTraining")}>
          <div className="grid-3">
            {number("learning_rate", t("train.learningRate"), t("train.learningRateHint"))}
            {number("num_train_epochs", t("train.epochs"))}
            {number("max_steps", t("train.maxSteps"), t("train.maxStepsHint"))}
            {number("per_device_train_batch_size", t("train.batchSize"))}
            {number("gradient_accumulation_steps", t("train.gradAccum"))}
            {number("cutoff_len", t("train.cutoff"), t("train.cutoffHint"))}
          </div>
          <div className="grid-3">
            <SelectField
              label={t("train.warmup")}
              name="warmup"
              value={form.warmup}
              options={[
                { value: "none", label: t("train.warmupNone") },
                { value: "ratio", label: t("train.warmupRatio") },
                { value: "steps", label: t("train.warmupSteps") },
              ]}
              onChange={(e) => set("warmup", e.target.value as TrainForm["warmup"])}
            />
            {form.warmup === "ratio" && number("warmup_ratio", t("train.warmupRatio"))}
            {form.warmup === "steps" && number("warmup_steps", t("train.warmupSteps"))}
          </div>
        </Step>

        <Step n={4} title={t("train.stepEval")}>
          <div className="grid-3">
            {number("val_size", t("train.valSize"), t("train.valSizeHint"))}
            <SelectField
              label={t("train.evalStrategy")}
              name="evaluation_strategy"
              value={form.evaluation_strategy}
              disabled={!use.evaluation}
              options={[
                { value: "no", label: t("train.evalNo") },
                { value: "steps", label: t("train.evalSteps") },
                { value: "epoch", label: t("train.evalEpoch") },
              ]}
              onChange={(e) => set("evaluation_strategy", e.target.value as TrainForm["evaluation_strategy"])}
              error={problems.evaluation_strategy}
              hint={use.evaluation ? t("train.evalStrategyHint") : t("train.evalNeedsVal")}
            />
            {use.evaluation && use.evalSteps && number("eval_steps", t("train.evalEvery"))}
          </div>
        </Step>

        <Step n={5} title={t("train.stepResources")}>
          <div className="grid-3">
            {number("gpu_count", t("train.gpus"), fleetGpus === 0 ? t("train.noGpuInFleet") : t("train.gpusHint"))}
            {number("priority", t("train.priority"), t("train.priorityHint"))}
            {number("logging_steps", t("train.loggingSteps"))}
            {number("save_steps", t("train.saveSteps"))}
            <Field
              label={t("train.template")}
              name="template"
              value={form.template}
              placeholder={chosen?.template ?? "default"}
              error={problems.template}
              hint={t("train.templateHint")}
              onChange={(e) => set("template", e.target.value)}
            />
            <CheckboxField
              label={t("train.gradCheckpointing")}
              checked={form.gradient_checkpointing}
              onChange={(v) => set("gradient_checkpointing", v)}
              hint={t("train.gradCheckpointingHint")}
            />
          </div>
        </Step>

        <Step n={6} title={t("train.stepTracking")}>
          <p className="hint">{t("train.trackingHint")}</p>
          <div className="grid-3">
            <CheckboxField label={t("train.mlflow")} checked={form.mlflow} onChange={(v) => set("mlflow", v)} />
            <CheckboxField label={t("train.wandb")} checked={form.wandb} onChange={(v) => set("wandb", v)} />
            <CheckboxField
              label={t("train.tensorboard")}
              checked={form.tensorboard}
              onChange={(v) => set("tensorboard", v)}
              hint={t("train.tensorboardHint")}
            />
          </div>
          {form.mlflow && (
            <div className="grid-3">
              <Field
                label={t("train.mlflowUri")}
                name="mlflow_uri"
                value={form.mlflow_uri}
                placeholder="https://mlflow.example.com"
                error={problems.mlflow_uri}
                hint={t("train.mlflowUriHint")}
                onChange={(e) => set("mlflow_uri", e.target.value)}
              />
              <Field
                label={t("train.mlflowExperiment")}
                name="mlflow_experiment"
                value={form.mlflow_experiment}
                error={problems.mlflow_experiment}
                onChange={(e) => set("mlflow_experiment", e.target.value)}
              />
            </div>
          )}
          {form.wandb && (
            <div className="grid-3">
              <Field
                label={t("train.wandbProject")}
                name="wandb_project"
                value={form.wandb_project}
                error={problems.wandb_project}
                onChange={(e) => set("wandb_project", e.target.value)}
              />
              <Field
                label={t("train.wandbEntity")}
                name="wandb_entity"
                value={form.wandb_entity}
                error={problems.wandb_entity}
                hint={t("train.wandbEntityHint")}
                onChange={(e) => set("wandb_entity", e.target.value)}
              />
              <Field
                label={t("train.wandbName")}
                name="wandb_name"
                value={form.wandb_name}
                error={problems.wandb_name}
                onChange={(e) => set("wandb_name", e.target.value)}
              />
              <Field
                label={t("train.wandbTags")}
                name="wandb_tags"
                value={form.wandb_tags}
                placeholder="lora, tiny"
                error={problems.wandb_tags}
                onChange={(e) => set("wandb_tags", e.target.value)}
              />
              <SelectField
                label={t("train.wandbMode")}
                name="wandb_mode"
                value={form.wandb_mode}
                options={[
                  { value: "online", label: t("train.wandbOnline") },
                  { value: "offline", label: t("train.wandbOffline") },
                ]}
                error={problems.wandb_mode}
                hint={form.wandb_mode === "online" ? t("train.wandbOnlineHint") : t("train.wandbOfflineHint")}
                onChange={(e) => set("wandb_mode", e.target.value as TrainForm["wandb_mode"])}
              />
            </div>
          )}
        </Step>

        <Step n={7} title={t("train.stepExtra")}>
          <TextAreaField
            label={t("train.overrides")}
            name="config_overrides"
            rows={4}
            spellCheck={false}
            className="mono-input"
            value={form.config_overrides}
            placeholder={OVERRIDES_EXAMPLE}
            error={problems.config_overrides}
            hint={
              <>
                {t("train.overridesHint")}{" "}
                <button type="button" className="link-button" onClick={() => set("config_overrides", OVERRIDES_EXAMPLE)}>
                  {t("train.useExample")}
                </button>
              </>
            }
            onChange={(e) => set("config_overrides", e.target.value)}
          />
        </Step>

        <div className="form-actions">
          <Button type="submit" variant="primary" busy={busy}>
            {busy ? t("train.submitting") : t("train.submit")}
          </Button>
          <Button onClick={() => { setForm({ ...defaultTrainForm(), base_model: form.base_model, datasets: form.datasets }); setProblems({}); }}>
            {t("train.resetDefaults")}
          </Button>
        </div>
      </form>
      <ConfigPreview body={built.ok ? built.body : null} />
    </div>
  );
}

function Step({ n, title, children }: { n: number; title: string; children: ReactNode }) {
  return (
    <fieldset className="step">
      <legend>
        <span className="step__n" aria-hidden="true">
          {n}
        </span>
        {title}
      </legend>
      {children}
    </fieldset>
  );
}
