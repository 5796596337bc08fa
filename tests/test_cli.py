"""pai-build's options become the same settings as doit's variables."""

from __future__ import annotations

from pathlib import Path

import pytest

from paitasks.cli import main, parser, settings_from


def test_build_options_become_settings(tmp_path: Path) -> None:
    args_file = tmp_path / "args"
    args_file.write_text("VERSION=2\n")
    args = parser().parse_args(
        ["build", "--src", str(tmp_path / "src"), "--build-args", str(args_file),
         "--platform", "linux/amd64", "--variant", "k8s", "--build-tool", "classic"]
    )
    settings = settings_from(args)
    assert settings.src == tmp_path / "src"
    assert settings.build_args == (("VERSION", "2"),)
    assert settings.platform == "linux/amd64"
    assert (settings.variant, settings.build_tool) == ("k8s", "classic")


def test_without_options_the_defaults_hold(tmp_path: Path) -> None:
    settings = settings_from(parser().parse_args(["plan", "--src", str(tmp_path)]))
    assert settings.build_args == () and settings.platform is None


def test_publish_fingerprints_option(tmp_path: Path) -> None:
    args = parser().parse_args(["build", "--src", str(tmp_path), "-c", str(tmp_path / "cfg"),
                                "--publish-fingerprints"])
    assert settings_from(args).publish == "fingerprints"


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ([], "prune needs --keep N, --older-than DAYS, or both"),
        (["--keep", "-1"], "--keep and --older-than take 0 or more"),
        (["--older-than", "-2"], "--keep and --older-than take 0 or more"),
    ],
)
def test_prune_says_what_it_needs_before_any_request(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], arguments: list[str], message: str
) -> None:
    code = main(["prune", "-c", str(tmp_path / "missing"), "--src", str(tmp_path), *arguments])
    assert code == 2
    assert capsys.readouterr().err == f"pai-build: error: {message}\n"
