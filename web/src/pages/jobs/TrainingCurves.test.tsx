import { render, screen, within } from "@testing-library/react";
import { describe, expect, it, vi } from "vitest";

import { I18nProvider } from "../../i18n";
import { curves, TrainingCurves } from "./TrainingCurves";

vi.mock("../../components/LineChart", () => ({
  default: ({ title, series }: { title: string; series: { label: string }[] }) => (
    <figure aria-label={title} data-series={series.map((s) => s.label).join("|")} />
  ),
}));

const at = "2026-01-02T03:04:06Z";
const point = (step: number, loss: number | null, eval_loss: number | null = null) => ({
  step, total_steps: 8, loss, eval_loss, learning_rate: 1e-4, epoch: step / 8, elapsed_s: step, remaining_s: 8 - step, at,
});

describe("training curves", () => {
  it("puts the validation loss beside the training loss when the job evaluates", async () => {
    // A validation pass after the last logged step comes as a point without a training loss.
    const series = [point(2, 3.1), point(1, 3.3), point(4, 2.9, 3.0), point(3, 3.0), point(5, null, 2.95)];
    const data = curves(series);
    expect(data.steps).toEqual([1, 2, 3, 4, 5]);
    expect(data.evalLoss).toEqual([null, null, null, 3.0, 2.95]);
    expect(data.latest?.step).toBe(4);

    render(
      <I18nProvider lang="en">
        <TrainingCurves series={series} />
      </I18nProvider>,
    );
    expect(await screen.findByRole("figure", { name: "Loss" })).toHaveAttribute("data-series", "Loss|Validation loss");
    expect(screen.getByRole("status")).toHaveTextContent("Step 4: loss 2.9");
    const table = screen.getByRole("table");
    expect(within(table).getByRole("columnheader", { name: "Validation loss" })).toBeInTheDocument();
  });

  it("draws the training loss alone when there is no validation pass", async () => {
    render(
      <I18nProvider lang="en">
        <TrainingCurves series={[point(1, 3.3), point(2, 3.1)]} />
      </I18nProvider>,
    );
    expect(await screen.findByRole("figure", { name: "Loss" })).toHaveAttribute("data-series", "Loss");
    expect(screen.queryByRole("columnheader", { name: "Validation loss" })).not.toBeInTheDocument();
  });
});
