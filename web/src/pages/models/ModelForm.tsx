import { useState, type FormEvent } from "react";

import { modelsApi, type Model, type ModelChange } from "../../api/catalog";
import { Alert } from "../../components/Alert";
import { Button } from "../../components/Button";
import { Field } from "../../components/Field";
import { CheckboxField, TextAreaField } from "../../components/Fields";
import { useI18n } from "../../i18n";
import { formErrorsFrom, NO_ERRORS, type FormErrors } from "../../lib/formErrors";

const TEXT_FIELDS = ["name", "remark", "hf_path", "ms_path", "path", "parameter_count", "template"] as const;
type TextField = (typeof TEXT_FIELDS)[number];
const FIELDS = [...TEXT_FIELDS, "retired"] as const;
type FormField = (typeof FIELDS)[number];

type Values = Record<TextField, string>;

function valuesOf(model: Model | undefined): Values {
  const text = (value: string | number | null | undefined) => (value === null || value === undefined ? "" : String(value));
  return {
    name: text(model?.name),
    remark: text(model?.remark),
    hf_path: text(model?.hf_path),
    ms_path: text(model?.ms_path),
    path: text(model?.path),
    parameter_count: text(model?.parameter_count),
    template: model?.template ?? "default",
  };
}

/** The request body: only what changed when editing; empty optional fields are null (cleared). */
export function modelChange(values: Values, fields: readonly TextField[], before?: Model, retired?: boolean): ModelChange {
  const start = valuesOf(before);
  const change: ModelChange = {};
  for (const field of fields) {
    if (before && values[field] === start[field]) continue;
    const text = values[field].trim();
    if (field === "parameter_count") change.parameter_count = text === "" ? null : Number(text);
    else if (field === "name" || field === "template") change[field] = text;
    else change[field] = text === "" ? null : text;
  }
  if (before && retired !== undefined && retired !== Boolean(before.retired_at)) change.retired = retired;
  return change;
}

/**
 * Register a preset (admins), or edit a model: its owner renames and remarks it; an admin also edits a preset's
 * sources (Hugging Face id, ModelScope id, local path), size and template, and retires it. The server's refusal
 * lands on the field it names.
 */
export function ModelForm({ model, admin, onDone, onCancel }: { model?: Model; admin: boolean; onDone: (model: Model) => void; onCancel?: () => void }) {
  const { t } = useI18n();
  const creating = model === undefined;
  const preset = creating || model.source === "preset";
  const fields: readonly TextField[] = preset && admin ? TEXT_FIELDS : ["name", "remark"];
  const [values, setValues] = useState<Values>(() => valuesOf(model));
  const [retired, setRetired] = useState(Boolean(model?.retired_at));
  const [errors, setErrors] = useState<FormErrors<FormField>>(NO_ERRORS);
  const [busy, setBusy] = useState(false);

  const set = (field: TextField, value: string) => {
    setValues((current) => ({ ...current, [field]: value }));
    setErrors((current) => ({ ...current, fields: { ...current.fields, [field]: undefined } }));
  };

  const submit = async (event: FormEvent) => {
    event.preventDefault();
    setBusy(true);
    setErrors(NO_ERRORS);
    try {
      const change = modelChange(values, fields, model, preset && admin && !creating ? retired : undefined);
      if (creating) onDone(await modelsApi.create({ ...change, name: values.name.trim() }));
      else if (Object.keys(change).length === 0) onDone(model);
      else onDone(await modelsApi.patch(model.id, change));
    } catch (error) {
      setErrors(formErrorsFrom(error, FIELDS));
    } finally {
      setBusy(false);
    }
  };

  const text = (field: TextField, extra: { hint?: string; inputMode?: "numeric"; placeholder?: string } = {}) => (
    <Field
      key={field}
      label={t(`modelForm.${field}`)}
      name={field}
      autoComplete="off"
      spellCheck={false}
      value={values[field]}
      error={errors.fields[field]}
      onChange={(event) => set(field, event.target.value)}
      {...extra}
    />
  );

  return (
    <form className="form" onSubmit={submit} noValidate aria-label={creating ? t("modelForm.create") : t("modelForm.edit", { name: model.name })}>
      {text("name", { hint: t("modelForm.nameHint") })}
      {fields.includes("hf_path") && (
        <fieldset className="step">
          <legend>{t("modelForm.sources")}</legend>
          <p className="muted">{t("modelForm.sourcesHint")}</p>
          {text("path", { hint: t("modelForm.pathHint"), placeholder: "/models/qwen2.5-0.5b" })}
          {text("hf_path", { placeholder: "Qwen/Qwen2.5-0.5B-Instruct" })}
          {text("ms_path", { hint: t("modelForm.msHint"), placeholder: "qwen/Qwen2.5-0.5B-Instruct" })}
          {text("parameter_count", { inputMode: "numeric", hint: t("modelForm.paramsHint") })}
          {text("template", { hint: t("modelForm.templateHint") })}
        </fieldset>
      )}
      <TextAreaField
        label={t("modelForm.remark")}
        name="remark"
        rows={3}
        value={values.remark}
        error={errors.fields.remark}
        onChange={(event) => set("remark", event.target.value)}
      />
      {preset && admin && !creating && (
        <CheckboxField label={t("modelForm.retired")} hint={t("modelForm.retiredHint")} checked={retired} onChange={setRetired} name="retired" error={errors.fields.retired} />
      )}
      {errors.form && <Alert tone="error">{errors.form}</Alert>}
      <div className="inline-row">
        <Button type="submit" variant="primary" busy={busy}>
          {creating ? t("modelForm.createSubmit") : t("modelForm.save")}
        </Button>
        {onCancel && <Button onClick={onCancel}>{t("modelForm.cancel")}</Button>}
      </div>
    </form>
  );
}
