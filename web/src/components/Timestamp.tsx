import { useI18n } from "../i18n";

/** A moment in the reader's language, machine-readable too; "—" when there is none. */
export function Timestamp({ iso }: { iso: string | null | undefined }) {
  const { formatDateTime } = useI18n();
  if (!iso) return <>—</>;
  return <time dateTime={iso}>{formatDateTime(iso)}</time>;
}
