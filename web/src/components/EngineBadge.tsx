import { useI18n } from "../i18n";
import type { MessageKey } from "../i18n/en";

const NAMES: Record<string, MessageKey> = { vllm: "deploy.engineVllm", llamafactory: "deploy.engineLlamafactory" };

/** The engine that serves a deployment, as a pill ("vLLM", "LLaMA-Factory's server"); nothing before one is chosen. */
export function EngineBadge({ engine }: { engine: string | null | undefined }) {
  const { t } = useI18n();
  if (!engine) return null;
  const name = NAMES[engine];
  return (
    // Not a `.pill`: those are states (the browser tests read a deployment's state as its one `.pill`).
    <span className="badge badge--engine" title={t("deploy.engineLabel")}>
      {name ? t(name) : engine}
    </span>
  );
}
