import { useState } from "react";
import { Link, useLocation } from "wouter";

import { modelsApi, type Lineage, type LineageEntry, type Model } from "../../api/catalog";
import { Alert } from "../../components/Alert";
import { Button } from "../../components/Button";
import { ConfirmButton } from "../../components/ConfirmButton";
import { LoadState } from "../../components/LoadState";
import { PageHeading } from "../../components/PageHeading";
import { useUser } from "../../auth/session";
import { useI18n } from "../../i18n";
import type { MessageKey } from "../../i18n/en";
import { formatBytes, formatCount } from "../../lib/format";
import { useQuery } from "../../lib/useQuery";
import { ModelForm } from "./ModelForm";

export interface TreeNode {
  model: LineageEntry;
  children: TreeNode[];
}

/** Descendants as a tree under the model (each entry names its parent in base_model_id). */
export function descendantTree(rootId: string, descendants: LineageEntry[]): TreeNode[] {
  const byParent = new Map<string, LineageEntry[]>();
  for (const entry of descendants) {
    const parent = entry.base_model_id ?? "";
    byParent.set(parent, [...(byParent.get(parent) ?? []), entry]);
  }
  const build = (id: string, seen: Set<string>): TreeNode[] =>
    (byParent.get(id) ?? [])
      .filter((m) => !seen.has(m.id))
      .map((m) => ({ model: m, children: build(m.id, new Set([...seen, m.id])) }));
  return build(rootId, new Set([rootId]));
}

export function ModelDetailPage({ id }: { id: string }) {
  const { t } = useI18n();
  const lineage = useQuery((signal) => modelsApi.lineage(id, signal), [id]);
  const model = lineage.data?.model;
  return (
    <>
      <p className="breadcrumb">
        <Link href="/models">{t("models.title")}</Link> / {model?.name ?? id}
      </p>
      <PageHeading title={model ? model.name : t("models.title")} />
      <LoadState loading={lineage.loading && !lineage.data} error={lineage.error} reload={lineage.reload} failed={t("model.loadFailed")}>
        {lineage.data && <ModelBody lineage={lineage.data} onChanged={lineage.refresh} />}
      </LoadState>
    </>
  );
}

function ModelBody({ lineage, onChanged }: { lineage: Lineage; onChanged: () => void }) {
  const { t, formatDateTime } = useI18n();
  const user = useUser();
  const [, navigate] = useLocation();
  const [error, setError] = useState<string | null>(null);
  const [editing, setEditing] = useState(false);
  const [saved, setSaved] = useState(false);
  const { model } = lineage;
  const mine = model.owner_id === user.id;
  const admin = user.role === "admin";
  const remove = async () => {
    try {
      await modelsApi.remove(model.id);
      navigate("/models");
    } catch (e) {
      setError(e instanceof Error ? e.message : String(e));
    }
  };
  const start = (kind: "train" | "eval" | "export") => `/jobs/new?kind=${kind}&model=${encodeURIComponent(model.name)}`;

  return (
    <div className="stack">
      <section className="card" aria-labelledby="model-about">
        <div className="card__header">
          <h2 id="model-about">{t("model.about")}</h2>
          <div className="inline-row">
            {model.usable_for.includes("train") && (
              <Link href={start("train")} className="button button--primary">
                {t("model.train")}
              </Link>
            )}
            {model.usable_for.includes("eval") && (
              <Link href={start("eval")} className="button">
                {t("model.evaluate")}
              </Link>
            )}
            {model.usable_for.includes("export") && (
              <Link href={start("export")} className="button">
                {t("model.export")}
              </Link>
            )}
            {model.usable_for.includes("deploy") && (
              <Link href={`/playground?model=${encodeURIComponent(model.name)}`} className="button">
                {t("model.deploy")}
              </Link>
            )}
            {(mine || admin) && !editing && (
              <Button onClick={() => { setEditing(true); setSaved(false); }}>{t("model.editButton")}</Button>
            )}
            {mine && <ConfirmButton label={t("model.delete")} question={t("model.confirmDelete", { name: model.name })} confirmLabel={t("model.confirmDeleteYes")} onConfirm={remove} />}
          </div>
        </div>
        {error && <Alert tone="error">{error}</Alert>}
        {saved && <p role="status" className="muted">{t("modelForm.saved")}</p>}
        {editing ? (
          <ModelForm
            model={model}
            admin={admin}
            onCancel={() => setEditing(false)}
            onDone={() => {
              setEditing(false);
              setSaved(true);
              onChanged();
            }}
          />
        ) : (
          <ModelFacts model={model} formatDateTime={formatDateTime} />
        )}
      </section>
      <section className="card" aria-labelledby="model-lineage">
        <h2 id="model-lineage">{t("model.lineage")}</h2>
        <ol className="lineage" aria-label={t("model.ancestors")}>
          {[...lineage.ancestors].reverse().map((a) => (
            <li key={a.id}>
              <Link href={`/models/${a.id}`}>{a.name}</Link> <span className="muted">{t(`modelKind.${a.kind}` as MessageKey)}</span>
            </li>
          ))}
          <li aria-current="true">
            <strong>{model.name}</strong> <span className="muted">{t(`modelKind.${model.kind}` as MessageKey)}</span>
            {model.job_id && (
              <>
                {" "}
                · <Link href={`/jobs/${model.job_id}`}>{t("model.madeBy")}</Link>
              </>
            )}
          </li>
        </ol>
        <h3>{t("model.descendants")}</h3>
        {lineage.descendants.length === 0 ? <p className="muted">{t("model.noDescendants")}</p> : <Tree nodes={descendantTree(model.id, lineage.descendants)} />}
        {lineage.descendants_truncated && <p className="muted">{t("model.truncated")}</p>}
      </section>
    </div>
  );
}

function Tree({ nodes }: { nodes: TreeNode[] }) {
  const { t } = useI18n();
  return (
    <ul className="tree">
      {nodes.map((node) => (
        <li key={node.model.id}>
          <Link href={`/models/${node.model.id}`}>{node.model.name}</Link> <span className="muted">{t(`modelKind.${node.model.kind}` as MessageKey)}</span>
          {node.children.length > 0 && <Tree nodes={node.children} />}
        </li>
      ))}
    </ul>
  );
}

function ModelFacts({ model, formatDateTime }: { model: Model; formatDateTime: (iso: string) => string }) {
  const { t } = useI18n();
  const facts: [string, string][] = [
    [t("models.kind"), t(`modelKind.${model.kind}` as MessageKey)],
    [t("models.source"), t(`source.${model.source}` as MessageKey)],
    [t("models.parent"), model.base_model ?? "—"],
    [t("models.params"), formatCount(model.parameter_count)],
    [t("models.size"), formatBytes(model.size_bytes)],
    [t("model.template"), model.template],
    [t("model.datasets"), model.datasets.join(", ") || "—"],
    [t("model.where"), model.path ?? model.hf_path ?? model.ms_path ?? "—"],
    [t("model.usableFor"), model.usable_for.map((u) => t(`kind.${u}` as MessageKey)).join(", ") || "—"],
    [t("jobs.colCreated"), formatDateTime(model.created_at)],
  ];
  if (model.retired_at) facts.push([t("models.retired"), formatDateTime(model.retired_at)]);
  if (model.remark) facts.push([t("modelForm.remark"), model.remark]);
  return (
    <dl className="details">
      {facts.map(([label, value]) => (
        <div key={label}>
          <dt>{label}</dt>
          <dd>{value}</dd>
        </div>
      ))}
    </dl>
  );
}
