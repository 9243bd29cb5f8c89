"""The official Dapr Python SDK (PyPI dapr) as a client of `kairos sidecar`.

Run by tests/python_sdk.rs with DAPR_HTTP_PORT / DAPR_GRPC_PORT pointing at the sidecar.
Exits non-zero (with the failed assertion) when the sidecar does not behave like daprd.
"""
import json
import sys
import warnings

import grpc
from dapr.clients import DaprClient
from dapr.clients.exceptions import DaprGrpcError
from dapr.clients.grpc._jobs import ConstantFailurePolicy, DropFailurePolicy, Job
from google.protobuf.any_pb2 import Any


def code_of(call):
    try:
        call()
    except DaprGrpcError as e:
        return e.code(), e.details()
    raise AssertionError("expected an error")


with DaprClient() as client:
    # Schedule and get back a job with every field set (spec §3.2): strings come back as written.
    data = Any(value=json.dumps({"Task": "db-backup"}).encode())
    client.schedule_job(
        Job(
            name="py-full",
            schedule="@every 1h",
            repeats=5,
            due_time="10s",
            ttl="2h",
            data=data,
            failure_policy=ConstantFailurePolicy(max_retries=2, interval_seconds=5),
        )
    )
    job = client.get_job("py-full")
    assert job.name == "py-full", job.name
    assert job.schedule == "@every 1h", job.schedule
    assert job.repeats == 5, job.repeats
    assert job.due_time == "10s", job.due_time
    assert job.ttl == "2h", job.ttl
    assert job.data.value == data.value, job.data
    assert isinstance(job.failure_policy, ConstantFailurePolicy), job.failure_policy
    assert job.failure_policy.max_retries == 2 and job.failure_policy.interval_seconds == 5

    # No failure policy given: the default constant {1s, 3} is stored and returned (§7.5).
    client.schedule_job(Job(name="py-default", due_time="1h"))
    job = client.get_job("py-default")
    assert isinstance(job.failure_policy, ConstantFailurePolicy), job.failure_policy
    assert job.failure_policy.max_retries == 3 and job.failure_policy.interval_seconds == 1

    client.schedule_job(Job(name="py-drop", due_time="1h", failure_policy=DropFailurePolicy()))
    assert isinstance(client.get_job("py-drop").failure_policy, DropFailurePolicy)

    # overwrite=False on an existing name: ALREADY_EXISTS (§7.7); overwrite=True replaces.
    code, details = code_of(lambda: client.schedule_job(Job(name="py-full", schedule="@every 2h")))
    assert code == grpc.StatusCode.ALREADY_EXISTS, (code, details)
    assert "job already exists: 'app||default||py-app||py-full'" in details, details
    client.schedule_job(Job(name="py-full", schedule="@every 2h"), overwrite=True)
    assert client.get_job("py-full").schedule == "@every 2h"

    # Validation failures come back as INTERNAL with the scheduler's text (§2.4, §7.3).
    code, details = code_of(lambda: client.schedule_job(Job(name="py-bad", schedule="* * * * *")))
    assert code == grpc.StatusCode.INTERNAL, (code, details)
    assert "expected exactly 6 fields, found 5" in details, details

    # GET of an unknown job is INTERNAL, not NOT_FOUND (§2.4).
    code, details = code_of(lambda: client.get_job("py-missing"))
    assert code == grpc.StatusCode.INTERNAL, (code, details)
    assert "job not found: py-missing" in details, details

    # Special characters in names round-trip (§7.8).
    client.schedule_job(Job(name="my||job@name", due_time="1h"))
    assert client.get_job("my||job@name").name == "my||job@name"

    # Delete, and delete of an unknown job is fine.
    client.delete_job("py-full")
    code, _ = code_of(lambda: client.get_job("py-full"))
    assert code == grpc.StatusCode.INTERNAL
    client.delete_job("py-never-existed")

    # The deprecated alpha1 aliases still work.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        client.schedule_job_alpha1(Job(name="py-alpha", due_time="1h"))
        assert client.get_job_alpha1("py-alpha").due_time == "1h"
        client.delete_job_alpha1("py-alpha")

print("PASS")
sys.stdout.flush()
