"""`agi cluster ports`: the port matrix of a cluster's settings and the firewall rules it implies
(pure logic; tests/test_cluster_rig.py runs a cluster through exactly these rules)."""

from __future__ import annotations

import json

from agi_core.cluster.ports import ANY_PORT, MANAGER, firewall_rules, port_rules
from agi_core.settings import ClusterSettings
from tests.conftest import run_agi


def rules_of(settings: dict) -> list[tuple[str, str, str]]:
    return [(r.source, r.destination, r.ports) for r in port_rules(ClusterSettings.model_validate(settings))]


def test_a_cluster_on_this_machine_needs_no_open_port():
    assert rules_of({}) == []
    assert rules_of({"workers": {"127.0.0.1": 2}, "scheduler": "127.0.0.1:8786"}) == []


def test_remote_hosts_need_ssh_scheduler_worker_and_nanny_ports():
    rules = rules_of({"scheduler": "10.0.0.1:7000", "workers": {"10.0.0.2": 1, "agi@10.0.0.3:2222": 1},
                      "ssh": {"port": 2200}, "dask": {"worker_ports": "9000:9099", "dashboard_port": None}})
    assert (MANAGER, "10.0.0.1", "2200") in rules and (MANAGER, "10.0.0.3", "2222") in rules  # a key's own SSH port wins
    assert {(s, d) for s, d, p in rules if p == "7000"} == {(MANAGER, "10.0.0.1"), ("10.0.0.2", "10.0.0.1"), ("10.0.0.3", "10.0.0.1")}
    assert {s for s, d, p in rules if d == "10.0.0.2" and p == "9000:9099"} == {"10.0.0.1", MANAGER, "10.0.0.3"}
    assert ("10.0.0.1", "10.0.0.2", ANY_PORT) in rules  # nanny ports not pinned: the ephemeral range
    assert not [r for r in rules if r[1] == "browser" or r[0] == "browser"]  # no dashboard


def test_workers_on_this_machine_are_the_managers():
    rules = rules_of({"scheduler": "10.0.0.1:8786", "workers": {"127.0.0.1": 1, "10.0.0.2": 1}, "dask": {"worker_ports": "9000:9099"}})
    assert ("10.0.0.1", MANAGER, "9000:9099") in rules and ("10.0.0.2", MANAGER, "9000:9099") in rules
    assert (MANAGER, MANAGER, "22") not in rules and not [r for r in rules if "127.0.0.1" in r]


def test_slurm_rules_name_the_compute_nodes():
    rules = rules_of({"backend": "slurm", "slurm": {"login": "me@hpc-login"}, "dask": {"worker_ports": "9000:9010"}})
    assert rules[0] == (MANAGER, "hpc-login", "22")
    assert ("compute nodes", MANAGER, ANY_PORT) in rules and ("compute nodes", "compute nodes", "9000:9010") in rules
    assert not [r for r in rules if "browser" in r]  # no [cluster] scheduler: no dashboard
    pinned = rules_of({"backend": "slurm", "scheduler": "login01:8786"})
    assert ("compute nodes", MANAGER, "8786") in pinned and ("browser", MANAGER, "8787") in pinned


def test_firewall_rules_per_host_in_ufw_and_nft():
    rules = port_rules(ClusterSettings.model_validate({"scheduler": "[2001:db8::1]:8786", "workers": {"[2001:db8::2]": 1},
                                                       "dask": {"worker_ports": "9000:9099"}}))
    nft = firewall_rules(rules, style="nft", manager="2001:db8::9")
    assert "nft add rule inet filter input ip6 saddr 2001:db8::9 tcp dport 9000-9099 accept" in nft["2001:db8::2"]
    assert "nft add rule inet filter input tcp dport 8787 accept" in nft["2001:db8::1"]  # the dashboard, from anywhere
    ufw = firewall_rules(rules)
    assert "ufw allow proto tcp from <manager> to any port 22" in ufw["2001:db8::1"]
    assert len(ufw["2001:db8::2"]) == len(set(ufw["2001:db8::2"]))  # each rule once


def test_cli_prints_the_matrix_rules_and_json(tmp_path):
    sets = ["--set", 'cluster.scheduler="10.0.0.1:8786"', "--set", 'cluster.workers={"10.0.0.2"=2}']
    table = run_agi("cluster", "ports", "mandelbrot", *sets, cwd=tmp_path)
    assert table.returncode == 0 and "[cluster.dask] worker_ports" in table.stdout, table.stderr
    ufw = run_agi("cluster", "ports", "mandelbrot", *sets, "--firewall", "ufw", "--manager", "10.0.0.9", cwd=tmp_path)
    assert "# on 10.0.0.2\nufw allow proto tcp from 10.0.0.9 to any port 22\n" in ufw.stdout
    data = json.loads(run_agi("cluster", "ports", "mandelbrot", *sets, "--json", cwd=tmp_path).stdout)
    assert {"source": "10.0.0.2", "destination": "10.0.0.1", "ports": "8786", "purpose": "the worker joins the scheduler",
            "setting": "[cluster] scheduler"} in data
    alone = run_agi("cluster", "ports", "mandelbrot", cwd=tmp_path)
    assert "nothing to open" in alone.stdout


def test_cluster_up_dry_run_starts_nothing_and_shows_the_job_script(tmp_path):
    local = run_agi("cluster", "up", "mandelbrot", "--dry-run", "--set", 'cluster.workers={"127.0.0.1"=3}', cwd=tmp_path,
                    env={"XDG_STATE_HOME": str(tmp_path / "state")})
    assert local.returncode == 0, local.stderr
    assert "scheduler on this machine (any free port), 3 worker(s)" in local.stdout and "127.0.0.1-2" in local.stdout
    assert not (tmp_path / "state" / "agi_core" / "clusters").exists()  # nothing started, nothing recorded
    slurm = run_agi("cluster", "up", "mandelbrot", "--dry-run", "--mode", "dr", "--set", 'cluster.backend="slurm"',
                    "--set", "cluster.slurm.jobs=4", "--set", "cluster.slurm.gpus=1", "--set", 'cluster.slurm.memory="8GB"', cwd=tmp_path)
    assert slurm.returncode == 0, slurm.stderr
    assert "4 Slurm job(s)" in slurm.stdout and "#SBATCH --gres=gpu:1" in slurm.stdout and "#SBATCH --mem=8G" in slurm.stdout
    assert "--resources GPU=1" in slurm.stdout
