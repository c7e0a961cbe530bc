import { useRef, useState, type FormEvent } from "react";
import { Link, useLocation, useSearchParams } from "wouter";

import { authApi } from "../api/auth";
import { loginPath } from "../auth/paths";
import { Alert } from "../components/Alert";
import { AuthLayout } from "../components/AuthLayout";
import { Button } from "../components/Button";
import { Field } from "../components/Field";
import { PageHeading } from "../components/PageHeading";
import { useI18n } from "../i18n";
import { formErrorsFrom, NO_ERRORS, type FormErrors } from "../lib/formErrors";

const FIELDS = ["username", "password", "invite_code"] as const;
type RegisterField = (typeof FIELDS)[number];

export function RegisterPage() {
  const { t } = useI18n();
  const [, navigate] = useLocation();
  const [params] = useSearchParams();
  const [values, setValues] = useState<Record<RegisterField, string>>({
    username: "",
    password: "",
    invite_code: params.get("invite") ?? "",
  });
  const [busy, setBusy] = useState(false);
  const [errors, setErrors] = useState<FormErrors<RegisterField>>(NO_ERRORS);
  const refs = {
    username: useRef<HTMLInputElement>(null),
    password: useRef<HTMLInputElement>(null),
    invite_code: useRef<HTMLInputElement>(null),
  };

  const set = (name: RegisterField) => (event: { target: { value: string } }) =>
    setValues((current) => ({ ...current, [name]: event.target.value }));

  const submit = async (event: FormEvent<HTMLFormElement>) => {
    event.preventDefault();
    setBusy(true);
    setErrors(NO_ERRORS);
    const username = values.username.trim();
    try {
      await authApi.register({ username, password: values.password, invite_code: values.invite_code.trim() });
      navigate(loginPath({ reason: "registered", username }), { replace: true });
    } catch (error) {
      const found = formErrorsFrom(error, FIELDS);
      setErrors(found);
      setBusy(false);
      // Put the cursor where the fix is needed.
      const first = FIELDS.find((name) => found.fields[name]);
      if (first) refs[first].current?.focus();
    }
  };

  return (
    <AuthLayout>
      <PageHeading title={t("register.title")} />
      {errors.form && <Alert tone="error">{errors.form}</Alert>}
      <form className="form" onSubmit={submit}>
        <Field
          ref={refs.username}
          label={t("register.username")}
          name="username"
          autoComplete="username"
          autoCapitalize="none"
          spellCheck={false}
          required
          autoFocus
          hint={t("register.usernameHint")}
          value={values.username}
          error={errors.fields.username}
          onChange={set("username")}
        />
        <Field
          ref={refs.password}
          label={t("register.password")}
          name="password"
          type="password"
          autoComplete="new-password"
          required
          hint={t("register.passwordHint")}
          value={values.password}
          error={errors.fields.password}
          onChange={set("password")}
        />
        <Field
          ref={refs.invite_code}
          label={t("register.inviteCode")}
          name="invite_code"
          autoComplete="off"
          spellCheck={false}
          required
          hint={t("register.inviteHint")}
          value={values.invite_code}
          error={errors.fields.invite_code}
          onChange={set("invite_code")}
        />
        <Button type="submit" variant="primary" busy={busy} className="button--block">
          {busy ? t("register.submitting") : t("register.submit")}
        </Button>
      </form>
      <p className="auth-card__switch">
        {t("register.haveAccount")} <Link href="/login">{t("register.toLogin")}</Link>
      </p>
    </AuthLayout>
  );
}
