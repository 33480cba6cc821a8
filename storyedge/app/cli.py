"""The ``storyedge`` command line: data, train, export, bench, generate, devices, quickstart.

Each subcommand is a module of :mod:`storyedge.app`, imported on first use, so ``storyedge
--help`` is instant and ``storyedge bench --latency-only`` never imports TensorFlow. Errors a user can
cause are printed as one ``error: ...`` line with exit code 2 (1 for a failed quality gate).
"""

from __future__ import annotations

import importlib
import logging
import os
import sys

import click

from storyedge import __version__
from storyedge.constants import DEVICES
from storyedge.devices import device_report, select_device
from storyedge.errors import CheckFailed, UserError
from storyedge.quiet import quiet_tensorflow_import

#: command name → (module, attribute, one-line help shown before the module is imported)
SUBCOMMANDS: dict[str, tuple[str, str, str]] = {
    "data": ("storyedge.app.data_cli", "data", "Generate the embedded synthetic stories; inspect a dataset."),
    "train": ("storyedge.app.train_cli", "train", "Train the fusion model (auto device selection)."),
    "export": ("storyedge.app.export_cli", "export", "Export encoder + decoder step to TFLite / ONNX."),
    "bench": ("storyedge.app.bench_cli", "bench", "Perplexity parity and decoding latency per backend."),
    "generate": ("storyedge.app.generate", "generate", "Write caption k+1 for a story with any backend."),
    "quickstart": ("storyedge.app.quickstart", "quickstart", "Data → train → export → bench on the embedded stories."),
}


class LazyGroup(click.Group):
    """A group whose subcommands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*super().list_commands(ctx), *SUBCOMMANDS])

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in SUBCOMMANDS:
            return super().get_command(ctx, name)
        module_name, attribute, summary = SUBCOMMANDS[name]
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            return _not_yet_available(name, summary)
        return getattr(module, attribute)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # List every command from the table above without importing the heavy modules.
        rows = [(name, SUBCOMMANDS[name][2]) for name in SUBCOMMANDS]
        rows += [(n, c.get_short_help_str()) for n, c in self.commands.items()]
        with formatter.section("Commands"):
            formatter.write_dl(sorted(rows))


def _not_yet_available(name: str, summary: str) -> click.Command:
    @click.command(name=name, help=f"{summary} (not yet available in this version)")
    def command() -> None:
        raise UserError(f"storyedge {name}: not yet available in this version")

    return command


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="storyedge")
@click.option("-v", "--verbose", is_flag=True, help="Debug logging (TensorFlow logs too).")
def cli(verbose: bool) -> None:
    """storyedge: train a cross-modal attention fusion model for visual story generation,
    export it to TFLite / ONNX and benchmark parity and latency per backend."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s" if verbose else "%(message)s",
    )
    if not verbose:
        for noisy in ("absl", "tensorflow", "h5py", "datasets", "urllib3", "httpx"):
            logging.getLogger(noisy).setLevel(logging.WARNING)


@cli.command()
@click.option("--device", default="auto", show_default=True,
              type=click.Choice(DEVICES), help="Device to resolve.")
def devices(device: str) -> None:
    """Show the devices TensorFlow sees and the one --device picks, with the reason."""
    click.echo(device_report())
    if device != "auto":
        click.echo(select_device(device).describe())


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: run the CLI and map errors to one line + exit code."""
    args = sys.argv[1:] if argv is None else argv
    if not {"-v", "--verbose"} & set(args):
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # read by TensorFlow at import
        quiet_tensorflow_import()
    try:
        code = cli.main(args=args, prog_name="storyedge", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except UserError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except CheckFailed as exc:
        click.echo(f"failed: {exc}", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
