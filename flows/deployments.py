"""The scheduled retraining deployment (cron from config), served without a work pool."""

from __future__ import annotations

from fer_core.config import load_settings
from flows.retrain import retrain


def serve(config: str | None = None, overrides: list[str] | None = None) -> None:
    """Serve `fer-retrain` on the configured cron schedule until stopped (needs a Prefect API)."""
    settings = load_settings(config, overrides or [])
    p = settings.pipeline
    from prefect.schedules import Cron

    deployment = retrain.to_deployment(name=p.deployment_name, schedule=Cron(p.cron, timezone=p.timezone),
                                       parameters={"config": config, "overrides": overrides or []},
                                       description="Weekly FER retraining: data -> train -> gate -> promote.")
    from prefect import serve as prefect_serve

    prefect_serve(deployment)
