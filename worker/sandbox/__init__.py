"""The sandbox: a faithful, fault-injecting local Subaccount API (v5 and v6) with an effect journal.

`create_app` builds the FastAPI app, `serve` runs it under uvicorn, `SandboxAdmin` drives its
admin routes, and `FaultConfig` describes the faults it injects.
"""

from worker.sandbox.app import create_app, serve
from worker.sandbox.client import SandboxAdmin, SandboxAdminError
from worker.sandbox.faults import FaultConfig, FaultSpec, RateLimit

__all__ = [
    "FaultConfig",
    "FaultSpec",
    "RateLimit",
    "SandboxAdmin",
    "SandboxAdminError",
    "create_app",
    "serve",
]
