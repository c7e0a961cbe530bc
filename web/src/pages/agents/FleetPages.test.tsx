import { screen, waitFor, within } from "@testing-library/react";
import { describe, expect, it, vi } from "vitest";

import { mockFetch } from "../../test/fetchMock";
import { ADMIN, renderApp, signIn, USER } from "../../test/render";

vi.mock("../../components/LineChart", () => ({
  default: ({ title, x, series }: { title: string; x: number[]; series: { label: string }[] }) => (
    <figure aria-label={title} data-points={x.length} data-series={series.map((s) => s.label).join(",")} />
  ),
}));

const SUMMARY = { agents_online: 1, gpus: [{ name: "NVIDIA H100", memory_total_mb: 81_559, total: 8, free: 6, busy: 2 }], cpu_slots_total: 2, cpu_slots_free: 1 };
const AGENT = {
  id: "gpu-1", hostname: "rack1.lan", state: "online", draining: false, version: "0.1.0", runtime: "docker", engines: ["vllm", "llamafactory"],
  first_seen: "2026-01-01T00:00:00Z", last_seen: new Date().toISOString(), last_beat_at: new Date().toISOString(), offline_since: null,
  gpus: [{ index: 0, name: "NVIDIA H100", memory_total_mb: 81_559, memory_used_mb: 40_960, utilization_pct: 87, temperature_c: 61, power_w: 412.5, job_id: "job_abc" }],
  cpu_slots: 2, cpu_slots_busy: 1, cpu_pct: 12.3, memory_total_mb: 256_000, memory_used_mb: 64_000, jobs: ["job_abc"], running_jobs: ["job_abc"], running_deployments: [],
};
const OFFLINE = { ...AGENT, id: "cpu-9", hostname: "old.lan", state: "offline", gpus: [], jobs: [], offline_since: "2026-01-02T03:00:00Z", last_beat_at: "2026-01-02T02:59:00Z" };

describe("AgentsPage", () => {
  it("shows admins every agent with its GPUs, alerts on offline ones, filters, and drains", async () => {
    signIn();
    const { calls } = mockFetch({
      "GET /api/auth/me": { status: 200, body: ADMIN },
      "GET /api/agents": { status: 200, body: { summary: SUMMARY, agents: [AGENT, OFFLINE] } },
      "POST /api/agents/gpu-1/drain": { status: 200, body: { ...AGENT, state: "draining", draining: true } },
    });
    const { user, current } = renderApp("/agents");

    const card = await screen.findByRole("article", { name: "gpu-1" });
    expect(within(card).getByText("Online")).toBeInTheDocument();
    expect(within(card).getByText(/serves with vllm, llamafactory/)).toBeInTheDocument();
    const gpu = within(card).getByRole("row", { name: /NVIDIA H100/ });
    expect(gpu).toHaveTextContent("87%");
    expect(gpu).toHaveTextContent("61 °C");
    expect(gpu).toHaveTextContent("413 W");
    expect(gpu).toHaveTextContent("40 GiB / 80 GiB");
    expect(within(gpu).getByRole("link", { name: "job_abc" })).toHaveAttribute("href", "/jobs/job_abc");
    expect(within(card).getByText(/heartbeat 0:0\d ago/)).toBeInTheDocument();

    const alert = screen.getByText("1 agent(s) offline:").closest(".alert") as HTMLElement;
    expect(alert).toHaveTextContent("cpu-9");
    await user.click(within(alert).getByRole("button", { name: "Show only these" }));
    expect(current()).toContain("state=offline");
    expect(screen.queryByRole("article", { name: "gpu-1" })).not.toBeInTheDocument();
    expect(screen.getByRole("article", { name: "cpu-9" })).toBeInTheDocument();

    await user.selectOptions(screen.getByLabelText("State"), "");
    await user.click(within(await screen.findByRole("article", { name: "gpu-1" })).getByRole("button", { name: /Drain gpu-1/ }));
    await waitFor(() => expect(calls.some((c) => c.method === "POST" && c.path === "/api/agents/gpu-1/drain")).toBe(true));
  });

  it("lets admins make a join token, shows its command once, lists and revokes tokens, and shuts a joined agent out", async () => {
    signIn();
    const listed = { id: "jtk_1", prefix: "llmct_join_abcdef", note: "rack 2", max_uses: 2, uses: 1, expires_at: "2026-01-03T00:00:00Z", revoked_at: null, created_at: "2026-01-02T00:00:00Z", state: "active", joined: [{ agent_id: "gpu-1", hostname: "rack1.lan", address: "10.0.0.5", at: "2026-01-02T01:00:00Z" }] };
    const created = { ...listed, id: "jtk_2", prefix: "llmct_join_zzzzzz", note: "", uses: 0, max_uses: 3, joined: [], token: "llmct_join_zzzzzzSECRET" };
    const { calls } = mockFetch({
      "GET /api/auth/me": { status: 200, body: ADMIN },
      "GET /api/agents": { status: 200, body: { summary: SUMMARY, agents: [AGENT] } },
      "GET /api/agents/credentials": { status: 200, body: [{ agent_id: "gpu-1", nats_user: "agent-gpu-1", hostname: "rack1.lan", token_id: "jtk_1", created_at: "2026-01-02T01:00:00Z" }] },
      "GET /api/agents/join-tokens": { status: 200, body: [listed] },
      "POST /api/agents/join-tokens": { status: 201, body: created },
      "DELETE /api/agents/join-tokens/jtk_1": { status: 200, body: { ...listed, state: "revoked", revoked_at: "2026-01-02T02:00:00Z" } },
      "DELETE /api/agents/gpu-1/credentials": { status: 204 },
    });
    const { user } = renderApp("/agents");

    const row = await screen.findByRole("row", { name: /llmct_join_abcdef/ });
    expect(row).toHaveTextContent("1 / 2");
    expect(row).toHaveTextContent("gpu-1");
    await user.clear(screen.getByLabelText("Uses"));
    await user.type(screen.getByLabelText("Uses"), "3");
    await user.click(screen.getByRole("button", { name: "Create join token" }));
    const command = await screen.findByLabelText("Join command");
    expect(command).toHaveValue(`llmct agent join ${window.location.origin} llmct_join_zzzzzzSECRET`);
    expect(calls.find((c) => c.method === "POST" && c.path === "/api/agents/join-tokens")?.body).toEqual({ max_uses: 3, expires_in_hours: 24, note: "" });
    expect(screen.getByRole("row", { name: /llmct_join_zzzzzz/ })).not.toHaveTextContent("SECRET");

    await user.click(within(row).getByRole("button", { name: "Revoke join token llmct_join_abcdef" }));
    await user.click(within(row).getByRole("button", { name: "Yes, revoke" }));
    await waitFor(() => expect(row).toHaveTextContent("Revoked"));

    const card = screen.getByRole("article", { name: "gpu-1" });
    await user.click(within(card).getByRole("button", { name: "Revoke the NATS access of gpu-1" }));
    await user.click(within(card).getByRole("button", { name: "Yes, revoke" }));
    await waitFor(() => expect(calls.some((c) => c.method === "DELETE" && c.path === "/api/agents/gpu-1/credentials")).toBe(true));
    await waitFor(() => expect(within(card).queryByRole("button", { name: /Revoke the NATS access/ })).not.toBeInTheDocument());
  });

  it("shows everyone else the capacity summary only", async () => {
    signIn();
    mockFetch({ "GET /api/auth/me": { status: 200, body: USER }, "GET /api/agents": { status: 200, body: { summary: SUMMARY, agents: null } } });
    renderApp("/agents");
    const row = await screen.findByRole("row", { name: /NVIDIA H100/ });
    expect(row).toHaveTextContent("80 GiB");
    expect(row).toHaveTextContent("6");
    expect(screen.queryByRole("article")).not.toBeInTheDocument();
    expect(screen.getByText("1 free of 2")).toBeInTheDocument();
  });

  it("charts an agent's history over the chosen period", async () => {
    signIn();
    const point = { at: "2026-01-02T03:00:00Z", samples: 6, utilization_pct: 50, memory_used_mb: 1024, memory_total_mb: 81_559, temperature_c: 60, power_w: 300 };
    const { calls } = mockFetch({
      "GET /api/auth/me": { status: 200, body: ADMIN },
      "GET /api/agents/gpu-1": { status: 200, body: AGENT },
      "GET /api/agents/gpu-1/metrics": {
        status: 200,
        body: { agent_id: "gpu-1", from: "x", to: "y", step_s: 10, host: [{ at: point.at, samples: 6, cpu_pct: 5, memory_used_mb: 2048, memory_total_mb: 4096, running_jobs: 1 }], gpus: [{ index: 0, points: [point] }] },
      },
    });
    const { user } = renderApp("/agents/gpu-1");
    expect(await screen.findByRole("figure", { name: "GPU utilisation (%)" })).toHaveAttribute("data-series", "GPU 0");
    expect(screen.getByRole("figure", { name: "CPU (%)" })).toHaveAttribute("data-points", "1");
    expect(screen.getByRole("figure", { name: "GPU power (W)" })).toBeInTheDocument();
    await user.selectOptions(screen.getByLabelText("Period"), "24h");
    await waitFor(() => expect(calls.filter((c) => c.path.endsWith("/metrics")).length).toBe(2));
  });
});

describe("ExportsPage", () => {
  it("lists export jobs with their model, a download and a deploy link", async () => {
    signIn();
    const job = { id: "job_exp1", kind: "export", state: "succeeded", priority: 0, gpu_count: 0, base_model: "my-adapter", agent_id: "vm", reason: null, progress: null, created_at: "2026-01-02T03:04:05Z", started_at: null, finished_at: null };
    const { calls } = mockFetch({
      "GET /api/auth/me": { status: 200, body: USER },
      "GET /api/jobs": { status: 200, body: { items: [job, { ...job, id: "job_exp2", state: "failed", reason: "missing_dependency" }], next_cursor: null } },
      "GET /api/models": { status: 200, body: { items: [{ id: "m9", name: "my-adapter-merged", kind: "full", source: "export", job_id: "job_exp1", usable_for: ["eval", "deploy"] }], page: 1, limit: 200, total: 1, next_page: null } },
    });
    renderApp("/exports");
    const row = await screen.findByRole("row", { name: /job_exp1/ });
    await waitFor(() => expect(within(row).getByRole("link", { name: "Deploy my-adapter-merged" })).toHaveAttribute("href", "/playground?model=my-adapter-merged"));
    expect(within(row).getByRole("button", { name: "Download the files of job_exp1" })).toBeInTheDocument();
    expect(screen.getByRole("row", { name: /job_exp2/ })).toHaveTextContent("missing_dependency");
    expect(calls.find((c) => c.path === "/api/jobs")).toBeTruthy();
  });
});
