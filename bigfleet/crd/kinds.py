"""kr8s classes for the BigFleet kinds (group bigfleet.lucy.sh, version v1alpha1).

Declaring a class registers the kind with kr8s, so `kr8s.asyncio.get("upcomingnodes")`
returns these types too. Each class names its spec and status models; `spec_model()`
and `status_model()` decode the object's current raw dict into them.
"""

from __future__ import annotations

from typing import Any, ClassVar, Self, cast

import kr8s
import kr8s.asyncio
from kr8s.asyncio.objects import APIObject

from bigfleet.crd import models

GROUP = "bigfleet.lucy.sh"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"


class _BigFleetObject(APIObject):
    version = API_VERSION
    spec_type: ClassVar[type[models.Model]]
    status_type: ClassVar[type[models.Model] | None]

    @classmethod
    def manifest(
        cls,
        name: str,
        spec: models.Model,
        *,
        namespace: str | None = None,
        labels: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """The object as a dict ready for `cls(manifest).create()`."""
        metadata: dict[str, Any] = {"name": name}
        if namespace is not None:
            metadata["namespace"] = namespace
        if labels:
            metadata["labels"] = dict(labels)
        return {
            "apiVersion": API_VERSION,
            "kind": cls.kind,
            "metadata": metadata,
            "spec": spec.to_object(),
        }

    @classmethod
    def named(cls, name: str, api: kr8s.asyncio.Api, namespace: str | None = None) -> Self:
        """The object by name (in `namespace`, for a namespaced kind), not read: enough to
        refresh, patch or delete it. (kr8s's `get` lists by name instead and, while
        nothing matches, keeps listing for 2 s.)"""
        metadata = {"name": name} | ({"namespace": namespace} if namespace is not None else {})
        return cls({"apiVersion": API_VERSION, "kind": cls.kind, "metadata": metadata}, api=api)

    @classmethod
    async def read(
        cls, name: str, api: kr8s.asyncio.Api, namespace: str | None = None
    ) -> Self | None:
        """The object as it stands, by one GET; None when there is none."""
        obj = cls.named(name, api, namespace)
        try:
            await obj.refresh()
        except kr8s.NotFoundError:
            return None
        return obj

    def _section(self, key: str) -> dict[str, Any] | None:
        raw = cast(dict[str, Any], self.raw)
        return raw.get(key)

    def spec_model(self) -> models.Model:
        return self.spec_type.from_object(self._section("spec"))

    def status_model(self) -> models.Model | None:
        status = self._section("status")
        if self.status_type is None or not status:
            return None
        return self.status_type.from_object(status)


class CapacityRequest(_BigFleetObject):
    endpoint = "capacityrequests"
    kind = "CapacityRequest"
    plural = "capacityrequests"
    singular = "capacityrequest"
    namespaced = True
    spec_type = models.CapacityRequestSpec
    status_type = models.CapacityRequestStatus


class UpcomingNode(_BigFleetObject):
    endpoint = "upcomingnodes"
    kind = "UpcomingNode"
    plural = "upcomingnodes"
    singular = "upcomingnode"
    namespaced = False
    spec_type = models.UpcomingNodeSpec
    status_type = models.UpcomingNodeStatus


class AvailableCapacity(_BigFleetObject):
    endpoint = "availablecapacities"
    kind = "AvailableCapacity"
    plural = "availablecapacities"
    singular = "availablecapacity"
    namespaced = False
    spec_type = models.AvailableCapacitySpec
    status_type = None  # reserved, always empty


class Shard(_BigFleetObject):
    endpoint = "shards"
    kind = "Shard"
    plural = "shards"
    singular = "shard"
    namespaced = False
    spec_type = models.ShardSpec
    status_type = models.ShardStatus


KINDS: tuple[type[_BigFleetObject], ...] = (CapacityRequest, UpcomingNode, AvailableCapacity, Shard)
