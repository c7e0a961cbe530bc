/** The parts every list page is made of: its top, its card, the filters, the table with its pager, the empty state. */

import type { ReactNode } from "react";
import { Link } from "wouter";

import { useI18n } from "../i18n";
import type { Pages } from "../lib/usePagedList";
import type { Query } from "../lib/useQuery";
import { Button } from "./Button";
import { DataTable, type DataTableProps } from "./DataTable";
import { Field } from "./Field";
import { SelectField } from "./Fields";
import { LoadState } from "./LoadState";
import { PageHeading } from "./PageHeading";

/** The page's h1 with its actions (links and buttons) beside it. */
export function PageTop({ title, children }: { title: string; children: ReactNode }) {
  return (
    <div className="page-top">
      <PageHeading title={title} />
      <div className="page-top__actions">{children}</div>
    </div>
  );
}

/** The card that holds the list, named by a heading only screen readers see (the h1 already says it). */
export function ListSection({ titleId, title, intro, children }: { titleId: string; title: string; intro?: ReactNode; children: ReactNode }) {
  return (
    <section className="card" aria-labelledby={titleId}>
      <h2 id={titleId} className="visually-hidden">
        {title}
      </h2>
      {intro && <p className="muted">{intro}</p>}
      {children}
    </section>
  );
}

/** A filter of the list: a choice among options, or a search box (`search: true`). */
export type Filter<Name extends string> = { name: Name; label: string } & (
  | { options: { value: string; label: string }[] }
  | { search: true; placeholder?: string; maxLength?: number }
);

interface FilterBarProps<Name extends string> {
  fields: Filter<Name>[];
  list: { filters: Record<Name, string>; setFilter: (name: Name, value: string) => void };
  /** Names the bar as a search landmark. */
  label?: string;
}

/** A filter's options: "any" (no filter) first, then each value with its label. */
export function choices(any: string, values: readonly string[], label: (value: string) => string = (value) => value) {
  return [{ value: "", label: any }, ...values.map((value) => ({ value, label: label(value) }))];
}

/** The filters of a list, each showing and setting its value in the list's URL. */
export function FilterBar<Name extends string>({ fields, list, label }: FilterBarProps<Name>) {
  return (
    <div className="filters" role={label ? "search" : undefined} aria-label={label}>
      {fields.map((field) =>
        "options" in field ? (
          <SelectField
            key={field.name}
            label={field.label}
            value={list.filters[field.name]}
            options={field.options}
            onChange={(e) => list.setFilter(field.name, e.target.value)}
          />
        ) : (
          <Field
            key={field.name}
            label={field.label}
            type="search"
            value={list.filters[field.name]}
            placeholder={field.placeholder}
            maxLength={field.maxLength}
            onChange={(e) => list.setFilter(field.name, e.target.value)}
          />
        ),
      )}
    </div>
  );
}

/** What an empty list says, with the link that starts filling it. */
export function Empty({ text, link }: { text: string; link?: { href: string; label: string } | null }) {
  return (
    <div className="empty">
      <p>{text}</p>
      {link && (
        <Link href={link.href} className="button button--primary">
          {link.label}
        </Link>
      )}
    </div>
  );
}

interface PagedTableProps<T> extends DataTableProps<T> {
  list: { query: Pick<Query<unknown>, "data" | "error" | "loading" | "reload">; pages: Pages };
  /** What could not be loaded, e.g. "Could not load your jobs." */
  failed: string;
  /** Shown instead of the table when there are no items. */
  empty: ReactNode;
  /** How many items all pages hold, for catalogues counted by the server (their pager says Previous/Next). */
  total?: number;
  /** The list is not newest first (say, by name): its pager says Previous/Next even without a total. */
  unordered?: boolean;
}

/** One page of a list as a table, with its loading, error and empty states and the pager under it. */
export function PagedTable<T>({ list, failed, empty, total, unordered, ...table }: PagedTableProps<T>) {
  const { query } = list;
  return (
    <LoadState loading={query.loading && !query.data} error={query.error} reload={query.reload} failed={failed}>
      {table.items.length === 0 ? empty : <DataTable {...table} />}
      <Pager pages={list.pages} total={total} unordered={unordered} />
    </LoadState>
  );
}

/** Back and on through a list's pages: "Newer"/"Older" for a feed (newest first), "Previous"/"Next" with a total. */
export function Pager({ pages, total, unordered = false }: { pages: Pages; total?: number; unordered?: boolean }) {
  const { t } = useI18n();
  const counted = total !== undefined;
  const plain = counted || unordered;
  return (
    <div className="pager">
      <Button disabled={!pages.back} onClick={() => pages.back?.()}>
        {plain ? t("pager.previous") : t("pager.newer")}
      </Button>
      <span className="muted">{counted ? t("pager.total", { page: pages.number, total }) : t("pager.page", { page: pages.number })}</span>
      <Button disabled={!pages.forward} onClick={() => pages.forward?.()}>
        {plain ? t("pager.next") : t("pager.older")}
      </Button>
    </div>
  );
}
