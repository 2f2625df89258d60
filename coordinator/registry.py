"""The coordinator's replicated tables: shard membership and domain ownership.

Rules (the state machine's, kept whatever the store): adding a shard that
exists fails; a heartbeat for an unknown shard is a no-op; removing a shard
removes the domains it owned; a domain's owner may re-assign it to itself,
another shard gets AlreadyExists, an unknown shard NotFound.

Only the leader writes, and it writes from one task at a time, so a
read-check-then-guarded-write is safe: any other writer would need the
election key, which the guard checks.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from urllib.parse import quote

import grpc

from bigfleet.coordinator.store import StateReader, Store
from bigfleet.errors import BigFleetError, InvalidRequest

SHARDS = "shards/"
DOMAINS = "domains/"
_TXN_OPS = 100


class ShardExists(BigFleetError):
    code = grpc.StatusCode.ALREADY_EXISTS


class DomainTaken(BigFleetError):
    code = grpc.StatusCode.ALREADY_EXISTS


class UnknownShard(BigFleetError):
    code = grpc.StatusCode.NOT_FOUND


@dataclass(frozen=True)
class ShardEntry:
    shard_id: str
    address: str
    registered_at_unix_ns: int
    last_heartbeat_unix_ns: int


@dataclass(frozen=True)
class Domain:
    topology_key: str
    topology_value: str
    shard_id: str


def _domain_key(topology_key: str, topology_value: str) -> str:
    # Label keys hold "/", so both parts are escaped to keep one path level each.
    return f"{DOMAINS}{quote(topology_key, safe='')}/{quote(topology_value, safe='')}"


def _require(value: str, what: str) -> None:
    if not value:
        raise InvalidRequest(f"{what} is required")


async def shards(state: StateReader) -> list[ShardEntry]:
    found = await state.scan(SHARDS)
    return sorted((ShardEntry(**json.loads(v)) for v in found.values()), key=lambda s: s.shard_id)


async def domains(state: StateReader) -> list[Domain]:
    found = await state.scan(DOMAINS)
    return sorted(
        (Domain(**json.loads(v)) for v in found.values()),
        key=lambda d: (d.topology_key, d.topology_value),
    )


async def add_shard(store: Store, shard_id: str, address: str, now_ns: int) -> ShardEntry:
    _require(shard_id, "shard_id")
    if await store.get(SHARDS + shard_id) is not None:
        raise ShardExists(f"shard {shard_id} is already registered")
    entry = ShardEntry(shard_id, address, now_ns, now_ns)
    await store.put(SHARDS + shard_id, json.dumps(asdict(entry)).encode())
    return entry


async def heartbeat(store: Store, shard_id: str, now_ns: int) -> bool:
    """Record a heartbeat; False (and nothing written) for an unknown shard."""
    raw = await store.get(SHARDS + shard_id)
    if raw is None:
        return False
    entry = json.loads(raw) | {"last_heartbeat_unix_ns": now_ns}
    await store.put(SHARDS + shard_id, json.dumps(entry).encode())
    return True


async def remove_shard(store: Store, shard_id: str) -> None:
    _require(shard_id, "shard_id")
    if await store.get(SHARDS + shard_id) is None:
        raise UnknownShard(f"shard {shard_id} is not registered")
    owned = [
        key
        for key, raw in (await store.scan(DOMAINS)).items()
        if json.loads(raw)["shard_id"] == shard_id
    ]
    # Domains first, in batches under etcd's per-transaction operation limit (128 by
    # default); the shard goes last, so a failure part-way leaves it registered to retry.
    for start in range(0, len(owned), _TXN_OPS):
        await store.commit({}, deletes=owned[start : start + _TXN_OPS])
    await store.commit({}, deletes=[SHARDS + shard_id])


async def assign_domain(store: Store, domain: Domain) -> None:
    _require(domain.topology_key, "topology_key")
    _require(domain.topology_value, "topology_value")
    _require(domain.shard_id, "shard_id")
    if await store.get(SHARDS + domain.shard_id) is None:
        raise UnknownShard(f"shard {domain.shard_id} is not registered")
    key = _domain_key(domain.topology_key, domain.topology_value)
    held = await store.get(key)
    if held is not None:
        owner = json.loads(held)["shard_id"]
        if owner == domain.shard_id:
            return
        raise DomainTaken(f"{domain.topology_key}={domain.topology_value} belongs to shard {owner}")
    await store.put(key, json.dumps(asdict(domain)).encode())


async def unassign_domain(store: Store, topology_key: str, topology_value: str) -> str | None:
    """Release a domain; returns the shard that owned it (None if nobody did)."""
    _require(topology_key, "topology_key")
    _require(topology_value, "topology_value")
    key = _domain_key(topology_key, topology_value)
    held = await store.get(key)
    if held is None:
        return None
    await store.commit({}, deletes=[key])
    owner: str = json.loads(held)["shard_id"]
    return owner


# -- provider registry and quota slices -------------------------------------------------------

PROVIDERS = "providers/"
QUOTAS = "quotas/"


@dataclass(frozen=True)
class Provider:
    name: str
    address: str
    region: str = ""


async def register_provider(store: Store, provider: Provider) -> bool:
    """Record a provider the first time a shard names it; False when already known."""
    key = PROVIDERS + quote(provider.name, safe="")
    if await store.get(key) is not None:
        return False
    await store.put(key, json.dumps(asdict(provider)).encode())
    return True


async def providers(state: StateReader) -> list[Provider]:
    found = await state.scan(PROVIDERS)
    return sorted((Provider(**json.loads(v)) for v in found.values()), key=lambda p: p.name)


def _quota_key(provider: str, region: str) -> str:
    return f"{QUOTAS}{quote(provider, safe='')}/{quote(region, safe='')}"


async def move_quota(
    store: Store, provider: str, region: str, donor: str, recipient: str, slots: int
) -> None:
    """Record `slots` quota slots of (provider, region) moving from donor to recipient.

    The table holds the net slots each shard gained or gave by rebalancing;
    what a shard starts with is what its provider holds for it.
    """
    key = _quota_key(provider, region)
    raw = await store.get(key)
    per_shard: dict[str, int] = json.loads(raw)["per_shard"] if raw else {}
    per_shard[donor] = per_shard.get(donor, 0) - slots
    per_shard[recipient] = per_shard.get(recipient, 0) + slots
    document = {"provider": provider, "region": region, "per_shard": per_shard}
    await store.put(key, json.dumps(document).encode())


async def quotas(state: StateReader) -> list[tuple[str, str, dict[str, int]]]:
    found = [json.loads(v) for v in (await state.scan(QUOTAS)).values()]
    return sorted(
        ((q["provider"], q["region"], q["per_shard"]) for q in found), key=lambda q: q[:2]
    )
