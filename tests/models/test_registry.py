"""The derainer registry: built-ins listed without importing torch, one-line errors for
unknown names and checkpoints, and plug-ins from an installed distribution's entry
points (made on the fly here), where a broken one is skipped with a warning."""

import importlib
import os
import subprocess
import sys
import textwrap

import pytest

import rainbench
from rainbench.models import registry
from rainbench.models.registry import (
    ENTRY_POINT_GROUP,
    DerainerError,
    DerainerSpec,
    create_derainer,
    list_derainers,
    register,
)

PLUGIN = "rainbench_fake_derainers"

PLUGIN_SOURCE = """
from rainbench.models.base import Derainer
from rainbench.models.registry import DerainerSpec


class Fake(Derainer):
    name = "fake"
    version = "7"

    def __init__(self, checkpoint, device, **options):
        super().__init__(device)
        self.checkpoint, self.given = checkpoint, options

    def derain(self, batch):
        return batch


SPEC = DerainerSpec("fake", "a plug-in for the tests", Fake, needs_checkpoint=True)


def make_spec():
    return DerainerSpec("fake-made", "made by a zero-argument callable", Fake)


NOT_A_SPEC = 3
CLASH = DerainerSpec("guided", "takes a built-in's name", Fake)
SWAPPED = DerainerSpec(Fake, "its arguments out of order", "swapped")
TWO_LINES = DerainerSpec("two\\nlines", "a name no listing shows on one line", Fake)


def explode():
    raise RuntimeError("plug-in bug\\nsecond line")
"""

ENTRY_POINTS = f"""
[{ENTRY_POINT_GROUP}]
fake = {PLUGIN}:SPEC
fake-made = {PLUGIN}:make_spec
missing-module = rainbench_no_such_module:SPEC
not-a-spec = {PLUGIN}:NOT_A_SPEC
clash = {PLUGIN}:CLASH
explodes = {PLUGIN}:explode
swapped = {PLUGIN}:SWAPPED
two-lines = {PLUGIN}:TWO_LINES
"""


@pytest.fixture
def plugin(tmp_path, monkeypatch):
    """An installed distribution `fake-derainers` with entry points good and broken."""
    (tmp_path / f"{PLUGIN}.py").write_text(PLUGIN_SOURCE)
    info = tmp_path / "fake_derainers-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fake-derainers\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(textwrap.dedent(ENTRY_POINTS))
    monkeypatch.syspath_prepend(str(tmp_path))  # also invalidates the finders' caches
    importlib.invalidate_caches()
    yield
    sys.modules.pop(PLUGIN, None)
    importlib.invalidate_caches()


@pytest.fixture
def isolated_registry(monkeypatch):
    """register() in a test changes a copy of the registry."""
    list_derainers()  # the built-ins first
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))


def test_the_built_ins_are_listed_by_name_with_their_source():
    specs = {spec.name: spec for spec in list_derainers()}
    assert {"identity", "guided", "dcp"} <= specs.keys()
    for name in ("identity", "guided", "dcp"):
        assert specs[name].source == "built-in"
        assert not specs[name].needs_checkpoint
        assert specs[name].description and "\n" not in specs[name].description


def test_listing_and_creating_a_classical_derainer_never_import_torch():
    code = (
        "import sys\n"
        "from rainbench.models import create_derainer, list_derainers\n"
        "list_derainers(); create_derainer('guided'); create_derainer('dcp')\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_an_unknown_name_is_a_one_line_error_listing_the_known_ones():
    with pytest.raises(DerainerError, match=r"unknown derainer 'restormer'; known: .*guided"):
        create_derainer("restormer")


def test_a_checkpoint_that_is_not_there_is_an_error(isolated_registry, tmp_path):
    register(
        DerainerSpec(
            "needy",
            "needs weights",
            lambda checkpoint, device: (checkpoint, device),
            needs_checkpoint=True,
        )
    )
    with pytest.raises(DerainerError, match="needy needs a checkpoint"):
        create_derainer("needy")
    missing = tmp_path / "model.pth"
    with pytest.raises(DerainerError, match=f"checkpoint {missing} not found"):
        create_derainer("needy", checkpoint=missing)
    missing.write_bytes(b"weights")
    assert create_derainer("needy", checkpoint=str(missing), device="cuda") == (missing, "cuda")


def test_the_factory_gets_checkpoint_device_and_options(isolated_registry):
    register(DerainerSpec("echo", "echoes", lambda checkpoint, device, **options: options))
    assert create_derainer("echo", strength=2) == {"strength": 2}


@pytest.mark.filterwarnings("ignore:skipping derainer entry point")
def test_an_entry_point_derainer_from_an_installed_distribution(plugin):
    specs = {spec.name: spec for spec in list_derainers()}
    assert specs["fake"].source == "fake-derainers"
    assert specs["fake"].needs_checkpoint
    assert specs["fake-made"].source == "fake-derainers"
    assert specs["guided"].source == "built-in"  # the clash did not replace it
    names = [spec.name for spec in list_derainers()]
    assert names.index("identity") < names.index("fake")  # built-ins first


@pytest.mark.filterwarnings("ignore:skipping derainer entry point")
def test_an_entry_point_derainer_is_created_like_a_built_in(plugin, tmp_path):
    weights = tmp_path / "fake.ckpt"
    weights.write_bytes(b"w")
    derainer = create_derainer("fake", checkpoint=weights, device="cuda:1", gain=3)
    assert (derainer.checkpoint, derainer.device, derainer.given) == (
        weights,
        "cuda:1",
        {"gain": 3},
    )
    assert derainer.info() == {"name": "fake", "version": "7", "options": {}}


def test_broken_entry_points_are_skipped_with_a_warning_naming_each(plugin):
    with pytest.warns(UserWarning) as caught:
        names = {spec.name for spec in list_derainers()}
    assert {"missing-module", "not-a-spec", "explodes", "swapped", "two\nlines"}.isdisjoint(names)
    messages = [str(warning.message) for warning in caught]
    for name, reason in [
        ("missing-module", "ModuleNotFoundError"),
        ("not-a-spec", "gives a int, not a DerainerSpec"),
        ("clash", "the name 'guided' is taken by built-in"),
        ("explodes", "RuntimeError: plug-in bug"),
        ("swapped", "its DerainerSpec's name is <class "),
        ("two-lines", "its DerainerSpec's name is 'two\\nlines', not a one-line name"),
    ]:
        (message,) = [
            m for m in messages if m.startswith(f"skipping derainer entry point {name} =")
        ]
        assert reason in message
        assert "\n" not in message


EXITING_SOURCE = """
import sys

print("loading the exiting plug-in")  # not into `rainbench models --json`'s stdout


class Unsaid(Exception):
    def __str__(self):
        raise RuntimeError("no message to be had")


def exits():
    sys.exit(2)  # what an argparse of its own does with rainbench's arguments


def unsaid():
    raise Unsaid()


def silent():
    raise ImportError()
"""


def test_a_plugin_that_exits_or_says_nothing_is_skipped_with_one_line(
    tmp_path, monkeypatch, capsys
):
    # A sys.exit() on load ended `rainbench models` (and every eval) with the plug-in's
    # exit status; an exception whose message cannot be had escaped as a traceback; what
    # its import printed went into stdout, the command's (`--json`).
    (tmp_path / "rainbench_exiting.py").write_text(EXITING_SOURCE)
    info = tmp_path / "exiting-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: exiting\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        f"[{ENTRY_POINT_GROUP}]\n"
        + "".join(f"{name} = rainbench_exiting:{name}\n" for name in ("exits", "unsaid", "silent"))
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    with pytest.warns(registry.PluginWarning) as caught:
        names = {spec.name for spec in list_derainers()}
    sys.modules.pop("rainbench_exiting", None)
    assert "identity" in names
    assert capsys.readouterr() == ("", "loading the exiting plug-in\n")
    assert sorted(str(warning.message) for warning in caught) == [
        f"skipping derainer entry point {name} = rainbench_exiting:{name}: {said}"
        for name, said in [
            ("exits", "SystemExit: 2"),
            ("silent", "ImportError"),
            ("unsaid", "Unsaid"),
        ]
    ]


def test_a_factory_that_exits_is_one_line_naming_the_derainer(isolated_registry):
    def factory(checkpoint, device):
        sys.exit("usage: median [--size N]")

    register(DerainerSpec("median", "a factory that exits", factory))
    with pytest.raises(DerainerError) as refused:
        create_derainer("median")
    assert str(refused.value) == (
        "derainer median (built-in) could not be built: SystemExit: usage: median [--size N]"
    )


def test_a_factory_that_raises_is_one_line_naming_the_derainer(isolated_registry):
    def factory(checkpoint, device, size=3):
        return size

    register(DerainerSpec("median", "a factory with one option", factory))
    with pytest.raises(DerainerError) as refused:
        create_derainer("median", siz=3)
    message = str(refused.value)
    assert message.startswith("derainer median (built-in) could not be built: TypeError: ")
    assert "unexpected keyword argument 'siz'" in message and "\n" not in message


def test_a_name_only_a_broken_plugin_gives_says_it_failed_to_load(plugin):
    with pytest.warns(registry.PluginWarning), pytest.raises(DerainerError) as refused:
        create_derainer("missing-module")
    assert str(refused.value) == (
        "derainer 'missing-module' is not available: the plug-in entry point missing-module = "
        "rainbench_no_such_module:SPEC failed to load: ModuleNotFoundError: No module named "
        "'rainbench_no_such_module'"
    )
    with pytest.warns(registry.PluginWarning), pytest.raises(DerainerError) as unknown:
        create_derainer("restormer")
    assert "unknown derainer 'restormer'" in str(unknown.value)
    assert "5 plug-in(s) failed to load: the plug-in entry point missing-module" in str(
        unknown.value
    )


@pytest.mark.filterwarnings("ignore:skipping derainer entry point")
def test_a_plugin_records_its_package_version_and_entry_point(plugin):
    specs = {spec.name: spec for spec in list_derainers()}
    assert specs["fake"].origin() == {
        "package": "fake-derainers",
        "version": "1.0",
        "entry_point": f"{PLUGIN}:SPEC",
    }
    assert specs["guided"].origin() == {
        "package": "rainbench",
        "version": rainbench.__version__,
        "module": "rainbench.models.builtin",
    }


def test_the_cli_prints_a_skipped_plugin_as_one_warning_line(plugin, tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), *sys.path])}
    result = subprocess.run(
        [sys.executable, "-m", "rainbench", "models"], capture_output=True, text=True, env=env
    )
    assert result.returncode == 0, result.stderr
    assert "warning: skipping derainer entry point clash = " in result.stderr
    assert "UserWarning" not in result.stderr and "warnings.warn" not in result.stderr
    assert all(line.startswith("warning: ") for line in result.stderr.splitlines())
