"""Kubernetes name rules, in one place: DNS-1123 subdomains, label keys and label values.

The same rules as k8s.io/apimachinery/pkg/util/validation (`IsDNS1123Subdomain`,
`IsQualifiedName`, `IsValidLabelValue`), for every edge that takes a name from
outside: the shard's roll-up ingest, the CRD schemas and the operators. Each
`*_error` function returns None for a valid text and otherwise a short reason
("must be at most 63 characters"); the `PATTERN`s are the same rules as
regular expressions for schemas.
"""

from __future__ import annotations

import functools
import re

DNS1123_SUBDOMAIN_MAX = 253
QUALIFIED_NAME_MAX = 63  # the name part of a label key, after an optional "<prefix>/"
LABEL_VALUE_MAX = 63

_LABEL = r"[a-z0-9](?:[-a-z0-9]*[a-z0-9])?"
DNS1123_SUBDOMAIN_PATTERN = rf"{_LABEL}(?:\.{_LABEL})*"
QUALIFIED_NAME_PATTERN = r"(?:[A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
LABEL_VALUE_PATTERN = rf"(?:{QUALIFIED_NAME_PATTERN})?"

_SUBDOMAIN = re.compile(DNS1123_SUBDOMAIN_PATTERN)
_NAME = re.compile(QUALIFIED_NAME_PATTERN)


def dns1123_subdomain_error(text: str) -> str | None:
    """Why `text` is not a DNS-1123 subdomain (lower-case, dot-separated, <= 253), or None."""
    if not text:
        return "must not be empty"
    if len(text) > DNS1123_SUBDOMAIN_MAX:
        return f"must be at most {DNS1123_SUBDOMAIN_MAX} characters"
    if _SUBDOMAIN.fullmatch(text) is None:
        return (
            "must be lower-case alphanumerics, '-' and '.', "
            "each dot-separated part starting and ending alphanumeric"
        )
    return None


def _name_error(name: str) -> str | None:
    if not name:
        return "name part must not be empty"
    if len(name) > QUALIFIED_NAME_MAX:
        return f"name part must be at most {QUALIFIED_NAME_MAX} characters"
    if _NAME.fullmatch(name) is None:
        return "name part must be alphanumerics, '-', '_' and '.', starting and ending alphanumeric"
    return None


# Roll-ups and CRs repeat the same few keys and values: their verdicts are remembered. Only
# strings short enough to be valid are, so whatever a client sends, the cache stays small.
_LABEL_KEY_MAX = DNS1123_SUBDOMAIN_MAX + 1 + QUALIFIED_NAME_MAX


def label_key_error(text: str) -> str | None:
    """Why `text` is not a label key (a qualified name: `[<subdomain>/]<name>`), or None."""
    if len(text) > _LABEL_KEY_MAX:
        return _label_key_error(text)
    return _remembered_key_error(text)


def label_value_error(text: str) -> str | None:
    """Why `text` is not a label value (empty, or <= 63 name characters), or None."""
    if len(text) > LABEL_VALUE_MAX:
        return f"must be at most {LABEL_VALUE_MAX} characters"
    return _remembered_value_error(text)


def _label_key_error(text: str) -> str | None:
    prefix, slash, name = text.rpartition("/")
    if slash:
        if "/" in prefix:
            return "must contain at most one '/'"
        problem = dns1123_subdomain_error(prefix)
        if problem is not None:
            return f"prefix {problem}"
    return _name_error(name)


_remembered_key_error = functools.lru_cache(maxsize=4096)(_label_key_error)


@functools.lru_cache(maxsize=4096)
def _remembered_value_error(text: str) -> str | None:
    if not text:
        return None
    if _NAME.fullmatch(text) is None:
        return "must be alphanumerics, '-', '_' and '.', starting and ending alphanumeric"
    return None


def is_dns1123_subdomain(text: str) -> bool:
    return dns1123_subdomain_error(text) is None


def is_label_key(text: str) -> bool:
    return label_key_error(text) is None


def is_label_value(text: str) -> bool:
    return label_value_error(text) is None
