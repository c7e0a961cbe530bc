import type { Key, ReactNode } from "react";

export interface Column<T> {
  /** Stable React key of the column. */
  key: string;
  header: ReactNode;
  cell: (item: T) => ReactNode;
  /** The cell that names its row (a `<th scope="row">`, read out with every other cell): one per table. */
  rowHeader?: boolean;
  /** Right-aligned, tabular numbers, in the header and the cells. */
  numeric?: boolean;
  /** More classes for the cells, e.g. "cell--wrap". */
  className?: string;
}

export interface DataTableProps<T> {
  columns: Column<T>[];
  items: T[];
  rowKey: (item: T) => Key;
  /** The id of the heading that names the table; the scrolling region is named by it too. */
  labelledBy: string;
  className?: string;
}

/** A table of items, one column per `Column`, in a region that scrolls sideways and takes keyboard focus to do so. */
export function DataTable<T>({ columns, items, rowKey, labelledBy, className }: DataTableProps<T>) {
  return (
    <div className="table-scroll" role="region" aria-labelledby={labelledBy} tabIndex={0}>
      <table className={className}>
        <thead>
          <tr>
            {columns.map((column) => (
              <th key={column.key} scope="col" className={column.numeric ? "num" : undefined}>
                {column.header}
              </th>
            ))}
          </tr>
        </thead>
        <tbody>
          {items.map((item) => (
            <tr key={rowKey(item)}>{columns.map((column) => cellOf(column, item))}</tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

function cellOf<T>(column: Column<T>, item: T) {
  if (column.rowHeader) {
    return (
      <th key={column.key} scope="row">
        {column.cell(item)}
      </th>
    );
  }
  const className = [column.numeric ? "num" : "", column.className ?? ""].join(" ").trim() || undefined;
  return (
    <td key={column.key} className={className}>
      {column.cell(item)}
    </td>
  );
}
