"""An app on the official Dapr Python SDK's gRPC extension (dapr.ext.grpc.App), receiving jobs
from `kairos sidecar`. It schedules its own jobs, like the SDK's jobs example, and prints one JSON
line per event; tests/python_sdk.rs checks them. Run with APP_PORT and DAPR_*_PORT set.
"""
import json
import os
import sys
import threading
import time

from dapr.clients import DaprClient
from dapr.clients.grpc._jobs import Job
from dapr.ext.grpc import App
from google.protobuf.any_pb2 import Any

app = App()
lock = threading.Lock()
counts = {}


def record(event, **extra):
    with lock:
        counts[event.name] = counts.get(event.name, 0) + 1
        line = {"name": event.name, "data": event.data.decode("utf-8", "replace"), "n": counts[event.name]}
        line.update(extra)
        print(json.dumps(line), flush=True)


@app.job_event("hello-job")
def hello(event):
    record(event)


@app.job_event("data-job")
def data_job(event):
    record(event)


@app.job_event("repeat-job")
def repeat_job(event):
    record(event)


@app.job_event("failing-job")
def failing(event):
    record(event)
    raise RuntimeError("this job always fails")


def schedule():
    with DaprClient() as client:
        client.schedule_job(Job(name="hello-job", due_time="1s"))
        client.schedule_job(Job(name="data-job", due_time="1s", data=Any(value=b'{"answer": 42}')))
        client.schedule_job(Job(name="repeat-job", schedule="@every 1s", repeats=3))
        client.schedule_job(Job(name="failing-job", due_time="1s"))
    print(json.dumps({"scheduled": True}), flush=True)


def stop_after(seconds):
    time.sleep(seconds)
    sys.stdout.flush()
    os._exit(0)


# AppCallbackHealthCheck/HealthCheck answers UNIMPLEMENTED unless a callback is registered.
if os.environ.get("HEALTH_CHECK") == "1":
    app.register_health_check(lambda: None)

threading.Thread(target=schedule, daemon=True).start()
threading.Thread(target=stop_after, args=(float(os.environ.get("RUN_SECONDS", "9")),), daemon=True).start()
app.run(int(os.environ["APP_PORT"]))
