/** The models and datasets a job may be made from, loaded once per form. */

import { datasetsApi, modelsApi, type Dataset, type Model } from "../api/catalog";
import { fleetApi } from "../api/fleet";
import type { JobKind } from "../api/jobs";
import { useQuery } from "./useQuery";

export function useCatalog() {
  const models = useQuery((signal) => modelsApi.list({ sort: "name", order: "asc", limit: 200 }, signal), []);
  const datasets = useQuery((signal) => datasetsApi.list({ limit: 200 }, signal), []);
  return { models, datasets };
}

/** Models the caller may start a job of this kind from: their own first, then the presets. */
export function modelsFor(models: Model[] | undefined, use: JobKind | "deploy"): { own: Model[]; presets: Model[] } {
  const usable = (models ?? []).filter((m) => m.usable_for.includes(use) && !m.retired_at);
  return { own: usable.filter((m) => m.source !== "preset"), presets: usable.filter((m) => m.source === "preset") };
}

export function datasetLabel(dataset: Dataset): string {
  return dataset.visibility === "public" ? dataset.name : `${dataset.name} (${dataset.owner ?? "mine"})`;
}

/** Where an API error's field belongs on a form: `datasets[1]` → datasets, `quantization.bits` → bits. */
export function formFieldOf(field: string | null): string | null {
  if (!field) return null;
  const path = field.startsWith("quantization.") ? field.slice("quantization.".length) : field;
  return path.split(/[.[]/)[0] ?? null;
}

/** GPUs in the fleet, or null while unknown (older gateways have no /api/agents). */
export function useFleetGpus(): number | null {
  const fleet = useQuery((signal) => fleetApi.list(signal), []);
  if (!fleet.data?.summary) return null;
  const { summary } = fleet.data;
  return (summary.agents_online ?? 0) > 0 ? (summary.gpus ?? []).reduce((sum, g) => sum + (g.total ?? 0), 0) : null;
}
