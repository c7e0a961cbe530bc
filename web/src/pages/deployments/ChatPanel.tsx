import { useEffect, useRef, useState, type FormEvent, type KeyboardEvent } from "react";

import { ApiError } from "../../api/client";
import { deploymentsApi, type ChatAnswer, type ChatMessage, type Deployment } from "../../api/deployments";
import { Alert } from "../../components/Alert";
import { Button } from "../../components/Button";
import { Field } from "../../components/Field";
import { useI18n } from "../../i18n";
import { clearChat, loadChat, saveChat } from "../../lib/chatHistory";
import { useCountdown } from "../../lib/countdown";
import { CHAT_LIMITS, buildChatSettings, chatSettingsFrom, type ChatField, type ChatSettingsValues } from "../../lib/deployForm";
import type { Problem } from "../../lib/trainForm";
import { useQuery } from "../../lib/useQuery";
import { ChatTarget } from "./ChatTarget";
import { poolsAdapters } from "./ServingPanel";

interface Props {
  deployment: Deployment;
  /** The adapter the next turn asks for (its registry name); null: the deployment's own model. */
  adapter: string | null;
  onAdapter: (adapter: string | null) => void;
  /** A turn ended: the deployment's usage and idle timer changed. */
  onTurn: () => void;
}

/**
 * Who gave an answer: the name the engine answered as when it is not the deployment's own id (vLLM names an adapter
 * it answered with), else the model asked for. LLaMA-Factory's server names whatever it likes: not trusted.
 */
export function answeredBy(deployment: Deployment, adapter: string | null, answer: Pick<ChatAnswer, "model"> | null): string {
  const reported = answer?.model;
  if (poolsAdapters(deployment) && reported && reported !== deployment.id) return reported;
  if (poolsAdapters(deployment) && reported === deployment.id) return deployment.model;
  return adapter ?? deployment.model;
}

/** A 429: when it came, and the seconds it said to wait (null: it did not say). */
interface Busy {
  at: number;
  seconds: number | null;
}

/**
 * The conversation with one deployment, streamed as it is generated and kept in this browser. Each turn may ask
 * the base model or any adapter the deployment pools; each answer says which one gave it.
 */
export function ChatPanel({ deployment, adapter, onAdapter, onTurn }: Props) {
  const { t } = useI18n();
  const [messages, setMessages] = useState<ChatMessage[]>(() => loadChat(deployment.id));
  const [draft, setDraft] = useState("");
  const [streaming, setStreaming] = useState<string | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [settings, setSettings] = useState<ChatSettingsValues>(() => chatSettingsFrom(deployment.generation));
  const [problems, setProblems] = useState<Partial<Record<ChatField, Problem>>>({});
  const [announce, setAnnounce] = useState("");
  const [busy, setBusy] = useState<Busy | null>(null);
  const abort = useRef<AbortController | null>(null);
  const end = useRef<HTMLDivElement>(null);
  const ready = deployment.state === "ready";
  const pooled = poolsAdapters(deployment);
  const adapters = useQuery((signal) => deploymentsApi.adapters(deployment.id, signal), [deployment.id], ready && pooled);
  const waitLeft = useCountdown(busy?.seconds ?? null, busy?.at ?? 0);
  const waiting = waitLeft !== null && waitLeft > 0;
  // LLaMA-Factory's server serves its model only: an adapter asked for there would be refused.
  const target = pooled ? adapter : null;

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
    if (!text || streaming !== null || !ready || waiting) return;
    const built = buildChatSettings(settings);
    if (!built.ok) {
      setProblems(built.problems);
      return;
    }
    const asked: ChatMessage[] = [...messages, { role: "user", content: text }];
    keep(asked);
    setDraft("");
    setError(null);
    setBusy(null);
    setAnnounce("");
    setStreaming("");
    const controller = new AbortController();
    abort.current = controller;
    let answer = "";
    let result: ChatAnswer | null = null;
    try {
      result = await deploymentsApi.chat(deployment.id, asked, { ...built.body, ...(target ? { adapter: target } : {}) }, (piece) => {
        answer += piece;
        setStreaming(answer);
      }, controller.signal);
      answer = result.content;
      setAnnounce(t("chat.answered"));
    } catch (cause) {
      if (cause instanceof ApiError && cause.status === 429 && !answer) {
        // Full: nothing was asked. The message goes back to the box, to send again when the wait is over.
        keep(messages);
        setDraft(text);
        setBusy({ at: Date.now(), seconds: cause.retryAfter });
        setAnnounce(cause.retryAfter === null ? t("chat.busySoon") : t("chat.busy", { seconds: cause.retryAfter }));
      } else if (!(cause instanceof DOMException && cause.name === "AbortError")) {
        setError(cause instanceof Error ? cause.message : String(cause));
      }
    } finally {
      abort.current = null;
      setStreaming(null);
      // What arrived is kept, even when the answer was stopped or broke off.
      if (answer) keep([...asked, { role: "assistant", content: answer, model: answeredBy(deployment, target, result) }]);
      if (pooled) adapters.refresh(); // the adapter asked for is loaded now
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
      {ready && pooled && (
        <ChatTarget
          deployment={deployment}
          adapters={adapters.data}
          failed={Boolean(adapters.error)}
          value={adapter}
          onChange={onAdapter}
          onOpen={adapters.refresh}
          disabled={streaming !== null}
        />
      )}
      {ready && !pooled && deployment.engine && <p className="muted">{t("chat.adaptersNotPooled")}</p>}
      <div className="conversation" role="log" aria-label={t("chat.conversation")} tabIndex={0}>
        {messages.length === 0 && streaming === null && <p className="muted">{ready ? t("chat.empty") : t("chat.notReady")}</p>}
        {messages.map((m, i) => (
          <Turn key={i} role={m.role} content={m.content} model={m.model} />
        ))}
        {streaming !== null && <Turn role="assistant" content={streaming} model={target ?? deployment.model} pending />}
        <div ref={end} />
      </div>
      <span className="visually-hidden" role="status">
        {announce}
      </span>
      {error && <Alert tone="error">{error}</Alert>}
      {/* Not a live region: it ticks every second (the wait was announced once, above). */}
      {busy && (
        <div className="alert alert--warning" data-testid="chat-busy">
          {busy.seconds === null ? t("chat.busySoon") : waiting ? t("chat.busy", { seconds: waitLeft }) : t("chat.busyOver")}
        </div>
      )}
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
            <Button type="submit" variant="primary" disabled={!ready || !draft.trim() || waiting}>
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

function Turn({ role, content, model, pending }: { role: string; content: string; model?: string; pending?: boolean }) {
  const { t } = useI18n();
  const who = role === "user" ? t("chat.you") : role === "assistant" ? (model ? t("chat.answeredBy", { model }) : t("chat.model")) : t("chat.system");
  return (
    <div className={`turn turn--${role}`} aria-busy={pending || undefined}>
      <span className="turn__role">{who}</span>
      <div className="turn__text">
        {content}
        {pending && <span className="turn__cursor" aria-hidden="true" />}
      </div>
    </div>
  );
}
