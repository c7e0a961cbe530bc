"""Settings of the scheduler, declared once and read once at start (services.common.settings)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from services.common.settings import Settings, env

DAY = 86_400.0


@dataclass(frozen=True, kw_only=True)
class FleetSettings:
    """How the scheduler treats agents and their history (docs/fleet.md)."""

    offline_after_s: float = env(
        "LLMCT_AGENT_OFFLINE_S",
        60.0,
        doc="silence after which an agent is offline: no new work goes to it, its "
        "dispatched jobs go back to the queue (the one liveness threshold)",
    )
    remove_after_s: float = env(
        "LLMCT_AGENT_REMOVE_S", DAY, doc="time offline after which an agent's registration is removed"
    )
    flush_s: float = env(
        "LLMCT_HEARTBEAT_FLUSH_S", 1.0, doc="how often buffered heartbeats are written (one batch for all agents)"
    )
    sweep_s: float = env("LLMCT_FLEET_SWEEP_S", 5.0, doc="how often silent agents are looked for")
    sample_s: float = env(
        "LLMCT_METRICS_SAMPLE_S",
        10.0,
        doc="one raw history row per agent (and GPU) per this period, the mean of its beats",
    )
    raw_keep_s: float = env(
        "LLMCT_METRICS_RAW_S", DAY, doc="raw samples are kept this long, then averaged into 1-minute rows"
    )
    minute_keep_s: float = env(
        "LLMCT_METRICS_MINUTE_S", 7 * DAY, doc="1-minute averages are kept this long, then averaged into 1-hour rows"
    )
    max_age_s: float = env("LLMCT_METRICS_MAX_AGE_S", 90 * DAY, doc="history older than this is deleted")
    retention_every_s: float = env("LLMCT_METRICS_RETENTION_EVERY_S", 300.0, doc="how often the retention pass runs")
    lost_grace_s: float = env(
        "LLMCT_LOST_GRACE_S",
        60.0,
        doc="a job its online agent's heartbeats stop listing as running is re-queued (or failed, `lost_on_agent`) "
        "after this long",
    )
    cancel_grace_s: float = env(
        "LLMCT_CANCEL_GRACE_S",
        120.0,
        doc="a cancel the job's agent has not confirmed in this long ends the job anyway (cancelled, its GPUs freed)",
    )
    heartbeat_s: float = env("LLMCT_HEARTBEAT_S", 5.0, doc="seconds between two heartbeats (given to joining agents)")
    public_nats_url: str | None = env(
        "LLMCT_PUBLIC_NATS_URL",
        None,
        doc="the NATS URL(s), comma-separated, an agent joining from another host dials (default: NATS_URL without "
        "its credentials)",
    )
    # storage_mode (LLMCT_STORAGE_MODE) is every service's: services/common/settings.py
    join_max_failures: int = env(
        "LLMCT_JOIN_MAX_FAILURES", 10, doc="failed joins (bad token) per client within the window before 429"
    )
    join_window_s: float = env("LLMCT_JOIN_WINDOW_S", 3600.0, doc="how long a failed join counts")
    trusted_proxies: str = env(
        "LLMCT_TRUSTED_PROXIES",
        "127.0.0.0/8,::1/128",
        doc="CIDRs of proxies (the gateway, a TLS proxy) whose X-Forwarded-For names the client",
    )


@dataclass(frozen=True, kw_only=True)
class WebhookSettings:
    """Where and how webhook deliveries go (docs/webhooks.md)."""

    webhook_allow: str = env(
        "LLMCT_WEBHOOK_ALLOW",
        "",
        doc="CIDRs and host names, comma-separated, webhooks may also be sent to besides public addresses (default "
        "none: loopback, private, link-local incl. 169.254.169.254, multicast and unique-local addresses are refused)",
    )
    webhook_timeout_s: float = env(
        "LLMCT_WEBHOOK_TIMEOUT_S", 10.0, doc="how long one webhook delivery may take (connect, send, answer)"
    )
    webhook_retry_s: str = env(
        "LLMCT_WEBHOOK_RETRY_S",
        "5,30,120,600,3600,10800,21600",
        doc="seconds before each retry of a webhook delivery that failed, comma-separated; after the last it is "
        "`failed` (one attempt more than there are delays)",
    )
    webhook_concurrency: int = env(
        "LLMCT_WEBHOOK_CONCURRENCY", 16, doc="webhook deliveries one scheduler sends at once"
    )
    webhook_poll_s: float = env("LLMCT_WEBHOOK_POLL_S", 1.0, doc="how often due webhook deliveries are looked for")


@dataclass(frozen=True, kw_only=True)
class TrackingSettings:
    """Where jobs may report their experiments (docs/tracking.md)."""

    tracking_allow: str = env(
        "LLMCT_TRACKING_ALLOW",
        "",
        doc="CIDRs and host names, comma-separated, a job's MLflow or W&B server may also be at besides public "
        "addresses (default none: loopback, private, link-local incl. 169.254.169.254 are refused)",
    )
    wandb_mode: Literal["", "offline"] = env(
        "LLMCT_WANDB_MODE",
        "",
        doc="`offline`: every W&B run is written to the job's outputs only, whatever the job asks (air-gapped "
        "sites, tests); empty: as the job asks",
    )


@dataclass(frozen=True, kw_only=True)
class SchedulerSettings(Settings, FleetSettings, WebhookSettings, TrackingSettings):
    """The platform's shared settings, the fleet's, and the scheduler's own: queue, quotas, deployments."""

    deploy_idle_s: int = env(
        "LLMCT_DEPLOY_IDLE_S", 300, doc="a deployment with no request for this long stops itself (the seed: 5 minutes)"
    )
    deploy_startup_s: int = env(
        "LLMCT_DEPLOY_STARTUP_S", 180, doc="how long an agent waits for a model server to answer before failing it"
    )
    max_deployments: int = env(
        "LLMCT_MAX_DEPLOYMENTS", 1, doc="active deployments per user unless an admin set the user's own limit"
    )
    max_gpus_per_user: int = env(
        "LLMCT_MAX_GPUS_PER_USER",
        8,
        doc="GPUs one user's running jobs may hold at once unless an admin set the user's own",
    )
    max_priority: int = env(
        "LLMCT_MAX_PRIORITY",
        0,
        doc="the highest queue priority a user may give a job unless an admin granted more (admins: any)",
    )
    max_run_h: float = env(
        "LLMCT_MAX_RUN_H",
        24.0,
        doc="hours a job (not a deployment) may run before it is stopped with reason `time_limit`, unless an admin "
        "set the user's own",
    )
    max_queued_per_user: int = env(
        "LLMCT_MAX_QUEUED_PER_USER", 100, doc="pending jobs one user may have; more are refused at submit"
    )
    fair_share_window_h: float = env(
        "LLMCT_FAIR_SHARE_WINDOW_H", 24.0, doc="the window of GPU-hours fair sharing counts (fewest goes first)"
    )
    secrets_key: str = env(
        "LLMCT_SECRETS_KEY",
        "",
        doc="keys (32+ characters each, comma-separated) that encrypt users' secrets (/api/secrets): the first "
        "encrypts, every one decrypts (rotation); without one the secrets API answers 503",
    )
    model_hub: Literal["huggingface", "modelscope"] = env(
        "LLMCT_MODEL_HUB",
        "huggingface",
        doc="where a model registered on both hubs is downloaded from (huggingface | modelscope)",
    )
