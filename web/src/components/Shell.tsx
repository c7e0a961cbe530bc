import type { ReactNode } from "react";
import { Link, useRoute } from "wouter";

import { useUser } from "../auth/session";
import { useI18n } from "../i18n";
import type { MessageKey } from "../i18n/en";
import { LanguageSelect } from "./LanguageSelect";

export const SECTIONS: { path: string; label: MessageKey }[] = [
  { path: "/jobs", label: "nav.jobs" },
  { path: "/datasets", label: "nav.datasets" },
  { path: "/models", label: "nav.models" },
  { path: "/deployments", label: "nav.deployments" },
  { path: "/agents", label: "nav.agents" },
];

function NavLink({ path, children, ariaLabel }: { path: string; children: ReactNode; ariaLabel?: string }) {
  const [active] = useRoute(`${path}/*?`);
  return (
    <Link href={path} className="nav-link" aria-current={active ? "page" : undefined} aria-label={ariaLabel}>
      {children}
    </Link>
  );
}

/** The frame of every signed-in page: skip link, top bar with the main navigation, content. */
export function Shell({ children }: { children: ReactNode }) {
  const { t } = useI18n();
  const user = useUser();
  return (
    <div className="shell">
      <a className="skip-link" href="#main">
        {t("app.skipToContent")}
      </a>
      <header className="topbar">
        <Link href="/jobs" className="brand">
          <img src="/favicon.svg" alt="" width={28} height={28} />
          <span>{t("app.name")}</span>
        </Link>
        <nav aria-label={t("nav.main")} className="topbar__nav">
          {SECTIONS.map(({ path, label }) => (
            <NavLink key={path} path={path}>
              {t(label)}
            </NavLink>
          ))}
        </nav>
        <div className="topbar__user">
          <LanguageSelect compact />
          <NavLink path="/account" ariaLabel={t("nav.accountOf", { username: user.username })}>
            <span className="avatar" aria-hidden="true">
              {user.username.slice(0, 1).toUpperCase()}
            </span>
            <span className="topbar__username">{user.username}</span>
          </NavLink>
        </div>
      </header>
      <main id="main" className="content" tabIndex={-1}>
        {children}
      </main>
    </div>
  );
}
