import { useEffect, useRef, type ReactNode } from "react";

import { useI18n } from "../i18n";

let firstPage = true;

/**
 * The page's h1. It names the tab, and after a client-side navigation it takes focus so
 * screen readers announce the new page (on the first load the browser's own start is kept).
 */
export function PageHeading({ title, children }: { title: string; children?: ReactNode }) {
  const { t } = useI18n();
  const ref = useRef<HTMLHeadingElement>(null);

  useEffect(() => {
    document.title = `${title} · ${t("app.name")}`;
  }, [title, t]);

  useEffect(() => {
    if (firstPage) firstPage = false;
    else ref.current?.focus();
  }, []);

  return (
    <h1 ref={ref} tabIndex={-1} className="page-heading">
      {children ?? title}
    </h1>
  );
}
