import { useI18n } from "../i18n";
import type { InputsFetch, Progress } from "../api/jobs";
import { formatDuration, formatMegabytes } from "../lib/format";

/** Steps done of all, as a bar with its numbers and the time left the trainer estimates. */
export function ProgressBar({ progress, compact = false }: { progress: Progress | null; compact?: boolean }) {
  const { t } = useI18n();
  if (!progress || !progress.total_steps) return null;
  const percent = Math.min(100, Math.max(0, (progress.step / progress.total_steps) * 100));
  const eta = formatDuration(progress.remaining_s);
  const elapsed = formatDuration(progress.elapsed_s);
  const label = t("progress.steps", { step: progress.step, total: progress.total_steps });
  return (
    <div className={compact ? "progress progress--compact" : "progress"}>
      <div
        className="progress__track"
        role="progressbar"
        aria-label={t("progress.label")}
        aria-valuemin={0}
        aria-valuemax={progress.total_steps}
        aria-valuenow={progress.step}
        aria-valuetext={`${label}${eta ? `, ${t("progress.eta", { eta })}` : ""}`}
      >
        <div className="progress__bar" style={{ width: `${percent}%` }} />
      </div>
      <span className="progress__text">
        {label} · {Math.floor(percent)}%
        {!compact && elapsed && <> · {t("progress.elapsed", { elapsed })}</>}
        {eta && progress.step < progress.total_steps && <> · {t("progress.eta", { eta })}</>}
      </span>
    </div>
  );
}

/** A job's inputs coming from the store before its engine starts: bytes of all of them, and the one on its way. */
export function FetchBar({ fetch }: { fetch: InputsFetch }) {
  const { t } = useI18n();
  const total = Math.max(0, fetch.total_bytes);
  const done = Math.min(total, Math.max(0, fetch.done_bytes));
  const percent = total ? (done / total) * 100 : 100;
  const [doneMb, totalMb] = formatMegabytes(done, total);
  const label = t("progress.fetching", { done: doneMb, total: totalMb });
  return (
    <div className="progress">
      <div
        className="progress__track"
        role="progressbar"
        aria-label={t("progress.fetchLabel")}
        aria-valuemin={0}
        aria-valuemax={total}
        aria-valuenow={done}
        aria-valuetext={label}
      >
        <div className="progress__bar" style={{ width: `${percent}%` }} />
      </div>
      <span className="progress__text">
        {label} · {t("progress.fetchingInput", { input: fetch.input })}
      </span>
    </div>
  );
}
