import { useState, type FormEvent } from "react";

import { fleetApi, type JoinToken, type JoinTokenCreated } from "../../api/fleet";
import { Alert } from "../../components/Alert";
import { Button } from "../../components/Button";
import { ConfirmButton } from "../../components/ConfirmButton";
import { CopyButton } from "../../components/CopyButton";
import { Field } from "../../components/Field";
import { useI18n } from "../../i18n";
import type { MessageKey } from "../../i18n/en";
import { formErrorsFrom, NO_ERRORS, type FormErrors } from "../../lib/formErrors";
import { useResource } from "../../lib/useResource";

/** What a GPU host runs to join: the platform's own address and the token, filled in. */
export function joinCommand(token: string, origin = window.location.origin): string {
  return `llmct agent join ${origin} ${token}`;
}

/** Admins only: join tokens for GPU hosts (the command shown once), their uses, revoking them. */
export function JoinTokensSection() {
  const { t } = useI18n();
  const tokens = useResource(fleetApi.joinTokens);
  const [created, setCreated] = useState<JoinTokenCreated | null>(null);
  const [failure, setFailure] = useState<string | null>(null);

  const onCreated = (token: JoinTokenCreated) => {
    const { token: _secret, ...listed } = token;
    tokens.update((current) => [listed, ...(current ?? [])]);
    setCreated(token);
  };

  const revoke = async (id: string) => {
    setFailure(null);
    try {
      const revoked = await fleetApi.revokeJoinToken(id);
      tokens.update((current) => current?.map((item) => (item.id === id ? { ...revoked, joined: item.joined } : item)));
      if (created?.id === id) setCreated(null);
    } catch (error) {
      setFailure(error instanceof Error ? error.message : String(error));
    }
  };

  return (
    <section className="card" aria-labelledby="join-tokens-title">
      <h2 id="join-tokens-title">{t("join.title")}</h2>
      <p className="muted">{t("join.intro")}</p>
      <CreateTokenForm onCreated={onCreated} />
      {created && (
        <div className="secret secret--plain" role="status">
          <h3>{t("join.created")}</h3>
          <p className="muted">{t("join.shownOnce")}</p>
          <div className="secret__value">
            <input
              aria-label={t("join.command")}
              readOnly
              value={joinCommand(created.token)}
              className="mono"
              spellCheck={false}
              onFocus={(event) => event.target.select()}
            />
            <CopyButton text={joinCommand(created.token)} />
          </div>
        </div>
      )}
      {failure && <Alert tone="error">{failure}</Alert>}
      {tokens.error ? (
        <div className="inline-row">
          <Alert tone="error">{t("join.loadFailed")}</Alert>
          <Button onClick={tokens.reload}>{t("app.retry")}</Button>
        </div>
      ) : tokens.loading ? (
        <p role="status">{t("app.loading")}</p>
      ) : (
        <TokenTable tokens={tokens.data ?? []} onRevoke={revoke} />
      )}
    </section>
  );
}

function CreateTokenForm({ onCreated }: { onCreated: (token: JoinTokenCreated) => void }) {
  const { t } = useI18n();
  const [maxUses, setMaxUses] = useState("1");
  const [hours, setHours] = useState("24");
  const [note, setNote] = useState("");
  const [busy, setBusy] = useState(false);
  const [errors, setErrors] = useState<FormErrors<"max_uses" | "expires_in_hours" | "note">>(NO_ERRORS);

  const submit = async (event: FormEvent<HTMLFormElement>) => {
    event.preventDefault();
    setBusy(true);
    setErrors(NO_ERRORS);
    try {
      onCreated(await fleetApi.createJoinToken({ max_uses: Number(maxUses), expires_in_hours: Number(hours), note }));
    } catch (error) {
      setErrors(formErrorsFrom(error, ["max_uses", "expires_in_hours", "note"] as const));
    } finally {
      setBusy(false);
    }
  };

  return (
    <form className="form form--inline" onSubmit={submit}>
      <Field
        label={t("join.maxUses")}
        name="max_uses"
        type="number"
        inputMode="numeric"
        min={1}
        max={1000}
        required
        hint={t("join.maxUsesHint")}
        value={maxUses}
        error={errors.fields.max_uses}
        onChange={(event) => setMaxUses(event.target.value)}
      />
      <Field
        label={t("join.expiresIn")}
        name="expires_in_hours"
        type="number"
        inputMode="numeric"
        min={1}
        max={720}
        required
        hint={t("join.expiresHint")}
        value={hours}
        error={errors.fields.expires_in_hours}
        onChange={(event) => setHours(event.target.value)}
      />
      <Field
        label={t("join.note")}
        name="note"
        maxLength={200}
        hint={t("join.noteHint")}
        value={note}
        error={errors.fields.note}
        onChange={(event) => setNote(event.target.value)}
      />
      <Button type="submit" variant="primary" busy={busy}>
        {busy ? t("join.creating") : t("join.create")}
      </Button>
      {errors.form && <Alert tone="error">{errors.form}</Alert>}
    </form>
  );
}

function TokenTable({ tokens, onRevoke }: { tokens: JoinToken[]; onRevoke: (id: string) => Promise<void> }) {
  const { t, formatDateTime } = useI18n();
  if (tokens.length === 0) return <p className="empty">{t("join.empty")}</p>;
  return (
    <div className="table-scroll" role="region" aria-labelledby="join-tokens-title" tabIndex={0}>
      <table>
        <thead>
          <tr>
            <th scope="col">{t("join.colToken")}</th>
            <th scope="col">{t("join.colUses")}</th>
            <th scope="col">{t("join.colJoined")}</th>
            <th scope="col">{t("join.colExpires")}</th>
            <th scope="col">{t("join.colStatus")}</th>
            <th scope="col">
              <span className="visually-hidden">{t("join.colActions")}</span>
            </th>
          </tr>
        </thead>
        <tbody>
          {tokens.map((token) => (
            <tr key={token.id}>
              <th scope="row">
                <code>{token.prefix}…</code> {token.note && <span className="muted">{token.note}</span>}
              </th>
              <td>
                {token.uses} / {token.max_uses}
              </td>
              <td>
                {(token.joined ?? []).length === 0
                  ? "—"
                  : (token.joined ?? []).map((use, i) => (
                      <span key={`${use.agent_id}-${use.at}`}>
                        {i > 0 && ", "}
                        <span className="mono">{use.agent_id}</span>
                      </span>
                    ))}
              </td>
              <td>
                <time dateTime={token.expires_at}>{formatDateTime(token.expires_at)}</time>
              </td>
              <td>
                <span className={`pill pill--${token.state}`}>{t(`join.state.${token.state}` as MessageKey)}</span>
              </td>
              <td className="actions">
                {token.state === "active" && (
                  <ConfirmButton
                    label={t("keys.revoke")}
                    accessibleLabel={t("join.revokeNamed", { prefix: token.prefix })}
                    question={t("join.confirmRevoke")}
                    confirmLabel={t("keys.confirmYes")}
                    onConfirm={() => onRevoke(token.id)}
                  />
                )}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}
