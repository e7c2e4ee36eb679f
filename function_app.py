"""The Azure Functions entry point (Python v2 programming model). Declarations only.

Each function hands its trigger to tokenvault: HTTP to ``tokenvault.http``, the timer and
the queue to ``tokenvault.sweep``. Everything is composed once per process, on first use
(``tokenvault.bootstrap``), so importing this module is cheap and a misconfiguration is one
clear log line and a 500 ``internal`` answer rather than a worker that fails to start.
"""

import azure.functions as func

from tokenvault import bootstrap
from tokenvault.http import dispatch
from tokenvault.settings import REFRESH_QUEUE

# Data routes require a function key as defence in depth beside the JWT; health and the
# OpenAPI document are anonymous.
app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)


@app.route(route="tokens", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
def store_token(req: func.HttpRequest) -> func.HttpResponse:
    return dispatch("store", req, bootstrap.api)


@app.route(route="tokens/redeem", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
def redeem_token(req: func.HttpRequest) -> func.HttpResponse:
    return dispatch("redeem", req, bootstrap.api)


@app.route(route="tokens/{tenant_id}/{user_id}", methods=["GET"],
           auth_level=func.AuthLevel.FUNCTION)
def describe_token(req: func.HttpRequest) -> func.HttpResponse:
    return dispatch("describe", req, bootstrap.api)


@app.route(route="tokens/{tenant_id}/{user_id}", methods=["DELETE"],
           auth_level=func.AuthLevel.FUNCTION)
def forget_token(req: func.HttpRequest) -> func.HttpResponse:
    return dispatch("forget", req, bootstrap.api)


@app.route(route="health", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def health(req: func.HttpRequest) -> func.HttpResponse:
    return bootstrap.health()


@app.route(route="openapi.json", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def openapi(req: func.HttpRequest) -> func.HttpResponse:
    return bootstrap.openapi()


@app.timer_trigger(arg_name="timer", schedule="%TOKENVAULT_REFRESH_SCHEDULE%",
                   run_on_startup=False, use_monitor=True)
def refresh_plan(timer: func.TimerRequest) -> None:
    bootstrap.sweep().plan_run(past_due=timer.past_due)


@app.queue_trigger(arg_name="message", queue_name=REFRESH_QUEUE, connection="AzureWebJobsStorage")
def refresh_work(message: func.QueueMessage) -> None:
    bootstrap.sweep().handle(message.get_body(), dequeue_count=message.dequeue_count or 1)
