import { useState, type FormEvent } from "react";

import { authApi } from "../../api/auth";
import type { Invite } from "../../api/types";
import { Alert } from "../../components/Alert";
import { Button } from "../../components/Button";
import { ConfirmButton } from "../../components/ConfirmButton";
import { CopyButton } from "../../components/CopyButton";
import { Field } from "../../components/Field";
import { useI18n } from "../../i18n";
import type { MessageKey } from "../../i18n/en";
import { formErrorsFrom, NO_ERRORS, type FormErrors } from "../../lib/formErrors";
import { useResource } from "../../lib/useResource";

type InviteStatus = "active" | "expired" | "spent" | "revoked";

export function inviteStatus(invite: Invite, now = Date.now()): InviteStatus {
  if (invite.revoked_at) return "revoked";
  if (invite.uses >= invite.max_uses) return "spent";
  if (invite.expires_at && Date.parse(invite.expires_at) <= now) return "expired";
  return "active";
}

export function signUpLink(code: string): string {
  return `${window.location.origin}/register?invite=${encodeURIComponent(code)}`;
}

/** Admins only: make invite codes and see how they were used. */
export function InvitesSection() {
  const { t } = useI18n();
  const invites = useResource(authApi.listInvites);
  const [created, setCreated] = useState<Invite | null>(null);
  const [failure, setFailure] = useState<string | null>(null);

  const onCreated = (invite: Invite) => {
    invites.update((current) => [invite, ...(current ?? [])]);
    setCreated(invite);
  };

  const revoke = async (code: string) => {
    setFailure(null);
    try {
      await authApi.revokeInvite(code);
      const revokedAt = new Date().toISOString();
      invites.update((current) => current?.map((item) => (item.code === code ? { ...item, revoked_at: revokedAt } : item)));
      if (created?.code === code) setCreated(null);
    } catch (error) {
      setFailure(error instanceof Error ? error.message : String(error));
    }
  };

  return (
    <section className="card" aria-labelledby="invites-title">
      <h2 id="invites-title">{t("invites.title")}</h2>
      <p className="muted">{t("invites.intro")}</p>
      <CreateInviteForm onCreated={onCreated} />
      {created && (
        <div className="secret secret--plain" role="status">
          <h3>{t("invites.created")}</h3>
          <div className="secret__value">
            <input
              aria-label={t("invites.created")}
              readOnly
              value={created.code}
              className="mono"
              spellCheck={false}
              onFocus={(event) => event.target.select()}
            />
            <CopyButton text={created.code} />
            <CopyButton text={signUpLink(created.code)} label={t("invites.copyLink")} />
          </div>
        </div>
      )}
      {failure && <Alert tone="error">{failure}</Alert>}
      {invites.error ? (
        <div className="inline-row">
          <Alert tone="error">{t("invites.loadFailed")}</Alert>
          <Button onClick={invites.reload}>{t("app.retry")}</Button>
        </div>
      ) : invites.loading ? (
        <p role="status">{t("app.loading")}</p>
      ) : (
        <InviteTable invites={invites.data ?? []} onRevoke={revoke} />
      )}
    </section>
  );
}

function CreateInviteForm({ onCreated }: { onCreated: (invite: Invite) => void }) {
  const { t } = useI18n();
  const [maxUses, setMaxUses] = useState("1");
  const [hours, setHours] = useState("168");
  const [busy, setBusy] = useState(false);
  const [errors, setErrors] = useState<FormErrors<"max_uses" | "expires_in_hours">>(NO_ERRORS);

  const submit = async (event: FormEvent<HTMLFormElement>) => {
    event.preventDefault();
    setBusy(true);
    setErrors(NO_ERRORS);
    try {
      onCreated(
        await authApi.createInvite({
          max_uses: Number(maxUses),
          expires_in_hours: hours.trim() === "" ? null : Number(hours),
        }),
      );
    } catch (error) {
      setErrors(formErrorsFrom(error, ["max_uses", "expires_in_hours"] as const));
    } finally {
      setBusy(false);
    }
  };

  return (
    <form className="form form--inline" onSubmit={submit}>
      <Field
        label={t("invites.maxUses")}
        name="max_uses"
        type="number"
        inputMode="numeric"
        min={1}
        max={10000}
        required
        hint={t("invites.maxUsesHint")}
        value={maxUses}
        error={errors.fields.max_uses}
        onChange={(event) => setMaxUses(event.target.value)}
      />
      <Field
        label={t("invites.expiresIn")}
        name="expires_in_hours"
        type="number"
        inputMode="numeric"
        min={1}
        max={8760}
        hint={t("invites.expiresHint")}
        value={hours}
        error={errors.fields.expires_in_hours}
        onChange={(event) => setHours(event.target.value)}
      />
      <Button type="submit" variant="primary" busy={busy}>
        {busy ? t("invites.creating") : t("invites.create")}
      </Button>
      {errors.form && <Alert tone="error">{errors.form}</Alert>}
    </form>
  );
}

const STATUS_LABELS: Record<InviteStatus, MessageKey> = {
  active: "invites.status.active",
  expired: "invites.status.expired",
  spent: "invites.status.spent",
  revoked: "invites.status.revoked",
};

function InviteTable({ invites, onRevoke }: { invites: Invite[]; onRevoke: (code: string) => Promise<void> }) {
  const { t, formatDateTime } = useI18n();
  if (invites.length === 0) return <p className="empty">{t("invites.empty")}</p>;
  return (
    <div className="table-scroll" role="region" aria-labelledby="invites-title" tabIndex={0}>
      <table>
        <thead>
          <tr>
            <th scope="col">{t("invites.colCode")}</th>
            <th scope="col">{t("invites.colUses")}</th>
            <th scope="col">{t("invites.colExpires")}</th>
            <th scope="col">{t("invites.colStatus")}</th>
            <th scope="col">{t("invites.colCreated")}</th>
            <th scope="col">
              <span className="visually-hidden">{t("invites.colActions")}</span>
            </th>
          </tr>
        </thead>
        <tbody>
          {invites.map((invite) => {
            const status = inviteStatus(invite);
            return (
              <tr key={invite.code}>
                <th scope="row">
                  <code>{invite.code}</code>
                </th>
                <td>
                  {invite.uses} / {invite.max_uses}
                </td>
                <td>
                  {invite.expires_at ? (
                    <time dateTime={invite.expires_at}>{formatDateTime(invite.expires_at)}</time>
                  ) : (
                    t("invites.never")
                  )}
                </td>
                <td>
                  <span className={`pill pill--${status}`}>{t(STATUS_LABELS[status])}</span>
                </td>
                <td>
                  <time dateTime={invite.created_at}>{formatDateTime(invite.created_at)}</time>
                </td>
                <td className="actions">
                  {status === "active" && (
                    <ConfirmButton
                      label={t("keys.revoke")}
                      accessibleLabel={t("invites.revokeNamed", { code: invite.code })}
                      question={t("invites.confirmRevoke")}
                      confirmLabel={t("keys.confirmYes")}
                      onConfirm={() => onRevoke(invite.code)}
                    />
                  )}
                </td>
              </tr>
            );
          })}
        </tbody>
      </table>
    </div>
  );
}
