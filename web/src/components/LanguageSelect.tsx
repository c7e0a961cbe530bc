import { useId } from "react";

import { LANGUAGES, useI18n, type Lang } from "../i18n";

/** The language picker; `compact` keeps its label for screen readers only. */
export function LanguageSelect({ compact = false }: { compact?: boolean }) {
  const { lang, setLang, t } = useI18n();
  const id = useId();
  return (
    <div className="language-select">
      <label htmlFor={id} className={compact ? "visually-hidden" : undefined}>
        {t("app.language")}
      </label>
      <select id={id} value={lang} onChange={(event) => setLang(event.target.value as Lang)}>
        {LANGUAGES.map(({ value, label }) => (
          <option key={value} value={value} lang={value === "zh" ? "zh-CN" : "en"}>
            {label}
          </option>
        ))}
      </select>
    </div>
  );
}
