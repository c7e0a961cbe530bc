import { useState } from "react";

import type { User } from "../../api/types";
import { useSession } from "../../auth/session";
import { Button } from "../../components/Button";
import { useI18n } from "../../i18n";

export function ProfileSection({ user }: { user: User }) {
  const { t, formatDateTime } = useI18n();
  const { logout } = useSession();
  const [busy, setBusy] = useState(false);
  const role = user.role === "admin" ? t("account.role.admin") : user.role === "user" ? t("account.role.user") : user.role;

  const onLogout = async () => {
    setBusy(true);
    await logout();
  };

  return (
    <section className="card" aria-labelledby="profile-title">
      <div className="card__header">
        <h2 id="profile-title">{t("account.profile")}</h2>
        <Button onClick={onLogout} busy={busy}>
          {busy ? t("account.loggingOut") : t("account.logout")}
        </Button>
      </div>
      <dl className="details">
        <div>
          <dt>{t("account.username")}</dt>
          <dd>{user.username}</dd>
        </div>
        <div>
          <dt>{t("account.role")}</dt>
          <dd>{role}</dd>
        </div>
        <div>
          <dt>{t("account.memberSince")}</dt>
          <dd>
            <time dateTime={user.created_at}>{formatDateTime(user.created_at)}</time>
          </dd>
        </div>
        <div>
          <dt>{t("account.userId")}</dt>
          <dd>
            <code>{user.id}</code>
          </dd>
        </div>
      </dl>
    </section>
  );
}
