/**
 * A small typed i18n: every key of en.ts must exist in zh.ts (tsc checks it), the choice is kept
 * in localStorage, and dates are formatted for the chosen language.
 */

import { createContext, useCallback, useContext, useEffect, useMemo, useState, type ReactNode } from "react";

import { en, type MessageKey } from "./en";
import { zh } from "./zh";

export type Lang = "en" | "zh";
export const LANGUAGES: { value: Lang; label: string }[] = [
  { value: "en", label: "English" },
  { value: "zh", label: "简体中文" },
];

const CATALOGS: Record<Lang, Record<MessageKey, string>> = { en, zh };
const LOCALES: Record<Lang, string> = { en: "en-GB", zh: "zh-CN" };
const STORAGE_KEY = "llmct.lang";

export type Translate = (key: MessageKey, values?: Record<string, string | number>) => string;

interface I18n {
  lang: Lang;
  setLang: (lang: Lang) => void;
  t: Translate;
  formatDateTime: (iso: string) => string;
}

function initialLang(): Lang {
  try {
    const saved = window.localStorage.getItem(STORAGE_KEY);
    if (saved === "en" || saved === "zh") return saved;
  } catch {
    // storage disabled: fall through to the browser's preference
  }
  return window.navigator.language.toLowerCase().startsWith("zh") ? "zh" : "en";
}

export function interpolate(text: string, values?: Record<string, string | number>): string {
  if (!values) return text;
  return text.replace(/\{(\w+)\}/g, (match, name: string) => (name in values ? String(values[name]) : match));
}

const I18nContext = createContext<I18n | null>(null);

export function I18nProvider({ children, lang: fixed }: { children: ReactNode; lang?: Lang }) {
  const [lang, setLangState] = useState<Lang>(() => fixed ?? initialLang());

  useEffect(() => {
    document.documentElement.lang = lang === "zh" ? "zh-CN" : "en";
  }, [lang]);

  const setLang = useCallback((next: Lang) => {
    setLangState(next);
    try {
      window.localStorage.setItem(STORAGE_KEY, next);
    } catch {
      // not persisted; the choice still holds for this page
    }
  }, []);

  const value = useMemo<I18n>(() => {
    const catalog = CATALOGS[lang];
    const dateFormat = new Intl.DateTimeFormat(LOCALES[lang], { dateStyle: "medium", timeStyle: "short" });
    return {
      lang,
      setLang,
      t: (key, values) => interpolate(catalog[key], values),
      formatDateTime: (iso) => {
        const date = new Date(iso);
        return Number.isNaN(date.getTime()) ? iso : dateFormat.format(date);
      },
    };
  }, [lang, setLang]);

  return <I18nContext.Provider value={value}>{children}</I18nContext.Provider>;
}

export function useI18n(): I18n {
  const value = useContext(I18nContext);
  if (!value) throw new Error("useI18n outside I18nProvider");
  return value;
}
