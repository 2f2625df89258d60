"""CapacityRequests where they meet the operator: read, decoded, and their status written.

Objects arrive as dicts (kopf's watch, a list from the API server); `decode`
turns one into the typed models of `bigfleet.crd.models`, and everything past
it reads model attributes. An object the models refuse is `Untranslatable`,
like any request the roll-up cannot turn into demand. Status writes are
encoded from the same models: the phase by a merge patch, a single condition by
server-side apply (so the other conditions stay).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import kr8s
import kr8s.asyncio
from pydantic import ValidationError

from bigfleet.crd import API_VERSION, CapacityRequest
from bigfleet.crd.models import (
    CapacityRequestSpec,
    CapacityRequestStatus,
    Model,
    RequestCondition,
)
from bigfleet.recorder import Involved

M = TypeVar("M", bound=Model)


class Untranslatable(ValueError):
    """A CR the schema admits but the operator cannot turn into demand."""


@dataclass(frozen=True)
class Request:
    """One CapacityRequest, decoded: who it is and its typed spec and status."""

    namespace: str
    name: str
    spec: CapacityRequestSpec
    status: CapacityRequestStatus


def _why(section: str, error: ValidationError) -> str:
    """The first problem, in the words the Event and the condition carry."""
    problem = error.errors()[0]
    # An operator Kubernetes knows and BigFleet does not (Gt, Lt) is named as such.
    if problem["type"] == "literal_error" and problem["loc"][-1] == "operator":
        return f"requirement operator {problem['input']!r} is not supported"
    # pydantic marks a dict key's own check with a "[key]" step and prefixes "Value error, ".
    where = ".".join(str(part) for part in (section, *problem["loc"]) if part != "[key]")
    return f"{where}: {problem['msg'].removeprefix('Value error, ')}"


def _section(model: type[M], obj: Mapping[str, Any], section: str) -> M:
    try:
        return model.from_object(obj.get(section))
    except ValidationError as err:
        raise Untranslatable(_why(section, err)) from err


def decode(obj: Mapping[str, Any]) -> Request:
    """The typed request of an object as read from the API server."""
    meta = obj["metadata"]
    return Request(
        namespace=meta.get("namespace", ""),
        name=meta["name"],
        spec=_section(CapacityRequestSpec, obj, "spec"),
        status=_section(CapacityRequestStatus, obj, "status"),
    )


async def list_all(api: kr8s.asyncio.Api) -> list[dict[str, Any]]:
    """Every CapacityRequest of the cluster, straight from the API server."""
    found = [cr async for cr in api.async_get(CapacityRequest, namespace=kr8s.ALL)]
    return [dict(cr.raw) for cr in found if isinstance(cr, CapacityRequest)]


class RequestCache:
    """CapacityRequests by (namespace, name), fed by kopf's watch; reads never hit the API."""

    def __init__(self) -> None:
        self.items: dict[tuple[str, str], dict[str, Any]] = {}

    def apply(self, event_type: str | None, body: Mapping[str, Any]) -> None:
        meta = body["metadata"]
        key = (meta.get("namespace", ""), meta["name"])
        if event_type == "DELETED":
            self.items.pop(key, None)
        else:
            self.items[key] = {
                "metadata": dict(meta),
                "spec": dict(body.get("spec") or {}),
                "status": dict(body.get("status") or {}),
            }

    async def fill(self, api: kr8s.asyncio.Api) -> None:
        """Load every request at once, before the watch has delivered them."""
        for body in await list_all(api):
            self.apply("ADDED", body)

    async def list(self) -> list[dict[str, Any]]:
        return list(self.items.values())

    def uid(self, about: Involved) -> str | None:
        """The uid of a request as the watch delivered it; None for anything else."""
        if about.kind != CapacityRequest.kind or about.api_version != API_VERSION:
            return None
        found = self.items.get((about.namespace, about.name))
        uid = found["metadata"].get("uid") if found is not None else None
        return str(uid) if uid else None


async def patch_status(
    api: kr8s.asyncio.Api, namespace: str, name: str, status: CapacityRequestStatus
) -> None:
    """Merge `status` into the request's status (a JSON merge patch), without reading it first."""
    await _patch_status(
        api, namespace, name, {"status": status.to_object()}, "application/merge-patch+json"
    )


async def apply_condition(
    api: kr8s.asyncio.Api, namespace: str, name: str, condition: RequestCondition, manager: str
) -> None:
    """Set one condition of the request's status by server-side apply, as `manager`.

    `status.conditions` is a list keyed by `type`, so the API server merges the entry in and
    keeps every other condition (a merge patch would replace the whole list). Raises
    kr8s.NotFoundError when the request is gone: apply does not create through /status.
    """
    body = {
        "apiVersion": API_VERSION,
        "kind": CapacityRequest.kind,
        "metadata": {"name": name, "namespace": namespace},
        "status": {"conditions": [condition.to_object()]},
    }
    await _patch_status(
        api,
        namespace,
        name,
        body,
        "application/apply-patch+yaml",  # JSON is YAML
        {"fieldManager": manager, "force": "true"},
    )


async def _patch_status(
    api: kr8s.asyncio.Api,
    namespace: str,
    name: str,
    body: dict[str, Any],
    content_type: str,
    params: dict[str, str] | None = None,
) -> None:
    """PATCH the request's /status and leave the answer unread: building a kr8s object
    and parsing the whole returned request made up a fifth of an acknowledgement's cost
    to the operator. Raises kr8s.NotFoundError when the request is gone."""
    try:
        async with api.call_api(
            "PATCH",
            version=API_VERSION,
            namespace=namespace,
            url=f"{CapacityRequest.endpoint}/{name}/status",
            content=json.dumps(body),
            headers={"Content-Type": content_type},
            params=params,
        ):
            pass
    except kr8s.ServerError as err:
        if err.response is not None and err.response.status_code == 404:
            raise kr8s.NotFoundError(f"CapacityRequest {namespace}/{name} does not exist") from err
        raise
