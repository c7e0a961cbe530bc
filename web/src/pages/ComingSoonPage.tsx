import { PageHeading } from "../components/PageHeading";
import { useI18n } from "../i18n";
import type { MessageKey } from "../i18n/en";

/** A section of the product that is not built yet: says what it will hold. */
export function ComingSoonPage({ title, description }: { title: MessageKey; description: MessageKey }) {
  const { t } = useI18n();
  return (
    <>
      <PageHeading title={t(title)} />
      <section className="card card--empty">
        <p className="badge">{t("soon.title")}</p>
        <p>{t(description)}</p>
      </section>
    </>
  );
}
