import { useState, type FormEvent } from "react";

import { secretsApi, type SecretStatus } from "../../api/secrets";
import { Alert } from "../../components/Alert";
import { Button } from "../../components/Button";
import { ConfirmButton } from "../../components/ConfirmButton";
import { Field } from "../../components/Field";
import { useI18n, type Translate } from "../../i18n";
import type { MessageKey } from "../../i18n/en";
import { formErrorsFrom, NO_ERRORS, type FormErrors } from "../../lib/formErrors";
import { useResource } from "../../lib/useResource";

/** The caller's secrets (trackers' credentials their training jobs get): set, replaced or deleted here, never shown. */
export function SecretsSection() {
  const { t } = useI18n();
  const secrets = useResource(secretsApi.list);
  const [editing, setEditing] = useState<string | null>(null);
  const [notice, setNotice] = useState<{ tone: "success" | "error"; text: string } | null>(null);

  const replaced = (status: SecretStatus) => {
    secrets.update((current) => current?.map((item) => (item.name === status.name ? status : item)));
    setEditing(null);
    setNotice({ tone: "success", text: t("secrets.saved", { name: secretLabel(t, status) }) });
  };

  const remove = async (status: SecretStatus) => {
    try {
      await secretsApi.remove(status.name);
      secrets.update((current) =>
        current?.map((item) => (item.name === status.name ? { ...item, set: false, created_at: null, updated_at: null } : item)),
      );
      setNotice({ tone: "success", text: t("secrets.deleted", { name: secretLabel(t, status) }) });
    } catch (error) {
      setNotice({ tone: "error", text: error instanceof Error ? error.message : String(error) });
    }
  };

  return (
    <section className="card" aria-labelledby="secrets-title">
      <h2 id="secrets-title">{t("secrets.title")}</h2>
      <p className="muted">{t("secrets.intro")}</p>
      {notice && <Alert tone={notice.tone}>{notice.text}</Alert>}
      {secrets.error ? (
        <div className="inline-row">
          <Alert tone="error">
            {t("secrets.loadFailed")} {secrets.error instanceof Error ? secrets.error.message : ""}
          </Alert>
          <Button onClick={secrets.reload}>{t("app.retry")}</Button>
        </div>
      ) : secrets.loading ? (
        <p role="status">{t("app.loading")}</p>
      ) : (
        <SecretTable
          secrets={secrets.data ?? []}
          editing={editing}
          onEdit={(name) => {
            setEditing(name);
            setNotice(null);
          }}
          onSaved={replaced}
          onCancel={() => setEditing(null)}
          onDelete={remove}
        />
      )}
    </section>
  );
}

/** The catalogue's names in the user's language; a name this client does not know shows the server's label. */
const NAMES: Record<string, MessageKey> = {
  wandb_api_key: "secrets.name.wandb_api_key",
  mlflow_tracking_token: "secrets.name.mlflow_tracking_token",
  mlflow_tracking_username: "secrets.name.mlflow_tracking_username",
  mlflow_tracking_password: "secrets.name.mlflow_tracking_password",
};

function secretLabel(t: Translate, status: SecretStatus): string {
  const key = NAMES[status.name];
  return key ? t(key) : status.label;
}

interface TableProps {
  secrets: SecretStatus[];
  editing: string | null;
  onEdit: (name: string) => void;
  onSaved: (status: SecretStatus) => void;
  onCancel: () => void;
  onDelete: (status: SecretStatus) => Promise<void>;
}

function SecretTable({ secrets, editing, onEdit, onSaved, onCancel, onDelete }: TableProps) {
  const { t, formatDateTime } = useI18n();
  return (
    <div className="table-scroll" role="region" aria-labelledby="secrets-title" tabIndex={0}>
      <table>
        <thead>
          <tr>
            <th scope="col">{t("secrets.colName")}</th>
            <th scope="col">{t("secrets.colEnv")}</th>
            <th scope="col">{t("secrets.colState")}</th>
            <th scope="col">
              <span className="visually-hidden">{t("secrets.colActions")}</span>
            </th>
          </tr>
        </thead>
        <tbody>
          {secrets.map((status) => {
            const label = secretLabel(t, status);
            return (
              <tr key={status.name}>
                <th scope="row">{label}</th>
                <td>
                  <code>{status.env}</code>
                </td>
                <td>
                  {status.set && status.updated_at ? (
                    <>
                      {t("secrets.set")} · <time dateTime={status.updated_at}>{formatDateTime(status.updated_at)}</time>
                    </>
                  ) : (
                    t("secrets.notSet")
                  )}
                </td>
                <td className="actions">
                  {editing === status.name ? (
                    <SecretForm status={status} label={label} onSaved={onSaved} onCancel={onCancel} />
                  ) : (
                    <>
                      <Button aria-label={t(status.set ? "secrets.replaceNamed" : "secrets.setNamed", { name: label })} onClick={() => onEdit(status.name)}>
                        {t(status.set ? "secrets.replace" : "secrets.setAction")}
                      </Button>
                      {status.set && (
                        <ConfirmButton
                          label={t("secrets.delete")}
                          accessibleLabel={t("secrets.deleteNamed", { name: label })}
                          question={t("secrets.confirmDelete", { name: label })}
                          confirmLabel={t("secrets.confirmYes")}
                          onConfirm={() => onDelete(status)}
                        />
                      )}
                    </>
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

const VALUE_FIELDS = ["value"] as const;

/** The value lives only in this form's state: sent once, then the form is gone. */
function SecretForm(props: { status: SecretStatus; label: string; onSaved: (s: SecretStatus) => void; onCancel: () => void }) {
  const { status, label, onSaved, onCancel } = props;
  const { t } = useI18n();
  const [value, setValue] = useState("");
  const [busy, setBusy] = useState(false);
  const [errors, setErrors] = useState<FormErrors<(typeof VALUE_FIELDS)[number]>>(NO_ERRORS);

  const submit = async (event: FormEvent<HTMLFormElement>) => {
    event.preventDefault();
    setBusy(true);
    setErrors(NO_ERRORS);
    try {
      onSaved(await secretsApi.set(status.name, value));
    } catch (error) {
      setErrors(formErrorsFrom(error, VALUE_FIELDS));
      setBusy(false);
    }
  };

  return (
    <form className="form form--inline" aria-label={t("secrets.formNamed", { name: label })} onSubmit={submit}>
      <Field
        label={t("secrets.value")}
        name="value"
        type="password"
        required
        autoComplete="new-password"
        spellCheck={false}
        value={value}
        error={errors.fields.value}
        onChange={(event) => setValue(event.target.value)}
      />
      <Button type="submit" variant="primary" busy={busy}>
        {t("secrets.save")}
      </Button>
      <Button onClick={onCancel}>{t("secrets.cancel")}</Button>
      {errors.form && <Alert tone="error">{errors.form}</Alert>}
    </form>
  );
}
