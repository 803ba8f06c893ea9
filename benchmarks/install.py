"""`agi install` of the Mandelbrot example on 3 rig hosts (real sshd in network namespaces).

Measures, in one run: a cold install (empty hosts, warm manager cache), an unchanged re-install,
an app-only change, and as the baseline a forced full re-install of the same hosts (fingerprints
removed: what a tool without install fingerprints does every time).

Needs root and network namespaces (see agi_testkit/rig.py). Usage:
    python benchmarks/install.py [--hosts 3]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # agi_testkit: the repository's, not shipped
from _common import write  # noqa: E402

from agi_core import AGI, AgiEnv  # noqa: E402
from agi_testkit.rig import Rig, rig_available  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hosts", type=int, default=3)
    options = parser.parse_args()
    reason = rig_available()
    if reason:
        sys.exit(f"cannot run: {reason}")
    with tempfile.TemporaryDirectory() as tmp, Rig(prefix="agib", subnet="10.231.50.0/24").up(options.hosts) as rig:
        apps = Path(tmp) / "apps"
        shutil.copytree(ROOT / "apps" / "mandelbrot_project", apps / "mandelbrot_project", ignore=shutil.ignore_patterns("__pycache__", "*.so"))
        env = AgiEnv(app="mandelbrot", apps_path=apps)
        cluster = {"ssh": {"user": "root", "key": str(rig.client_key), "known_hosts": str(rig.known_hosts)},
                   "workers": {h.ip: 1 for h in rig.hosts}}

        def install() -> tuple[float, list[str]]:
            start = time.perf_counter()
            report = asyncio.run(AGI.install(env, cluster=cluster, progress=False))
            return time.perf_counter() - start, [h.status for h in report.hosts]

        install()  # fill the manager's wheel cache, so "cold" measures the hosts, not PyPI
        for host in rig.hosts:
            host.run("rm -rf /root/.agi")
        cold, cold_status = install()
        unchanged, unchanged_status = install()
        kernels = env.src_dir / "mandelbrot" / "kernels.py"
        kernels.write_text(kernels.read_text() + "\n# benchmark change\n")
        app_only, app_status = install()
        for host in rig.hosts:
            host.run("rm -f /root/.agi/venvs/mandelbrot/.agi-install.json")
        forced, forced_status = install()
    write("install", {
        "hosts": options.hosts,
        "cold_install_s": round(cold, 3), "cold_status": cold_status,
        "unchanged_reinstall_s": round(unchanged, 3), "unchanged_status": unchanged_status,
        "app_only_change_s": round(app_only, 3), "app_only_status": app_status,
        "baseline_forced_full_reinstall_s": round(forced, 3), "forced_status": forced_status,
        "ratios": {
            "unchanged_over_forced_full": round(unchanged / forced, 4),
            "app_only_over_forced_full": round(app_only / forced, 4),
        },
    })


if __name__ == "__main__":
    main()
