"""`GatewayOptions`: the ``[cluster.gateway]`` table of ``backend = "gateway"`` (docs/gateway.md).

Only pydantic and `secret_refs` here (no Dask, no dask-gateway), so the settings schema can
validate the table without loading the backend. A password or token is a `Secret` reference
(``{env = "NAME"}`` or ``{file = "PATH"}``), never text in app_settings.toml.

>>> options = GatewayOptions.model_validate({"address": "http://127.0.0.1:8000", "workers": 3})
>>> options.worker_count, options.slots
(3, 3)
>>> GatewayOptions.model_validate({"adaptive": {"minimum": 1, "maximum": 4}}).slots
4
>>> try:
...     GatewayOptions.model_validate({"auth": "basic", "password": "hunter2"})
... except ValueError as exc:
...     print(exc.errors()[0]["loc"], exc.errors()[0]["ctx"]["error"])
('password',) a secret is never written as text in settings: name where it is kept
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, field_validator, model_validator

from ..settings.schema import WorkerSpec
from ..settings.secret_refs import Secret

__all__ = ["GATEWAY_HOST", "AdaptiveRange", "GatewayOptions"]

#: The worker-map key of a Gateway cluster's slots: ``gateway-0``, ``gateway-1``, ... (Gateway places the workers).
GATEWAY_HOST = "gateway"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class AdaptiveRange(_Strict):
    """``adaptive = {minimum = 1, maximum = 4}``: Gateway adds and removes workers within the range."""

    minimum: int = Field(default=1, ge=1, description="workers a run waits for before it starts")
    maximum: int = Field(ge=1, description="workers Gateway may give the cluster: the plan has this many slots")

    @model_validator(mode="after")
    def _ordered(self) -> AdaptiveRange:
        if self.maximum < self.minimum:
            raise ValueError(f"adaptive maximum ({self.maximum}) is below its minimum ({self.minimum})")
        return self


class GatewayOptions(_Strict):
    """``[cluster.gateway]``: which Dask Gateway, how to log in, and the cluster to ask it for."""

    address: str | None = Field(default=None, description='the Gateway\'s URL, e.g. "http://gateway.example.org:8000" '
                                "(required with backend = \"gateway\")")
    proxy_address: str | None = Field(default=None, description="the scheduler proxy's address (HOST:PORT or "
                                      "tls://HOST:PORT) when it is not the Gateway's own address")
    auth: Literal["none", "basic", "kerberos", "jupyterhub"] = Field(
        default="none", description='how to log in: "basic" (username + password), "kerberos" (your ticket: kinit), '
        '"jupyterhub" (api_token), "none"')
    username: str | None = Field(default=None, description='auth = "basic": the user name; None: $USER')
    password: Secret | None = Field(default=None, description='auth = "basic": {env = "NAME"} or {file = "PATH"} (0600); '
                                    "never the password itself")
    api_token: Secret | None = Field(default=None, description='auth = "jupyterhub": {env = "NAME"} or {file = "PATH"}; '
                                     "None: $JUPYTERHUB_API_TOKEN")
    cluster_options: dict[str, Any] = Field(default_factory=dict, description="options the Gateway's administrator "
                                            "exposes (image, worker_cores, worker_memory, ...), passed to new_cluster")
    workers: int = Field(default=2, ge=1, description="workers to ask for (one plan slot each); ignored with adaptive")
    adaptive: AdaptiveRange | None = Field(default=None, description="{minimum = N, maximum = M}: let Gateway scale the "
                                           "cluster between them instead of a fixed number of workers")
    shutdown_on_close: StrictBool = Field(default=True, description="stop the Gateway cluster when the run ends; false: "
                                          "keep it warm for the next run (`agi cluster down APP` stops it)")
    ship_environment: StrictBool = Field(default=True, description="install the app's wheel and its pinned dependencies "
                                         "on the scheduler and workers through Dask (uv, one environment per code hash); "
                                         "false: the image already has them")
    env_root: str = Field(default="~/.cache/agi/envs", description="where workers keep the shipped environments (on each "
                          "worker's own filesystem)")
    start_timeout: float = Field(default=300.0, gt=0, description="seconds to wait for the Gateway cluster and its first "
                                 "workers (pods may be slow to schedule)")

    @field_validator("address")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is not None and not value.strip().startswith(("http://", "https://")):
            raise ValueError(f"invalid Gateway address {value!r}: expected a URL such as 'http://HOST:8000'")
        return None if value is None else value.strip().rstrip("/")

    @property
    def worker_count(self) -> int:
        """Workers a run waits for: ``workers``, or the adaptive minimum."""
        return self.adaptive.minimum if self.adaptive is not None else self.workers

    @property
    def slots(self) -> int:
        """The plan's slots: ``workers``, or the adaptive maximum (slots without a worker yet run anywhere)."""
        return self.adaptive.maximum if self.adaptive is not None else self.workers

    def worker_map(self) -> dict[str, WorkerSpec]:
        """The plan's slots as a worker map: `GATEWAY_HOST` with `slots` workers (the Gateway places them)."""
        return {GATEWAY_HOST: WorkerSpec(count=self.slots)}

    def describe(self, app: str) -> str:
        """What `agi cluster up --dry-run` shows: which Gateway, how many workers, which options."""
        workers = (f"adaptive, {self.adaptive.minimum} to {self.adaptive.maximum} worker(s)" if self.adaptive is not None
                   else f"{self.workers} worker(s)")
        options = ", ".join(f"{key}={value!r}" for key, value in sorted(self.cluster_options.items())) or "the Gateway's defaults"
        ship = (f"the app's environment shipped through Dask into {self.env_root}" if self.ship_environment
                else "the image's own environment (ship_environment = false)")
        return (f"{app}: backend gateway, a cluster of the Dask Gateway at {self.address or '(no address set)'} "
                f"(auth {self.auth}), {workers}, cluster options: {options}; {ship}")

    def identity(self) -> dict[str, Any]:
        """What a warm cluster must match to be reused by a run."""
        return self.model_dump(mode="json", include={"address", "proxy_address", "auth", "username", "cluster_options"})
