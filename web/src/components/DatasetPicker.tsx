import { useId, useState } from "react";

import type { Dataset } from "../api/catalog";
import { useI18n } from "../i18n";
import { formatCount } from "../lib/format";

interface DatasetPickerProps {
  legend: string;
  datasets: Dataset[];
  selected: string[];
  onChange: (names: string[]) => void;
  /** Why a dataset cannot be picked here (wrong format for the stage), or null. */
  unfit?: (dataset: Dataset) => string | null;
  error?: string | null;
  hint?: string;
}

/** Several datasets, as checkboxes with format and size; a filter box when the list is long. */
export function DatasetPicker({ legend, datasets, selected, onChange, unfit, error, hint }: DatasetPickerProps) {
  const { t } = useI18n();
  const id = useId();
  const [filter, setFilter] = useState("");
  const needle = filter.trim().toLowerCase();
  const shown = datasets.filter((d) => !needle || d.name.toLowerCase().includes(needle) || selected.includes(d.name));
  const toggle = (name: string, on: boolean) =>
    onChange(on ? [...selected, name] : selected.filter((item) => item !== name));

  return (
    <fieldset
      className={["picker", error ? "field--invalid" : ""].join(" ").trim()}
      aria-describedby={[error ? `${id}-error` : "", hint ? `${id}-hint` : ""].filter(Boolean).join(" ") || undefined}
      aria-invalid={error ? true : undefined}
    >
      <legend>{legend}</legend>
      {datasets.length > 8 && (
        <input
          type="search"
          className="picker__filter"
          aria-label={t("datasets.filter")}
          placeholder={t("datasets.filter")}
          value={filter}
          onChange={(e) => setFilter(e.target.value)}
        />
      )}
      {datasets.length === 0 ? (
        <p className="muted">{t("datasets.noneYet")}</p>
      ) : (
        <ul className="picker__list">
          {shown.map((dataset) => {
            const why = unfit?.(dataset) ?? null;
            const checked = selected.includes(dataset.name);
            return (
              <li key={dataset.id}>
                <label className={why && !checked ? "picker__item picker__item--off" : "picker__item"}>
                  <input
                    type="checkbox"
                    checked={checked}
                    disabled={Boolean(why) && !checked}
                    onChange={(e) => toggle(dataset.name, e.target.checked)}
                  />
                  <span className="picker__name">{dataset.name}</span>
                  <span className="picker__meta">
                    {dataset.format} · {t("datasets.rowsCount", { rows: formatCount(dataset.rows) })} ·{" "}
                    {dataset.visibility === "public" ? t("datasets.public") : t("datasets.private")}
                    {why && ` · ${why}`}
                  </span>
                </label>
              </li>
            );
          })}
        </ul>
      )}
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
    </fieldset>
  );
}
