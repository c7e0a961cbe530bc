import type { ReactNode } from "react";

interface AlertProps {
  tone: "error" | "info" | "success" | "warning";
  children: ReactNode;
  className?: string;
}

/** A message in the flow of the page; errors interrupt screen readers, the rest wait politely. */
export function Alert({ tone, children, className }: AlertProps) {
  return (
    <div role={tone === "error" ? "alert" : "status"} className={["alert", `alert--${tone}`, className ?? ""].join(" ").trim()}>
      {children}
    </div>
  );
}
