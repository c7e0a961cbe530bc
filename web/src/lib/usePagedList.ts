/** The state every list page shares: filters kept in the URL, one page of results, and the way back and on. */

import { useState } from "react";
import { useSearchParams } from "wouter";

import { useQuery, type Query } from "./useQuery";

export const PAGE_SIZE = 25;

/** Where the list stands and which ways it may go (null: not from here). */
export interface Pages {
  /** 1 on the first page. */
  number: number;
  back: (() => void) | null;
  forward: (() => void) | null;
}

export interface PagedList<T extends { items: unknown[] }, Name extends string> {
  query: Query<T>;
  items: T["items"];
  /** Each filter's value from the URL query ("" when not set). */
  filters: Record<Name, string>;
  /** Set one filter in the URL (an empty value removes it) and go back to the first page. */
  setFilter: (name: Name, value: string) => void;
  pages: Pages;
}

interface Options<T, Name extends string, Page> {
  /** The URL query parameters that filter the list. */
  filters: readonly Name[];
  /** Load one page: `page` is where it starts (a cursor, a page number), null for the first. */
  load: (filters: Record<Name, string>, page: Page | null, signal: AbortSignal) => Promise<T>;
  /** Where the page after this answer starts, or null after the last one. */
  next: (answer: T) => Page | null | undefined;
}

/**
 * One page of a server-paged list. The pages already seen are kept as a stack of where they start, so "back"
 * works with APIs that only page forwards (a `next_cursor`); a page-numbered API (`next_page`) fits the same way.
 */
export function usePagedList<T extends { items: unknown[] }, Name extends string, Page>({
  filters: names,
  load,
  next,
}: Options<T, Name, Page>): PagedList<T, Name> {
  const { filters, setFilter } = useUrlFilters(names);
  const [starts, setStarts] = useState<(Page | null)[]>([null]);
  const start = starts[starts.length - 1] ?? null;
  const query = useQuery((signal) => load(filters, start, signal), [filters, start]);

  const following = query.data ? next(query.data) : null;
  const pages: Pages = {
    number: starts.length,
    back: starts.length > 1 ? () => setStarts((s) => s.slice(0, -1)) : null,
    forward: following ? () => setStarts((s) => [...s, following]) : null,
  };
  const refilter = (name: Name, value: string) => {
    setStarts([null]);
    setFilter(name, value);
  };
  return { query, items: query.data?.items ?? [], filters, setFilter: refilter, pages };
}

/** Filters kept in the URL query, so a reload or a shared link shows the same list; "" when not set. */
export function useUrlFilters<Name extends string>(names: readonly Name[]) {
  const [params, setParams] = useSearchParams();
  const filters = Object.fromEntries(names.map((name) => [name, params.get(name) ?? ""])) as Record<Name, string>;
  const setFilter = (name: Name, value: string) =>
    setParams(
      (current) => {
        const changed = new URLSearchParams(current);
        if (value) changed.set(name, value);
        else changed.delete(name);
        return changed;
      },
      { replace: true },
    );
  return { filters, setFilter };
}
