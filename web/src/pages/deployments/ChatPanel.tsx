import { useEffect, useRef, useState, type FormEvent, type KeyboardEvent } from "react";

import { deploymentsApi, type ChatMessage, type Deployment } from "../../api/deployments";
import { Alert } from "../../components/Alert";
import { Button } from "../../components/Button";
import { Field } from "../../components/Field";
import { useI18n } from "../../i18n";
import { clearChat, loadChat, saveChat } from "../../lib/chatHistory";
import { CHAT_LIMITS, buildChatSettings, chatSettingsFrom, type ChatField, type ChatSettingsValues } from "../../lib/deployForm";
import type { Problem } from "../../lib/trainForm";

interface Props {
  deployment: Deployment;
  /** A turn ended: the deployment's usage and idle timer changed. */
  onTurn: () => void;
}

/** The conversation with one deployment, streamed as it is generated and kept in this browser. */
export function ChatPanel({ deployment, onTurn }: Props) {
  const { t } = useI18n();
  const [messages, setMessages] = useState<ChatMessage[]>(() => loadChat(deployment.id));
  const [draft, setDraft] = useState("");
  const [streaming, setStreaming] = useState<string | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [settings, setSettings] = useState<ChatSettingsValues>(() => chatSettingsFrom(deployment.generation));
  const [problems, setProblems] = useState<Partial<Record<ChatField, Problem>>>({});
  const [announce, setAnnounce] = useState("");
  const abort = useRef<AbortController | null>(null);
  const end = useRef<HTMLDivElement>(null);
  const ready = deployment.state === "ready";

  useEffect(() => () => abort.current?.abort(), []);
  useEffect(() => {
    end.current?.scrollIntoView?.({ block: "end" });
  }, [messages, streaming]);

  const keep = (next: ChatMessage[]) => {
    setMessages(next);
    if (!saveChat(deployment.id, next)) setError(t("chat.notSaved"));
  };

  const send = async (event?: FormEvent) => {
    event?.preventDefault();
    const text = draft.trim();
    if (!text || streaming !== null || !ready) return;
    const built = buildChatSettings(settings);
    if (!built.ok) {
      setProblems(built.problems);
      return;
    }
    const asked: ChatMessage[] = [...messages, { role: "user", content: text }];
    keep(asked);
    setDraft("");
    setError(null);
    setAnnounce("");
    setStreaming("");
    const controller = new AbortController();
    abort.current = controller;
    let answer = "";
    try {
      const result = await deploymentsApi.chat(deployment.id, asked, built.body, (piece) => {
        answer += piece;
        setStreaming(answer);
      }, controller.signal);
      answer = result.content;
      setAnnounce(t("chat.answered"));
    } catch (cause) {
      if (!(cause instanceof DOMException && cause.name === "AbortError")) {
        setError(cause instanceof Error ? cause.message : String(cause));
      }
    } finally {
      abort.current = null;
      setStreaming(null);
      // What arrived is kept, even when the answer was stopped or broke off.
      if (answer) keep([...asked, { role: "assistant", content: answer }]);
      onTurn();
    }
  };

  const onKeyDown = (event: KeyboardEvent<HTMLTextAreaElement>) => {
    if (event.key === "Enter" && !event.shiftKey && !event.nativeEvent.isComposing) {
      event.preventDefault();
      void send();
    }
  };

  const clear = () => {
    clearChat(deployment.id);
    setMessages([]);
    setError(null);
  };

  const setting = (name: ChatField, label: string) => (
    <Field
      label={label}
      name={name}
      inputMode="decimal"
      value={settings[name]}
      onChange={(e) => {
        setSettings((s) => ({ ...s, [name]: e.target.value }));
        setProblems((p) => ({ ...p, [name]: undefined }));
      }}
      error={problems[name] ? t(problems[name]!.key, problems[name]!.values) : undefined}
      hint={t("form.rangeHint", { min: CHAT_LIMITS[name].min, max: CHAT_LIMITS[name].max })}
    />
  );

  return (
    <section className="card chat-panel" aria-labelledby="chat-title">
      <div className="card__header">
        <h2 id="chat-title">{t("chat.title", { model: deployment.model })}</h2>
        <Button onClick={clear} disabled={messages.length === 0 || streaming !== null}>
          {t("chat.clear")}
        </Button>
      </div>
      <div className="conversation" role="log" aria-label={t("chat.conversation")} tabIndex={0}>
        {messages.length === 0 && streaming === null && <p className="muted">{ready ? t("chat.empty") : t("chat.notReady")}</p>}
        {messages.map((m, i) => (
          <Turn key={i} role={m.role} content={m.content} />
        ))}
        {streaming !== null && <Turn role="assistant" content={streaming} pending />}
        <div ref={end} />
      </div>
      <span className="visually-hidden" role="status">
        {announce}
      </span>
      {error && <Alert tone="error">{error}</Alert>}
      <form className="chat-input" onSubmit={send}>
        <label htmlFor="chat-message" className="visually-hidden">
          {t("chat.message")}
        </label>
        <textarea
          id="chat-message"
          rows={3}
          value={draft}
          onChange={(e) => setDraft(e.target.value)}
          onKeyDown={onKeyDown}
          placeholder={ready ? t("chat.placeholder") : t("chat.notReady")}
          disabled={!ready}
          aria-describedby="chat-message-hint"
        />
        <p id="chat-message-hint" className="field__hint">
          {t("chat.hint")}
        </p>
        <div className="inline-row">
          {streaming === null ? (
            <Button type="submit" variant="primary" disabled={!ready || !draft.trim()}>
              {t("chat.send")}
            </Button>
          ) : (
            <Button onClick={() => abort.current?.abort()}>{t("chat.stopGenerating")}</Button>
          )}
        </div>
      </form>
      <details className="chat-settings">
        <summary>{t("chat.settings")}</summary>
        <p className="muted">{t("chat.settingsHint")}</p>
        <div className="grid-3">
          {setting("temperature", t("gen.temperature"))}
          {setting("top_p", t("gen.topP"))}
          {setting("max_tokens", t("gen.maxTokens"))}
        </div>
      </details>
    </section>
  );
}

function Turn({ role, content, pending }: { role: string; content: string; pending?: boolean }) {
  const { t } = useI18n();
  return (
    <div className={`turn turn--${role}`} aria-busy={pending || undefined}>
      <span className="turn__role">{role === "user" ? t("chat.you") : role === "assistant" ? t("chat.model") : t("chat.system")}</span>
      <div className="turn__text">
        {content}
        {pending && <span className="turn__cursor" aria-hidden="true" />}
      </div>
    </div>
  );
}
