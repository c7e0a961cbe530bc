import { Link } from "wouter";

import type { JobSummary } from "../api/jobs";
import { useI18n } from "../i18n";
import { StateBadge } from "./StateBadge";

/** A job's id, linking to its page. */
export function JobLink({ id }: { id: string }) {
  return (
    <Link href={`/jobs/${id}`} className="mono">
      {id}
    </Link>
  );
}

/** A job's state in a list: why it failed, or where it waits in the queue and why (the scheduler's words). */
export function JobStateCell({ job }: { job: Pick<JobSummary, "state" | "reason" | "queue_position" | "wait_reason"> }) {
  return (
    <>
      <StateBadge state={job.state} />
      {job.reason && job.state === "failed" && <span className="muted cell-note">{job.reason}</span>}
      {job.state === "pending" && <QueueNote position={job.queue_position} reason={job.wait_reason} />}
    </>
  );
}

function QueueNote({ position, reason }: { position: number | null; reason: string | null }) {
  const { t } = useI18n();
  return (
    <>
      {position ? <span className="muted cell-note">{t("jobs.queuePosition", { position })}</span> : null}
      {reason && <span className="muted cell-note">{reason}</span>}
    </>
  );
}
