import { useI18n } from "../i18n";
import type { MessageKey } from "../i18n/en";

const KNOWN = new Set(["pending", "dispatched", "running", "succeeded", "failed", "cancelled"]);

/** A job's state as a coloured pill; the colour is never the only cue (the word is there). */
export function StateBadge({ state }: { state: string }) {
  const { t } = useI18n();
  const label = KNOWN.has(state) ? t(`state.${state}` as MessageKey) : state;
  return <span className={`pill pill--state pill--${KNOWN.has(state) ? state : "unknown"}`}>{label}</span>;
}
