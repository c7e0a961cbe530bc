import type { ReactNode } from "react";

import { useI18n } from "../i18n";
import { LanguageSelect } from "./LanguageSelect";

/** The frame of the signed-out pages: a centred card under the product name. */
export function AuthLayout({ children }: { children: ReactNode }) {
  const { t } = useI18n();
  return (
    <div className="auth-layout">
      <header className="auth-layout__brand">
        <img src="/favicon.svg" alt="" width={32} height={32} />
        <span>{t("app.name")}</span>
      </header>
      <main id="main" className="auth-card">
        {children}
      </main>
      <footer className="auth-layout__footer">
        <LanguageSelect />
      </footer>
    </div>
  );
}
