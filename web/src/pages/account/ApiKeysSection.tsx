import { useState, type FormEvent } from "react";

import { authApi } from "../../api/auth";
import type { ApiKey, ApiKeyCreated, ApiKeyScope } from "../../api/types";
import { Alert } from "../../components/Alert";
import { Button } from "../../components/Button";
import { ConfirmButton } from "../../components/ConfirmButton";
import { CopyButton } from "../../components/CopyButton";
import { Field } from "../../components/Field";
import { SelectField } from "../../components/Fields";
import { useI18n } from "../../i18n";
import { formErrorsFrom, NO_ERRORS, type FormErrors } from "../../lib/formErrors";
import { useResource } from "../../lib/useResource";

export function ApiKeysSection() {
  const { t } = useI18n();
  const keys = useResource(authApi.listApiKeys);
  const [created, setCreated] = useState<ApiKeyCreated | null>(null);
  const [notice, setNotice] = useState<{ tone: "success" | "error"; text: string } | null>(null);

  const onCreated = (key: ApiKeyCreated) => {
    const { key: _secret, ...listed } = key;
    keys.update((current) => [listed, ...(current ?? [])]);
    setCreated(key);
    setNotice(null);
  };

  const revoke = async (key: ApiKey) => {
    try {
      await authApi.revokeApiKey(key.id);
      keys.update((current) => current?.filter((item) => item.id !== key.id));
      setNotice({ tone: "success", text: t("keys.revoked", { name: key.name }) });
    } catch (error) {
      setNotice({ tone: "error", text: error instanceof Error ? error.message : String(error) });
    }
  };

  return (
    <section className="card" aria-labelledby="keys-title">
      <h2 id="keys-title">{t("keys.title")}</h2>
      <p className="muted">{t("keys.intro")}</p>
      {created ? <NewKey created={created} onDone={() => setCreated(null)} /> : <CreateKeyForm onCreated={onCreated} />}
      {notice && <Alert tone={notice.tone}>{notice.text}</Alert>}
      {keys.error ? (
        <div className="inline-row">
          <Alert tone="error">{t("keys.loadFailed")}</Alert>
          <Button onClick={keys.reload}>{t("app.retry")}</Button>
        </div>
      ) : keys.loading ? (
        <p role="status">{t("app.loading")}</p>
      ) : (
        <KeyTable keys={keys.data ?? []} onRevoke={revoke} />
      )}
    </section>
  );
}

const KEY_FIELDS = ["name", "scope", "expires_in_days"] as const;
const SCOPES: ApiKeyScope[] = ["full", "read_only", "inference"];

function CreateKeyForm({ onCreated }: { onCreated: (key: ApiKeyCreated) => void }) {
  const { t } = useI18n();
  const [name, setName] = useState("");
  const [scope, setScope] = useState<ApiKeyScope>("full");
  const [days, setDays] = useState("");
  const [busy, setBusy] = useState(false);
  const [errors, setErrors] = useState<FormErrors<(typeof KEY_FIELDS)[number]>>(NO_ERRORS);

  const submit = async (event: FormEvent<HTMLFormElement>) => {
    event.preventDefault();
    setBusy(true);
    setErrors(NO_ERRORS);
    try {
      onCreated(await authApi.createApiKey(name.trim(), scope, days.trim() === "" ? null : Number(days)));
    } catch (error) {
      setErrors(formErrorsFrom(error, KEY_FIELDS));
      setBusy(false);
    }
  };

  return (
    <form className="form form--inline" onSubmit={submit}>
      <Field
        label={t("keys.name")}
        name="name"
        required
        maxLength={64}
        autoComplete="off"
        hint={t("keys.nameHint")}
        value={name}
        error={errors.fields.name}
        onChange={(event) => setName(event.target.value)}
      />
      <SelectField
        label={t("keys.scope")}
        name="scope"
        value={scope}
        error={errors.fields.scope}
        options={SCOPES.map((value) => ({ value, label: t(`keys.scope.${value}`) }))}
        onChange={(event) => setScope(event.target.value as ApiKeyScope)}
      />
      <Field
        label={t("keys.expiresInDays")}
        name="expires_in_days"
        type="number"
        inputMode="numeric"
        min={1}
        placeholder={t("keys.never")}
        value={days}
        error={errors.fields.expires_in_days}
        onChange={(event) => setDays(event.target.value)}
      />
      <Button type="submit" variant="primary" busy={busy}>
        {busy ? t("keys.creating") : t("keys.create")}
      </Button>
      {errors.form && <Alert tone="error">{errors.form}</Alert>}
    </form>
  );
}

/** The secret, once: it lives only in this component's props and is gone when dismissed. */
function NewKey({ created, onDone }: { created: ApiKeyCreated; onDone: () => void }) {
  const { t } = useI18n();
  const label = t("keys.newLabel", { name: created.name });
  return (
    <div className="secret" role="region" aria-labelledby="new-key-title">
      <h3 id="new-key-title">{t("keys.newTitle")}</h3>
      <p className="secret__warning">{t("keys.newWarning")}</p>
      <div className="secret__value">
        <input
          aria-label={label}
          readOnly
          value={created.key}
          className="mono"
          spellCheck={false}
          onFocus={(event) => event.target.select()}
        />
        <CopyButton text={created.key} />
      </div>
      <Button variant="primary" onClick={onDone}>
        {t("keys.done")}
      </Button>
    </div>
  );
}

function KeyTable({ keys, onRevoke }: { keys: ApiKey[]; onRevoke: (key: ApiKey) => Promise<void> }) {
  const { t, formatDateTime } = useI18n();
  if (keys.length === 0) return <p className="empty">{t("keys.empty")}</p>;
  return (
    <div className="table-scroll" role="region" aria-labelledby="keys-title" tabIndex={0}>
      <table>
        <thead>
          <tr>
            <th scope="col">{t("keys.colName")}</th>
            <th scope="col">{t("keys.colKey")}</th>
            <th scope="col">{t("keys.colCreated")}</th>
            <th scope="col">{t("keys.colLastUsed")}</th>
            <th scope="col">{t("keys.scope")}</th>
            <th scope="col">{t("keys.colExpires")}</th>
            <th scope="col">
              <span className="visually-hidden">{t("keys.colActions")}</span>
            </th>
          </tr>
        </thead>
        <tbody>
          {keys.map((key) => (
            <tr key={key.id}>
              <th scope="row">{key.name}</th>
              <td>
                <code>{key.prefix}…</code>
              </td>
              <td>
                <time dateTime={key.created_at}>{formatDateTime(key.created_at)}</time>
              </td>
              <td>
                {key.last_used_at ? (
                  <time dateTime={key.last_used_at}>{formatDateTime(key.last_used_at)}</time>
                ) : (
                  t("keys.neverUsed")
                )}
              </td>
              <td>{t(`keys.scope.${(key.scope ?? "full") as ApiKeyScope}`)}</td>
              <td>
                {key.expires_at ? (
                  <time dateTime={key.expires_at}>{formatDateTime(key.expires_at)}</time>
                ) : (
                  t("keys.never")
                )}
              </td>
              <td className="actions">
                <ConfirmButton
                  label={t("keys.revoke")}
                  accessibleLabel={t("keys.revokeNamed", { name: key.name })}
                  question={t("keys.confirmRevoke", { name: key.name })}
                  confirmLabel={t("keys.confirmYes")}
                  onConfirm={() => onRevoke(key)}
                />
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}
