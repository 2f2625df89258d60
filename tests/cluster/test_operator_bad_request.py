"""One CapacityRequest the operator cannot translate must not stop the roll-ups of the rest.

Regression: a request with `cpu: 1e999999` (admitted by the API server's schema at the
time) made translation raise an ArithmeticError that nothing caught; the roll-up task died
silently and no new request reached the shard again, even after the bad one was deleted.

Here, against the real API server and a scripted shard: next to good requests, a request
whose translation raises (an OverflowError injected into translation for one name; and the
`1e999999` request itself when the schema admits it) gets Translatable=False and one
Warning Event, the good ones go out, deleting the bad ones changes nothing for the others,
and a good request created afterwards is delivered. The roll-up loop never restarted.
"""

from __future__ import annotations

import functools
from collections.abc import Coroutine, Iterator, Mapping
from typing import Any

import kr8s
import kr8s.asyncio
import pytest
from prometheus_client import CollectorRegistry

from bigfleet.controlplane import LocalControlPlane
from bigfleet.crd import API_VERSION, CapacityRequest
from bigfleet.operators.operator import events
from bigfleet.operators.operator import rollup as rollups
from bigfleet.recorder import Recorder
from bigfleet.supervise import Loops
from tests.cluster.test_operator_session import OperatorRig
from tests.support.waiting import until

PRIORITY = 731  # ours alone: other tests' requests share the cluster


class Rig(OperatorRig):
    """The operator rig, its session supervised and reporting untranslatable requests."""

    rollup_interval_s = 0.3

    def __init__(self, control_plane: LocalControlPlane) -> None:
        super().__init__(control_plane)
        self.registry = CollectorRegistry()
        self.loops = Loops(self.registry)

    def _options(self, api: kr8s.asyncio.Api) -> dict[str, Any]:
        recorder = Recorder(api, events.COMPONENT)
        return {
            "on_untranslatable": functools.partial(events.untranslatable, recorder),
            "loops": self.loops,
        }

    def _run(self) -> Coroutine[Any, Any, None]:
        assert self.session is not None
        return self.loops.run("operator_session", self.session.run)

    def restarts(self, loop: str) -> float | None:
        return self.registry.get_sample_value("bigfleet_loop_restarts_total", {"loop": loop})

    def our_cpu(self) -> str | None:
        """The CPU our requests add up to in the newest roll-up that carries them."""
        for frame in reversed(self.shard.rollups):
            for need in frame.rollup.needs:
                if need.priority == PRIORITY:
                    return need.aggregate_resources["cpu"]
        return None


@pytest.fixture
def broken_translation(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Translation raises OverflowError (what int(float('inf')) raises) for one name."""
    name = "broken"
    original = rollups.translate

    def translate(cr: Mapping[str, Any]) -> rollups.Translated:
        if (cr.get("metadata") or {}).get("name") == name:
            raise OverflowError("cannot convert float infinity to integer")
        return original(cr)

    monkeypatch.setattr(rollups, "translate", translate)
    yield name


async def create(api: kr8s.asyncio.Api, namespace: str, name: str, cpu: str) -> None:
    await CapacityRequest(
        {
            "apiVersion": API_VERSION,
            "kind": "CapacityRequest",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"resources": {"cpu": cpu}, "priority": PRIORITY},
        },
        api=api,
    ).create()


async def untranslatable_events(api: kr8s.asyncio.Api, namespace: str, name: str) -> list[Any]:
    return [
        e
        async for e in api.async_get("events", namespace=namespace)
        if e.raw["involvedObject"]["name"] == name and e.raw.get("reason") == "Untranslatable"
    ]


async def test_an_untranslatable_request_is_reported_and_the_rest_still_goes(
    api: kr8s.asyncio.Api,
    namespace: str,
    control_plane: LocalControlPlane,
    broken_translation: str,
) -> None:
    rig = Rig(control_plane)
    rig.start()
    try:
        await create(api, namespace, "good-1", "1")
        await create(api, namespace, "good-2", "1")
        bad = [broken_translation]
        await create(api, namespace, broken_translation, "1")
        try:
            await create(api, namespace, "huge", "1e999999")
            bad.append("huge")  # the schema admits it: the operator must cope
        except kr8s.ServerError as err:  # a stricter schema refuses it at the door
            assert err.response is not None and err.response.status_code == 422

        await until(lambda: rig.our_cpu() == "2", "both good requests in a roll-up")

        for name in bad:

            async def reported(name: str = name) -> bool:
                cr = await CapacityRequest.get(name, namespace=namespace, api=api)
                conditions = (cr.raw.get("status") or {}).get("conditions") or []
                return any(
                    c["type"] == "Translatable" and c["status"] == "False" for c in conditions
                ) and bool(await untranslatable_events(api, namespace, name))

            await until(reported, f"Translatable=False and a Warning Event on {name}")

        sent = len(rig.shard.rollups)
        await until(lambda: len(rig.shard.rollups) >= sent + 3, "three more roll-ups")
        for name in bad:
            (event,) = await untranslatable_events(api, namespace, name)  # one, not one a roll-up
            assert event.raw["type"] == "Warning"
            assert "left out of the roll-up" in event.raw["message"]
        assert rig.our_cpu() == "2"

        for name in bad:
            cr = await CapacityRequest.get(name, namespace=namespace, api=api)
            await cr.delete()
        sent = len(rig.shard.rollups)
        await until(lambda: len(rig.shard.rollups) >= sent + 2, "roll-ups after the deletion")
        assert rig.our_cpu() == "2"

        await create(api, namespace, "good-3", "1")
        await until(lambda: rig.our_cpu() == "3", "a request created afterwards delivered")

        async def acknowledged() -> bool:
            phases = {
                cr.name: (cr.raw.get("status") or {}).get("phase")
                async for cr in api.async_get("capacityrequests", namespace=namespace)
            }
            return phases == dict.fromkeys(("good-1", "good-2", "good-3"), "Acknowledged")

        await until(acknowledged, "every good request Acknowledged")
        assert rig.restarts("operator_rollup") == 0  # the roll-up loop never died
        assert rig.restarts("operator_session") == 0
        assert rig.loops.alive()
        assert rig.session.unready() is None  # the session to the shard is up
    finally:
        rig.stop()
