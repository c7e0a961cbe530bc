import { useState, type FormEvent } from "react";

import { FLEET_EVENTS, WEBHOOK_EVENTS, webhooksApi, type Delivery, type Webhook, type WebhookCreated, type WebhookEvent } from "../../api/webhooks";
import { Alert } from "../../components/Alert";
import { Button } from "../../components/Button";
import { ConfirmButton } from "../../components/ConfirmButton";
import { CopyButton } from "../../components/CopyButton";
import { Field } from "../../components/Field";
import { CheckboxField } from "../../components/Fields";
import { PageHeading } from "../../components/PageHeading";
import { Timestamp } from "../../components/Timestamp";
import { useUser } from "../../auth/session";
import { useI18n } from "../../i18n";
import { formErrorsFrom, NO_ERRORS, type FormErrors } from "../../lib/formErrors";
import { useResource } from "../../lib/useResource";

type Notice = { tone: "success" | "error"; text: string } | null;
const message = (error: unknown) => (error instanceof Error ? error.message : String(error));

/** The caller's webhook endpoints: register one (its secret shown once), enable, disable, test, delete, and see
 * each one's deliveries with a "send again" button. */
export function WebhooksPage() {
  const { t } = useI18n();
  const hooks = useResource(webhooksApi.list);
  const [created, setCreated] = useState<WebhookCreated | null>(null);
  const [open, setOpen] = useState<string | null>(null);
  const [notice, setNotice] = useState<Notice>(null);

  const onCreated = (hook: WebhookCreated) => {
    const { secret: _secret, ...listed } = hook;
    hooks.update((current) => [listed, ...(current ?? [])]);
    setCreated(hook);
    setNotice(null);
  };
  const act = async (work: () => Promise<unknown>, done: string) => {
    try {
      await work();
      setNotice({ tone: "success", text: done });
    } catch (error) {
      setNotice({ tone: "error", text: message(error) });
    }
  };
  const toggle = (hook: Webhook) =>
    act(async () => {
      const changed = await webhooksApi.setEnabled(hook.id, !hook.enabled);
      hooks.update((current) => current?.map((item) => (item.id === hook.id ? changed : item)));
    }, t(hook.enabled ? "webhooks.disabled" : "webhooks.enabled", { url: hook.url }));
  const remove = (hook: Webhook) =>
    act(async () => {
      await webhooksApi.remove(hook.id);
      hooks.update((current) => current?.filter((item) => item.id !== hook.id));
      if (open === hook.id) setOpen(null);
    }, t("webhooks.deleted", { url: hook.url }));
  const test = (hook: Webhook) => act(() => webhooksApi.test(hook.id), t("webhooks.testSent", { url: hook.url }));

  return (
    <>
      <PageHeading title={t("webhooks.title")} />
      <section className="card" aria-labelledby="webhooks-new">
        <h2 id="webhooks-new">{t("webhooks.newTitle")}</h2>
        <p className="muted">{t("webhooks.intro")}</p>
        {created ? <NewSecret created={created} onDone={() => setCreated(null)} /> : <CreateForm onCreated={onCreated} />}
      </section>
      <section className="card" aria-labelledby="webhooks-list">
        <h2 id="webhooks-list">{t("webhooks.listTitle")}</h2>
        {notice && <Alert tone={notice.tone}>{notice.text}</Alert>}
        {hooks.error ? (
          <div className="inline-row">
            <Alert tone="error">{t("webhooks.loadFailed")}</Alert>
            <Button onClick={hooks.reload}>{t("app.retry")}</Button>
          </div>
        ) : hooks.loading ? (
          <p role="status">{t("app.loading")}</p>
        ) : (
          <HookTable hooks={hooks.data ?? []} open={open} onOpen={setOpen} onToggle={toggle} onTest={test} onDelete={remove} />
        )}
      </section>
      {open && <Deliveries key={open} hookId={open} />}
    </>
  );
}

const FIELDS = ["url", "events", "description", "fleet"] as const;

function CreateForm({ onCreated }: { onCreated: (hook: WebhookCreated) => void }) {
  const { t } = useI18n();
  const admin = useUser().role === "admin";
  const [url, setUrl] = useState("");
  const [description, setDescription] = useState("");
  const [events, setEvents] = useState<WebhookEvent[]>(["job.succeeded", "job.failed"]);
  const [busy, setBusy] = useState(false);
  const [errors, setErrors] = useState<FormErrors<(typeof FIELDS)[number]>>(NO_ERRORS);
  const choices = admin ? [...WEBHOOK_EVENTS, ...FLEET_EVENTS] : WEBHOOK_EVENTS;
  const pick = (event: WebhookEvent, on: boolean) =>
    setEvents((current) => (on ? [...current, event] : current.filter((item) => item !== event)));

  const submit = async (event: FormEvent<HTMLFormElement>) => {
    event.preventDefault();
    setBusy(true);
    setErrors(NO_ERRORS);
    try {
      const fleet = events.some((name) => FLEET_EVENTS.includes(name));
      onCreated(await webhooksApi.create({ url: url.trim(), events, description: description.trim(), fleet, enabled: true }));
    } catch (error) {
      setErrors(formErrorsFrom(error, FIELDS));
      setBusy(false);
    }
  };

  return (
    <form className="form" onSubmit={submit} aria-labelledby="webhooks-new">
      <Field
        label={t("webhooks.url")}
        name="url"
        type="url"
        required
        placeholder="https://example.com/hooks/llmct"
        hint={t("webhooks.urlHint")}
        value={url}
        error={errors.fields.url}
        onChange={(event) => setUrl(event.target.value)}
      />
      <Field
        label={t("webhooks.description")}
        name="description"
        maxLength={200}
        value={description}
        error={errors.fields.description}
        onChange={(event) => setDescription(event.target.value)}
      />
      <fieldset className="field">
        <legend>{t("webhooks.events")}</legend>
        {choices.map((name) => (
          <CheckboxField key={name} label={name} name="events" checked={events.includes(name)} onChange={(on) => pick(name, on)} />
        ))}
        {(errors.fields.events ?? errors.fields.fleet) && <p className="field__error">{errors.fields.events ?? errors.fields.fleet}</p>}
      </fieldset>
      <Button type="submit" variant="primary" busy={busy} disabled={events.length === 0}>
        {busy ? t("webhooks.creating") : t("webhooks.create")}
      </Button>
      {errors.form && <Alert tone="error">{errors.form}</Alert>}
    </form>
  );
}

/** The secret, once: it lives only in this component's props and is gone when dismissed. */
function NewSecret({ created, onDone }: { created: WebhookCreated; onDone: () => void }) {
  const { t } = useI18n();
  return (
    <div className="secret" role="region" aria-labelledby="new-secret-title">
      <h3 id="new-secret-title">{t("webhooks.secretTitle")}</h3>
      <p className="secret__warning">{t("webhooks.secretWarning")}</p>
      <div className="secret__value">
        <input
          aria-label={t("webhooks.secretLabel", { url: created.url })}
          readOnly
          value={created.secret}
          className="mono"
          spellCheck={false}
          onFocus={(event) => event.target.select()}
        />
        <CopyButton text={created.secret} />
      </div>
      <Button variant="primary" onClick={onDone}>
        {t("webhooks.secretDone")}
      </Button>
    </div>
  );
}

interface HookTableProps {
  hooks: Webhook[];
  open: string | null;
  onOpen: (id: string | null) => void;
  onToggle: (hook: Webhook) => Promise<void>;
  onTest: (hook: Webhook) => Promise<void>;
  onDelete: (hook: Webhook) => Promise<void>;
}

function HookTable({ hooks, open, onOpen, onToggle, onTest, onDelete }: HookTableProps) {
  const { t } = useI18n();
  if (hooks.length === 0) return <p className="empty">{t("webhooks.empty")}</p>;
  return (
    <div className="table-scroll" role="region" aria-labelledby="webhooks-list" tabIndex={0}>
      <table>
        <thead>
          <tr>
            <th scope="col">{t("webhooks.url")}</th>
            <th scope="col">{t("webhooks.events")}</th>
            <th scope="col">{t("webhooks.state")}</th>
            <th scope="col">{t("webhooks.created")}</th>
            <th scope="col">
              <span className="visually-hidden">{t("webhooks.actions")}</span>
            </th>
          </tr>
        </thead>
        <tbody>
          {hooks.map((hook) => (
            <tr key={hook.id}>
              <th scope="row">
                <code>{hook.url}</code>
                {hook.description && <div className="muted">{hook.description}</div>}
              </th>
              <td>{hook.events.join(", ")}</td>
              <td>{t(hook.enabled ? "webhooks.on" : "webhooks.off")}</td>
              <td>
                <Timestamp iso={hook.created_at} />
              </td>
              <td className="actions">
                <Button onClick={() => onToggle(hook)} aria-label={t(hook.enabled ? "webhooks.disableNamed" : "webhooks.enableNamed", { url: hook.url })}>
                  {t(hook.enabled ? "webhooks.disable" : "webhooks.enable")}
                </Button>
                <Button onClick={() => onTest(hook)} disabled={!hook.enabled} aria-label={t("webhooks.testNamed", { url: hook.url })}>
                  {t("webhooks.test")}
                </Button>
                <Button
                  onClick={() => onOpen(open === hook.id ? null : hook.id)}
                  aria-expanded={open === hook.id}
                  aria-label={t("webhooks.deliveriesNamed", { url: hook.url })}
                >
                  {t("webhooks.deliveries")}
                </Button>
                <ConfirmButton
                  label={t("webhooks.delete")}
                  accessibleLabel={t("webhooks.deleteNamed", { url: hook.url })}
                  question={t("webhooks.confirmDelete", { url: hook.url })}
                  confirmLabel={t("webhooks.confirmYes")}
                  onConfirm={() => onDelete(hook)}
                />
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

/** One endpoint's delivery log, newest first, with "send again" on each. */
function Deliveries({ hookId }: { hookId: string }) {
  const { t } = useI18n();
  const page = useResource((signal) => webhooksApi.deliveries(hookId, signal));
  const [notice, setNotice] = useState<Notice>(null);
  const resend = async (delivery: Delivery) => {
    try {
      const again = await webhooksApi.resend(hookId, delivery.id);
      page.update((current) => current && { ...current, items: [again, ...current.items] });
      setNotice({ tone: "success", text: t("webhooks.resent", { event: delivery.event_type }) });
    } catch (error) {
      setNotice({ tone: "error", text: message(error) });
    }
  };
  const items = page.data?.items ?? [];
  return (
    <section className="card" aria-labelledby="webhook-deliveries">
      <div className="inline-row">
        <h2 id="webhook-deliveries">{t("webhooks.deliveriesTitle")}</h2>
        <Button onClick={page.reload}>{t("webhooks.refresh")}</Button>
      </div>
      {notice && <Alert tone={notice.tone}>{notice.text}</Alert>}
      {page.error ? (
        <Alert tone="error">{t("webhooks.deliveriesFailed")}</Alert>
      ) : page.loading && !page.data ? (
        <p role="status">{t("app.loading")}</p>
      ) : items.length === 0 ? (
        <p className="empty">{t("webhooks.noDeliveries")}</p>
      ) : (
        <div className="table-scroll" role="region" aria-labelledby="webhook-deliveries" tabIndex={0}>
          <table>
            <thead>
              <tr>
                <th scope="col">{t("webhooks.event")}</th>
                <th scope="col">{t("webhooks.state")}</th>
                <th scope="col">{t("webhooks.statusCode")}</th>
                <th scope="col">{t("webhooks.latency")}</th>
                <th scope="col">{t("webhooks.attempts")}</th>
                <th scope="col">{t("webhooks.created")}</th>
                <th scope="col">
                  <span className="visually-hidden">{t("webhooks.actions")}</span>
                </th>
              </tr>
            </thead>
            <tbody>
              {items.map((delivery) => (
                <tr key={delivery.id}>
                  <th scope="row">
                    {delivery.event_type} <code className="muted">{delivery.id}</code>
                  </th>
                  <td title={delivery.last_error ?? undefined}>{t(`webhooks.state.${delivery.state}`)}</td>
                  <td>{delivery.last_status_code ?? "—"}</td>
                  <td>{delivery.last_latency_ms == null ? "—" : `${delivery.last_latency_ms} ms`}</td>
                  <td>{delivery.attempts}</td>
                  <td>
                    <Timestamp iso={delivery.created_at} />
                  </td>
                  <td className="actions">
                    <Button onClick={() => resend(delivery)} aria-label={t("webhooks.resendNamed", { id: delivery.id })}>
                      {t("webhooks.resend")}
                    </Button>
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </section>
  );
}
