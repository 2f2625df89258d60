"""The bootstrap responder: a kubelet join blob for each machine the shard binds here.

Every answer mints a bootstrap token, stored as a `bootstrap.kubernetes.io/token`
Secret in kube-system that expires with the blob, and renders the Jinja2
template (parsed once, undefined names are errors) with the cluster id, the
requirements, labels the requirements pin, the API server URL, the CA bundle
and the token. A render error is answered in the response's `error` field.
"""

from __future__ import annotations

import base64
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

import jinja2
import kr8s.asyncio
from kr8s.asyncio.objects import Secret

from bigfleet.operators.operator.wire_requirements import operator_of
from bigfleet.requirements import Operator
from bigfleet.timestamps import rfc3339
from bigfleet.wire import shard_pb2

DEFAULT_TTL_S = 600
DEFAULT_TEMPLATE = """#cloud-config
# Joins this machine to cluster {{ cluster_id }} (request {{ request_id }}).
write_files:
  - path: /etc/kubernetes/bootstrap-kubelet.conf
    content: |
      apiVersion: v1
      kind: Config
      clusters: [{name: cluster, cluster: {server: "{{ api_server }}",
                  certificate-authority-data: "{{ ca_bundle_b64 }}"}}]
      users: [{name: kubelet-bootstrap, user: {token: "{{ token }}"}}]
      contexts: [{name: bootstrap, context: {cluster: cluster, user: kubelet-bootstrap}}]
      current-context: bootstrap
{% if labels %}kubelet_node_labels: "{{ labels | dictsort | map('join', '=') | join(',') }}"
{% endif %}"""
_NEED_THE_LABEL = frozenset({Operator.IN, Operator.EXISTS, Operator.SAME})


def unsatisfiable(requirements: list[dict[str, Any]]) -> str | None:
    """Why no node could carry labels meeting every requirement, or None."""
    by_key: dict[str, list[dict[str, Any]]] = {}
    for r in requirements:
        by_key.setdefault(r["key"], []).append(r)
    for key, rules in sorted(by_key.items()):
        operators = {r["operator"] for r in rules}
        if Operator.DOES_NOT_EXIST in operators and operators & _NEED_THE_LABEL:
            return f"label {key} must both exist and not exist"
        allowed: set[str] | None = None
        for r in rules:
            if r["operator"] == Operator.IN:
                values = set(r["values"])
                allowed = values if allowed is None else allowed & values
        for r in rules:
            if r["operator"] == Operator.NOT_IN and allowed is not None:
                allowed -= set(r["values"])
        if allowed is not None and not allowed:
            return f"no value of label {key} satisfies every requirement"
    return None


def _requirements(request: shard_pb2.BootstrapRequest) -> list[dict[str, Any]]:
    """The request's requirements as the template sees them."""
    return [
        {"key": r.key, "operator": operator_of(r).value, "values": list(r.values)}
        for r in request.requirements
    ]


class BootstrapResponder:
    def __init__(
        self,
        api: kr8s.asyncio.Api,
        cluster_id: str,
        *,
        api_server: str,
        ca_bundle: str,
        template: str | None = None,
        ttl_s: int = DEFAULT_TTL_S,
    ) -> None:
        self.api = api
        self.cluster_id = cluster_id
        self.api_server = api_server
        self.ca_bundle = ca_bundle
        self.ttl_s = ttl_s
        environment = jinja2.Environment(undefined=jinja2.StrictUndefined, autoescape=False)
        self.template = environment.from_string(template or DEFAULT_TEMPLATE)  # fails at start
        # A reissued request (the shard re-sends it after a reconnect) gets the same answer
        # and no second token.
        self._answered: dict[str, shard_pb2.BootstrapBlobResponse] = {}

    async def _token(self) -> str:
        token_id, token_secret = secrets.token_hex(3), secrets.token_hex(8)
        expires = rfc3339(datetime.now(UTC) + timedelta(seconds=self.ttl_s))
        await Secret(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "type": "bootstrap.kubernetes.io/token",
                "metadata": {
                    "name": f"bootstrap-token-{token_id}",
                    "namespace": "kube-system",
                    "labels": {"app.kubernetes.io/managed-by": "bigfleet"},
                },
                "stringData": {
                    "token-id": token_id,
                    "token-secret": token_secret,
                    "expiration": expires,
                    "usage-bootstrap-authentication": "true",
                    "usage-bootstrap-signing": "true",
                    "auth-extra-groups": "system:bootstrappers:bigfleet",
                    "description": f"BigFleet join token for cluster {self.cluster_id}",
                },
            },
            api=self.api,
        ).create()
        return f"{token_id}.{token_secret}"

    def context(
        self, request: shard_pb2.BootstrapRequest, requirements: list[dict[str, Any]], token: str
    ) -> dict[str, Any]:
        labels = {
            r["key"]: r["values"][0]
            for r in requirements
            if r["operator"] == Operator.IN and len(r["values"]) == 1
        }
        return {
            "cluster_id": self.cluster_id,
            "request_id": request.request_id,
            "requirements": requirements,
            "labels": labels,
            "api_server": self.api_server,
            "ca_bundle": self.ca_bundle,
            "ca_bundle_b64": base64.b64encode(self.ca_bundle.encode()).decode(),
            "token": token,
        }

    async def answer(self, request: shard_pb2.BootstrapRequest) -> shard_pb2.BootstrapBlobResponse:
        previous = self._answered.get(request.request_id)
        if previous is not None:
            return previous
        response = await self._answer(request)
        if len(self._answered) > 4096:  # answers outlive their use by far; keep memory flat
            self._answered.clear()
        self._answered[request.request_id] = response
        return response

    async def _answer(self, request: shard_pb2.BootstrapRequest) -> shard_pb2.BootstrapBlobResponse:
        if request.cluster_id and request.cluster_id != self.cluster_id:
            return shard_pb2.BootstrapBlobResponse(
                request_id=request.request_id,
                error=f"request for cluster {request.cluster_id!r} reached {self.cluster_id!r}",
            )
        requirements = _requirements(request)
        why = unsatisfiable(requirements)
        if why is not None:
            return shard_pb2.BootstrapBlobResponse(
                request_id=request.request_id, error=f"unsatisfiable requirements: {why}"
            )
        try:
            token = await self._token()
            blob = self.template.render(self.context(request, requirements, token))
        except (jinja2.TemplateError, kr8s.ServerError) as err:
            return shard_pb2.BootstrapBlobResponse(
                request_id=request.request_id, error=f"cannot render a join blob: {err}"
            )
        return shard_pb2.BootstrapBlobResponse(
            request_id=request.request_id, user_data=blob.encode(), ttl_seconds=self.ttl_s
        )
