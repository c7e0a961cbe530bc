import { quotasApi, type Quota } from "../../api/quotas";
import { LoadState } from "../../components/LoadState";
import { useI18n } from "../../i18n";
import { useQuery } from "../../lib/useQuery";

/** What a user holds now against their limits, and their recent GPU-hours (fewer goes first in the queue). */
export function QuotaUse({ quota }: { quota: Quota }) {
  const { t } = useI18n();
  const of = (used: number, limit: number | null) =>
    limit === null ? t("quota.usedNoLimit", { used }) : t("quota.usedOf", { used, limit });
  return (
    <dl className="details">
      <div>
        <dt>{t("quota.max_gpus")}</dt>
        <dd>{of(quota.gpus_held, quota.max_gpus)}</dd>
      </div>
      <div>
        <dt>{t("quota.max_queued")}</dt>
        <dd>{of(quota.jobs_queued, quota.max_queued)}</dd>
      </div>
      <div>
        <dt>{t("quota.max_deployments")}</dt>
        <dd>{t("quota.atMost", { limit: quota.max_deployments })}</dd>
      </div>
      <div>
        <dt>{t("quota.max_priority")}</dt>
        <dd>{t("quota.atMost", { limit: quota.max_priority })}</dd>
      </div>
      <div>
        <dt>{t("quota.max_run_h")}</dt>
        <dd>{t("quota.hoursPerJob", { limit: quota.max_run_h })}</dd>
      </div>
      <div>
        <dt>{t("quota.gpuHours")}</dt>
        <dd>{quota.gpu_hours_recent.toFixed(2)}</dd>
      </div>
    </dl>
  );
}

/** The caller's own limits on the account page. */
export function MyLimitsSection() {
  const { t } = useI18n();
  const quota = useQuery((signal) => quotasApi.mine(signal), []);
  return (
    <section className="card" aria-labelledby="my-limits-title">
      <h2 id="my-limits-title">{t("quota.title")}</h2>
      <p className="muted">{t("quota.intro")}</p>
      <LoadState loading={quota.loading} error={quota.error} reload={quota.reload} failed={t("users.limitsFailed")}>
        {quota.data && <QuotaUse quota={quota.data} />}
      </LoadState>
    </section>
  );
}
