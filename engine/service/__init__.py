"""The HTTP JSON decision service: a FastAPI app over one loaded Policy, served by uvicorn worker processes."""

# Its modules, each importing only those below it (`|`: independent of each other):
#   run                      serve: listening sockets, worker processes, their supervisor; app_from_env
#   app | protocol           create_app (routes, their state on app.state, middleware) | uvicorn protocol with deadlines
#   routes                   the endpoints, reading their state from request.app.state
#   batch | openapi          batch answers from CSV or JSON bodies | the OpenAPI document and each route's docs
#   answers                  rows written as JSON or CSV, refused rows marked, long errors clipped, warnings header
#   orders | io | auth       one JSON order and its decision | reading requests | bearer auth and allowed hosts
#   errors                   ApiError, the JSON error answer, echo limits, exception handlers
#   encoding | settings      media types and the JSON encoder | Settings and the CANCEL_RULES_* variables

from .app import create_app
from .run import app_from_env, serve
from .settings import Settings

__all__ = ["Settings", "app_from_env", "create_app", "serve"]
