"""The figure registry (losslens/plot/render.py): every kind of result has a drawer, and each draws its
named figures from a small real result of its kind."""

import plotly.graph_objects as go
import pytest
from matplotlib.figure import Figure

from losslens.plot.render import DRAWERS, figures, render
from losslens.results import RESULT_CLASSES


def test_every_kind_of_result_has_a_drawer():
    assert sorted(DRAWERS) == sorted(RESULT_CLASSES)


@pytest.mark.parametrize("kind", sorted(RESULT_CLASSES))
def test_each_kind_draws_its_named_figures(one_of_each_kind, kind, tmp_path):
    result = one_of_each_kind[kind]
    assert result.KIND == kind
    drawn = figures(result)
    assert drawn and all(name.endswith((".png", ".html")) for name in drawn)
    for name, figure in drawn.items():
        pages = figure if isinstance(figure, list) else [figure]
        assert all(isinstance(f, Figure if name.endswith(".png") else go.Figure) for f in pages), name
    written = render(result, tmp_path, kind)
    assert [p.name for p in written] == [f"{kind}{name}" for name in drawn]
    assert all(p.stat().st_size > 1000 for p in written)


def test_names_select_figures_and_options_go_only_where_they_apply(one_of_each_kind):
    paths, surface = one_of_each_kind["trajectory"], one_of_each_kind["surface"]
    assert list(figures(paths, "_losses.png")) == ["_losses.png"]
    page = figures(paths, ".html", embeddings=[one_of_each_kind["embedding"]])[".html"]
    assert isinstance(page, list) and len(page) == 2  # the paths, then the embedding
    assert "_embeddings.png" in figures(paths, embeddings=[one_of_each_kind["embedding"]])
    assert figures(paths, ".html", surface=surface)[".html"].data[0].type == "contour"
    with pytest.raises(ValueError, match="has no figure _nope.png; its figures: .png, _losses.png, .html"):
        figures(paths, "_nope.png")
    with pytest.raises(ValueError, match="a log scale applies to loss surfaces, lines and paths, not to a Spectrum"):
        figures(one_of_each_kind["spectrum"], log=True)
    with pytest.raises(ValueError, match="a Replay is drawn without surface"):
        figures(one_of_each_kind["replay"], surface=surface)
    with pytest.raises(ValueError, match="cannot draw a dict: not a losslens result"):
        figures({})


def test_the_commands_and_the_report_draw_only_through_the_registry():
    """Above ``plot/``, a figure comes from ``plot/render.py``: no command or report module imports another
    plot module (but ``write_vtp``, a file for ParaView, and the report's history figure's axis helper)."""
    import ast
    from pathlib import Path

    import losslens

    root = Path(losslens.__file__).parent
    allowed = {"losslens.plot.render", "losslens.plot.export"}
    for path in sorted([*root.glob("cli/*.py"), *root.glob("report/*.py")]):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("losslens.plot"):
                drawing = node.module not in allowed and not (path.name == "figures.py" and node.names[0].name ==
                                                              "readable_axis" and len(node.names) == 1)
                assert not drawing, f"{path.relative_to(root)}:{node.lineno} draws past the registry ({node.module})"
            assert not (isinstance(node, ast.Import) and any(a.name.startswith("losslens.plot") for a in node.names))
