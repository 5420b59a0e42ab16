"""`rowloom batches status|cancel OUT`: the batches a run left running at the provider, and cancelling them.

Registered in the main CLI with one line: `app.add_typer(batches_app, name="batches")`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from rowloom.concurrency.loops import run as run_loop
from rowloom.interface import messages

EXIT_ERROR = 1

OutputArg = Annotated[Path, typer.Argument(help="The run's output folder (it holds batches.jsonl).")]
ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config", "-c", help="The run's config: its providers' settings (extra headers too) reach the batches."
    ),
]

batches_app = typer.Typer(
    add_completion=False,
    help="Batches of `execution: batch` models that a run left running: their status, and cancelling them.",
    no_args_is_help=True,
    rich_markup_mode=None,
)


def batches_left_running(output: str) -> str:
    """What a stopped run says about the batches it left running (its journal's open ones): the same command
    collects them, or `rowloom batches cancel` cancels them. Empty when there are none."""
    from rowloom.models.batch.maintenance import open_entries

    try:
        running = [e for e in open_entries(Path(output)) if e.batch_id is not None]
    except OSError:
        return ""
    if not running:
        return ""
    many = len(running) > 1
    return (
        f"; {len(running)} {'batches' if many else 'batch'} still running at the provider: the same command "
        f"collects {'them' if many else 'it'} (no line is sent twice), or cancel with "
        f"`rowloom batches cancel {output}`"
    )


def _report(output: Path, config: Path | None, *, cancel: bool) -> None:
    from rowloom.models.batch.maintenance import open_batches

    if not output.is_dir():
        messages.error(f"{output} is not a folder; give the output folder of a run")
        raise typer.Exit(EXIT_ERROR)
    providers = None
    if config is not None:
        from rowloom.interface.cli import _load

        providers = {p.name: p for p in _load(config, None).providers}
    found = run_loop(open_batches(output, providers, cancel=cancel))
    if not found:
        messages.result(f"no open batches in {output}")
        return
    failed = False
    for batch in found:
        where = f"{batch.alias} on {batch.provider}: batch {batch.batch_id or '(id not recorded)'}, {batch.lines} lines"
        if batch.status is not None:
            counts = f"{batch.status.completed} done, {batch.status.failed} failed of {batch.status.total}"
            messages.result(f"{where}: {batch.status.status} ({counts})")
        else:
            failed = failed or batch.batch_id is not None
            messages.result(f"{where}: status unknown ({batch.error})")
    count = f"{len(found)} {'batch' if len(found) == 1 else 'batches'}"
    messages.result(
        f"{count} {'asked to cancel' if cancel else 'open'}; the next run into {output} reads what "
        f"{'it' if len(found) == 1 else 'they'} finished and sends the rest again"
    )
    if failed:
        raise typer.Exit(EXIT_ERROR)


@batches_app.command()
def status(output: OutputArg, config: ConfigOption = None) -> None:
    """The batches a run into OUTPUT left open, and their status at the provider."""
    _report(output, config, cancel=False)


@batches_app.command()
def cancel(output: OutputArg, config: ConfigOption = None) -> None:
    """Cancel the batches a run into OUTPUT left running (lines they finished are kept for the next run)."""
    _report(output, config, cancel=True)
