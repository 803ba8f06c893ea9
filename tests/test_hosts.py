"""Host strings parsed once (`HostAddress`) and the default worker map. (The worker code hash: tests/test_code_hash.py.)"""

from __future__ import annotations

import io

import pytest

from agi_core import SettingsError
from agi_core.base.events import HostStep
from agi_core.base.hosts import LOCAL_HOST, HostAddress, HostAddressError
from agi_core.install.installer import hosts_of
from agi_core.settings import ClusterSettings, SshSettings
from agi_core.ssh import SshTarget


@pytest.mark.parametrize("text, host, user, port", [
    ("10.0.0.2", "10.0.0.2", None, None),
    ("agi@10.0.0.2:2222", "10.0.0.2", "agi", 2222),
    ("node-3.lab", "node-3.lab", None, None),
    ("root@node-3.lab", "node-3.lab", "root", None),
    ("fe80::1", "fe80::1", None, None),  # bare IPv6: every colon is the address's
    ("[fe80::1]:8786", "fe80::1", None, 8786),
    ("agi@[::1]:22", "::1", "agi", 22),
    ("[::1]", "::1", None, None),
    ("  10.0.0.2:22 ", "10.0.0.2", None, 22),
])
def test_host_address_forms(text, host, user, port):
    address = HostAddress.parse(text)
    assert (address.host, address.user, address.port) == (host, user, port)
    assert HostAddress.parse(str(address)) == address  # str() writes a form parse() reads back


def test_host_address_url_host_brackets_ipv6_only():
    assert HostAddress.parse("[fe80::1]:8786").url_host == "[fe80::1]"
    assert HostAddress.parse("10.0.0.1:8786").url_host == "10.0.0.1"
    assert str(HostAddress.parse("agi@[fe80::1]:22").with_port(None)) == "agi@fe80::1"


@pytest.mark.parametrize("text, reason", [
    ("10.0.0.1:notaport", "port 'notaport' is not a number"),
    ("10.0.0.1:0", "port '0' is not a number from 1 to 65535"),
    ("10.0.0.1:65536", "port '65536'"),
    ("10.0.0.1:", "port '' is not a number"),
    ("", "no host name"),
    ("agi@", "no host name"),
    ("@10.0.0.1", "empty user"),
    (":22", "no host name"),
    ("my host", "not a host name or address"),
    ("host;rm -rf /", "not a host name or address"),
    ("$(reboot)", "not a host name or address"),
    ("a/b", "not a host name or address"),
    ("[fe80::1", "unbalanced brackets"),
    ("[fe80::1]x", "unbalanced brackets"),
    ("[10.0.0.1]:22", "is not an IPv6 address"),
    ("fe80::zz", "is not an IPv6 address"),
])
def test_bad_host_strings_are_refused_with_the_accepted_forms(text, reason):
    with pytest.raises(HostAddressError) as info:
        HostAddress.parse(text)
    assert reason in info.value.message and repr(text) in info.value.message
    assert "[IPv6]:PORT" in info.value.fix


def test_ssh_target_from_settings_takes_ipv6_in_brackets():
    ssh = SshSettings(user="agi", port=22)
    bracketed = SshTarget.from_settings("root@[fe80::1]:2222", ssh)
    assert (bracketed.host, bracketed.port, bracketed.user) == ("fe80::1", 2222, "root")
    bare = SshTarget.from_settings("fe80::1", ssh)
    assert (bare.host, bare.port, bare.user) == ("fe80::1", 22, "agi")
    with pytest.raises(HostAddressError):
        SshTarget.from_settings("10.0.0.2:ssh", ssh)


def test_worker_map_defaults_to_this_machine():
    default = ClusterSettings().worker_map()
    assert list(default) == [LOCAL_HOST] and default[LOCAL_HOST].count >= 1
    configured = ClusterSettings.model_validate({"workers": {"10.0.0.2": 2, "[::1]:22": 1}})
    assert {host: spec.count for host, spec in configured.worker_map().items()} == {"10.0.0.2": 2, "[::1]:22": 1}
    assert configured.worker_map() is not configured.workers  # a copy: callers may change it


def test_scheduler_address_is_parsed():
    assert ClusterSettings().scheduler_address() is None
    assert ClusterSettings(scheduler="[fe80::1]:8786").scheduler_address() == HostAddress("fe80::1", None, 8786)


def test_hosts_of_names_an_ipv6_scheduler_without_its_dask_port():
    cluster = ClusterSettings.model_validate({"scheduler": "[fe80::1]:8786", "workers": {"fe80::1": 1, "[fe80::2]:2222": 1}})
    assert hosts_of(cluster) == {"fe80::1": ["scheduler", "1 workers"], "[fe80::2]:2222": ["1 workers"]}


@pytest.mark.parametrize("value", ["ssh", "slurm", "in_process", "dask-gateway"])
def test_backend_names_are_accepted(value):
    assert ClusterSettings(backend=value).backend == value


@pytest.mark.parametrize("value", ["", "1ssh", "ssh backend", "a.b"])
def test_bad_backend_names_are_refused(value):
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="invalid backend name"):
        ClusterSettings(backend=value)


def test_cli_workers_option_validates_the_host():
    from agi_core.cli.options import cluster_overrides

    assert cluster_overrides((), None, ("[::1]=2", "agi@10.0.0.2:2222=1")) == {"workers": {"[::1]": 2, "agi@10.0.0.2:2222": 1}}
    with pytest.raises(SettingsError, match="invalid --workers '10.0.0.2:x=2'.*port 'x'") as info:
        cluster_overrides((), None, ("10.0.0.2:x=2",))
    assert "[IPv6]:PORT" in info.value.fix
    with pytest.raises(SettingsError, match="expected HOST=COUNT"):
        cluster_overrides((), None, ("10.0.0.2",))


def test_install_view_draws_host_steps():
    from rich.console import Console

    from agi_core.cli.install_view import InstallView

    console = Console(file=io.StringIO())
    with InstallView(console=console) as view:
        view(HostStep("10.0.0.2", "waiting"))
        view(HostStep("10.0.0.2", "probe"))
        view(HostStep("10.0.0.3", "failed", done=True, failed=True))
    assert [event.step for event in view._steps.values()] == ["probe", "failed"]
