import { useEffect, useState } from "react";

import { useI18n } from "../i18n";
import { Button } from "./Button";

async function copyText(text: string): Promise<void> {
  if (navigator.clipboard?.writeText) {
    await navigator.clipboard.writeText(text);
    return;
  }
  // Plain-HTTP origins have no Clipboard API: fall back to a hidden textarea.
  const area = document.createElement("textarea");
  area.value = text;
  area.setAttribute("readonly", "");
  area.style.position = "fixed";
  area.style.opacity = "0";
  document.body.append(area);
  area.select();
  const ok = document.execCommand("copy");
  area.remove();
  if (!ok) throw new Error("copy refused");
}

/** Copies `text`; its label turns to "Copied" for a moment and the outcome is announced. */
export function CopyButton({ text, label }: { text: string; label?: string }) {
  const { t } = useI18n();
  const [outcome, setOutcome] = useState<"idle" | "copied" | "failed">("idle");

  useEffect(() => {
    if (outcome !== "copied") return;
    const timer = window.setTimeout(() => setOutcome("idle"), 2000);
    return () => window.clearTimeout(timer);
  }, [outcome]);

  const copy = () =>
    copyText(text).then(
      () => setOutcome("copied"),
      () => setOutcome("failed"),
    );

  return (
    <>
      <Button onClick={copy}>{outcome === "copied" ? t("common.copied") : (label ?? t("common.copy"))}</Button>
      <span className="visually-hidden" aria-live="polite">
        {outcome === "copied" ? t("common.copied") : ""}
      </span>
      {outcome === "failed" && <span className="inline-error">{t("common.copyFailed")}</span>}
    </>
  );
}
