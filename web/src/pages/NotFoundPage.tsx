import { Link } from "wouter";

import { HOME_PATH } from "../auth/paths";
import { PageHeading } from "../components/PageHeading";
import { useI18n } from "../i18n";

export function NotFoundPage() {
  const { t } = useI18n();
  return (
    <>
      <PageHeading title={t("notFound.title")} />
      <p>{t("notFound.body")}</p>
      <p>
        <Link href={HOME_PATH}>{t("notFound.home")}</Link>
      </p>
    </>
  );
}
