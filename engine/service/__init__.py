"""The HTTP JSON decision service: a FastAPI app over one loaded Policy, served by uvicorn worker processes."""

from .app import create_app
from .run import app_from_env, serve
from .settings import Settings

__all__ = ["Settings", "app_from_env", "create_app", "serve"]
