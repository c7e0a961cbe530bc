import type { Deployment, DeploymentAdapter } from "../../api/deployments";
import { useUser } from "../../auth/session";
import { SelectField } from "../../components/Fields";
import { useI18n } from "../../i18n";

interface Props {
  deployment: Deployment;
  /** The adapters the caller may chat with on it (undefined while they load). */
  adapters: DeploymentAdapter[] | undefined;
  failed: boolean;
  /** The adapter chosen; null: the deployment's own model. */
  value: string | null;
  onChange: (adapter: string | null) => void;
  /** The list is about to be looked at: ask for it again (an adapter trained meanwhile is callable at once). */
  onOpen: () => void;
  disabled?: boolean;
}

/** Which model answers the next turn: the deployment's own model, or an adapter of its base that the deployment pools. */
export function ChatTarget({ deployment, adapters, failed, value, onChange, onOpen, disabled }: Props) {
  const { t } = useI18n();
  const user = useUser();
  const held = new Set((deployment.load?.adapters ?? []).map((a) => a.name));
  const label = (a: DeploymentAdapter) =>
    [
      a.name,
      a.owner && a.owner !== user.username ? t("chat.tagBy", { owner: a.owner }) : null,
      a.loaded || held.has(a.name) ? t("chat.tagLoaded") : null,
    ]
      .filter(Boolean)
      .join(" · ");
  const options = [
    { value: "", label: t("chat.targetBase", { model: deployment.model }) },
    ...(adapters ?? []).map((a) => ({ value: a.name, label: label(a) })),
  ];
  // Chosen before (a link, an earlier visit) but not offered now: kept visible rather than silently dropped.
  if (value && adapters && !adapters.some((a) => a.name === value)) options.push({ value, label: t("chat.targetGone", { name: value }) });
  return (
    <SelectField
      label={t("chat.target")}
      name="adapter"
      className="chat-target"
      value={value ?? ""}
      options={options}
      onChange={(event) => onChange(event.target.value || null)}
      onFocus={onOpen}
      disabled={disabled}
      hint={t("chat.targetHint")}
      error={failed ? t("chat.adaptersFailed") : undefined}
    />
  );
}
