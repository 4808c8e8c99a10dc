"""``xnat-emulator serve``: run the emulator from a shell until interrupted."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Sequence

from xnat_prefect.testing.server import XNATEmulator
from xnat_prefect.testing.state import Timing


def build_parser() -> argparse.ArgumentParser:
    """The command-line parser.

    Returns:
        The parser.
    """
    parser = argparse.ArgumentParser(prog="xnat-emulator", description="A local emulated XNAT 1.9.")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="serve HTTP and DICOM until interrupted")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8080, help="HTTP port (0: any free port)")
    serve.add_argument("--dicom-port", type=int, default=8104, help="C-STORE port (0: any free)")
    serve.add_argument("--ae-title", default="XNAT", help="AE title of the C-STORE receiver")
    serve.add_argument("--no-dicom", action="store_true", help="do not start the C-STORE receiver")
    serve.add_argument("--data-dir", default=None, help="persist state here (default: a temp dir)")
    serve.add_argument("--admin-user", default="admin")
    serve.add_argument("--admin-password", default="admin")
    serve.add_argument(
        "--rebuild-quiet-seconds",
        type=float,
        default=Timing.rebuild_quiet_seconds,
        help="quiet time before a received session is built (XNAT: 5 minutes)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``xnat-emulator``.

    Args:
        argv: Arguments (default: ``sys.argv[1:]``).

    Returns:
        The exit code.
    """
    args = build_parser().parse_args(argv)
    emulator = XNATEmulator(
        args.data_dir,
        host=args.host,
        port=args.port,
        dicom_port=args.dicom_port,
        dicom_ae_title=args.ae_title,
        enable_dicom=not args.no_dicom,
        admin_user=args.admin_user,
        admin_password=args.admin_password,
        timing=Timing(rebuild_quiet_seconds=args.rebuild_quiet_seconds),
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    with emulator:
        dicom = (
            f", DICOM {emulator.dicom_ae_title}@{args.host}:{emulator.dicom_port}"
            if not args.no_dicom
            else ""
        )
        print(
            f"XNAT emulator ready at {emulator.url}{dicom} (data: {emulator.data_dir})", flush=True
        )
        stop.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
