"""The agent's loops around a runtime: take dispatched jobs, ship logs and progress, stop on cancel."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import re
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import yaml
from nats.aio.client import Client
from nats.js import JetStreamContext

from services.common import contracts
from services.common.consumers import Ack, Consumer, Delivery, Outcome, run_consumer
from services.common.contracts import Subjects
from services.common.settings import StoragePaths
from services.common.storage import JobStorage, SharedStorage, StorageError
from services.common.text import storable

from . import pausing, progress, reattach, results, tracking, uploads
from .ending import conclude
from .events import CheckpointReport, FetchReport, JobEvents
from .hubs import hub_environment, without_secrets
from .jobfiles import job_datasets
from .jobsecrets import SecretsUnavailable, job_secrets, needs_secrets
from .logs import LogShipper
from .objectsmode import adapter_files
from .reattach import Resume
from .running import RunningJob
from .runtimes import EngineRun, JobSpec, Runtime
from .runtimes.base import Detachable, ExitInfo, Reattachable, RuntimeStartError
from .savedjob import SavedJob
from .serving import ModelServer
from .vllm import (
    BadServeConfig,
    EngineUnavailable,
    VllmSetup,
    default_max_tokens,
    resolve_engine,
    served_names,
    serving_engines,
    vllm_command,
)

log = logging.getLogger(__name__)

CLEANUP_EVERY_S = 30.0

_orders = msgspec.json.Decoder(contracts.JobDispatched)


def consumer_name(agent_id: str) -> str:
    """A durable name NATS accepts (no dots, spaces or wildcards)."""
    return "agent-" + re.sub(r"[^A-Za-z0-9_-]", "_", agent_id)


def dispatches(agent_id: str) -> Consumer[Runner, contracts.JobDispatched]:
    """The agent's DISPATCH consumer: its own jobs, handled by its runner (which owns the loop: it starts after the
    jobs of the last agent are picked up, and stops before the runner leaves its jobs)."""
    return Consumer(
        durable=consumer_name(agent_id),
        stream="DISPATCH",
        subject=Subjects.job_dispatch(agent_id),
        decode=_orders.decode,
        handler=Runner.on_dispatch,
        batch=16,
    )


def stage_downloads(stage: contracts.EngineStage) -> bool:
    """Whether a stage downloads: its model from a hub, or one of its datasets (read from the stage's YAML)."""
    if stage.hub is not None:
        return True
    try:
        config = yaml.safe_load(stage.config_yaml)
    except yaml.YAMLError:
        return False  # the engine says what is wrong with it
    datasets = job_datasets(config) if isinstance(config, dict) else None
    return bool(datasets and datasets.from_hub)


class Runner:
    """Runs the jobs dispatched to one agent.

    With a Reattachable runtime, whose engines outlive the agent (docker), stopping the runner leaves them
    running and starting it picks them up again (services/agent/reattach.py); with the process runtime,
    stop() ends them, as their pipes to the agent would (docs/docker.md, "Agent restarts").
    """

    def __init__(
        self,
        *,
        nc: Client,
        js: JetStreamContext,
        agent_id: str,
        runtime: Runtime,
        storage: StoragePaths,
        engine_env: dict[str, str],
        cpu_threads: int = 1,
        state_dir: Path | None = None,
        files: JobStorage | None = None,
        vllm: VllmSetup | None = None,
    ):
        self.nc, self.js = nc, js
        self.agent_id = agent_id
        self.runtime = runtime
        self.storage = storage
        self.engine_env = engine_env
        self.cpu_threads = cpu_threads
        self.files = files or SharedStorage()  # where the jobs' files are: the storage mode (common/storage.py)
        self.publish = JobEvents(js, agent_id)
        self.vllm = vllm  # where vLLM is, when this agent has it (app.py checked once)
        self.engines = serving_engines(runtime.name, vllm)  # what its heartbeat says it serves with
        # The runtime's one capability that changes what the runner does, checked here once.
        self.reattachable = runtime if isinstance(runtime, Reattachable) else None
        self.keeps_engines = self.reattachable is not None
        # Where jobs are saved for the next agent (savedjob.py); none when engines die with the agent.
        self.state_dir = (
            state_dir or storage.state / "agents" / re.sub(r"[^A-Za-z0-9_-]", "_", agent_id)
            if self.keeps_engines
            else None
        )
        self.jobs: dict[str, RunningJob] = {}
        self._tasks: list[asyncio.Task] = []
        self._cancels = None

    async def start(self) -> None:
        """Take cancels, pick up what the last agent left running (a Reattachable runtime), then take dispatches."""
        self._cancels = await self.nc.subscribe(Subjects.JOB_CANCEL_ALL, cb=self._on_cancel)
        # Before the dispatch consumer: a redelivered dispatch of a job found running is then only acked.
        if self.reattachable is not None and self.state_dir is not None:
            await reattach.pick_up(
                reattach.Agent(
                    runtime=self.reattachable,
                    state_dir=self.state_dir,
                    storage=self.storage,
                    agent_id=self.agent_id,
                    js=self.js,
                    publish=self.publish,
                    go_on=self.go_on,
                )
            )
        self._tasks = [
            asyncio.create_task(run_consumer(self.js, dispatches(self.agent_id), self)),
            asyncio.create_task(self._cleanup_forever()),
        ]

    async def stop(self) -> None:
        """Stop taking work; leave surviving engines running (their state saved), stop the others."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._cancels is not None and self.keeps_engines:  # a cancel now is for the next agent
            with contextlib.suppress(Exception):
                await self._cancels.unsubscribe()
        for job in list(self.jobs.values()):
            if job.preparing is not None:  # no engine yet: nothing to leave running, nothing to wait for
                job.preparing.cancel()
            elif self.keeps_engines and job.kind != "deploy":
                job.detached = True
                if job.task:
                    job.task.cancel()
            elif job.engine:
                job.agent_stopped = self.keeps_engines  # a deployment's server can't be reached again
                await job.engine.stop(5)
        await asyncio.gather(*(j.task for j in self.jobs.values() if j.task), return_exceptions=True)

    def go_on(self, saved: SavedJob, resume: Resume) -> None:
        """Follow a job found again after an agent restart, as if this agent had started it."""
        job = RunningJob(saved.order.job_id, saved.order.kind, saved.order.gpu_ids, saved=saved)
        job.started.set()
        self.jobs[job.job_id] = job
        job.task = asyncio.create_task(self._run(saved.order, job, resume))

    async def on_dispatch(self, order: contracts.JobDispatched, delivery: Delivery) -> Outcome:
        """Start a dispatched job (the order is acked once it started); a redelivery of one already running is
        only acked."""
        order = self.files.localize(order)  # objects mode: its paths under this agent's base, saved so
        running = self.jobs.get(order.job_id)
        if running is not None and running.saved.order.attempt < order.attempt:
            await self._supersede(running, order.attempt)
            running = None
        if running is None:  # a redelivery of a job we already run is only acked
            job = RunningJob(order.job_id, order.kind, order.gpu_ids, saved=SavedJob.begin(self.state_dir, order))
            self.jobs[order.job_id] = job
            job.task = asyncio.create_task(self._run(order, job))
            await job.started.wait()
        return Ack()

    async def _supersede(self, job: RunningJob, attempt: int) -> None:
        """The scheduler dispatched the job again (it had lost track of this agent): it hears only the newest
        attempt, so the old run is stopped, unreported, before the new one starts."""
        log.warning("job %s: attempt %d replaces the run of attempt %d", job.job_id, attempt, job.saved.order.attempt)
        job.superseded = job.cancelled = True  # cancelled: a run still starting stops as soon as its engine is up
        if job.preparing is not None:
            job.preparing.cancel()
        if job.engine:
            await job.engine.stop(5)
        if job.task:
            await asyncio.gather(job.task, return_exceptions=True)

    async def _on_cancel(self, msg) -> None:
        request = contracts.decode(msg.data)
        if not isinstance(request, contracts.JobCancelRequested):
            return
        job = self.jobs.get(request.job_id)
        if job is None:
            return
        job.cancelled = True
        if job.preparing is not None:
            job.preparing.cancel()
        if not job.engine or job.pausing:  # a pause under way stops the engine itself, within its grace
            return
        if request.pause_grace_s > 0 and job.pausable:
            await self._pause(job, request)
        else:
            await job.engine.stop(request.grace_s)

    async def _pause(self, job: RunningJob, request: contracts.JobCancelRequested) -> None:
        """Ask the engine for a checkpoint at the next step's end and its exit; stop it as a cancel when none came
        within the pause's grace time."""
        engine, output_dir = job.engine, Path(job.saved.order.output_dir)
        assert engine is not None
        job.pausing = True
        if not await asyncio.to_thread(pausing.ask, output_dir):
            job.pause_missed_s = 0.0
            await engine.stop(request.grace_s)
            return
        log.info("job %s: pause asked; waiting %.0f s for its checkpoint", job.job_id, request.pause_grace_s)
        try:
            await asyncio.wait_for(asyncio.shield(job.exited.wait()), request.pause_grace_s)
        except TimeoutError:
            job.pause_missed_s = request.pause_grace_s
            if job.engine is engine:
                await engine.stop(request.grace_s)

    def _spec(
        self,
        order: contracts.JobDispatched,
        index: int,
        extra_env: dict[str, str] | None = None,
        ports: tuple[int, ...] = (),
        command: tuple[str, ...] | None = None,
        bin_dir: Path | None = None,
    ) -> JobSpec:
        stage = order.stages[index]
        suffix = "" if len(order.stages) == 1 else f".{index + 1}-{stage.name}"
        config_path = self.storage.temp / f"{order.job_id}{suffix}.yaml"
        config_path.write_text(stage.config_yaml)
        output_dir = Path(order.output_dir)
        output_dir.mkdir(parents=True, exist_ok=True)
        hook = None
        if command is None and pausing.pausable(order.kind, stage):
            # The same `llamafactory-cli train`, with our hook: a pause saves a checkpoint first (pausing.py).
            hook = pausing.place_hook(config_path)
            pausing.clear(output_dir)
        command = command or (*stage.command, str(config_path))
        downloads = stage_downloads(stage)
        env = {
            # A hub's credentials only for a stage that downloads from it (services/agent/hubs.py).
            **(self.engine_env if downloads else without_secrets(self.engine_env)),
            "HF_HOME": str(self.storage.hf_cache),
            "PYTHONUNBUFFERED": "1",
            "DISABLE_VERSION_CHECK": "1",
            **hub_environment(stage.hub, self.storage.hf_cache),
            **tracking.stage_env(stage, output_dir),
            **(extra_env or {}),
        }
        if hook is not None:
            env.update(pausing.environment(output_dir, hook, env))
        if not order.gpu_ids:  # a CPU slot: don't let torch take every core from its neighbours
            env.setdefault("OMP_NUM_THREADS", str(self.cpu_threads))
        return JobSpec(
            job_id=order.job_id,
            kind=order.kind,
            command=command,
            config_path=config_path,
            output_dir=output_dir,
            gpu_ids=order.gpu_ids,
            env=env,
            ports=ports,
            stage=index,
            attempt=order.attempt,
            downloads=downloads,
            bin_dir=bin_dir,
            hook_dir=hook,
        )

    async def _run(self, order: contracts.JobDispatched, job: RunningJob, resume: Resume | None = None) -> None:
        saved = job.saved
        shipper = LogShipper(
            self.js,
            order.job_id,
            self.storage.logs / f"{order.job_id}.log",
            agent_id=self.agent_id,
            attempt=order.attempt,
            seq=saved.cursor.seq,
            keep_bytes=saved.cursor.log_bytes if resume else None,
            on_shipped=saved.shipped,
        )
        try:
            exit_info = await self._run_engine(order, job, shipper, resume)
        except asyncio.CancelledError:
            if not job.detached:
                raise
            await self._leave_running(job, shipper)
            return
        except Exception as exc:
            log.exception("job %s failed in the agent", order.job_id)
            exit_info = ExitInfo(exit_code=-1, error=f"agent error: {exc}", error_reason="agent_error")
        finally:
            job.started.set()
        await self._finish(order, job, exit_info, shipper)

    async def _run_engine(self, order, job: RunningJob, shipper: LogShipper, resume: Resume | None) -> ExitInfo:
        """Run the job's stages in order; the first that fails or is cancelled ends the job."""
        if resume is None:
            # Line numbers start again in each attempt: this line marks where one begins, in the file as on the socket.
            shipper.add(
                "system",
                f"attempt {order.attempt}: {order.kind} job {order.job_id} on {self.agent_id} "
                f"({self.runtime.name} runtime)",
            )
        else:
            shipper.add("system", resume.note)
        if resume is None and self.files.mode != "shared":
            # The inputs may take a while to arrive: the job is started (its dispatch acked) while they do.
            await self._announce(order, job)
            ended = await self._prepare(order, job, shipper)
            if ended is not None:
                return ended
        stopped = asyncio.Event()
        follower = asyncio.create_task(
            progress.follow(
                order.job_id,
                Path(order.output_dir) / "trainer_log.jsonl",
                self.publish,
                stopped,
                start=job.saved.cursor.progress_bytes if resume else 0,
                moved=job.saved.progress_read,
                attempt=order.attempt,
            )
        )
        checkpoints = asyncio.create_task(self._follow_checkpoints(order, job, shipper, stopped))
        try:
            exit_info = ExitInfo(exit_code=0)
            first = resume.stage if resume else 0
            for index in range(first, len(order.stages)):
                stage = order.stages[index]
                found = resume.engine if resume and index == first else None
                if len(order.stages) > 1 and found is None:
                    shipper.add("system", f"stage {index + 1} of {len(order.stages)}: {stage.name}")
                exit_info = await self._run_stage(order, index, job, shipper, found)
                if job.cancelled or exit_info.exit_code != 0 or exit_info.error:
                    if len(order.stages) > 1 and not job.cancelled:
                        shipper.add("system", f"stage {index + 1} ({stage.name}) failed; later stages skipped")
                    break
            return exit_info
        finally:
            stopped.set()
            await follower
            try:
                await checkpoints
            except Exception:  # a checkpoint not uploaded costs a resume its progress, not the job
                log.exception("job %s: its checkpoints stopped being uploaded", order.job_id)

    async def _follow_checkpoints(
        self, order: contracts.JobDispatched, job: RunningJob, shipper: LogShipper, stopped: asyncio.Event
    ) -> None:
        """Tell the scheduler of each checkpoint the job saves, once whole: the storage mode publishes it first
        (objects: into the store); in shared mode the folder is where everyone reads it, watched here."""
        job.checkpoints = told = CheckpointReport(self.publish, order.job_id, self.agent_id, order.attempt)

        def note(text: str) -> None:
            shipper.add("system", text)

        if self.files.mode == "shared":
            await uploads.Checkpoints(None, order.job_id, Path(order.output_dir), note, told=told).follow(stopped)
        else:
            await self.files.follow(order, note, stopped, told)

    async def _prepare(self, order, job: RunningJob, shipper: LogShipper) -> ExitInfo | None:
        """Bring the job's inputs (objects mode); how the run ended when it cannot start: an input failed, or the
        wait was stopped (a cancel, the agent stopping; the fetch itself goes on for the cache)."""
        report = FetchReport(self.publish, order.job_id, order.attempt)  # the job's page shows it too
        preparing = job.preparing = asyncio.create_task(
            self.files.prepare(order, lambda text: shipper.add("system", text), report)
        )
        try:
            await preparing
        except StorageError as exc:
            return ExitInfo(exit_code=-1, error=exc.message, error_reason=exc.reason)
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if not preparing.cancelled() or (current is not None and current.cancelling()):
                raise  # this run itself is cancelled
            if not job.cancelled:
                return ExitInfo(
                    exit_code=-1,
                    error="the agent stopped while the job's inputs were fetched",
                    error_reason="agent_error",
                )
        finally:
            job.preparing = None
        return ExitInfo(exit_code=-1) if job.cancelled else None

    async def _run_stage(
        self, order, index: int, job: RunningJob, shipper: LogShipper, found: EngineRun | None = None
    ) -> ExitInfo:
        """Start stage `index` (or follow `found`, its engine from before an agent restart) to its exit."""
        serve = order.stages[index].serve
        engine = found
        secrets = await self._secrets(order, index, shipper, found is not None)
        if isinstance(secrets, ExitInfo):
            return secrets
        if engine is None:
            if serve is not None:
                started = self._serving_spec(order, index, job, serve, shipper)
                if isinstance(started, ExitInfo):
                    return started
                spec = started
            else:
                tracked = await self._tracked(order, job, self._spec(order, index, secrets), shipper)
                if isinstance(tracked, ExitInfo):
                    return tracked
                spec = tracked
            job.pausable = spec.hook_dir is not None
            try:
                engine = await self.runtime.start(spec)
            except RuntimeStartError as exc:
                return ExitInfo(exit_code=-1, error=exc.message, error_reason=exc.reason)
        if found is not None:  # started by the agent before: with our hook, unless that agent predates it
            job.pausable = pausing.pausable(order.kind, order.stages[index])
        job.engine = engine
        await self._announce(order, job)
        if job.cancelled:  # a cancel that arrived while the engine was starting
            await engine.stop(5)
        server = job.server
        serving = asyncio.create_task(server.run(engine.stop)) if server else None
        # A run the next agent can pick up says how far its lines reach, saved with every shipped batch.
        detachable = engine if isinstance(engine, Detachable) else None
        job.exited.clear()
        try:
            async for stream, text in engine.lines():
                shipper.add(stream, text, detachable.position if detachable else None)
            exit_info = await engine.wait()
            if job.pausing:  # paused when the engine says so (under torchrun its exit code is the launcher's)
                job.paused_step = await asyncio.to_thread(pausing.paused_step, Path(order.output_dir))
                job.paused = job.paused_step is not None
            if job.pausable or job.pausing:
                await asyncio.to_thread(pausing.clear, Path(order.output_dir))
            return exit_info
        finally:
            job.exited.set()
            if server is not None and serving is not None:  # both or neither
                serving.cancel()
                await asyncio.gather(serving, return_exceptions=True)
                await server.close()

    async def _secrets(self, order, index: int, shipper: LogShipper, running: bool) -> dict[str, str] | ExitInfo:
        """The job's secrets for stage `index` (none for a stage that gets none), hidden from its log from now on;
        how the run ended when the scheduler gives none. An engine already `running` (picked up after an agent
        restart) has them: they are asked again only to hide them, and the job goes on without."""
        if not needs_secrets(order, order.stages[index]):
            return {}
        try:
            values = await job_secrets(self.nc, self.agent_id, order)
        except SecretsUnavailable as exc:
            if running:
                log.warning("job %s: its secrets are not hidden from its log: %s", order.job_id, exc.message)
                return {}
            return ExitInfo(exit_code=-1, error=exc.message, error_reason="secrets_unavailable")
        shipper.hide(values.values())
        return values

    async def _tracked(self, order, job: RunningJob, spec: JobSpec, shipper: LogShipper) -> JobSpec | ExitInfo:
        """A stage that reports to MLflow runs in the job's run, made (or found again) before the engine starts and
        told to the scheduler (JobTracked); a server that cannot be reached ends the job before it spends GPU time."""
        if "MLFLOW_TRACKING_URI" not in spec.env:
            return spec
        try:
            run = await tracking.mlflow_run(spec.env, order.job_id, order.mlflow_run_id)
        except tracking.TrackingUnreachable as exc:
            return ExitInfo(exit_code=-1, error=str(exc), error_reason="tracking_unreachable")
        shipper.add("system", f"MLflow: run {run.run_id} of experiment {run.experiment_id}")
        job.mlflow = (run.run_id, spec.env)
        event = contracts.JobTracked(
            job_id=order.job_id,
            mlflow_run_id=run.run_id,
            mlflow_experiment_id=run.experiment_id,
            attempt=order.attempt,
            at=datetime.now(UTC),
        )
        await self.publish(event, must_arrive=True)
        return dataclasses.replace(spec, env={**spec.env, "MLFLOW_RUN_ID": run.run_id})

    def _serving_spec(
        self, order, index: int, job: RunningJob, serve: contracts.ServeOptions, shipper: LogShipper
    ) -> JobSpec | ExitInfo:
        """The model server of a serving stage (job.server) on the engine it asks for, and the engine's command;
        how the run ended when it cannot start (an engine this agent lacks, a YAML vLLM cannot serve)."""
        stage = order.stages[index]
        try:
            engine = resolve_engine(serve.engine, self.engines)
            config = yaml.safe_load(stage.config_yaml) if engine == "vllm" else None
            if engine == "vllm" and not isinstance(config, dict):
                raise BadServeConfig("not a mapping")
            names = served_names(order.job_id, config) if isinstance(config, dict) else None
        except EngineUnavailable as exc:
            return ExitInfo(exit_code=-1, error=str(exc), error_reason="engine_missing")
        except (BadServeConfig, yaml.YAMLError) as exc:
            return ExitInfo(exit_code=-1, error=f"the deployment's YAML: {exc}", error_reason="bad_config")

        def note(text: str) -> None:
            shipper.add("system", text)

        job.server = ModelServer(
            nc=self.nc,
            deployment_id=order.job_id,
            agent_id=self.agent_id,
            options=serve,
            publish=self.publish,
            note=note,
            attempt=order.attempt,
            engine=engine,
            names=names,
            adapter_files=adapter_files(self.files, order, note),
            default_max_tokens=default_max_tokens(config),
        )
        env, ports = job.server.environment(stage.hub), (job.server.port,)
        if engine != "vllm" or self.vllm is None or names is None or config is None:
            return self._spec(order, index, env, ports=ports)
        if config.get("template"):
            shipper.add("system", f"vLLM formats chats with the model's own chat template, not {config['template']!r}")
        gpus = len(order.gpu_ids)
        command = vllm_command(config, serve, names, port=job.server.port, gpu_count=gpus, setup=self.vllm)
        return self._spec(order, index, env, ports=ports, command=command, bin_dir=self.vllm.bin)

    async def _announce(self, order: contracts.JobDispatched, job: RunningJob) -> None:
        """Tell the scheduler the job started (once per attempt), and let its dispatch be acked."""
        if not job.saved.cursor.started:
            await self.publish(
                contracts.JobStarted(
                    job_id=order.job_id,
                    agent_id=self.agent_id,
                    runtime=self.runtime.name,
                    attempt=order.attempt,
                    at=datetime.now(UTC),
                ),
                must_arrive=True,
            )
            job.saved.mark_started()
        job.started.set()

    async def _leave_running(self, job: RunningJob, shipper: LogShipper) -> None:
        """The agent stops: ship what was read, save where the next agent goes on, leave the engine be."""
        if isinstance(job.engine, Detachable):
            job.engine.detach()
        shipper.add("system", f"agent {self.agent_id} stopped; the job goes on in its container")
        await shipper.close()
        job.saved.save()
        self.jobs.pop(job.job_id, None)
        log.info("job %s left running for the next agent", job.job_id)

    async def _finish(self, order, job: RunningJob, exit_info: ExitInfo, shipper: LogShipper) -> None:
        """Report how the run ended (JobFinished, with its metrics) and forget the job."""
        if job.superseded:  # the scheduler drops events of an attempt it replaced
            shipper.add("system", f"attempt {order.attempt} stopped: the job was dispatched here again")
            await shipper.close()
            await self.files.release(order)
            job.saved.forget()
            self.jobs.pop(order.job_id, None)
            return
        exit_info = await self._publish_outputs(order, exit_info, shipper)
        state, reason, message = conclude(job.end_cause(exit_info, shipper.tail))
        shipper.add("system", f"job {state}" + (f": {message}" if message else ""))
        if job.mlflow is not None:
            await tracking.end_mlflow_run(job.mlflow[1], job.mlflow[0], state)
        tail = tuple(storable(line) for line in shipper.tail)  # the scheduler stores them: no NUL
        await shipper.close()
        metrics = results.read(order.kind, Path(order.output_dir))
        try:
            await self.files.publish_log(order, self.storage.logs / f"{order.job_id}.log")
        except StorageError as exc:
            log.warning("job %s: its log was not uploaded: %s", order.job_id, exc.message)
        await self.files.release(order)
        event = contracts.JobFinished(
            job_id=order.job_id,
            agent_id=self.agent_id,
            state=state,
            reason=reason,
            message=storable(message) if message else message,
            exit_code=exit_info.exit_code,
            last_lines=tail if state == "failed" else (),
            metrics=metrics,
            attempt=order.attempt,
            at=datetime.now(UTC),
        )
        await self.publish(event, must_arrive=True)
        job.saved.forget()
        self.jobs.pop(order.job_id, None)

    async def _publish_outputs(self, order, exit_info: ExitInfo, shipper: LogShipper) -> ExitInfo:
        """Hand the job's outputs to the storage (objects mode: into the store); a run that succeeded but whose
        outputs could not be handed over failed (upload_failed)."""
        try:
            await self.files.publish(order, lambda text: shipper.add("system", text))
        except Exception as exc:
            log.exception("job %s: its outputs were not uploaded", order.job_id)
            failed = exc if isinstance(exc, StorageError) else StorageError("upload_failed", f"outputs: {exc}")
            shipper.add("system", f"outputs not uploaded: {failed.message}")
            if exit_info.exit_code == 0 and not exit_info.error:
                return ExitInfo(exit_code=exit_info.exit_code, error=failed.message, error_reason=failed.reason)
        return exit_info

    async def _cleanup_forever(self) -> None:
        while True:
            await asyncio.sleep(CLEANUP_EVERY_S)
            with contextlib.suppress(Exception):
                await self.runtime.cleanup()
