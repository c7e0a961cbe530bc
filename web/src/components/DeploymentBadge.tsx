import { DEPLOYMENT_STATES } from "../api/deployments";
import { useI18n } from "../i18n";
import type { MessageKey } from "../i18n/en";

const KNOWN = new Set<string>(DEPLOYMENT_STATES);

/** A deployment's state as a coloured pill; the word is always there (colour is never the only cue). */
export function DeploymentBadge({ state }: { state: string }) {
  const { t } = useI18n();
  const known = KNOWN.has(state);
  return (
    <span className={`pill pill--state pill--dep-${known ? state : "unknown"}`}>
      {known ? t(`deployState.${state}` as MessageKey) : state}
    </span>
  );
}
