import { useEffect, useRef, type ReactNode } from "react";

import { useI18n } from "../i18n";

let firstPage = true;

/**
 * The page's h1. It names the tab, and after a client-side navigation it takes focus so
 * screen readers announce the new page (not on the first load, and not from a focused field).
 */
export function PageHeading({ title, children }: { title: string; children?: ReactNode }) {
  const { t } = useI18n();
  const ref = useRef<HTMLHeadingElement>(null);

  useEffect(() => {
    document.title = `${title} · ${t("app.name")}`;
  }, [title, t]);

  useEffect(() => {
    if (firstPage) {
      firstPage = false;
      return;
    }
    // A field that asked for focus (autoFocus) already tells the reader where they are.
    const focused = document.activeElement;
    if (focused && focused !== document.body && focused.closest("main")) return;
    ref.current?.focus();
  }, []);

  return (
    <h1 ref={ref} tabIndex={-1} className="page-heading">
      {children ?? title}
    </h1>
  );
}
