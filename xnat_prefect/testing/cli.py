"""``xnat-emulator serve``: run the emulator from a shell until interrupted."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Callable, Sequence

from xnat_prefect.testing.config import Timing
from xnat_prefect.testing.server import XNATEmulator


def _positive(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text} is not a positive number of seconds")
    return value


#: ``serve`` options that set a :class:`Timing` field: field, parser, default, help.
_TIMING_OPTIONS: tuple[tuple[str, Callable[[str], float], float | None, str], ...] = (
    (
        "rebuild_quiet_seconds",
        float,
        Timing.rebuild_quiet_seconds,
        "quiet time before a received session is built (XNAT: 5 minutes)",
    ),
    (
        "archive_delay_seconds",
        float,
        Timing.archive_delay_seconds,
        "extra delay before a READY auto-archive session is archived",
    ),
    (
        "sweep_interval_seconds",
        _positive,
        Timing.sweep_interval_seconds,
        "how often background work runs (XNAT: 60 s)",
    ),
    (
        "session_timeout_seconds",
        _positive,
        None,
        "idle lifetime of HTTP sessions (default: site preference sessionTimeout, 15 min)",
    ),
    (
        "job_run_seconds",
        float,
        Timing.job_run_seconds,
        "how long a pipeline/container run stays Running",
    ),
    ("job_polls", int, None, "finish runs after this many status reads instead of after a time"),
)


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
    serve.add_argument("--site-id", default="XNAT", help="site ID (accession number prefix)")
    serve.add_argument(
        "--seed", type=int, default=0, help="seed of the fault-injection random draws"
    )
    serve.add_argument(
        "--honor-range",
        action="store_true",
        help="answer HTTP Range with 206 (real XNAT does not; change later: PUT /emulator/options)",
    )
    timing = serve.add_argument_group("timings (see Timing; change later: PUT /emulator/timing)")
    for field, parse, default, help_text in _TIMING_OPTIONS:
        option = "--" + field.replace("_", "-")
        timing.add_argument(option, type=parse, default=default, help=help_text)
    return parser


def timing_from(args: argparse.Namespace) -> Timing:
    """The :class:`Timing` the parsed options ask for.

    Args:
        args: Parsed ``serve`` options.

    Returns:
        The timing.
    """
    return Timing(**{field: getattr(args, field) for field, *_ in _TIMING_OPTIONS})


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
        site_id=args.site_id,
        timing=timing_from(args),
        seed=args.seed,
        honor_range=args.honor_range,
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
