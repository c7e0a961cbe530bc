import { useRef, useState, type FormEvent } from "react";
import { Link, useLocation, useSearchParams } from "wouter";

import { nextOrHome, type LoginReason } from "../auth/paths";
import { useSession } from "../auth/session";
import { Alert } from "../components/Alert";
import { AuthLayout } from "../components/AuthLayout";
import { Button } from "../components/Button";
import { Field } from "../components/Field";
import { PageHeading } from "../components/PageHeading";
import { useI18n } from "../i18n";
import type { MessageKey } from "../i18n/en";
import { formErrorsFrom, NO_ERRORS, type FormErrors } from "../lib/formErrors";

const FIELDS = ["username", "password"] as const;
type LoginField = (typeof FIELDS)[number];

const NOTICES: Record<LoginReason, { key: MessageKey; tone: "info" | "success" | "warning" }> = {
  registered: { key: "login.registered", tone: "success" },
  "logged-out": { key: "login.loggedOut", tone: "info" },
  expired: { key: "login.expired", tone: "warning" },
};

export function LoginPage() {
  const { t } = useI18n();
  const { login } = useSession();
  const [, navigate] = useLocation();
  const [params] = useSearchParams();
  const [username, setUsername] = useState(params.get("username") ?? "");
  const [password, setPassword] = useState("");
  const [busy, setBusy] = useState(false);
  const [errors, setErrors] = useState<FormErrors<LoginField>>(NO_ERRORS);
  const passwordRef = useRef<HTMLInputElement>(null);

  const notice = NOTICES[params.get("reason") as LoginReason];

  const submit = async (event: FormEvent<HTMLFormElement>) => {
    event.preventDefault();
    setBusy(true);
    setErrors(NO_ERRORS);
    try {
      await login(username.trim(), password);
      navigate(nextOrHome(params.get("next")), { replace: true });
    } catch (error) {
      setErrors(formErrorsFrom(error, FIELDS));
      setPassword("");
      passwordRef.current?.focus();
      setBusy(false);
    }
  };

  return (
    <AuthLayout>
      <PageHeading title={t("login.title")} />
      {notice && !errors.form && <Alert tone={notice.tone}>{t(notice.key)}</Alert>}
      {errors.form && <Alert tone="error">{errors.form}</Alert>}
      <form className="form" onSubmit={submit}>
        <Field
          label={t("login.username")}
          name="username"
          autoComplete="username"
          autoCapitalize="none"
          spellCheck={false}
          required
          autoFocus={!username}
          value={username}
          error={errors.fields.username}
          onChange={(event) => setUsername(event.target.value)}
        />
        <Field
          ref={passwordRef}
          label={t("login.password")}
          name="password"
          type="password"
          autoComplete="current-password"
          required
          autoFocus={Boolean(username)}
          value={password}
          error={errors.fields.password}
          onChange={(event) => setPassword(event.target.value)}
        />
        <Button type="submit" variant="primary" busy={busy} className="button--block">
          {busy ? t("login.submitting") : t("login.submit")}
        </Button>
      </form>
      <p className="auth-card__switch">
        {t("login.noAccount")} <Link href="/register">{t("login.toRegister")}</Link>
      </p>
    </AuthLayout>
  );
}
