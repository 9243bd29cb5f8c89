"""Calls a token-protected sidecar without DAPR_API_TOKEN: every call must be UNAUTHENTICATED."""
from dapr.clients import DaprClient
from dapr.clients.exceptions import DaprGrpcError
from dapr.clients.grpc._jobs import Job

with DaprClient() as client:
    try:
        client.schedule_job(Job(name="no-token", due_time="1h"))
    except DaprGrpcError as e:
        print(e.code().name, flush=True)
    else:
        raise AssertionError("scheduled without the api token")
