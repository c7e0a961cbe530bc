"""Every NATS subject, stream and message type of the platform, in one place.

Subjects are lowercase, dot-separated, general to specific, ids last. Streams are UPPERCASE,
one purpose each. Messages are msgspec Structs (frozen, keyword-only); a family is a tagged
union decoded by one decoder built once. New fields always get defaults; old fields never
change type.

The vocabulary of jobs is typed here, once (`JobState`, `JobKind`, `FinishReason`, `DeploymentState`, at the
end of this module): a message that carries one of them names it as its field's type, so msgspec refuses a
value outside the set on decode rather than letting it through as a string. Upgrade order: a new value (a new
`FinishReason` an agent reports, say) must reach the scheduler (and the registry, which reads JOB_EVENTS too)
before any agent sends it; an older scheduler would refuse the event. Never rename or remove a value: the
database and the web client keep the old ones.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal, get_args

import msgspec
from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig


class Subjects:
    """Subject names and builders. Never write a subject string anywhere else."""

    JOB_SUBMITTED = "job.submitted"
    JOB_DISPATCH_ALL = "job.dispatch.>"
    JOB_STATUS_ALL = "job.status.>"
    JOB_CANCEL_ALL = "job.cancel.>"
    AGENT_HEARTBEAT_ALL = "agent.heartbeat.>"
    LOGS_ALL = "logs.>"
    DEAD_LETTERS_ALL = "deadletter.>"
    JOB_LOGS_ALL = "job.logs.>"
    JOB_CHANGED_ALL = "job.changed.>"
    SESSION_REVOKED = "auth.session.revoked"
    USER_REVOKED = "auth.user.revoked"
    # The scheduler changed a joined agent's NATS user (joined, revoked): whoever writes the nats-server config
    # (the launcher, `llmct nats sync-users`) renders it again from the table and reloads. Services' user only.
    AGENT_USERS_CHANGED = "llmct.fleet.agent_users_changed"
    # Requests to the service that owns the answer (NATS request/reply, served as `micro` endpoints).
    MODEL_FOR_USE = "llmct.registry.model_for_use"
    DATASETS_FOR_JOB = "llmct.datasets.datasets_for_job"
    RESULT_FILE = "llmct.datasets.result_file"
    # An agent asks the scheduler for a job's user secrets (JobSecretsAsked → JobSecrets or Refused) on a subject
    # naming itself, the only one of these its NATS user may publish; the answer comes to its own inbox.
    JOB_SECRETS_ALL = "llmct.scheduler.job_secrets.*"

    @staticmethod
    def job_secrets(agent_id: str) -> str:
        """Where agent `agent_id` asks for the secrets of a job it runs (request/reply, never a stream)."""
        return f"llmct.scheduler.job_secrets.{agent_id}"

    @staticmethod
    def job_secrets_sender(subject: str) -> str | None:
        """The agent a job_secrets subject names; None for any other subject."""
        head = "llmct.scheduler.job_secrets."
        agent_id = subject[len(head) :] if subject.startswith(head) else ""
        return agent_id if agent_id and "." not in agent_id else None

    @staticmethod
    def job_dispatch(agent_id: str) -> str:
        return f"job.dispatch.{agent_id}"

    @staticmethod
    def job_status(agent_id: str, job_id: str) -> str:
        """A job's event, published by the agent it was dispatched to: the subject names the sender, and an
        agent's NATS user may publish only its own (`agent_job_status_all`)."""
        return f"job.status.{agent_id}.{job_id}"

    @staticmethod
    def agent_job_status_all(agent_id: str) -> str:
        """Every job event one agent may publish: job.status.<agent_id>.<job_id>."""
        return f"job.status.{agent_id}.>"

    @staticmethod
    def job_status_of(job_id: str) -> str:
        """One job's events, whichever agent sends them (a watcher's filter)."""
        return f"job.status.*.{job_id}"

    @staticmethod
    def job_status_sender(subject: str, job_id: str) -> str | None:
        """The agent a job event's subject names, when the subject is job.status.<agent_id>.<job_id> for `job_id`;
        else None."""
        head, tail = "job.status.", f".{job_id}"
        if not (subject.startswith(head) and subject.endswith(tail)) or len(subject) <= len(head) + len(tail):
            return None
        agent_id = subject[len(head) : -len(tail)]
        return None if "." in agent_id else agent_id

    @staticmethod
    def job_status_parts(subject: str) -> tuple[str, str] | None:
        """(agent_id, job_id) of a subject job.status.<agent_id>.<job_id>; None for any other subject."""
        parts = subject.split(".")
        if len(parts) != 4 or parts[:2] != ["job", "status"] or not all(parts[2:]):
            return None
        return parts[2], parts[3]

    @staticmethod
    def dead_letter(durable: str) -> str:
        """Where a consumer keeps a message it could not decode or apply (the DEAD_LETTERS stream)."""
        return f"deadletter.{durable}"

    @staticmethod
    def job_changed(owner_id: str, job_id: str) -> str:
        return f"job.changed.{owner_id}.{job_id}"

    @staticmethod
    def job_changes_of(owner_id: str) -> str:
        return f"job.changed.{owner_id}.>"

    @staticmethod
    def job_cancel(job_id: str) -> str:
        return f"job.cancel.{job_id}"

    @staticmethod
    def agent_heartbeat(agent_id: str) -> str:
        return f"agent.heartbeat.{agent_id}"

    @staticmethod
    def deploy_chat(agent_id: str, deployment_id: str) -> str:
        """A chat request for one deployment, addressed to the agent serving it (the only one allowed to read it)."""
        return f"deploy.{agent_id}.{deployment_id}.chat"

    @staticmethod
    def agent_deploy_all(agent_id: str) -> str:
        """Everything addressed to one agent's deployments (chat requests): deploy.<agent_id>.<deployment_id>...."""
        return f"deploy.{agent_id}.>"

    @staticmethod
    def logs(job_id: str) -> str:
        """A job's log, as viewers and the LOGS stream know it; only the scheduler's relay publishes here."""
        return f"logs.{job_id}"

    @staticmethod
    def job_logs(agent_id: str, job_id: str) -> str:
        """A job's log batches as the agent running it ships them, to the scheduler's relay (LOG_INGEST): the
        subject names the sender, and an agent's NATS user may publish only its own (`agent_job_logs_all`)."""
        return f"job.logs.{agent_id}.{job_id}"

    @staticmethod
    def agent_job_logs_all(agent_id: str) -> str:
        """Every log batch one agent may ship: job.logs.<agent_id>.<job_id>."""
        return f"job.logs.{agent_id}.>"

    @staticmethod
    def job_logs_sender(subject: str) -> tuple[str, str] | None:
        """(agent_id, job_id) of a job.logs.<agent_id>.<job_id> subject; None for any other subject."""
        parts = subject.split(".")
        if len(parts) != 4 or parts[:2] != ["job", "logs"] or not parts[2] or not parts[3]:
            return None
        return parts[2], parts[3]


class ChatFrames:
    """Headers of the frames an agent streams back for a chat request (services/agent/serving.py)."""

    STATUS = "Llmct-Status"  # on the first frame: the model server's HTTP status
    END = "Llmct-End"  # on the empty last frame
    RETRY_AFTER = "Llmct-Retry-After"  # on the first frame of a 429 (the deployment's queue is full): seconds
    # On the request (gateway → agent), never from a user: who asks (their user id, for usage) and, when `model`
    # names an adapter of the deployment's base, that adapter (a JSON `AdapterRef`, its rights already checked).
    USER = "Llmct-User"
    ADAPTER = "Llmct-Adapter"


# The job queue lives alone in its own stream: a work-queue stream that also held subjects
# nobody consumes would never free them.
STREAMS: tuple[StreamConfig, ...] = (
    StreamConfig(
        name="JOBS",
        subjects=[Subjects.JOB_SUBMITTED],
        retention=RetentionPolicy.WORK_QUEUE,
        storage=StorageType.FILE,
        duplicate_window=120.0,
        description="accepted jobs waiting for the dispatcher (dedup on job id)",
    ),
    StreamConfig(
        name="DISPATCH",
        subjects=[Subjects.JOB_DISPATCH_ALL],
        retention=RetentionPolicy.WORK_QUEUE,
        storage=StorageType.FILE,
        duplicate_window=120.0,
        description="jobs placed on one agent",
    ),
    StreamConfig(
        name="JOB_EVENTS",
        subjects=[Subjects.JOB_STATUS_ALL],
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        max_age=7 * 24 * 3600.0,
        max_msgs_per_subject=10_000,  # per agent and job
        description="job state changes and progress reported by agents",
    ),
    # What agents ship waits here for the scheduler's relay (services/scheduler/log_relay.py), which copies a batch
    # to LOGS only when its agent runs the job's current attempt, then acks it (a work queue: acked batches go).
    # The caps are per agent and job (discard new): one agent flooding cannot push out another's backlog.
    StreamConfig(
        name="LOG_INGEST",
        subjects=[Subjects.JOB_LOGS_ALL],
        retention=RetentionPolicy.WORK_QUEUE,
        storage=StorageType.FILE,
        max_age=24 * 3600.0,
        max_bytes=1024**3,
        max_msgs_per_subject=20_000,  # batches of one agent and job not relayed yet (each up to 500 lines)
        discard=DiscardPolicy.NEW,
        discard_new_per_subject=True,
        description="log batches shipped by agents, waiting for the scheduler's relay to check and copy them to LOGS",
    ),
    StreamConfig(
        name="LOGS",
        subjects=[Subjects.LOGS_ALL],
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        max_age=3 * 24 * 3600.0,
        max_bytes=2 * 1024**3,
        discard=DiscardPolicy.OLD,
        description="batched job log lines, replayed to viewers",
    ),
    # A message a consumer could not decode or apply, kept as it came (headers: its subject, consumer and why) for
    # people to read: never redelivered, never silently dropped (services/common/consumers.py).
    StreamConfig(
        name="DEAD_LETTERS",
        subjects=[Subjects.DEAD_LETTERS_ALL],
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        max_age=30 * 24 * 3600.0,
        max_bytes=1024**3,
        discard=DiscardPolicy.OLD,
        description="messages a consumer could not decode or apply, with why",
    ),
)

# Durable consumer names, one shared constant per queue.
DISPATCHER_CONSUMER = "dispatcher"
JOB_EVENTS_CONSUMER = "scheduler-job-events"
REGISTRY_JOB_EVENTS_CONSUMER = "registry-job-events"  # JOB_EVENTS, registry: registers job outputs
LOG_RELAY_CONSUMER = "scheduler-log-relay"  # LOG_INGEST, scheduler: checks agents' log batches, copies them to LOGS


# --- object storage (issue 15: `objects` mode) -------------------------------------------------
# JetStream Object Store buckets that hold what jobs read and write when agents share no folder with the services
# (services/common/objects.py). An object's name says what it is; its digest (sha256) is checked on every read.


class Buckets:
    """The buckets and what their objects are named."""

    DATASETS = "llmct-datasets"  # a dataset file, by its content: `sha256/<hex digest>`
    MODELS = "llmct-models"  # a file of a registered local model: `<model id>/<path inside the model folder>`
    OUTPUTS = "llmct-outputs"  # a file a job left: `<job id>/<path inside its output folder>`
    CHECKPOINTS = "llmct-checkpoints"  # a file of a finished checkpoint: `<job id>/checkpoint-<step>/<path>`

    ALL = (DATASETS, MODELS, OUTPUTS, CHECKPOINTS)

    @staticmethod
    def dataset_object(sha256_hex: str) -> str:
        return f"sha256/{sha256_hex}"

    @staticmethod
    def job_object(job_id: str, relative: str) -> str:
        return f"{job_id}/{relative}"

    @staticmethod
    def job_log_object(job_id: str) -> str:
        """The job's log file, in OUTPUTS beside its output folder's files."""
        return f"{job_id}/{JOB_LOG_NAME}"

    @staticmethod
    def checkpoint_object(job_id: str, checkpoint: str, relative: str) -> str:
        """A file of a checkpoint folder (`checkpoint-<step>`), in CHECKPOINTS. Its `trainer_state.json` is put
        last: once it is in the bucket, every other file of that checkpoint is too."""
        return f"{job_id}/{checkpoint}/{relative}"


JOB_LOG_NAME = "job.log"  # the job's log among its outputs (an output folder's own file of that name is not sent)


# --- the vocabulary of jobs ---------------------------------------------------------------------
# Declared first (messages above name them; `from __future__ import annotations` lets msgspec resolve them here).

JobState = Literal["pending", "dispatched", "running", "succeeded", "failed", "cancelled"]
TerminalJobState = Literal["succeeded", "failed", "cancelled"]  # what JobFinished may say; no way out of these
TERMINAL_JOB_STATES: tuple[TerminalJobState, ...] = ("succeeded", "failed", "cancelled")
ACTIVE_JOB_STATES: tuple[JobState, ...] = ("pending", "dispatched", "running")  # not finished: they hold their inputs
JobKind = Literal["train", "eval", "export", "deploy"]

# Why a job ended: `jobs.reason` of a finished job, and `JobFinished.reason`. Never rename one (the database and the
# web client keep them); a new one reaches the scheduler before an agent sends it (the module's docstring).
FinishReason = Literal[
    # the agent's (services/agent/ending.py names them; the runtimes' start errors pass through unchanged)
    "cancelled",  # stopped on request
    "paused",  # stopped on request after saving a checkpoint at the current step (a pause; resumed from it)
    "agent_stopped",  # a deployment ends with its agent
    "agent_restarted",  # a deployment found running by a restarted agent (services/agent/reattach.py)
    "idle_timeout",  # a deployment stopped itself (succeeded)
    "start_timeout",  # a deployment's model server never answered
    "out_of_memory",
    "missing_dependency",
    "bad_config",
    "exit_code",
    "agent_error",
    "engine_missing",
    "image_missing",
    "gpu_unavailable",
    "docker_unavailable",
    "start_failed",
    "name_conflict",
    "already_running",
    "container_lost",
    # the scheduler's
    "agent_lost",  # the job's agent went offline and the job had no retries left (or was a deployment)
    "lost_on_agent",  # its agent, online, stopped listing the job as running (restarted without it), no retries left
    "time_limit",  # ran longer than its owner's maximum run time (LLMCT_MAX_RUN_H, or an admin's per user): stopped
    "bad_event",  # the job's agent sent an event the scheduler could not read or store (kept in DEAD_LETTERS)
    # the agent's, in `objects` storage mode (services/agent/cache.py, uploads.py)
    "input_missing",  # an input object is not in its bucket
    "input_corrupt",  # an input's bytes do not match its sha256, fetched twice
    "upload_failed",  # the job's outputs could not be put in the store
    # the agent's: the scheduler gave no values for the job's secrets (one not set, unreadable, or none answered)
    "secrets_unavailable",
    "tracking_unreachable",  # the job's MLflow server did not answer or refused the run, before the engine started
]
FINISH_REASONS: tuple[FinishReason, ...] = get_args(FinishReason)

# The states people see of a deployment, derived from its job's (services/scheduler/deployments/views.py).
DeploymentState = Literal["queued", "starting", "ready", "stopping", "stopped", "failed"]


class Message(msgspec.Struct, frozen=True, kw_only=True, tag_field="type"):
    """Base of every bus message; `type` names the concrete message."""


# --- jobs --------------------------------------------------------------------------------------


class JobSubmitted(Message, kw_only=True, frozen=True, tag="job_submitted"):
    """A job was accepted and stored; the dispatcher should place it."""

    job_id: str
    kind: JobKind
    owner_id: str
    priority: int = 0
    submitted_at: datetime


ServingEngine = Literal["vllm", "llamafactory"]
SERVING_ENGINES: tuple[ServingEngine, ...] = ("vllm", "llamafactory")
EngineChoice = Literal["auto", "vllm", "llamafactory"]  # "auto": vLLM where the agent has it, else LLaMA-Factory


class ServeOptions(msgspec.Struct, kw_only=True, frozen=True):
    """A stage that serves a model (vLLM's OpenAI server, or `llamafactory-cli api`) rather than running to
    completion. The stage's YAML is LLaMA-Factory's inference arguments either way; the agent turns them into
    vLLM's command line when vLLM serves."""

    startup_timeout_s: float
    idle_timeout_s: float
    engine: EngineChoice = "llamafactory"  # a deployment made before vLLM was: LLaMA-Factory's server
    adapter_slots: int = 4  # vLLM: adapters loaded at once (the least recently used one is unloaded beyond)
    max_lora_rank: int = 64  # vLLM: the largest LoRA rank it can load
    max_in_flight: int = 16  # requests the engine runs at once (continuous batching); LLaMA-Factory's: 1
    max_queue: int = 64  # requests waiting beyond those; more are answered 429 with Retry-After
    max_model_len: int | None = None  # vLLM: the context length (None: the model's own)


class EngineStage(msgspec.Struct, kw_only=True, frozen=True):
    """One engine run of a job: `command` followed by the path of `config_yaml` written to temp/."""

    name: str  # train | loss | generation | benchmark | merge | quantize | serve
    command: tuple[str, ...]
    config_yaml: str
    serve: ServeOptions | None = None
    # Where the stage's model_name_or_path is downloaded from: "modelscope" (the agent runs the engine with
    # USE_MODELSCOPE_HUB=1), "huggingface", or None for a local copy. The scheduler decides; never user input.
    hub: str | None = None
    # Variables for the engine from the job's experiment tracking (scheduler/jobs/tracking.py), names only from
    # TRACKING_ENV: the agent drops any other name again before the engine starts. Never a secret.
    env: dict[str, str] = msgspec.field(default_factory=dict)


# The engine variables a job's tracking settings may set (EngineStage.env). WANDB_DIR and MLFLOW_RUN_ID are not
# among them: the agent sets those itself (the job's output folder; the run it created or the job kept).
TRACKING_ENV = frozenset(
    """MLFLOW_TRACKING_URI MLFLOW_EXPERIMENT_NAME WANDB_PROJECT WANDB_ENTITY WANDB_NAME WANDB_TAGS WANDB_MODE
    WANDB_RUN_ID WANDB_RESUME WANDB_BASE_URL""".split()
)


ModelHub = Literal["huggingface", "modelscope"]
MODEL_HUBS: tuple[ModelHub, ...] = ("huggingface", "modelscope")  # EngineStage.hub's values (a plain str there: see
# agent/hubs.py, which refuses an unknown one with a reason the user can act on)
HUBS: dict[str, ModelHub] = {hub: hub for hub in MODEL_HUBS}  # a stored or sent hub name, typed


class JobInput(msgspec.Struct, kw_only=True, frozen=True):
    """A file a job reads, in `objects` storage mode: an object of a bucket (`Buckets`), which the agent fetches
    into its cache (checked by `sha256`) and places at `path`, relative to the storage base (`data/u_x/a.jsonl`,
    `models/tiny/config.json`). A resumed training job's checkpoint comes the same way: each file of
    `checkpoint-<step>` from CHECKPOINTS, placed at `output/<job id>/checkpoint-<step>/<file>`."""

    bucket: str
    name: str  # the object's name in its bucket
    sha256: str  # hex: what the file must hash to
    size: int
    path: str  # where the job reads it, relative to the storage base: no `..`, never absolute


class AdapterRef(msgspec.Struct, kw_only=True, frozen=True):
    """A LoRA adapter of a deployment's base that a chat request names (`Llmct-Adapter`), its use already allowed:
    the registry's name, its folder as `ModelForUse.adapter_path` gives it, and in `objects` mode its files."""

    name: str
    adapter_path: str
    inputs: list[JobInput] = msgspec.field(default_factory=list)


class JobFile(msgspec.Struct, kw_only=True, frozen=True):
    """A small text file the scheduler renders for one job (its dataset_info.json entries), written by the agent at
    `path` (relative to the storage base, as `JobInput.path`) before the job's first stage: `objects` mode only.
    With `merge`, `text` is a JSON object whose keys are set in the file's own (jobs side by side on one agent share
    `data/dataset_info.json`; its keys are unique across owners, so each finds its own)."""

    path: str
    text: str
    merge: bool = False


class JobDispatched(Message, kw_only=True, frozen=True, tag="job_dispatched"):
    """Run this job on the receiving agent: its stages in order, each only if the one before succeeded.

    In `objects` storage mode the agent first brings `inputs` and `files` into its own storage base, and reads
    every absolute path of the stages' configs and `output_dir` that starts with `storage_base` (the control plane's
    HOST_BASE_PATH, the scheduler rendered them with) as starting with its own base instead. In `shared` mode the
    three are empty and the files are where the paths say."""

    job_id: str
    kind: JobKind
    stages: tuple[EngineStage, ...]
    output_dir: str
    gpu_ids: tuple[int, ...] = ()
    attempt: int = 1
    dispatched_at: datetime
    inputs: tuple[JobInput, ...] = ()
    files: tuple[JobFile, ...] = ()
    storage_base: str = ""
    # The environment variables (services/common/usersecrets.py CATALOGUE) the job's train stages get from its
    # owner's secrets: names only; the agent asks the scheduler for the values just before such a stage starts.
    secrets: tuple[str, ...] = ()
    # The MLflow run the job reports to, kept from an earlier attempt (JobTracked): a resumed or retried job goes on
    # in it. None: the agent creates one when a stage's env names an MLflow server.
    mlflow_run_id: str | None = None


# Every job event carries the attempt of the JobDispatched it answers (jobs.attempt): the scheduler applies it only
# from the job's agent for the job's current attempt (services/scheduler/events.py). 0: not known.


class JobStarted(Message, kw_only=True, frozen=True, tag="job_started"):
    """The agent took the job and its engine is starting (the dispatch acknowledgement)."""

    job_id: str
    agent_id: str
    runtime: str
    at: datetime
    attempt: int = 0


class JobProgressed(Message, kw_only=True, frozen=True, tag="job_progressed"):
    """A training step was logged by the engine (trainer_log.jsonl)."""

    job_id: str
    step: int
    total_steps: int
    loss: float | None = None
    eval_loss: float | None = None  # a validation pass at this step (val_size with eval_steps or epochs)
    learning_rate: float | None = None
    epoch: float | None = None
    elapsed_s: float | None = None
    remaining_s: float | None = None
    at: datetime
    attempt: int = 0
    # The tokens trained on so far, padding not counted (the engine's `total_tokens`); None where it counts none.
    tokens_seen: Annotated[int, msgspec.Meta(ge=0)] | None = None


class JobFetchProgressed(Message, kw_only=True, frozen=True, tag="job_fetch_progressed"):
    """How far the agent is in bringing a job's inputs from the store before its engine starts (`objects` storage
    mode): bytes of all its inputs, and the input it is on. Sent at most a few times a second, always at 0 and at
    the end; the scheduler keeps the newest on the job."""

    job_id: str
    input: Annotated[str, msgspec.Meta(max_length=1024)]  # the file's name (`tiny_sft.jsonl`)
    done_bytes: Annotated[int, msgspec.Meta(ge=0)]
    total_bytes: Annotated[int, msgspec.Meta(ge=0)]
    at: datetime
    attempt: int = 0


class JobTracked(Message, kw_only=True, frozen=True, tag="job_tracked"):
    """The agent created (or found) the job's MLflow run before its engine started: the job keeps the ids, so
    its page links to the run and a resumed job reports into the same one."""

    job_id: str
    mlflow_run_id: Annotated[str, msgspec.Meta(max_length=256)]
    mlflow_experiment_id: Annotated[str, msgspec.Meta(max_length=256)]
    at: datetime
    attempt: int = 0


class JobFinished(Message, kw_only=True, frozen=True, tag="job_finished"):
    """The engine exited: succeeded, failed (with a reason) or cancelled."""

    job_id: str
    agent_id: str
    state: TerminalJobState
    reason: FinishReason | None = None  # None: succeeded with nothing to say
    message: str | None = None
    exit_code: int | None = None
    last_lines: tuple[str, ...] = ()
    metrics: dict[str, float] = msgspec.field(default_factory=dict)
    at: datetime
    attempt: int = 0


class JobCheckpointSaved(Message, kw_only=True, frozen=True, tag="job_checkpoint_saved"):
    """A `checkpoint-<step>` folder of the job is whole (its trainer_state.json reads, nothing changed for a while;
    in `objects` storage mode: and it is in the checkpoints bucket), with the losses its trainer state logged up to
    its step. Sent once per checkpoint and run of the agent (a restarted agent may send it again: the scheduler
    keeps the first)."""

    job_id: str
    agent_id: str
    step: Annotated[int, msgspec.Meta(ge=0)]
    train_loss: float | None = None
    valid_loss: float | None = None
    epoch: float | None = None
    at: datetime
    attempt: int = 0


class JobCheckpointRemoved(Message, kw_only=True, frozen=True, tag="job_checkpoint_removed"):
    """A checkpoint the trainer deleted (`save_total_limit`) is gone from where a resume would look for it."""

    job_id: str
    agent_id: str
    step: Annotated[int, msgspec.Meta(ge=0)]
    at: datetime
    attempt: int = 0


class JobChanged(Message, kw_only=True, frozen=True, tag="job_changed"):
    """A committed state change, or a new progress point, for live feeds (core NATS, per owner)."""

    job_id: str
    state: JobState
    at: datetime
    progress: dict | None = None  # step, total_steps, loss, learning_rate, epoch, elapsed_s, remaining_s
    reason: str | None = None  # why the state changed (the job_events reason: requeued, agent_lost, ...)
    message: str | None = None


class JobCancelRequested(Message, kw_only=True, frozen=True, tag="job_cancel_requested"):
    """Stop this job if you run it. `pause_grace_s` > 0: a pause; a training engine that can (the agent runs it
    through services/agent/engine/pausable_train.py) saves a checkpoint at the next step's end first, waited for
    this long, then the stop goes on as a cancel's."""

    job_id: str
    grace_s: float = 10.0
    pause_grace_s: float = 0.0


class DeploymentReady(Message, kw_only=True, frozen=True, tag="deployment_ready"):
    """A deployment's model server answered a real chat completion: it takes requests now."""

    job_id: str
    agent_id: str
    at: datetime
    attempt: int = 0
    engine: str = "llamafactory"  # a ServingEngine: which one serves it


class UsageRow(msgspec.Struct, kw_only=True, frozen=True, array_like=True):
    """Requests of one user on one model of a deployment since the last report; `adapter` None: the base."""

    user_id: str
    adapter: str | None
    requests: int
    prompt_tokens: int
    completion_tokens: int


class LoadedAdapter(msgspec.Struct, kw_only=True, frozen=True):
    """An adapter the engine holds now."""

    name: str
    loaded_at: datetime
    last_used_at: datetime
    requests: int  # since it was loaded


class EngineLoad(msgspec.Struct, kw_only=True, frozen=True):
    """A deployment's engine as its agent last saw it (vLLM's /metrics; LLaMA-Factory's server: ours only)."""

    running: int  # requests the engine runs now
    waiting: int  # requests queued: in the engine's scheduler and the agent's own queue
    kv_cache_pct: float | None = None  # KV-cache blocks in use, 0–100
    adapters: tuple[LoadedAdapter, ...] = ()


class DeploymentUsage(Message, kw_only=True, frozen=True, tag="deployment_usage"):
    """Requests a deployment served since the last report (sent at most once a second)."""

    job_id: str
    requests: int
    tokens: int
    last_request_at: datetime
    attempt: int = 0
    usage: tuple[UsageRow, ...] = ()  # the same requests by user and adapter, with prompt tokens
    load: EngineLoad | None = None  # sent with every report, and every few seconds while nothing is asked


JobEvent = (
    JobStarted
    | JobProgressed
    | JobFetchProgressed
    | JobTracked
    | JobFinished
    | JobCheckpointSaved
    | JobCheckpointRemoved
    | DeploymentReady
    | DeploymentUsage
)


# --- agents ------------------------------------------------------------------------------------


class GpuStatus(msgspec.Struct, frozen=True, kw_only=True):
    """One GPU as an agent sees it."""

    index: int
    name: str
    memory_total_mb: int
    memory_used_mb: int = 0
    utilization_pct: float = 0.0
    temperature_c: float | None = None
    power_w: float | None = None


class AgentHeartbeat(Message, kw_only=True, frozen=True, tag="agent_heartbeat"):
    """An agent is alive; its resources and what it runs."""

    agent_id: str
    hostname: str
    sent_at: datetime
    gpus: tuple[GpuStatus, ...] = ()
    cpu_slots: int = 0
    cpu_pct: float = 0.0
    memory_total_mb: int = 0
    memory_used_mb: int = 0
    running_jobs: tuple[str, ...] = ()  # jobs other than deployments
    running_deployments: tuple[str, ...] = ()  # jobs of kind "deploy"
    free_gpu_slots: int = 0
    free_cpu_slots: int = 0
    version: str = ""
    runtime: str = ""  # process | docker
    engines: tuple[str, ...] = ()  # the ServingEngines it can serve with (empty: an agent older than vLLM)


# --- logs --------------------------------------------------------------------------------------


class LogLine(msgspec.Struct, frozen=True, kw_only=True, array_like=True):
    """One line of a job's output."""

    seq: int
    stream: str  # stdout | stderr | system
    at: datetime
    text: str


class LogBatch(Message, kw_only=True, frozen=True, tag="log_batch"):
    """Several log lines of one job, one frame per batch."""

    job_id: str
    lines: tuple[LogLine, ...]
    attempt: int = 0  # of the JobDispatched whose run printed them (jobs.attempt); 0: not known


# --- auth --------------------------------------------------------------------------------------


class SessionRevoked(Message, kw_only=True, frozen=True, tag="session_revoked"):
    """An access token's session was ended (logout); every service forgets it."""

    session_id: str
    expires_at: datetime


class UserRevoked(Message, kw_only=True, frozen=True, tag="user_revoked"):
    """An admin ended every session of a user (disabled, role changed, password reset, revoked): every service
    refuses the user's tokens issued before `generation`, and the gateway closes the user's open WebSockets."""

    user_id: str
    generation: int
    reason: str = "revoked"  # disabled | enabled | role_changed | password_reset | revoked


class JobOutput(msgspec.Struct, frozen=True, kw_only=True):
    """The model a train or export job leaves when it succeeds, as the scheduler rendered it (`jobs.output`):
    what the registry registers, linked to the parent it names."""

    kind: str  # lora | full | quantized
    source: str  # train | export
    path: str
    parent_name: str | None
    parent_location: str | None
    label: str  # the middle of the default name: the training stage, "export", "q4", ...
    datasets: tuple[str, ...] = ()
    template: str | None = None
    details: dict = msgspec.field(default_factory=dict)


# --- requests to an owner ---------------------------------------------------------------------
# A decision that belongs to another service is asked of that service (services.common.requests):
# the request names the caller's user, the answer is the owner's typed yes or a `Refused`.


class Refused(msgspec.Struct, frozen=True, kw_only=True, tag="refused"):
    """An owner's no: a stable code, a message that says what to fix, the request field it is about and the
    HTTP status the asking service should answer its own caller with."""

    code: str
    message: str
    field: str | None = None
    status: int = 422


ModelUse = Literal["train", "eval", "export", "deploy"]
DatasetPurpose = Literal["train", "eval", "calibration"]


class ModelUseAsked(msgspec.Struct, frozen=True, kw_only=True, tag="model_use_asked"):
    """To the registry: may `user_id` use the model called `name` for `use`, and where are its files?"""

    user_id: str
    name: str
    use: ModelUse
    field: str = "model"  # the caller's request field a refusal names
    prefer_hub: str = "huggingface"  # the hub to download from when the model is on both


class ModelForUse(msgspec.Struct, frozen=True, kw_only=True, tag="model_for_use"):
    """The registry's yes: the model, and where a job loads it from (a LoRA adapter on its base)."""

    name: str
    kind: str  # base | lora | full | quantized
    model_path: str  # model_name_or_path: a local folder, or an id on `hub`
    template: str
    hub: str | None = None  # huggingface | modelscope; None: a local copy
    adapter_path: str | None = None  # a LoRA adapter's folder, loaded on `model_path`
    base: str | None = None  # a LoRA adapter's base model (its registry name)
    parameter_count: int | None = None  # the base's, for an adapter
    inputs: list[JobInput] = msgspec.field(default_factory=list)  # `objects` mode: its files (and its base's), stored


class DatasetsAsked(msgspec.Struct, frozen=True, kw_only=True, tag="datasets_asked"):
    """To the datasets service: may `user_id` use these datasets for `purpose` (training at `stage`, evaluation,
    or GPTQ calibration), and under which dataset_info.json keys?"""

    user_id: str
    names: list[str]
    purpose: DatasetPurpose
    stage: str | None = None  # the training stage (sft, pt, rm, dpo, kto, ppo), for purpose "train"
    field: str = "datasets"


class DatasetsForJob(msgspec.Struct, frozen=True, kw_only=True, tag="datasets_for_job"):
    """The datasets service's yes: dataset_info.json keys in the order asked, the stage an evaluation scores
    them with (pt or sft), and for calibration the dataset's file."""

    keys: list[str]
    eval_stage: str | None = None
    files: list[str] = msgspec.field(default_factory=list)
    # `objects` storage mode: the datasets' files, stored, and their dataset_info.json entries by key (the job's own
    # dataset_info.json is made of them on the agent, which has no data folder of the control plane's).
    inputs: list[JobInput] = msgspec.field(default_factory=list)
    entries: dict[str, dict[str, Any]] = msgspec.field(default_factory=dict)


class JobSecretsAsked(msgspec.Struct, frozen=True, kw_only=True, tag="job_secrets_asked"):
    """From an agent to the scheduler: the values of `names` (environment variables the job's dispatch listed in
    `secrets`) for the job's `attempt` it is about to run. The asking agent is the one the subject names."""

    job_id: str
    attempt: int
    names: list[str]


class JobSecrets(msgspec.Struct, frozen=True, kw_only=True, tag="job_secrets"):
    """The scheduler's yes: environment variable → value, for one stage of one run; never stored or logged."""

    env: dict[str, str]


class ResultFileAsked(msgspec.Struct, frozen=True, kw_only=True, tag="result_file_asked"):
    """To the datasets service: store `content` (a succeeded fine-tuning job's metrics CSV) as a file of `user_id`
    with purpose `fine-tune-results`. One file per `job_id`: asked again, the same file is answered."""

    user_id: str
    job_id: Annotated[str, msgspec.Meta(min_length=1, max_length=128)]  # the fine-tuning job (ftjob-...)
    filename: Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
    content: Annotated[bytes, msgspec.Meta(max_length=640 * 1024)]  # base64 in the message: under NATS's 1 MiB


class ResultFileStored(msgspec.Struct, frozen=True, kw_only=True, tag="result_file_stored"):
    """The datasets service's answer: the job's results file (made now, or earlier)."""

    file_id: str


BusMessage = (
    JobSubmitted
    | JobDispatched
    | JobStarted
    | JobProgressed
    | JobFetchProgressed
    | JobTracked
    | JobFinished
    | JobCheckpointSaved
    | JobCheckpointRemoved
    | JobChanged
    | JobCancelRequested
    | DeploymentReady
    | DeploymentUsage
    | AgentHeartbeat
    | LogBatch
    | SessionRevoked
    | UserRevoked
)

_decoder = msgspec.json.Decoder(BusMessage)
_encoder = msgspec.json.Encoder()


def encode(message: Message) -> bytes:
    """Serialise a bus message."""
    return _encoder.encode(message)


def decode(data: bytes) -> BusMessage:
    """Deserialise any bus message by its `type` tag."""
    return _decoder.decode(data)
