"""Named errors of BigFleet, each carrying the gRPC status code it maps to at the edge.

Callers catch the precise class (`except StaleFencingToken`); servers turn the
class into its status code with `abort_with`, and clients turn the code back
into the class with `from_rpc_error`. Both directions live here and nowhere else.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NoReturn

import grpc


class BigFleetError(Exception):
    """Root of every BigFleet error."""

    code: grpc.StatusCode = grpc.StatusCode.UNKNOWN


class StaleFencingToken(BigFleetError):
    """A mutation carried a (shard epoch, sequence) no newer than one already accepted.

    The sender is a zombie: an older process of a shard that has since
    restarted, or a delayed retry. Nothing was applied.
    """

    code = grpc.StatusCode.FAILED_PRECONDITION


class StaleTerm(BigFleetError):
    """A coordinator instruction carried a term below the highest one seen (a deposed leader)."""

    code = grpc.StatusCode.FAILED_PRECONDITION


class CorruptFencingFile(BigFleetError):
    """A persisted epoch or term cannot be read; starting would risk accepting a zombie."""

    code = grpc.StatusCode.DATA_LOSS


class InvalidRequest(BigFleetError):
    """A request with a missing or malformed argument; nothing was applied."""

    code = grpc.StatusCode.INVALID_ARGUMENT


class IdentityRejected(BigFleetError):
    """The caller's certificate identity may not make this call (mutual TLS only)."""

    code = grpc.StatusCode.PERMISSION_DENIED


class MachineNotFound(BigFleetError):
    code = grpc.StatusCode.NOT_FOUND


class InvalidTransition(BigFleetError):
    """An out-of-position lifecycle call. Never FAILED_PRECONDITION: that code means fencing."""

    code = grpc.StatusCode.INTERNAL


class ProviderError(BigFleetError):
    """A provider refused or failed a call for a reason other than fencing or a lookup."""

    def __init__(self, message: str, code: grpc.StatusCode = grpc.StatusCode.UNKNOWN) -> None:
        super().__init__(message)
        self.code = code


# How a provider's status codes read on the way back (the provider contract: FAILED_PRECONDITION
# means fencing and nothing else). Codes not listed become ProviderError with the code kept.
PROVIDER_CODES: Mapping[grpc.StatusCode, type[BigFleetError]] = {
    grpc.StatusCode.FAILED_PRECONDITION: StaleFencingToken,
    grpc.StatusCode.NOT_FOUND: MachineNotFound,
    grpc.StatusCode.INVALID_ARGUMENT: InvalidRequest,
}


async def abort_with(context: grpc.aio.ServicerContext, err: BigFleetError) -> NoReturn:
    """End the call with the error's status code and message."""
    await context.abort(err.code, str(err))
    raise AssertionError("unreachable: abort raises")  # keeps type checkers honest


def from_rpc_error(
    err: grpc.RpcError, codes: Mapping[grpc.StatusCode, type[BigFleetError]] = PROVIDER_CODES
) -> BigFleetError:
    """The named error for a failed call; unknown codes keep theirs in a ProviderError."""
    code: grpc.StatusCode = err.code()
    return from_status(code, err.details() or "", codes)


def from_status(
    code: grpc.StatusCode,
    details: str,
    codes: Mapping[grpc.StatusCode, type[BigFleetError]] = PROVIDER_CODES,
) -> BigFleetError:
    """The named error a caller reads from a status code and its message."""
    named = codes.get(code)
    return named(details) if named is not None else ProviderError(details, code)


def as_received(
    err: BigFleetError, codes: Mapping[grpc.StatusCode, type[BigFleetError]] = PROVIDER_CODES
) -> BigFleetError:
    """`err` as a caller across the wire would see it: only its code and message travel, so
    an in-process caller gets the same class as a remote one."""
    return from_status(err.code, str(err), codes)
