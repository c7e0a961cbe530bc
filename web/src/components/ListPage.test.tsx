import { render, screen, waitFor, within } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { describe, expect, it, vi } from "vitest";
import { Router } from "wouter";
import { memoryLocation } from "wouter/memory-location";

import { I18nProvider } from "../i18n";
import { usePagedList } from "../lib/usePagedList";
import type { Column } from "./DataTable";
import { Empty, FilterBar, ListSection, PagedTable } from "./ListPage";

interface Fruit {
  id: string;
  name: string;
  weight: number;
}
interface FruitPage {
  items: Fruit[];
  next_cursor: string | null;
  total: number;
}

const COLUMNS: Column<Fruit>[] = [
  { key: "name", header: "Name", rowHeader: true, cell: (f) => f.name },
  { key: "weight", header: "Weight", numeric: true, cell: (f) => `${f.weight} g` },
];
const PAGES: Record<string, FruitPage> = {
  first: { items: [{ id: "a", name: "apple", weight: 150 }], next_cursor: "c2", total: 2 },
  c2: { items: [{ id: "b", name: "banana", weight: 120 }], next_cursor: null, total: 2 },
};

type Load = (filters: { kind: string; q: string }, cursor: string | null) => Promise<FruitPage>;

function Fruits({ load, counted = false }: { load: Load; counted?: boolean }) {
  const list = usePagedList({
    filters: ["kind", "q"],
    load: (filters, cursor, _signal) => load(filters, cursor),
    next: (page: FruitPage) => page.next_cursor,
  });
  return (
    <ListSection titleId="fruits" title="Fruits" intro="Everything in the bowl.">
      <FilterBar
        label="Filter fruits"
        list={list}
        fields={[
          { name: "kind", label: "Kind", options: [{ value: "", label: "Any" }, { value: "berry", label: "Berries" }] },
          { name: "q", label: "Search", search: true, placeholder: "Name" },
        ]}
      />
      <PagedTable
        list={list}
        failed="Could not load the fruits."
        empty={<Empty text="No fruit." link={{ href: "/fruits/new", label: "Add one" }} />}
        total={counted ? list.query.data?.total ?? 0 : undefined}
        labelledBy="fruits"
        columns={COLUMNS}
        items={list.items}
        rowKey={(f) => f.id}
      />
    </ListSection>
  );
}

function renderList(load: Load, { path = "/fruits", counted = false } = {}) {
  const location = memoryLocation({ path, record: true });
  render(
    <I18nProvider lang="en">
      <Router hook={location.hook} searchHook={location.searchHook}>
        <Fruits load={load} counted={counted} />
      </Router>
    </I18nProvider>,
  );
  return { user: userEvent.setup(), current: () => location.history.at(-1) ?? path };
}

const serve: Load = async (_filters, cursor) => PAGES[cursor ?? "first"]!;

describe("a paged list", () => {
  it("shows a table named by the section, with row headers and numeric columns", async () => {
    renderList(serve);
    expect(screen.getByRole("status")).toHaveTextContent("Loading…");
    const row = await screen.findByRole("row", { name: /apple/ });
    expect(within(row).getByRole("rowheader")).toHaveTextContent("apple");
    expect(within(row).getByRole("cell")).toHaveClass("num");
    expect(screen.getByRole("columnheader", { name: "Weight" })).toHaveClass("num");
    const scroller = screen.getByRole("table").parentElement;
    expect(scroller).toHaveAttribute("role", "region");
    expect(scroller).toHaveAccessibleName("Fruits");
    expect(scroller).toHaveAttribute("tabindex", "0"); // scrollable sideways from the keyboard
    expect(screen.getByText("Everything in the bowl.")).toBeInTheDocument();
  });

  it("goes to older pages by cursor and back", async () => {
    const load = vi.fn(serve);
    const { user } = renderList(load);
    await screen.findByRole("row", { name: /apple/ });
    expect(screen.getByRole("button", { name: "Newer" })).toBeDisabled();
    expect(screen.getByText("Page 1")).toBeInTheDocument();

    await user.click(screen.getByRole("button", { name: "Older" }));
    expect(await screen.findByRole("row", { name: /banana/ })).toBeInTheDocument();
    expect(load).toHaveBeenLastCalledWith({ kind: "", q: "" }, "c2");
    expect(screen.getByText("Page 2")).toBeInTheDocument();
    expect(screen.getByRole("button", { name: "Older" })).toBeDisabled(); // no next_cursor

    await user.click(screen.getByRole("button", { name: "Newer" }));
    expect(await screen.findByRole("row", { name: /apple/ })).toBeInTheDocument();
    expect(load).toHaveBeenLastCalledWith({ kind: "", q: "" }, null);
  });

  it("keeps its filters in the URL, reads them from it, and starts again from the first page", async () => {
    const load = vi.fn(serve);
    const { user, current } = renderList(load, { path: "/fruits?q=ap" });
    expect(await screen.findByRole("searchbox", { name: "Search" })).toHaveValue("ap");
    expect(load).toHaveBeenCalledWith({ kind: "", q: "ap" }, null);
    await user.click(await screen.findByRole("button", { name: "Older" }));
    await screen.findByText("Page 2");

    const filters = screen.getByRole("search", { name: "Filter fruits" });
    await user.selectOptions(within(filters).getByLabelText("Kind"), "berry");
    expect(current()).toBe("/fruits?q=ap&kind=berry");
    await waitFor(() => expect(load).toHaveBeenLastCalledWith({ kind: "berry", q: "ap" }, null));
    expect(await screen.findByText("Page 1")).toBeInTheDocument();

    await user.clear(within(filters).getByLabelText("Search"));
    expect(current()).toBe("/fruits?kind=berry");
  });

  it("says when there is nothing, and links to making the first", async () => {
    renderList(async () => ({ items: [], next_cursor: null, total: 0 }));
    expect(await screen.findByText("No fruit.")).toBeInTheDocument();
    expect(screen.getByRole("link", { name: "Add one" })).toHaveAttribute("href", "/fruits/new");
    expect(screen.queryByRole("table")).not.toBeInTheDocument();
    expect(screen.getByRole("button", { name: "Older" })).toBeDisabled();
  });

  it("says what failed and tries again", async () => {
    let attempts = 0;
    const { user } = renderList(async (filters, cursor) => {
      attempts += 1;
      if (attempts === 1) throw new Error("the bowl is empty");
      return serve(filters, cursor);
    });
    expect(await screen.findByRole("alert")).toHaveTextContent("Could not load the fruits. Error: the bowl is empty");
    await user.click(screen.getByRole("button", { name: "Try again" }));
    expect(await screen.findByRole("row", { name: /apple/ })).toBeInTheDocument();
  });

  it("counts the pages of a catalogue with its total", async () => {
    const { user } = renderList(serve, { counted: true });
    expect(await screen.findByText("Page 1 · 2 in all")).toBeInTheDocument();
    expect(screen.getByRole("button", { name: "Previous" })).toBeDisabled();
    await user.click(screen.getByRole("button", { name: "Next" }));
    expect(await screen.findByText("Page 2 · 2 in all")).toBeInTheDocument();
  });
});
