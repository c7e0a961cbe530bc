import { useState } from "react";

import { useI18n } from "../i18n";
import { Button } from "./Button";

interface ConfirmButtonProps {
  /** Visible text of the first button. */
  label: string;
  /** Its accessible name, when the text alone is ambiguous in a list ("Revoke key ci"). */
  accessibleLabel?: string;
  question: string;
  confirmLabel: string;
  onConfirm: () => Promise<unknown>;
}

/** A destructive action asked twice, in place (no modal dialog to trap or lose focus). */
export function ConfirmButton({ label, accessibleLabel, question, confirmLabel, onConfirm }: ConfirmButtonProps) {
  const { t } = useI18n();
  const [asking, setAsking] = useState(false);
  const [busy, setBusy] = useState(false);

  if (!asking) {
    return (
      <Button variant="danger" aria-label={accessibleLabel} onClick={() => setAsking(true)}>
        {label}
      </Button>
    );
  }
  const confirm = async () => {
    setBusy(true);
    try {
      await onConfirm();
    } finally {
      setBusy(false);
      setAsking(false);
    }
  };
  return (
    <span className="confirm" role="group" aria-label={question}>
      <span className="confirm__question">{question}</span>
      <Button variant="danger" busy={busy} onClick={confirm} autoFocus>
        {confirmLabel}
      </Button>
      <Button onClick={() => setAsking(false)} disabled={busy}>
        {t("common.cancel")}
      </Button>
    </span>
  );
}
