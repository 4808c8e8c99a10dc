"""``xnat-prefect``: the project's command line (the demo, the task table).

Example:
    ```bash
    xnat-prefect demo            # the main job on the embedded emulator + local Prefect
    xnat-prefect tasks-table     # the Markdown table of every task, as in the README
    ```
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def tasks_table() -> str:
    """Render the task catalog as a Markdown table (operation, task, retries, description).

    Returns:
        The table.
    """
    from xnat_prefect.tasks import TASK_MODULES

    lines = [
        "| operation | task | import from | retries |",
        "|---|---|---|---|",
    ]
    for module in TASK_MODULES:
        for name in module.__all__:
            task_obj = getattr(module, name)
            operation = task_obj.fn.__name__.replace("_", ".", 1)
            lines.append(f"| `{operation}` | `{name}` | `{module.__name__}` | {task_obj.retries} |")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    """The command-line parser.

    Returns:
        The parser.
    """
    parser = argparse.ArgumentParser(prog="xnat-prefect", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="run the end-to-end demo on the embedded emulator")
    demo.add_argument(
        "--data-dir", default=None, help="keep the emulator's data here (default: a temp dir)"
    )
    demo.add_argument("--series", type=int, default=3, help="series per synthetic study")
    demo.add_argument("--instances", type=int, default=12, help="DICOM files per series")
    demo.add_argument("--workers", type=int, default=4, help="parallel workers per flow")
    commands.add_parser("tasks-table", help="print the Markdown table of every task")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``xnat-prefect``.

    Args:
        argv: Arguments (default: ``sys.argv[1:]``).

    Returns:
        The exit code.
    """
    args = build_parser().parse_args(argv)
    if args.command == "tasks-table":
        print(tasks_table())
        return 0
    from xnat_prefect.demo import run_demo

    code: int = run_demo(
        data_dir=args.data_dir,
        series=args.series,
        instances=args.instances,
        workers=args.workers,
    )
    return code


if __name__ == "__main__":
    sys.exit(main())
