"""The operator against the real API server and a scripted shard over real gRPC."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from typing import Any

import grpc
import kr8s
import kr8s.asyncio
import pytest
from kr8s.asyncio.objects import Node, Pod, PodDisruptionBudget, Secret

from bigfleet.controlplane import LocalControlPlane
from bigfleet.crd import API_VERSION, CapacityRequest, UpcomingNode
from bigfleet.operators.operator.bootstrap import BootstrapResponder
from bigfleet.operators.operator.session import OperatorSession
from bigfleet.operators.operator.writers import collect_finished, mark_node_ready
from bigfleet.wire import capacity_pb2, provider_pb2, shard_pb2, shard_pb2_grpc
from tests.support.waiting import until

S = provider_pb2.MachineState


class ScriptedShard(shard_pb2_grpc.ShardServicer):
    """Records what the operator sends, acknowledges roll-ups, pushes frames on request."""

    def __init__(self) -> None:
        self.hellos: list[str] = []
        self.rollups: list[shard_pb2.OperatorMessage] = []
        self.answers: list[shard_pb2.BootstrapBlobResponse] = []
        self.reclaim_acks: list[shard_pb2.ReclaimAck] = []
        self.push: asyncio.Queue[shard_pb2.ShardMessage | None] = asyncio.Queue()

    async def Session(
        self,
        request_iterator: AsyncIterator[shard_pb2.OperatorMessage],
        context: grpc.aio.ServicerContext,
    ) -> None:
        writing = asyncio.Lock()  # a stream takes one write at a time; two tasks write here

        async def write(frame: shard_pb2.ShardMessage) -> None:
            async with writing:
                await context.write(frame)

        async def read() -> None:
            async for frame in request_iterator:
                kind = frame.WhichOneof("payload")
                if kind == "hello":
                    self.hellos.append(frame.hello.cluster_id)
                elif kind == "rollup":
                    self.rollups.append(frame)
                    await write(
                        shard_pb2.ShardMessage(ack=shard_pb2.Acknowledgement(echo="rollup"))
                    )
                elif kind == "bootstrap_response":
                    self.answers.append(frame.bootstrap_response)
                elif kind == "reclaim_ack":
                    self.reclaim_acks.append(frame.reclaim_ack)

        reader = asyncio.create_task(read())
        while (frame := await self.push.get()) is not None:
            await write(frame)
        reader.cancel()
        await context.abort(grpc.StatusCode.UNAVAILABLE, "scripted disconnect")


class OperatorRig:
    """Scripted shard and operator in a thread with their own event loop."""

    rollup_interval_s = 0.5

    def _options(self, api: kr8s.asyncio.Api) -> dict[str, Any]:
        """More OperatorSession arguments, for a rig that needs them."""
        return {}

    def _run(self) -> Coroutine[Any, Any, None]:
        assert self.session is not None
        return self.session.run()

    def __init__(self, control_plane: LocalControlPlane) -> None:
        self.cp = control_plane
        self.shard = ScriptedShard()
        self.session: OperatorSession | None = None
        self.loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    async def _start(self) -> None:
        server = grpc.aio.server()
        shard_pb2_grpc.add_ShardServicer_to_server(self.shard, server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        self.server = server
        api = await kr8s.asyncio.api(kubeconfig=str(self.cp.kubeconfig_path))
        responder = BootstrapResponder(
            api, "c1", api_server=self.cp.apiserver_url, ca_bundle=self.cp.pki.ca_cert.read_text()
        )
        self.session = OperatorSession(
            cluster_id="c1",
            shard_address=f"127.0.0.1:{port}",
            api=api,
            responder=responder,
            rollup_interval_s=self.rollup_interval_s,
            **self._options(api),
        )
        self.task = asyncio.create_task(self._run())

    def start(self) -> None:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(30)

    def send(self, frame: shard_pb2.ShardMessage | None) -> None:
        self.loop.call_soon_threadsafe(self.shard.push.put_nowait, frame)

    def stop(self) -> None:
        async def stop() -> None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
            await self.server.stop(grace=None)

        asyncio.run_coroutine_threadsafe(stop(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)


@pytest.fixture
def operator_rig(control_plane: LocalControlPlane) -> Iterator[OperatorRig]:
    rig = OperatorRig(control_plane)
    rig.start()
    yield rig
    rig.stop()


async def test_hundreds_of_requests_roll_up_into_one_need_and_are_acknowledged(
    api: kr8s.asyncio.Api, namespace: str, operator_rig: OperatorRig
) -> None:
    async def create(i: int) -> None:
        await CapacityRequest(
            {
                "apiVersion": API_VERSION,
                "kind": "CapacityRequest",
                "metadata": {"name": f"cr-{i:03d}", "namespace": namespace},
                "spec": {
                    "resources": {"cpu": "250m", "memory": "1Gi"},
                    "priority": 500,
                    "interruptionPenalty": "3",
                },
            },
            api=api,
        ).create()

    await asyncio.gather(*(create(i) for i in range(300)))

    def ours() -> capacity_pb2.CapacityNeed | None:
        # Other tests' requests share the cluster; ours alone have priority 500.
        for frame in reversed(operator_rig.shard.rollups):
            for need in frame.rollup.needs:
                if need.priority == 500 and need.aggregate_resources["cpu"] == "75":
                    return need
        return None

    need = await until(ours, "a roll-up with all 300 requests folded into one need")
    assert need.aggregate_resources["memory"] == str(300 * 2**30)
    assert dict(need.min_unit) == {"cpu": "250m", "memory": "1073741824"}
    assert need.interruption_penalty_bucket == 5  # $3 rounds up to the $4 bucket
    assert operator_rig.shard.hellos[0] == "c1"

    async def all_acknowledged() -> bool:
        phases = [
            (cr.raw.get("status") or {}).get("phase")
            async for cr in api.async_get("capacityrequests", namespace=namespace)
        ]
        return len(phases) == 300 and set(phases) == {"Acknowledged"}

    await until(all_acknowledged, "every request Acknowledged", timeout_s=60)
    # Other tests' operators roll up every request of the cluster: 300 that fit any node
    # would take every NodeComing Event a frame may cause (explain.MAX_PER_FRAME).
    await asyncio.gather(
        *(_delete(CapacityRequest, f"cr-{i:03d}", namespace, api) for i in range(300))
    )


async def test_bootstrap_requests_get_a_rendered_blob_and_a_token_secret(
    api: kr8s.asyncio.Api, operator_rig: OperatorRig, control_plane: LocalControlPlane
) -> None:
    await until(lambda: operator_rig.shard.hellos, "session open")
    requirement = shard_pb2.BootstrapRequest(request_id="req-1", cluster_id="c1")
    requirement.requirements.add(
        key="node.kubernetes.io/instance-type", operator=1, values=["m6i.large"]
    )
    operator_rig.send(shard_pb2.ShardMessage(bootstrap_request=requirement))
    answer = await until(lambda: operator_rig.shard.answers, "a bootstrap answer")
    blob = answer[0].user_data.decode()
    assert answer[0].request_id == "req-1" and not answer[0].error
    assert control_plane.apiserver_url in blob
    assert 'kubelet_node_labels: "node.kubernetes.io/instance-type=m6i.large"' in blob
    token = blob.split('token: "')[1].split('"')[0]
    token_id = token.split(".")[0]
    secret = await Secret.get(f"bootstrap-token-{token_id}", namespace="kube-system", api=api)
    assert secret.raw["type"] == "bootstrap.kubernetes.io/token"
    # The shard re-sends the request after a reconnect: same answer, no second token.
    operator_rig.send(shard_pb2.ShardMessage(bootstrap_request=requirement))
    answers = await until(
        lambda: len(operator_rig.shard.answers) >= 2 and operator_rig.shard.answers,
        "the reissued request answered",
    )
    assert answers[1].user_data == answers[0].user_data


async def test_node_state_updates_walk_the_upcoming_node_phases(
    api: kr8s.asyncio.Api, operator_rig: OperatorRig
) -> None:
    await until(lambda: operator_rig.shard.hellos, "session open")
    seen: list[str] = []

    async def phase() -> str | None:
        try:
            node = await UpcomingNode.get("un-m-walk", api=api)
        except kr8s.NotFoundError:
            return None
        return (node.raw.get("status") or {}).get("phase")

    for state, expected in (
        (S.MACHINE_STATE_CREATING, "Provisioning"),
        (S.MACHINE_STATE_IDLE, "Launched"),
        (S.MACHINE_STATE_CONFIGURING, "Registered"),
        (S.MACHINE_STATE_CONFIGURED, "Ready"),
        (S.MACHINE_STATE_DRAINING, "Draining"),
        (S.MACHINE_STATE_IDLE, "Drained"),
    ):
        update = shard_pb2.NodeStateUpdate(
            supersedes_key="node:m-walk",
            machine_id="m-walk",
            cluster_id="c1",
            state=state,
            node_name="m-walk",
            provider_id="fake/host-m-walk",
        )
        update.resources.resources["cpu"] = "8"
        operator_rig.send(shard_pb2.ShardMessage(node_state_update=update))
        got = await until(lambda e=expected: _equals(phase(), e), f"phase {expected}")
        seen.append(got)
    assert seen == ["Provisioning", "Launched", "Registered", "Ready", "Draining", "Drained"]
    # Each update's arrival-to-written time was measured (the scale test gates its p99).
    assert operator_rig.session is not None
    timed = operator_rig.session.metrics.upcoming_node_latency.collect()[0].samples
    assert next(s.value for s in timed if s.name.endswith("_count")) == len(seen)
    node = await UpcomingNode.get("un-m-walk", api=api)
    assert node.raw["spec"]["resources"] == {"cpu": "8"}
    assert "provisioningStartTime" in node.raw["status"]
    # Drained nodes are kept for the retention window, then collected.
    assert "un-m-walk" not in await collect_finished(api, retention_s=3600)
    assert "un-m-walk" in await collect_finished(api, retention_s=0)
    with pytest.raises(kr8s.NotFoundError):
        await UpcomingNode.get("un-m-walk", api=api)


async def test_a_ready_node_makes_its_upcoming_node_ready(
    api: kr8s.asyncio.Api, operator_rig: OperatorRig
) -> None:
    await until(lambda: operator_rig.shard.hellos, "session open")
    update = shard_pb2.NodeStateUpdate(
        supersedes_key="node:m-join",
        machine_id="m-join",
        cluster_id="c1",
        state=S.MACHINE_STATE_CONFIGURING,
    )
    operator_rig.send(shard_pb2.ShardMessage(node_state_update=update))

    async def registered() -> bool:
        try:
            node = await UpcomingNode.get("un-m-join", api=api)
        except kr8s.NotFoundError:
            return False
        return bool((node.raw.get("status") or {}).get("phase") == "Registered")

    await until(registered, "Registered")
    assert await mark_node_ready(api, "m-join") == "marked"
    node = await UpcomingNode.get("un-m-join", api=api)
    assert node.raw["status"]["phase"] == "Ready"
    assert node.raw["status"]["nodeRef"]["name"] == "m-join"


async def _equals(value: Any, expected: str) -> str | None:
    got = await value
    return got if got == expected else None


async def test_a_dropped_stream_is_redialled_with_hello_and_a_fresh_rollup(
    operator_rig: OperatorRig,
) -> None:
    await until(lambda: operator_rig.shard.rollups, "a first roll-up")
    operator_rig.send(None)  # the scripted shard drops the stream
    await until(lambda: len(operator_rig.shard.hellos) >= 2, "a second Hello", timeout_s=30)
    count = len(operator_rig.shard.rollups)
    await until(lambda: len(operator_rig.shard.rollups) > count, "roll-ups after reconnect")
    assert operator_rig.session is not None and operator_rig.session.sessions >= 2


async def test_reclaim_cordons_acks_and_evicts_once_the_disruption_budget_allows(
    api: kr8s.asyncio.Api,
    namespace: str,
    operator_rig: OperatorRig,
    controller_manager: LocalControlPlane,
) -> None:
    await until(lambda: operator_rig.shard.hellos, "session open")
    node_name = f"m-{namespace}"
    await Node(
        {"apiVersion": "v1", "kind": "Node", "metadata": {"name": node_name}}, api=api
    ).create()
    await UpcomingNode(
        {
            "apiVersion": UpcomingNode.version,
            "kind": "UpcomingNode",
            "metadata": {"name": f"un-{node_name}"},
            "spec": {"resources": {"cpu": "8"}},
        },
        api=api,
    ).create()
    for i in range(2):
        pod = Pod(
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": f"web-{i}", "namespace": namespace, "labels": {"app": "web"}},
                "spec": {"nodeName": node_name, "containers": [{"name": "c", "image": "busybox"}]},
            },
            api=api,
        )
        await pod.create()
        # No kubelet here: report the pod running and ready as one would, so the budget
        # guards it (pending pods bypass disruption budgets).
        ready = {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}
        await pod.patch({"status": ready}, subresource="status")
    budget = PodDisruptionBudget(
        {
            "apiVersion": "policy/v1",
            "kind": "PodDisruptionBudget",
            "metadata": {"name": "web", "namespace": namespace},
            "spec": {"minAvailable": 2, "selector": {"matchLabels": {"app": "web"}}},
        },
        api=api,
    )
    await budget.create()

    async def budget_observed() -> bool:
        await budget.refresh()
        return (budget.raw.get("status") or {}).get("currentHealthy") == 2

    await until(budget_observed, "the disruption controller saw the budget")
    instruction = shard_pb2.ReclaimInstruction(
        instruction_id="rc-1",
        nodes=[node_name],
        grace_period_seconds=60,
        preemptor_priority=1_000_000,
    )
    operator_rig.send(shard_pb2.ShardMessage(reclaim_instruction=instruction))

    acks = await until(lambda: operator_rig.shard.reclaim_acks, "a ReclaimAck")
    assert (acks[0].instruction_id, acks[0].nodes_started) == ("rc-1", 1)
    node = await Node.get(node_name, api=api)
    assert node.raw["spec"].get("unschedulable") is True

    async def phase() -> str:
        upcoming = await UpcomingNode.get(f"un-{node_name}", api=api)
        return str((upcoming.raw.get("status") or {}).get("phase"))

    assert await phase() == "Draining"
    await asyncio.sleep(3)  # the budget refuses meanwhile: nothing may be evicted
    pods = [p async for p in api.async_get("pods", namespace=namespace)]
    assert all(not p.raw["metadata"].get("deletionTimestamp") for p in pods)

    await budget.patch({"spec": {"minAvailable": 0}})
    await until(lambda: _equals(phase(), "Drained"), "Drained once the budget allows")
    pods = [p async for p in api.async_get("pods", namespace=namespace)]
    assert all(p.raw["metadata"].get("deletionTimestamp") for p in pods)


async def test_a_burst_of_node_state_updates_beside_acknowledgements_takes_two_calls_a_write(
    api: kr8s.asyncio.Api,
    namespace: str,
    operator_rig: OperatorRig,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every UpcomingNode write, of a new object or not, is one server-side apply of its
    spec and one status patch: nothing reads the object first. A read through
    `APIObject.get` listed the kind again and again for ~2.5 s before it said an object
    was absent, so each first write stalled that long, and more while the API server was
    busy with acknowledgements (the scale test's latency p99 was 9 s)."""
    await until(lambda: operator_rig.shard.hellos, "session open")
    session = operator_rig.session
    assert session is not None
    calls: list[tuple[str, str]] = []
    call_api = session.api.call_api  # the rig's own client (kr8s keeps one per thread)

    def counting(method: str = "GET", *args: Any, **kwargs: Any) -> Any:
        url = str(kwargs.get("url", ""))
        if url.startswith(UpcomingNode.endpoint):
            calls.append((method, url))
        return call_api(method, *args, **kwargs)

    monkeypatch.setattr(session.api, "call_api", counting)

    def written() -> float:
        samples = session.metrics.upcoming_node_latency.collect()[0].samples
        return next(s.value for s in samples if s.name.endswith("_count"))

    async def request(i: int) -> None:
        await CapacityRequest(
            {
                "apiVersion": API_VERSION,
                "kind": "CapacityRequest",
                "metadata": {"name": f"burst-{i:03d}", "namespace": namespace},
                "spec": {"resources": {"cpu": "100m"}, "priority": 7},
            },
            api=api,
        ).create()

    # Requests to acknowledge, a status patch each, while the updates arrive.
    await asyncio.gather(*(request(i) for i in range(150)))
    machines = [f"m-{namespace}-{i:02d}" for i in range(24)]
    try:
        await _burst(api, namespace, operator_rig, machines, calls, written)
    finally:  # other tests' operators roll up every request and see every UpcomingNode
        await asyncio.gather(
            *(_delete(CapacityRequest, f"burst-{i:03d}", namespace, api) for i in range(150)),
            *(_delete(UpcomingNode, f"un-{m}", None, api) for m in machines),
        )


async def _burst(
    api: kr8s.asyncio.Api,
    namespace: str,
    operator_rig: OperatorRig,
    machines: list[str],
    calls: list[tuple[str, str]],
    written: Callable[[], float],
) -> None:
    before = written()
    for state, labels in (
        (S.MACHINE_STATE_CREATING, {"rack": "r1", "zone": "z1"}),
        (S.MACHINE_STATE_IDLE, {"rack": "r1"}),  # a label gone from the newest update
    ):
        sent = written()
        for machine in machines:
            update = shard_pb2.NodeStateUpdate(
                supersedes_key=f"node:{machine}", machine_id=machine, cluster_id="c1", state=state
            )
            update.labels.update(labels)
            update.resources.resources["cpu"] = "4"
            operator_rig.send(shard_pb2.ShardMessage(node_state_update=update))
        await until(lambda s=sent: written() >= s + len(machines), "the burst written")
    assert written() == before + 2 * len(machines)  # one observation a write

    for machine in machines:
        url = f"{UpcomingNode.endpoint}/un-{machine}"
        ours = [c for c in calls if c[1] in (url, f"{url}/status")]
        assert ours == [("PATCH", url), ("PATCH", f"{url}/status")] * 2, machine
    assert not [c for c in calls if c[0] == "GET"]  # no read, let alone a list, before a write

    for machine in machines:
        node = await UpcomingNode.get(f"un-{machine}", api=api)
        assert node.raw["status"]["phase"] == "Launched"
        assert "provisioningStartTime" in node.raw["status"]  # set by the first write
        assert node.raw["spec"]["labels"] == {"rack": "r1"}  # the spec mirrors the newest

    async def all_acknowledged() -> bool:
        phases = [
            (cr.raw.get("status") or {}).get("phase")
            async for cr in api.async_get("capacityrequests", namespace=namespace)
        ]
        return len(phases) == 150 and set(phases) == {"Acknowledged"}

    await until(all_acknowledged, "every request Acknowledged", timeout_s=60)
    assert operator_rig.session is not None
    inflight = operator_rig.session.metrics.dispatch_inflight
    await until(lambda: inflight._value.get() == 0, "every frame handled counted out")


async def _delete(kind: Any, name: str, namespace: str | None, api: kr8s.asyncio.Api) -> None:
    metadata = {"name": name} | ({"namespace": namespace} if namespace else {})
    with contextlib.suppress(kr8s.NotFoundError):
        await kind(
            {"apiVersion": API_VERSION, "kind": kind.kind, "metadata": metadata}, api=api
        ).delete()
