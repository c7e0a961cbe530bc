import { useId } from "react";

import type { Model } from "../api/catalog";
import { useI18n } from "../i18n";
import { formatCount } from "../lib/format";

interface ModelSelectProps {
  label: string;
  value: string;
  onChange: (name: string) => void;
  own: Model[];
  presets: Model[];
  error?: string | null;
  hint?: string;
  name?: string;
}

/** A model picker: the caller's own models and the presets in two groups, with kind and size. */
export function ModelSelect({ label, value, onChange, own, presets, error, hint, name }: ModelSelectProps) {
  const { t } = useI18n();
  const id = useId();
  const describedBy = [error ? `${id}-error` : "", hint ? `${id}-hint` : ""].filter(Boolean).join(" ") || undefined;
  const option = (m: Model) => (
    <option key={m.id} value={m.name}>
      {m.name}
      {m.kind !== "base" ? ` · ${m.kind}` : ""}
      {m.parameter_count ? ` · ${formatCount(m.parameter_count)}` : ""}
    </option>
  );
  return (
    <div className={["field", error ? "field--invalid" : ""].join(" ").trim()}>
      <label htmlFor={id}>{label}</label>
      <select
        id={id}
        name={name}
        value={value}
        onChange={(e) => onChange(e.target.value)}
        aria-invalid={error ? true : undefined}
        aria-describedby={describedBy}
      >
        <option value="">{t("form.choose")}</option>
        {own.length > 0 && <optgroup label={t("models.own")}>{own.map(option)}</optgroup>}
        {presets.length > 0 && <optgroup label={t("models.presets")}>{presets.map(option)}</optgroup>}
      </select>
      {error && (
        <p id={`${id}-error`} className="field__error">
          {error}
        </p>
      )}
      {hint && (
        <p id={`${id}-hint`} className="field__hint">
          {hint}
        </p>
      )}
    </div>
  );
}
