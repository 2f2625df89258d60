"""Named errors of BigFleet, each carrying the gRPC status code it maps to at the edge.

Callers catch the precise class (`except StaleFencingToken`); servers turn the
class into its status code, and clients turn the code back into the class.
"""

from __future__ import annotations

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


class CorruptEpochFile(BigFleetError):
    """The persisted shard epoch cannot be read; starting would risk reusing an old epoch."""

    code = grpc.StatusCode.DATA_LOSS


class InvalidRequest(BigFleetError):
    """A request with a missing or malformed argument; nothing was applied."""

    code = grpc.StatusCode.INVALID_ARGUMENT


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
