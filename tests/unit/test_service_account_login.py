"""Where the service-account login dials: client-go's in-cluster address, not cluster DNS."""

from __future__ import annotations

import kopf
import pytest

from bigfleet import kopf_loop

MOUNTED = kopf.ConnectionInfo(server="https://kubernetes.default.svc", token="t", ca_path="ca")


@pytest.fixture
def mounted(monkeypatch: pytest.MonkeyPatch) -> None:
    """A pod's mounted account, as kopf reads it from the fixed path."""
    monkeypatch.setattr(kopf, "login_with_service_account", lambda **_: MOUNTED)


@pytest.mark.parametrize(
    ("host", "server"),
    [("10.96.0.1", "https://10.96.0.1:443"), ("fd00::1", "https://[fd00::1]:443")],
)
def test_the_service_address_comes_from_the_environment(
    mounted: None, monkeypatch: pytest.MonkeyPatch, host: str, server: str
) -> None:
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", host)
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    info = kopf_loop.service_account_login()
    assert info is not None
    assert (info.server, info.token, info.ca_path) == (server, "t", "ca")


def test_without_the_environment_kopf_s_address_stands(
    mounted: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    assert kopf_loop.service_account_login() == MOUNTED


def test_no_mounted_account_is_no_login(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kopf, "login_with_service_account", lambda **_: None)
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    assert kopf_loop.service_account_login() is None
