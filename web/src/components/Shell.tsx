import type { ReactNode } from "react";
import { Link, useRoute } from "wouter";

import { useUser } from "../auth/session";
import { useI18n } from "../i18n";
import type { MessageKey } from "../i18n/en";
import { LanguageSelect } from "./LanguageSelect";

export const SECTIONS: { path: string; label: MessageKey; also?: string }[] = [
  { path: "/jobs", label: "nav.jobs" },
  { path: "/evals", label: "nav.evals" },
  { path: "/exports", label: "nav.exports" },
  { path: "/datasets", label: "nav.datasets" },
  { path: "/models", label: "nav.models" },
  { path: "/deployments", label: "nav.deployments", also: "/playground" },
  { path: "/agents", label: "nav.agents" },
  { path: "/webhooks", label: "nav.webhooks" },
];

function NavLink({ path, also, children, ariaLabel }: { path: string; also?: string; children: ReactNode; ariaLabel?: string }) {
  const [here] = useRoute(`${path}/*?`);
  // A section may own a second address (Deployments holds the playground).
  const [there] = useRoute(`${also ?? path}/*?`);
  const active = here || there;
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
          {SECTIONS.map(({ path, label, also }) => (
            <NavLink key={path} path={path} also={also}>
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
