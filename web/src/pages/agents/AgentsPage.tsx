import { useState } from "react";
import { Link } from "wouter";

import { AGENT_STATES, fleetApi, type Agent, type FleetSummary, type Gpu } from "../../api/fleet";
import { useUser } from "../../auth/session";
import { Alert } from "../../components/Alert";
import { Button } from "../../components/Button";
import { ConfirmButton } from "../../components/ConfirmButton";
import { Field } from "../../components/Field";
import { SelectField } from "../../components/Fields";
import { LoadState } from "../../components/LoadState";
import { PageHeading } from "../../components/PageHeading";
import { useI18n } from "../../i18n";
import type { MessageKey } from "../../i18n/en";
import { agentState, filterAgents, heartbeatAge, offlineAgents, useNow } from "../../lib/fleet";
import { formatDuration } from "../../lib/format";
import { useInterval } from "../../lib/live";
import { useUrlFilters } from "../../lib/usePagedList";
import { useQuery } from "../../lib/useQuery";
import { useResource } from "../../lib/useResource";
import { JoinTokensSection } from "./JoinTokensSection";

/** The fleet: admins see every agent (state, GPUs, heartbeat, drain); everyone else the capacity summary. */
export function AgentsPage() {
  const { t } = useI18n();
  const admin = useUser().role === "admin";
  const fleet = useQuery((signal) => fleetApi.list(signal), []);
  const credentials = useResource(fleetApi.credentials, admin);
  useInterval(fleet.refresh, 5000, true);
  const joined = new Set((credentials.data ?? []).map((c) => c.agent_id));
  const revokeAccess = async (agentId: string) => {
    await fleetApi.revokeCredentials(agentId);
    credentials.update((current) => current?.filter((c) => c.agent_id !== agentId));
  };
  return (
    <>
      <PageHeading title={t("fleet.title")} />
      <LoadState loading={fleet.loading && !fleet.data} error={fleet.error} reload={fleet.reload} failed={t("fleet.loadFailed")}>
        <div className="stack">
          <Summary summary={fleet.data?.summary ?? null} />
          {admin && (
            <AgentList
              agents={fleet.data?.agents ?? []}
              onChanged={() => {
                fleet.refresh();
                credentials.reload();
              }}
              joined={joined}
              onRevokeAccess={revokeAccess}
            />
          )}
          {admin && <JoinTokensSection />}
          {!admin && <p className="muted">{t("fleet.userNote")}</p>}
        </div>
      </LoadState>
    </>
  );
}

function Summary({ summary }: { summary: FleetSummary | null }) {
  const { t } = useI18n();
  const gpus = summary?.gpus ?? [];
  return (
    <section className="card" aria-labelledby="fleet-summary">
      <h2 id="fleet-summary">{t("fleet.capacity")}</h2>
      <dl className="details">
        <div>
          <dt>{t("fleet.agentsOnline")}</dt>
          <dd>{summary?.agents_online ?? "—"}</dd>
        </div>
        <div>
          <dt>{t("fleet.cpuSlots")}</dt>
          <dd>{t("fleet.freeOf", { free: summary?.cpu_slots_free ?? 0, total: summary?.cpu_slots_total ?? 0 })}</dd>
        </div>
      </dl>
      {gpus.length === 0 ? (
        <p className="muted">{t("fleet.noGpus")}</p>
      ) : (
        <div className="table-scroll">
          <table>
            <caption className="visually-hidden">{t("fleet.gpuModels")}</caption>
            <thead>
              <tr>
                <th scope="col">{t("fleet.gpuModel")}</th>
                <th scope="col" className="num">{t("fleet.memory")}</th>
                <th scope="col" className="num">{t("fleet.total")}</th>
                <th scope="col" className="num">{t("fleet.free")}</th>
                <th scope="col" className="num">{t("fleet.busy")}</th>
              </tr>
            </thead>
            <tbody>
              {gpus.map((g) => (
                <tr key={`${g.name}-${g.memory_total_mb}`}>
                  <th scope="row">{g.name}</th>
                  <td className="num">{gib(g.memory_total_mb)}</td>
                  <td className="num">{g.total}</td>
                  <td className="num">{g.free}</td>
                  <td className="num">{g.busy}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </section>
  );
}

export function gib(mb: number | null | undefined): string {
  if (mb === null || mb === undefined || !Number.isFinite(mb)) return "—";
  return `${(mb / 1024).toFixed(mb >= 10 * 1024 ? 0 : 1)} GiB`;
}

interface AgentListProps {
  agents: Agent[];
  onChanged: () => void;
  /** Agents that joined with a token: their own NATS user can be revoked. */
  joined: Set<string>;
  onRevokeAccess: (agentId: string) => Promise<void>;
}

function AgentList({ agents, onChanged, joined, onRevokeAccess }: AgentListProps) {
  const { t, formatDateTime } = useI18n();
  const { filters, setFilter } = useUrlFilters(["state", "q"] as const);
  const { state, q: search } = filters;
  const now = useNow();
  const shown = filterAgents(agents, state, search);
  const offline = offlineAgents(agents);

  return (
    <section className="card" aria-labelledby="fleet-agents">
      <h2 id="fleet-agents">{t("fleet.agents", { count: agents.length })}</h2>
      {offline.length > 0 && (
        <Alert tone="warning">
          <strong>{t("fleet.offlineAlert", { count: offline.length })}</strong>{" "}
          {offline.map((a, i) => (
            <span key={a.id}>
              {i > 0 && ", "}
              <span className="mono">{a.id}</span>
              {a.offline_since ? ` (${t("fleet.since", { time: formatDateTime(a.offline_since) })})` : ""}
            </span>
          ))}{" "}
          {state !== "offline" && (
            <button type="button" className="link-button" onClick={() => setFilter("state", "offline")}>
              {t("fleet.showOffline")}
            </button>
          )}
        </Alert>
      )}
      <div className="filters" role="search" aria-label={t("fleet.filters")}>
        <SelectField
          label={t("fleet.state")}
          value={state}
          onChange={(e) => setFilter("state", e.target.value)}
          options={[{ value: "", label: t("fleet.anyState") }, ...AGENT_STATES.map((s) => ({ value: s, label: t(`agentState.${s}` as MessageKey) }))]}
        />
        <Field label={t("fleet.search")} type="search" value={search} placeholder={t("fleet.searchPlaceholder")} onChange={(e) => setFilter("q", e.target.value)} />
      </div>
      {agents.length === 0 ? (
        <p className="empty">{t("fleet.none")}</p>
      ) : shown.length === 0 ? (
        <p className="empty">{t("fleet.noneMatch")}</p>
      ) : (
        <ul className="agent-list">
          {shown.map((a) => (
            <li key={a.id}>
              <AgentCard agent={a} now={now} onChanged={onChanged} onRevokeAccess={joined.has(a.id) ? () => onRevokeAccess(a.id) : undefined} />
            </li>
          ))}
        </ul>
      )}
    </section>
  );
}

const STATE_PILL: Record<string, string> = { online: "succeeded", draining: "pending", offline: "failed" };

export function AgentStateBadge({ state }: { state: string }) {
  const { t } = useI18n();
  const known = state in STATE_PILL;
  return <span className={`pill pill--state pill--${STATE_PILL[state] ?? "unknown"}`}>{known ? t(`agentState.${state}` as MessageKey) : state}</span>;
}

interface AgentCardProps {
  agent: Agent;
  now: number;
  onChanged: (a?: Agent) => void;
  detailLink?: boolean;
  /** Given for an agent that joined with a token: revoke its NATS user (it is shut out at once). */
  onRevokeAccess?: () => Promise<void>;
}

export function AgentCard({ agent, now, onChanged, detailLink = true, onRevokeAccess }: AgentCardProps) {
  const { t } = useI18n();
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const state = agentState(agent);
  const age = heartbeatAge(agent, now);
  const draining = agent.draining ?? state === "draining";
  const toggle = async () => {
    setBusy(true);
    setError(null);
    try {
      onChanged(await (draining ? fleetApi.undrain(agent.id) : fleetApi.drain(agent.id)));
    } catch (cause) {
      setError(cause instanceof Error ? cause.message : String(cause));
    } finally {
      setBusy(false);
    }
  };
  const jobs = agent.jobs ?? agent.running_jobs ?? [];
  return (
    <article className={`agent agent--${state}`} aria-labelledby={`agent-${agent.id}`}>
      <header className="agent__head">
        <h3 id={`agent-${agent.id}`} className="mono">
          {detailLink ? <Link href={`/agents/${encodeURIComponent(agent.id)}`}>{agent.id}</Link> : agent.id}
        </h3>
        <AgentStateBadge state={state} />
        {agent.hostname && <span className="muted">{agent.hostname}</span>}
        <span className={age !== null && age > 30 ? "inline-error" : "muted"}>
          {age === null ? t("fleet.neverBeat") : t("fleet.beatAgo", { age: formatDuration(age) ?? "0:00" })}
        </span>
        <div className="agent__actions">
          <Button onClick={toggle} busy={busy} aria-label={t(draining ? "fleet.undrainNamed" : "fleet.drainNamed", { id: agent.id })}>
            {draining ? t("fleet.undrain") : t("fleet.drain")}
          </Button>
          {onRevokeAccess && (
            <ConfirmButton
              label={t("join.revokeAccess")}
              accessibleLabel={t("join.revokeAccessNamed", { id: agent.id })}
              question={t("join.confirmRevokeAccess")}
              confirmLabel={t("keys.confirmYes")}
              onConfirm={async () => {
                setError(null);
                try {
                  await onRevokeAccess();
                } catch (cause) {
                  setError(cause instanceof Error ? cause.message : String(cause));
                }
              }}
            />
          )}
        </div>
      </header>
      {error && <Alert tone="error">{error}</Alert>}
      <p className="muted agent__meta">
        {[
          agent.version && t("fleet.version", { version: agent.version }),
          agent.runtime && t("fleet.runtime", { runtime: agent.runtime }),
          agent.engines?.length ? t("fleet.engines", { engines: agent.engines.join(", ") }) : null,
        ]
          .filter(Boolean)
          .join(" · ")}
      </p>
      <dl className="details details--compact">
        <div>
          <dt>{t("fleet.cpu")}</dt>
          <dd>{agent.cpu_pct === null || agent.cpu_pct === undefined ? "—" : `${Math.round(agent.cpu_pct)}%`}</dd>
        </div>
        <div>
          <dt>{t("fleet.hostMemory")}</dt>
          <dd>
            {gib(agent.memory_used_mb)} / {gib(agent.memory_total_mb)}
          </dd>
        </div>
        <div>
          <dt>{t("fleet.cpuSlots")}</dt>
          <dd>{t("fleet.busyOf", { busy: agent.cpu_slots_busy ?? 0, total: agent.cpu_slots ?? 0 })}</dd>
        </div>
        <div>
          <dt>{t("fleet.work")}</dt>
          <dd>
            {jobs.length === 0
              ? t("fleet.idle")
              : jobs.map((id, i) => (
                  <span key={id}>
                    {i > 0 && ", "}
                    <Link href={`/jobs/${id}`} className="mono">
                      {id}
                    </Link>
                  </span>
                ))}
          </dd>
        </div>
      </dl>
      <GpuTable gpus={agent.gpus ?? []} />
    </article>
  );
}

function GpuTable({ gpus }: { gpus: Gpu[] }) {
  const { t } = useI18n();
  if (gpus.length === 0) return <p className="muted">{t("fleet.cpuOnlyAgent")}</p>;
  return (
    <div className="table-scroll">
      <table>
        <caption className="visually-hidden">{t("fleet.gpus")}</caption>
        <thead>
          <tr>
            <th scope="col">{t("fleet.gpu")}</th>
            <th scope="col">{t("fleet.memory")}</th>
            <th scope="col" className="num">{t("fleet.utilisation")}</th>
            <th scope="col" className="num">{t("fleet.temperature")}</th>
            <th scope="col" className="num">{t("fleet.power")}</th>
            <th scope="col">{t("fleet.heldBy")}</th>
          </tr>
        </thead>
        <tbody>
          {gpus.map((g) => {
            const used = g.memory_used_mb ?? 0;
            const total = g.memory_total_mb ?? 0;
            const share = total > 0 ? Math.min(100, (used / total) * 100) : 0;
            return (
              <tr key={g.index}>
                <th scope="row">
                  #{g.index} {g.name ?? ""}
                </th>
                <td>
                  <div className="meter" role="meter" aria-valuemin={0} aria-valuemax={total} aria-valuenow={used} aria-label={t("fleet.memoryOf", { index: g.index })}>
                    <div className="meter__bar" style={{ width: `${share}%` }} />
                  </div>
                  <span className="muted">
                    {gib(used)} / {gib(total)}
                  </span>
                </td>
                <td className="num">{g.utilization_pct === null || g.utilization_pct === undefined ? "—" : `${Math.round(g.utilization_pct)}%`}</td>
                <td className="num">{g.temperature_c === null || g.temperature_c === undefined ? "—" : `${Math.round(g.temperature_c)} °C`}</td>
                <td className="num">{g.power_w === null || g.power_w === undefined ? "—" : `${Math.round(g.power_w)} W`}</td>
                <td>{g.job_id ? <Link href={`/jobs/${g.job_id}`} className="mono">{g.job_id}</Link> : "—"}</td>
              </tr>
            );
          })}
        </tbody>
      </table>
    </div>
  );
}
