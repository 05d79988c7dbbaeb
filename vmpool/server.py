"""The VM model server: Open Inference Protocol v2 over HTTP for the models of one repository.

Split as MLServer is: ``vmpool/dataplane.py`` is the core (``ModelServer``: models, batchers,
statistics, drain state; no HTTP types), ``vmpool/rest.py`` the REST app in front of it
(``create_model_server_app``), and ``vmpool/runner.py`` runs it under uvicorn with a graceful
drain (``run_model_server``). This module names what others use.
"""

from vmpool.dataplane import LoadedModel, ModelServer, ModelServerError
from vmpool.rest import SERVER_NAME, create_model_server_app
from vmpool.runner import run_model_server

__all__ = [
    "SERVER_NAME",
    "LoadedModel",
    "ModelServer",
    "ModelServerError",
    "create_model_server_app",
    "run_model_server",
]
