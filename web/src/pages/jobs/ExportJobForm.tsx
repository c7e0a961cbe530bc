import { useState, type FormEvent } from "react";

import type { ExportRequest, JobDetail } from "../../api/jobs";
import { Alert } from "../../components/Alert";
import { Button } from "../../components/Button";
import { Field } from "../../components/Field";
import { CheckboxField, SelectField } from "../../components/Fields";
import { ModelSelect } from "../../components/ModelSelect";
import { useI18n } from "../../i18n";
import { modelsFor, useCatalog } from "../../lib/catalog";
import { useJobSubmit } from "./useJobSubmit";

const FIELDS = ["model", "method", "bits", "calibration_dataset", "calibration_samples", "calibration_maxlen", "export_size", "export_device", "gpu_count"] as const;
type ExportField = (typeof FIELDS)[number];
type Method = "none" | "bitsandbytes" | "gptq";

/** What an export of this model with this quantisation does, or why it would be refused. */
export function exportPlan(kind: string | undefined, method: Method): "merge" | "quantize" | "merge-then-quantize" | "nothing" | null {
  if (!kind) return null;
  const adapter = kind === "lora";
  if (method === "none") return adapter ? "merge" : "nothing";
  return adapter ? "merge-then-quantize" : "quantize";
}

/** Merge a LoRA adapter and/or quantise a model into a new model of one's own. */
export function ExportJobForm({ onSubmitted, initialModel }: { onSubmitted: (job: JobDetail) => void; initialModel?: string }) {
  const { t } = useI18n();
  const { models, datasets } = useCatalog();
  const [model, setModel] = useState(initialModel ?? "");
  const [method, setMethod] = useState<Method>("none");
  const [legacy, setLegacy] = useState(false);
  const [values, setValues] = useState({
    bits: "4", calibration_dataset: "", calibration_samples: "128", calibration_maxlen: "1024", export_size: "5",
    export_device: "cpu", gpu_count: "0",
  });
  const { busy, errors, formError, submit, clear } = useJobSubmit<ExportField>(FIELDS, onSubmitted);
  const choices = modelsFor(models.data?.items, "export");
  const chosen = [...choices.own, ...choices.presets].find((m) => m.name === model);
  const plan = exportPlan(chosen?.kind, method);
  const textSets = (datasets.data?.items ?? []).filter((d) => d.format === "text");
  const set = (field: keyof typeof values & ExportField, value: string) => {
    setValues((v) => ({ ...v, [field]: value }));
    clear(field);
  };

  const onSubmit = (event: FormEvent) => {
    event.preventDefault();
    const body: ExportRequest = {
      kind: "export",
      model,
      export_size: Number(values.export_size),
      export_device: values.export_device as "cpu" | "auto",
      export_legacy_format: legacy,
      gpu_count: Number(values.gpu_count),
    };
    if (method !== "none") {
      body.quantization = {
        method,
        bits: Number(values.bits) as 2 | 3 | 4 | 8,
        calibration_dataset: method === "gptq" ? values.calibration_dataset || null : null,
        calibration_samples: Number(values.calibration_samples),
        calibration_maxlen: Number(values.calibration_maxlen),
      };
    }
    void submit(body);
  };
  const field = (name: keyof typeof values & ExportField, label: string, hint?: string) => (
    <Field label={label} name={name} inputMode="numeric" value={values[name]} error={errors[name]} hint={hint} onChange={(e) => set(name, e.target.value)} />
  );

  return (
    <form className="form staged" onSubmit={onSubmit} noValidate aria-label={t("export.formLabel")}>
      {formError && <Alert tone="error">{formError}</Alert>}
      <fieldset className="step">
        <legend>{t("export.what")}</legend>
        <ModelSelect label={t("export.model")} name="model" value={model} onChange={(m) => { setModel(m); clear("model"); }} own={choices.own} presets={choices.presets} error={errors.model} hint={t("export.modelHint")} />
        <SelectField
          label={t("export.quantization")}
          name="method"
          value={method}
          options={[
            { value: "none", label: t("export.none") },
            { value: "bitsandbytes", label: t("export.bnb") },
            { value: "gptq", label: t("export.gptq") },
          ]}
          onChange={(e) => { setMethod(e.target.value as Method); clear("method"); }}
          error={errors.method}
        />
        {plan === "merge-then-quantize" && <Alert tone="info">{t("export.twoStage")}</Alert>}
        {plan === "merge" && <Alert tone="info">{t("export.mergeOnly")}</Alert>}
        {plan === "nothing" && <Alert tone="warning">{t("export.nothing")}</Alert>}
        {method !== "none" && (
          <div className="grid-4">
            <SelectField
              label={t("export.bits")}
              name="bits"
              value={values.bits}
              options={(method === "gptq" ? ["2", "3", "4", "8"] : ["4", "8"]).map((b) => ({ value: b, label: `${b}-bit` }))}
              onChange={(e) => set("bits", e.target.value)}
              error={errors.bits}
            />
            {method === "gptq" && (
              <>
                <SelectField
                  label={t("export.calibration")}
                  name="calibration_dataset"
                  value={values.calibration_dataset}
                  options={[{ value: "", label: t("form.choose") }, ...textSets.map((d) => ({ value: d.name, label: d.name }))]}
                  onChange={(e) => set("calibration_dataset", e.target.value)}
                  error={errors.calibration_dataset}
                  hint={t("export.calibrationHint")}
                />
                {field("calibration_samples", t("export.calibrationSamples"))}
                {field("calibration_maxlen", t("export.calibrationMaxlen"))}
              </>
            )}
          </div>
        )}
        {method === "bitsandbytes" && <p className="field__hint">{t("export.bnbNeedsGpu")}</p>}
        {method === "gptq" && <p className="field__hint">{t("export.gptqNeeds")}</p>}
      </fieldset>
      <fieldset className="step">
        <legend>{t("export.settings")}</legend>
        <div className="grid-4">
          {field("export_size", t("export.shardSize"), t("export.shardSizeHint"))}
          <SelectField label={t("export.device")} name="export_device" value={values.export_device} options={[{ value: "cpu", label: "cpu" }, { value: "auto", label: "auto" }]} onChange={(e) => set("export_device", e.target.value)} />
          {field("gpu_count", t("train.gpus"), t("train.gpusHint"))}
          <CheckboxField label={t("export.legacy")} checked={legacy} onChange={setLegacy} hint={t("export.legacyHint")} />
        </div>
      </fieldset>
      <div className="form-actions">
        <Button type="submit" variant="primary" busy={busy} disabled={plan === "nothing"}>
          {t("export.submit")}
        </Button>
      </div>
    </form>
  );
}
