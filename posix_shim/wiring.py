"""Building the two halves of a session, the same way on every backend.

Every backend makes its host with `make_host` and its trusted client with `make_client`, so that options which
attach to either side (tracing, fault injection, the violation policy) are wired in one place.
"""

from __future__ import annotations

from typing import Any

from ocall_bridge.access import Access
from ocall_bridge.client import OcallClient, Transport
from ocall_bridge.host.runtime import Host


def make_host(access: Access, options: dict[str, Any]) -> Host:
    return Host(access)


def make_client(transport: Transport, access: Access, options: dict[str, Any]) -> OcallClient:
    return OcallClient(transport, violation=options.get("violation", "raise"))
