"""Third-party models and methods through the ``unlearnkit.models`` / ``unlearnkit.methods``
entry-point groups: a tiny generated dist-info on sys.path stands in for an installed package."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from unlearnkit.methods import METHODS, create_method
from unlearnkit.models import MODELS, create_model

PACKAGE = textwrap.dedent(
    """
    from torch import nn
    from unlearnkit.methods import UnlearningMethod


    def make_net(num_classes, in_chans, image_size, width=4):
        \"\"\"A plugin's tiny network.\"\"\"
        return nn.Sequential(nn.Flatten(), nn.Linear(in_chans * image_size**2, width), nn.ReLU(),
                             nn.Linear(width, num_classes))


    class KeepAll(UnlearningMethod):
        name = "uk_keep_all"
        summary = "a plugin method that changes nothing"
        in_default_run = False

        def unlearn(self, ctx):
            return ctx.model


    NOT_A_FACTORY = 42
    """
)

ENTRY_POINTS = textwrap.dedent(
    """
    [unlearnkit.models]
    uk_plugin_net = uk_plugin:make_net
    uk_broken_net = uk_plugin_missing_module:make
    uk_not_factory = uk_plugin:NOT_A_FACTORY

    [unlearnkit.methods]
    uk_keep_all = uk_plugin:KeepAll
    uk_not_method = uk_plugin:make_net
    """
)


def write_plugin(root: Path) -> Path:
    """``uk_plugin.py`` plus ``uk_plugin-0.1.dist-info`` (METADATA, entry_points.txt)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "uk_plugin.py").write_text(PACKAGE)
    info = root / "uk_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: uk-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(ENTRY_POINTS)
    return root


@pytest.fixture
def plugin(tmp_path, monkeypatch):
    """The plugin on sys.path; MODELS and METHODS reload their plugins and are restored after."""
    root = write_plugin(tmp_path / "site")
    monkeypatch.syspath_prepend(str(root))
    for registry in (MODELS, METHODS):
        monkeypatch.setattr(registry, "_entries", dict(registry._entries))
        monkeypatch.setattr(registry, "_plugins", {})
        monkeypatch.setattr(registry, "_plugins_loaded", False)
    yield root
    sys.modules.pop("uk_plugin", None)


def test_plugin_model_builds_and_broken_ones_are_one_line_warnings(plugin, caplog):
    with caplog.at_level(logging.WARNING, logger="unlearnkit.plugins"):
        model = create_model("uk_plugin_net", 3, 1, 8, width=5)
    assert model(torch.randn(2, 1, 8, 8)).shape == (2, 3)
    assert MODELS.provider("uk_plugin_net") == "uk-plugin" and MODELS.provider("smallcnn") is None
    assert "uk_broken_net" not in MODELS and "uk_not_factory" not in MODELS
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 2 and all("\n" not in w for w in warnings)
    assert any("uk_broken_net" in w and "ModuleNotFoundError" in w for w in warnings)
    assert any("uk_not_factory" in w and "not a model factory" in w for w in warnings)


def test_plugin_method_is_listed_and_created(plugin, caplog):
    with caplog.at_level(logging.WARNING, logger="unlearnkit.plugins"):
        assert "uk_keep_all" in METHODS.names()
    assert create_method("uk_keep_all").name == "uk_keep_all"
    assert "uk_not_method" not in METHODS
    assert any("not an UnlearningMethod subclass" in r.getMessage() for r in caplog.records)


def test_built_in_names_need_no_plugin_scan(plugin):
    MODELS.get("smallcnn")
    assert not MODELS._plugins_loaded  # a known name never pays for the entry-point scan


def cli(*args: str, extra_path: Path) -> subprocess.CompletedProcess:
    src = Path(__file__).parents[2] / "src"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(src), str(extra_path)])}
    return subprocess.run(
        [sys.executable, "-m", "unlearnkit", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


def test_cli_lists_plugin_models_and_methods(tmp_path):
    root = write_plugin(tmp_path / "site")
    models = cli("models", extra_path=root)
    assert models.returncode == 0, models.stderr
    assert "uk_plugin_net" in models.stdout and "(plugin: uk-plugin)" in models.stdout
    assert "timm:NAME" in models.stdout and "torchvision:NAME" in models.stdout
    assert "module:package.module:factory" in models.stdout
    skipped = [line for line in models.stderr.splitlines() if "skipped" in line]
    assert len(skipped) == 2 and "Traceback" not in models.stderr
    methods = cli("methods", extra_path=root)
    assert methods.returncode == 0, methods.stderr
    assert "uk_keep_all" in methods.stdout and "retrain" in methods.stdout
