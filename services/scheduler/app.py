"""The scheduler: jobs of every kind, the queue, placement, agents, cancellation and artifacts."""

from __future__ import annotations

from litestar import Litestar

from services.common.app import ServiceSpec, create_service_app
from services.common.dependencies import provide_part
from services.common.settings import Settings, settings_for

from . import handlers
from .context import scheduler_context
from .deployments.routes import DeploymentController
from .evaluations.routes import EvalController
from .fleet.join_routes import JoinController
from .fleet.routes import AgentController, JobGpuController
from .jobs.routes import JobController
from .openai.routes import FineTuningController
from .quotas.routes import QuotaController
from .settings import SchedulerSettings
from .usersecrets import answers as secret_answers
from .usersecrets.routes import SecretController
from .webhooks.routes import WebhookController

SPEC = ServiceSpec(
    name="scheduler",
    description="jobs of every kind, the queue, placement, agents, cancellation and artifacts",
    route_handlers=[
        JobController,
        EvalController,
        DeploymentController,
        QuotaController,
        JoinController,
        AgentController,
        JobGpuController,
        WebhookController,
        FineTuningController,
        SecretController,
    ],
    context=scheduler_context,
    background=handlers.BACKGROUND,
    consumers=handlers.CONSUMERS,
    endpoints=(secret_answers.ENDPOINT,),
    dependencies={"wake": provide_part("wake")},
)


def create_app(settings: Settings | None = None) -> Litestar:
    """App factory for `llmct service scheduler`: the shared settings given (or read) and the scheduler's own."""
    return create_service_app(SPEC, settings_for(SchedulerSettings, settings))
