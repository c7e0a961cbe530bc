import { useState, type FormEvent } from "react";

import { authApi } from "../../api/auth";
import type { User } from "../../api/types";
import { Alert } from "../../components/Alert";
import { Button } from "../../components/Button";
import { ConfirmButton } from "../../components/ConfirmButton";
import { Field } from "../../components/Field";
import { useI18n } from "../../i18n";
import { formErrorsFrom, NO_ERRORS, type FormErrors } from "../../lib/formErrors";

type Notice = { tone: "success" | "error"; text: string } | null;

/** Admins only: disable or enable an account, change its role, end its sessions and keys, set a new password.
 * Each change takes effect at once on the server (the user's old tokens stop working). */
export function AccessControls({ account, onChanged }: { account: User; onChanged: (user: User) => void }) {
  const { t } = useI18n();
  const [notice, setNotice] = useState<Notice>(null);
  const name = account.username;

  const act = async (run: () => Promise<unknown>, done: string) => {
    setNotice(null);
    try {
      await run();
      setNotice({ tone: "success", text: done });
    } catch (error) {
      setNotice({ tone: "error", text: error instanceof Error ? error.message : String(error) });
    }
  };
  const change = (body: { disabled?: boolean; role?: "admin" | "user" }, done: string) =>
    act(async () => onChanged(await authApi.changeUser(account.id, body)), done);

  const role = account.role === "admin" ? "user" : "admin";
  return (
    <div className="form" role="group" aria-label={t("access.of", { name })}>
      <p>{account.disabled ? t("access.isDisabled") : t("access.isActive")}</p>
      <div className="inline-row">
        {account.disabled ? (
          <Button onClick={() => change({ disabled: false }, t("access.enabled", { name }))}>{t("access.enable")}</Button>
        ) : (
          <ConfirmButton
            label={t("access.disable")}
            question={t("access.confirmDisable", { name })}
            confirmLabel={t("access.confirmYes")}
            onConfirm={() => change({ disabled: true }, t("access.disabled", { name }))}
          />
        )}
        <Button onClick={() => change({ role }, t("access.roleChanged", { name }))}>
          {role === "admin" ? t("access.makeAdmin") : t("access.makeUser")}
        </Button>
        <ConfirmButton
          label={t("access.revoke")}
          question={t("access.confirmRevoke", { name })}
          confirmLabel={t("access.confirmYes")}
          onConfirm={() => act(() => authApi.revokeUser(account.id), t("access.revoked", { name }))}
        />
      </div>
      {notice && <Alert tone={notice.tone}>{notice.text}</Alert>}
      <PasswordReset account={account} />
    </div>
  );
}

function PasswordReset({ account }: { account: User }) {
  const { t } = useI18n();
  const [password, setPassword] = useState("");
  const [busy, setBusy] = useState(false);
  const [errors, setErrors] = useState<FormErrors<"password">>(NO_ERRORS);
  const [done, setDone] = useState(false);

  const submit = async (event: FormEvent) => {
    event.preventDefault();
    setBusy(true);
    setErrors(NO_ERRORS);
    setDone(false);
    try {
      await authApi.resetPassword(account.id, password);
      setPassword("");
      setDone(true);
    } catch (error) {
      setErrors(formErrorsFrom(error, ["password"] as const));
    } finally {
      setBusy(false);
    }
  };

  return (
    <form className="form form--inline" onSubmit={submit} noValidate aria-label={t("access.resetOf", { name: account.username })}>
      <Field
        label={t("access.newPassword")}
        name="password"
        type="password"
        autoComplete="new-password"
        hint={t("access.newPasswordHint")}
        value={password}
        error={errors.fields.password}
        onChange={(event) => setPassword(event.target.value)}
      />
      <Button type="submit" busy={busy}>
        {t("access.reset")}
      </Button>
      {done && (
        <span role="status" className="muted">
          {t("access.resetDone", { name: account.username })}
        </span>
      )}
      {errors.form && <Alert tone="error">{errors.form}</Alert>}
    </form>
  );
}
