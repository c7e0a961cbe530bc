import { useState, type FormEvent } from "react";

import { quotasApi, type Quota, type QuotaSettings, type UserPage } from "../../api/quotas";
import { Alert } from "../../components/Alert";
import { Button } from "../../components/Button";
import { Field } from "../../components/Field";
import { PagedTable } from "../../components/ListPage";
import { LoadState } from "../../components/LoadState";
import { useI18n } from "../../i18n";
import { formErrorsFrom, NO_ERRORS, type FormErrors } from "../../lib/formErrors";
import { usePagedList } from "../../lib/usePagedList";
import { useQuery } from "../../lib/useQuery";
import { AccessControls } from "./AccessControls";
import { QuotaUse } from "./QuotaUse";

const LIMITS = ["max_gpus", "max_queued", "max_deployments", "max_priority", "max_run_h"] as const;
type Limit = (typeof LIMITS)[number];

type Account = UserPage["items"][number];

/** Admins only: every account, and each one's limits (GPUs at once, queued jobs, active deployments, the highest
 * priority, the longest run of a job). */
export function UsersSection() {
  const { t, formatDateTime } = useI18n();
  const list = usePagedList({
    filters: [],
    load: (_, cursor: string | null, signal) => quotasApi.users(cursor, signal),
    next: (page) => page.next_cursor,
  });
  const [open, setOpen] = useState<Account | null>(null);
  const changed = (user: Account) => {
    setOpen(user);
    list.query.update((page) => page && { ...page, items: page.items.map((item) => (item.id === user.id ? user : item)) });
  };

  return (
    <section className="card" aria-labelledby="users-title">
      <h2 id="users-title">{t("users.title")}</h2>
      <p className="muted">{t("users.intro")}</p>
      <PagedTable
        list={list}
        failed={t("users.loadFailed")}
        empty={null}
        unordered
        items={list.items}
        rowKey={(user) => user.id}
        labelledBy="users-title"
        columns={[
          { key: "name", header: t("account.username"), rowHeader: true, cell: (user) => user.username },
          {
            key: "role",
            header: t("account.role"),
            cell: (user) => (user.role === "admin" ? t("account.role.admin") : t("account.role.user")),
          },
          {
            key: "status",
            header: t("access.status"),
            cell: (user) => (user.disabled ? t("access.statusDisabled") : t("access.statusActive")),
          },
          { key: "since", header: t("account.memberSince"), cell: (user) => formatDateTime(user.created_at) },
          {
            key: "actions",
            header: <span className="visually-hidden">{t("invites.colActions")}</span>,
            className: "actions",
            cell: (user) => (
              <Button
                aria-expanded={open?.id === user.id}
                aria-controls="user-limits"
                aria-label={t("users.limitsOf", { name: user.username })}
                onClick={() => setOpen(open?.id === user.id ? null : user)}
              >
                {t("users.limits")}
              </Button>
            ),
          },
        ]}
      />
      {open && (
        <div id="user-limits" className="subsection">
          <h3>{t("access.of", { name: open.username })}</h3>
          <AccessControls key={`access-${open.id}`} account={open} onChanged={changed} />
          <h3>{t("users.limitsOf", { name: open.username })}</h3>
          <LimitsEditor key={open.id} userId={open.id} username={open.username} />
        </div>
      )}
    </section>
  );
}

const asText = (value: number | null | undefined) => (value === null || value === undefined ? "" : String(value));
const textOf = (quota: Quota): Record<Limit, string> => ({
  max_gpus: asText(quota.custom.max_gpus),
  max_queued: asText(quota.custom.max_queued),
  max_deployments: asText(quota.custom.max_deployments),
  max_priority: asText(quota.custom.max_priority),
  max_run_h: asText(quota.custom.max_run_h),
});

function LimitsEditor({ userId, username }: { userId: string; username: string }) {
  const { t } = useI18n();
  const quota = useQuery((signal) => quotasApi.of(userId, signal), [userId]);
  return (
    <LoadState loading={quota.loading} error={quota.error} reload={quota.reload} failed={t("users.limitsFailed")}>
      {quota.data && (
        <LimitsForm
          quota={quota.data}
          username={username}
          onSaved={(saved) => quota.update(() => saved)}
        />
      )}
    </LoadState>
  );
}

function LimitsForm({ quota, username, onSaved }: { quota: Quota; username: string; onSaved: (quota: Quota) => void }) {
  const { t } = useI18n();
  const [values, setValues] = useState(() => textOf(quota));
  const [errors, setErrors] = useState<FormErrors<Limit>>(NO_ERRORS);
  const [busy, setBusy] = useState(false);
  const [saved, setSaved] = useState(false);

  const submit = async (event: FormEvent) => {
    event.preventDefault();
    setBusy(true);
    setErrors(NO_ERRORS);
    setSaved(false);
    const settings = Object.fromEntries(
      LIMITS.map((name) => [name, values[name].trim() === "" ? null : Number(values[name])]),
    ) as QuotaSettings;
    try {
      const answer = await quotasApi.set(quota.user_id, settings);
      onSaved(answer);
      setValues(textOf(answer)); // as the server stored them
      setSaved(true);
    } catch (error) {
      setErrors(formErrorsFrom(error, LIMITS));
    } finally {
      setBusy(false);
    }
  };

  const inForce = (name: Limit) => {
    const value = quota[name];
    return value === null ? t("quota.noLimit") : String(value);
  };

  return (
    <form className="form" onSubmit={submit} noValidate aria-label={t("users.limitsOf", { name: username })}>
      <QuotaUse quota={quota} />
      <div className="form--inline">
        {LIMITS.map((name) => (
          <Field
            key={name}
            label={t(`quota.${name}`)}
            name={name}
            type="number"
            inputMode={name === "max_run_h" ? "decimal" : "numeric"}
            min={name === "max_priority" ? -100 : 0}
            placeholder={t("users.default")}
            hint={t("users.inForce", { value: inForce(name) })}
            value={values[name]}
            error={errors.fields[name]}
            onChange={(event) => {
              setValues((current) => ({ ...current, [name]: event.target.value }));
              setSaved(false);
            }}
          />
        ))}
      </div>
      <p className="muted">{t("users.blankIsDefault")}</p>
      <div className="inline-row">
        <Button type="submit" variant="primary" busy={busy}>
          {t("users.save")}
        </Button>
        {saved && (
          <span role="status" className="muted">
            {t("users.saved", { name: username })}
          </span>
        )}
      </div>
      {errors.form && <Alert tone="error">{errors.form}</Alert>}
    </form>
  );
}
