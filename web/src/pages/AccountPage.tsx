import { useUser } from "../auth/session";
import { PageHeading } from "../components/PageHeading";
import { useI18n } from "../i18n";
import { ApiKeysSection } from "./account/ApiKeysSection";
import { InvitesSection } from "./account/InvitesSection";
import { ProfileSection } from "./account/ProfileSection";
import { MyLimitsSection } from "./account/QuotaUse";
import { SecretsSection } from "./account/SecretsSection";
import { UsersSection } from "./account/UsersSection";

export function AccountPage() {
  const { t } = useI18n();
  const user = useUser();
  return (
    <>
      <PageHeading title={t("account.title")} />
      <div className="stack">
        <ProfileSection user={user} />
        <MyLimitsSection />
        <ApiKeysSection />
        <SecretsSection />
        {user.role === "admin" && <InvitesSection />}
        {user.role === "admin" && <UsersSection />}
      </div>
    </>
  );
}
