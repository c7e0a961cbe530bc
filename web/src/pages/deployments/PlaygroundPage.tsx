import { useMemo, useState } from "react";
import { Link, useSearchParams } from "wouter";

import type { ApiError } from "../../api/client";
import { LIVE_DEPLOYMENT_STATES, deploymentsApi, type Deployment } from "../../api/deployments";
import { useUser } from "../../auth/session";
import { Alert } from "../../components/Alert";
import { Button } from "../../components/Button";
import { DeploymentBadge } from "../../components/DeploymentBadge";
import { LoadState } from "../../components/LoadState";
import { PageHeading } from "../../components/PageHeading";
import { useI18n } from "../../i18n";
import { useInterval } from "../../lib/live";
import { useQuery } from "../../lib/useQuery";
import { ApiSnippet } from "./ApiSnippet";
import { ChatPanel } from "./ChatPanel";
import { DeployForm } from "./DeployForm";
import { DeploymentStatus } from "./DeploymentStatus";
import { ServingPanel, poolsAdapters } from "./ServingPanel";

/**
 * How often a deployment is asked about: often while it changes by itself; once ready, as often as its agent reports
 * the engine's load (~5 s; the idle countdown ticks here in between).
 */
export function pollInterval(state: string | undefined): number | null {
  if (state === "queued" || state === "starting" || state === "stopping") return 1500;
  if (state === "ready") return 5000;
  return null;
}

/**
 * Deploy a model and chat with it. `?deployment=<id>` shows one deployment (`&adapter=<name>`: chat with that
 * adapter of its base); `?model=<name>` (or `?new`) opens the deploy form with that model; with neither, the
 * caller's live deployment if they have one.
 */
export function PlaygroundPage() {
  const { t } = useI18n();
  const user = useUser();
  const [params, setParams] = useSearchParams();
  const chosenId = params.get("deployment");
  const adapter = params.get("adapter") || null;
  const initialModel = params.get("model") ?? undefined;
  const wantForm = params.has("new") || params.has("model");
  const [limit, setLimit] = useState<ApiError | null>(null);

  const live = useQuery((signal) => deploymentsApi.list({ active: true, limit: 50 }, signal), []);
  // Admins list everyone's deployments: the playground is about one's own.
  const mine = useMemo(
    () => (live.data?.items ?? []).filter((d) => user.role !== "admin" || !d.owner || d.owner === user.username),
    [live.data, user],
  );
  const selectedId = chosenId ?? (wantForm ? null : (mine[0]?.id ?? null));
  const selected = useQuery((signal) => deploymentsApi.get(selectedId!, signal), [selectedId], selectedId !== null);
  const fetchedAt = useMemo(() => Date.now(), [selected.data]); // eslint-disable-line react-hooks/exhaustive-deps
  const state = selectedId ? selected.data?.state : undefined;
  const every = pollInterval(state);
  useInterval(selected.refresh, every ?? 60_000, every !== null);

  const show = (id: string | null, extra: Record<string, string> = {}) => {
    setLimit(null);
    setParams(() => {
      const next = new URLSearchParams(extra);
      if (id) next.set("deployment", id);
      return next;
    });
  };
  const pickAdapter = (name: string | null) =>
    setParams(
      (current) => {
        const next = new URLSearchParams(current);
        if (name) next.set("adapter", name);
        else next.delete("adapter");
        return next;
      },
      { replace: true },
    );
  const changed = () => {
    selected.refresh();
    live.refresh();
  };
  const deployed = (deployment: Deployment) => {
    live.refresh();
    show(deployment.id);
  };
  const refused = (error: ApiError) => {
    setLimit(error);
    live.refresh();
  };

  const others = mine.filter((d) => d.id !== selectedId);
  return (
    <>
      <p className="breadcrumb">
        <Link href="/deployments">{t("nav.deployments")}</Link> / {t("playground.title")}
      </p>
      <PageHeading title={t("playground.title")} />
      <div className="playground">
        <div className="playground__side stack">
          <section className="card" aria-labelledby="playground-model">
            <h2 id="playground-model" className="visually-hidden">
              {t("playground.model")}
            </h2>
            {limit && <LimitNotice error={limit} live={mine} onChanged={changed} onOpen={(id) => show(id)} />}
            {selectedId ? (
              <LoadState loading={selected.loading && !selected.data} error={selected.error} reload={selected.reload} failed={t("deploy.loadFailed")}>
                {selected.data && (
                  <>
                    <DeploymentStatus deployment={selected.data} fetchedAt={fetchedAt} onChanged={changed} />
                    <div className="inline-row deployment__more">
                      <Button variant="link" onClick={() => show(null, { new: "1" })}>
                        {t("playground.deployAnother")}
                      </Button>
                      {!LIVE_DEPLOYMENT_STATES.has(selected.data.state) && (
                        <Button onClick={() => show(null, { model: selected.data!.model })}>{t("playground.deployAgain")}</Button>
                      )}
                    </div>
                  </>
                )}
              </LoadState>
            ) : (
              <DeployForm key={initialModel ?? ""} initialModel={initialModel} onDeployed={deployed} onLimit={refused} />
            )}
          </section>
          {others.length > 0 && !limit && (
            <section className="card" aria-labelledby="playground-others">
              <h2 id="playground-others">{t("playground.yourLive")}</h2>
              <ul className="plain-list">
                {others.map((d) => (
                  <li key={d.id} className="inline-row">
                    <DeploymentBadge state={d.state} />
                    <button type="button" className="link-button" onClick={() => show(d.id)}>
                      {d.model}
                    </button>
                    <span className="mono muted">{d.id}</span>
                  </li>
                ))}
              </ul>
            </section>
          )}
        </div>
        <div className="playground__main">
          {selectedId && selected.data && selected.data.id === selectedId ? (
            <ChatPanel
              key={selectedId}
              deployment={selected.data}
              adapter={adapter}
              onAdapter={pickAdapter}
              onTurn={() => window.setTimeout(selected.refresh, 1200)}
            />
          ) : (
            <section className="card" aria-labelledby="chat-empty">
              <h2 id="chat-empty">{t("chat.titleEmpty")}</h2>
              <p className="muted">{t("chat.deployFirst")}</p>
            </section>
          )}
        </div>
      </div>
      {selectedId && selected.data?.id === selectedId && <ServingPanel deployment={selected.data} />}
      <ApiSnippet
        model={selected.data?.state === "ready" ? selected.data.id : null}
        adapter={selected.data?.state === "ready" && poolsAdapters(selected.data) ? adapter : null}
      />
    </>
  );
}

/** 409 deployment_limit: what holds the limit, to open or stop. */
function LimitNotice({ error, live, onChanged, onOpen }: { error: ApiError; live: Deployment[]; onChanged: () => void; onOpen: (id: string) => void }) {
  const { t } = useI18n();
  const [stopping, setStopping] = useState<string | null>(null);
  const [failure, setFailure] = useState<string | null>(null);
  const stop = async (id: string) => {
    setStopping(id);
    setFailure(null);
    try {
      await deploymentsApi.stop(id);
      onChanged();
    } catch (cause) {
      setFailure(cause instanceof Error ? cause.message : String(cause));
    } finally {
      setStopping(null);
    }
  };
  return (
    <Alert tone="warning" className="limit">
      <strong>{t("deploy.limitTitle")}</strong>
      <p>{error.message}</p>
      {live.length > 0 && (
        <ul className="plain-list">
          {live.map((d) => (
            <li key={d.id} className="inline-row">
              <DeploymentBadge state={d.state} />
              <span>{d.model}</span>
              <span className="mono muted">{d.id}</span>
              <Button onClick={() => onOpen(d.id)}>{t("deploy.open")}</Button>
              {d.state !== "stopping" && (
                <Button variant="danger" busy={stopping === d.id} onClick={() => stop(d.id)} aria-label={t("deploy.stopNamed", { id: d.id })}>
                  {t("deploy.stop")}
                </Button>
              )}
            </li>
          ))}
        </ul>
      )}
      {failure && <p className="inline-error">{failure}</p>}
    </Alert>
  );
}
