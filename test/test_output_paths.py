"""The one output-path rule of every command line (core/output_paths.py), on real files."""

import os

import pytest

from skd_saliency_ros.core.errors import SkdError
from skd_saliency_ros.core.output_paths import Output, OutputPathError, check_outputs


@pytest.fixture()
def tree(tmp_path):
    """Make a bag-like input folder, an input file, and an existing result file."""
    bag = tmp_path / "flight"
    bag.mkdir()
    (bag / "metadata.yaml").write_text("bag\n")
    model = tmp_path / "model.pt"
    model.write_bytes(b"weights")
    old = tmp_path / "old.json"
    old.write_text("{}")
    return tmp_path, bag, model, old


def refused(*needles, **kwargs):
    """Assert check_outputs refuses with an SkdError naming every needle."""
    with pytest.raises(OutputPathError) as info:
        check_outputs(**kwargs)
    assert isinstance(info.value, SkdError)
    for needle in needles:
        assert needle in str(info.value), str(info.value)


def test_output_on_in_or_around_an_input(tree):
    """Equal to, inside, or holding an input: refused even with overwrite."""
    tmp, bag, model, _ = tree
    inputs = [("input bag", bag), ("model", model)]
    for out in (bag / "metadata.yaml", bag, tmp, model):
        refused("--json", str(out), "would overwrite or nest",
                outputs=[Output("--json", out, regenerated=True)], inputs=inputs,
                overwrite=True)
    # two spellings of one place are one place
    refused("input bag", outputs=[Output("--json", tmp / "x" / ".." / "flight" / "a.json")],
            inputs=inputs)
    os.symlink(bag, tmp / "link")
    refused("input bag", outputs=[Output("--json", tmp / "link" / "metadata.yaml")],
            inputs=inputs, overwrite=True)
    check_outputs([Output("--json", tmp / "flight_report.json")], inputs=inputs)  # beside: ok


def test_two_outputs_at_one_place(tree):
    """The same path twice, or a file inside a folder output: refused; side by side: fine."""
    tmp = tree[0]
    refused("--out", "--json", "same place",
            outputs=[Output("--out", tmp / "o", folder=True), Output("--json", tmp / "o")])
    refused("same place", outputs=[Output("--out", tmp / "o", folder=True),
                                   Output("--json", tmp / "o" / "r.json")])
    refused("--json", "--doc", outputs=[Output("--json", tmp / "r.md", regenerated=True),
                                        Output("--doc", tmp / "r.md", regenerated=True)])
    check_outputs([Output("--out", tmp / "outs" / "a_saliency", folder=True),
                   Output("--out", tmp / "outs" / "b_saliency", folder=True),
                   Output("--json", tmp / "outs" / "report.json")])


def test_existing_outputs(tree):
    """Existing: refused without overwrite unless regenerated; a folder for a file never."""
    tmp, bag, _, old = tree
    refused("already exists", "--overwrite", outputs=[Output("--json", old)])
    check_outputs([Output("--json", old)], overwrite=True)
    check_outputs([Output("--doc", old, regenerated=True)])
    refused("is a folder", outputs=[Output("--json", bag)], overwrite=True)
    check_outputs([Output("--out", bag, folder=True)], overwrite=True)  # a bag replaced whole
    refused("is a file, not a folder", outputs=[Output("--json", old / "sub" / "r.json")],
            overwrite=True)
    check_outputs([Output("--json", None), Output("--out", tmp / "new" / "deep" / "x.json")],
                  inputs=[("--gaze", None)])
