"""``python -m agi_testkit.rig_cli`` (or ``scripts/rig``): a rig of fake SSH hosts by hand.

The rig itself lives in `agi_testkit.rig`; this is only its command line.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from .rig import MANUAL_PREFIX, MANUAL_STATE_DIR, MANUAL_SUBNET, Rig, RigError, rig_available

CLI_HELP = f"""\
Bring up fake SSH hosts on this machine by hand (root only), to try agi_core against a "cluster".

Each host is a network namespace with its own IP, hostname, home (/root) and process table, running
a real sshd. The manual rig uses prefix {MANUAL_PREFIX!r}, subnet {MANUAL_SUBNET} (h1 = .11, h2 = .12, ...)
and keeps its state in {MANUAL_STATE_DIR} (client key, known_hosts), so separate calls find it.
It never touches a test session's rig (other prefix and subnet).

examples:
  rig up 3            start h1..h3 (refused while a manual rig is up; sweeps leftovers of a crashed one)
  rig status          hosts, addresses, state, and the ssh command to reach them
  rig crash h2        power-cut h2 (all its processes die; connect -> refused)
  rig restart h2      boot it again (same IP, host key and home)
  rig cut h3          unplug h3's cable (connect -> timeout); `rig restore h3` plugs it back
  rig down            remove everything (namespaces, bridge, processes, state dir)
"""


def _cli_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="scripts/rig", description=CLI_HELP,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--state-dir", type=Path, default=MANUAL_STATE_DIR, help="where the rig keeps its state")
    parser.add_argument("--prefix", default=MANUAL_PREFIX, help="name prefix of namespaces and links (for `up`)")
    parser.add_argument("--subnet", default=MANUAL_SUBNET, help="private IPv4 /24 for the bridge (for `up`)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    up = sub.add_parser("up", help="bring up N hosts (default 3)")
    up.add_argument("n", type=int, nargs="?", default=3)
    sub.add_parser("down", help="tear everything down (idempotent)")
    sub.add_parser("status", help="list hosts and how to connect")
    for name, text in [("crash", "SIGKILL every process of HOST"), ("restart", "start HOST's sshd again"),
                       ("cut", "take HOST's link down"), ("restore", "bring HOST's link back up")]:
        sub.add_parser(name, help=text).add_argument("host", metavar="HOST", help="h1, h2, ...")
    return parser


def _print_status(rig: Rig) -> None:
    print(f"rig {rig.prefix}: bridge {rig.bridge} {rig.bridge_ip}/{rig.subnet.prefixlen}, state {rig.state_dir}")
    for host in rig.hosts:
        state = "running" if host.is_running() else "down"
        link = "link up" if host.link_is_up() else "link CUT"
        print(f"  {host.name:4} {host.ip:15} {state:8} {link:9} {len(host.pids())} processes")
    print(f"connect: ssh -i {rig.client_key} -o IdentitiesOnly=yes -o UserKnownHostsFile={rig.known_hosts} "
          f"root@{rig.hosts[0].ip if rig.hosts else 'IP'}")


def main(argv: Sequence[str] | None = None) -> int:
    args = _cli_parser().parse_args(argv)
    reason = rig_available()
    if reason:
        print(f"rig: {reason}", file=sys.stderr)
        return 2
    try:
        _cli_command(args)
    except RigError as exc:
        print(f"rig: {exc}", file=sys.stderr)
        return 1
    return 0


def _cli_command(args: argparse.Namespace) -> None:
    if args.command == "up":
        if (args.state_dir / "rig.json").exists():
            raise RigError(f"a rig is already up in {args.state_dir}: run `down` first")
        t0 = time.monotonic()
        rig = Rig(args.prefix, args.subnet, state_dir=args.state_dir).up(args.n)
        rig._release_lock()  # the rig outlives this process; later calls (down) claim the prefix again
        print(f"up: {args.n} hosts in {time.monotonic() - t0:.2f} s")
        _print_status(rig)
    elif args.command == "down":
        t0 = time.monotonic()
        rig = Rig.load(args.state_dir) if (args.state_dir / "rig.json").exists() else \
            Rig(args.prefix, args.subnet, state_dir=args.state_dir)
        rig.down()
        print(f"down in {time.monotonic() - t0:.2f} s")
    elif args.command == "status":
        _print_status(Rig.load(args.state_dir))
    else:
        host = Rig.load(args.state_dir).host(args.host)
        {"crash": host.crash, "restart": host.restart, "cut": host.cut_link, "restore": host.restore_link}[args.command]()
        print(f"{args.command} {host.name}: done")


if __name__ == "__main__":
    sys.exit(main())
