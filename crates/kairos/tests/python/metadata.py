"""The official Dapr Python SDK's `DaprClient().get_metadata()` against `kairos sidecar`.

Run by tests/parity.rs with DAPR_HTTP_PORT / DAPR_GRPC_PORT pointing at the sidecar; prints
what the SDK decoded as one JSON line.
"""
import json

from dapr.clients import DaprClient

with DaprClient() as client:
    metadata = client.get_metadata()
    print(
        json.dumps(
            {
                "application_id": metadata.application_id,
                "extended_metadata": dict(metadata.extended_metadata),
                "registered_components": len(metadata.registered_components),
            }
        )
    )
