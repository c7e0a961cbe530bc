import type { Deployment, LoadedAdapter, UsageRow } from "../../api/deployments";
import { DataTable, type Column } from "../../components/DataTable";
import { Timestamp } from "../../components/Timestamp";
import { useI18n, type Translate } from "../../i18n";
import { formatExact } from "../../lib/format";

/** Whether the engine pools adapters (loads any adapter of its base at run time): vLLM's does, LLaMA-Factory's does not. */
export function poolsAdapters(deployment: Pick<Deployment, "engine">): boolean {
  return deployment.engine === "vllm";
}

/** KV-cache use as a whole percent in 0–100; null when the engine does not report it. */
export function kvPercent(pct: number | null | undefined): number | null {
  if (pct === null || pct === undefined || !Number.isFinite(pct)) return null;
  return Math.round(Math.min(100, Math.max(0, pct)));
}

/**
 * The serving facts of a deployment for its status box (`<dl>` entries): engine, limits, and while it runs the
 * engine's load (requests running and waiting, KV-cache use as a bar).
 */
export function ServingFacts({ deployment: d }: { deployment: Deployment }) {
  const { t } = useI18n();
  const load = d.load ?? null;
  const kv = kvPercent(load?.kv_cache_pct);
  const running = d.state === "ready" || d.state === "stopping";
  return (
    <>
      {/* Once known, the engine is a badge beside the state (DeploymentStatus). */}
      {!d.engine && (d.state === "queued" || d.state === "starting") && (
        <div>
          <dt>{t("deploy.engineLabel")}</dt>
          <dd className="muted">{t("deploy.enginePending")}</dd>
        </div>
      )}
      {d.max_in_flight != null && d.max_queue != null && (
        <div>
          <dt>{t("deploy.limits")}</dt>
          <dd>{t("deploy.limitsValue", { inFlight: d.max_in_flight, queue: d.max_queue })}</dd>
        </div>
      )}
      {poolsAdapters(d) && d.adapter_slots != null && (
        <div>
          <dt>{t("deploy.slots")}</dt>
          <dd>{d.adapter_slots}</dd>
        </div>
      )}
      {running && (
        <div>
          <dt>{t("deploy.load")}</dt>
          <dd data-testid="engine-load">{load ? t("deploy.loadValue", { running: load.running, waiting: load.waiting }) : t("deploy.loadNone")}</dd>
        </div>
      )}
      {running && load && (
        <div>
          <dt>{t("deploy.kvCache")}</dt>
          <dd>
            {kv === null ? (
              <span className="muted">{t("deploy.kvCacheUnknown")}</span>
            ) : (
              <>
                <div className="meter" role="meter" aria-valuemin={0} aria-valuemax={100} aria-valuenow={kv} aria-label={t("deploy.kvCache")}>
                  <div className="meter__bar" style={{ width: `${kv}%` }} />
                </div>
                <span className="muted">{t("deploy.kvCacheValue", { pct: kv })}</span>
              </>
            )}
          </dd>
        </div>
      )}
    </>
  );
}

/**
 * Adapters the engine holds now (while it runs), and requests and tokens by user and model (owner and admins: the
 * API leaves `usage` out for anyone else): shown under the playground.
 */
export function ServingPanel({ deployment: d }: { deployment: Deployment }) {
  const { t } = useI18n();
  const usage = d.usage ? [...d.usage].sort((a, b) => b.requests - a.requests) : null;
  const loaded = [...(d.load?.adapters ?? [])].sort((a, b) => b.last_used_at.localeCompare(a.last_used_at));
  const running = Boolean(d.engine) && (d.state === "ready" || d.state === "stopping");
  if (!running && !usage?.length) return null; // not started, or ended with nothing served: nothing to show
  return (
    <section className="card serving" aria-labelledby="serving-title">
      <h2 id="serving-title">{t("serving.title")}</h2>
      {running && <LoadedAdapters deployment={d} loaded={loaded} />}
      {usage && (
        <>
          <h3 id="serving-usage">{t("serving.usage")}</h3>
          {usage.length === 0 ? (
            <p className="muted">{t("serving.usageNone")}</p>
          ) : (
            <DataTable labelledBy="serving-usage" columns={usageColumns(t, d.model)} items={usage} rowKey={(u) => `${u.user ?? ""}\u0000${u.adapter ?? ""}`} />
          )}
        </>
      )}
    </section>
  );
}

function LoadedAdapters({ deployment: d, loaded }: { deployment: Deployment; loaded: LoadedAdapter[] }) {
  const { t } = useI18n();
  return (
    <>
      <h3 id="serving-adapters">{t("serving.adapters")}</h3>
      {!poolsAdapters(d) ? (
        <p className="muted">{t("serving.adaptersNotPooled")}</p>
      ) : loaded.length === 0 ? (
        <p className="muted">{t("serving.adaptersNone")}</p>
      ) : (
        <>
          {d.adapter_slots != null && <p className="muted">{t("serving.adaptersOf", { count: loaded.length, slots: d.adapter_slots })}</p>}
          <DataTable labelledBy="serving-adapters" columns={adapterColumns(t)} items={loaded} rowKey={(a) => a.name} />
        </>
      )}
    </>
  );
}

function adapterColumns(t: Translate): Column<LoadedAdapter>[] {
  return [
    { key: "name", header: t("serving.colAdapter"), rowHeader: true, cell: (a) => a.name },
    { key: "requests", header: t("serving.colRequests"), numeric: true, cell: (a) => formatExact(a.requests) },
    { key: "lastUsed", header: t("serving.colLastUsed"), cell: (a) => <Timestamp iso={a.last_used_at} /> },
    { key: "loadedAt", header: t("serving.colLoadedAt"), cell: (a) => <Timestamp iso={a.loaded_at} /> },
  ];
}

function usageColumns(t: Translate, base: string): Column<UsageRow>[] {
  return [
    { key: "user", header: t("serving.colUser"), cell: (u) => u.user ?? "—" },
    // The base model is stored as no adapter ('' or null).
    { key: "model", header: t("serving.colModel"), rowHeader: true, cell: (u) => u.adapter || t("serving.base", { model: base }) },
    { key: "requests", header: t("serving.colRequests"), numeric: true, cell: (u) => formatExact(u.requests) },
    { key: "prompt", header: t("serving.colPrompt"), numeric: true, cell: (u) => formatExact(u.prompt_tokens) },
    { key: "completion", header: t("serving.colCompletion"), numeric: true, cell: (u) => formatExact(u.completion_tokens) },
    { key: "last", header: t("serving.colLastRequest"), cell: (u) => <Timestamp iso={u.last_request_at} /> },
  ];
}
