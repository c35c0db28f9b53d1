"""The one figure only the report draws: a run's training curves (a run is no result of its own; every result's
figures come from the registry, ``losslens.plot.render``)."""

from __future__ import annotations

import numpy as np


def plotly_history(run):
    """A run's losses (and accuracies, on a second axis) per epoch, as its ``run.json`` records them
    (the full train and test sets through the evaluator core).

    Returns:
        A ``plotly.graph_objects.Figure``.
    """
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    from losslens.plot.interactive import readable_axis

    history = list(run.history)
    epochs = [h["epoch"] for h in history]
    keys = [k for k in history[0] if k not in ("epoch", "step")] if history else []
    fig = make_subplots(specs=[[{"secondary_y": any(not k.endswith("_loss") for k in keys)}]])
    for key in keys:
        loss = key.endswith("_loss")
        fig.add_trace(go.Scatter(x=epochs, y=[h.get(key) for h in history], mode="lines+markers", name=key,
                                 line={"dash": "solid" if loss else "dot"}), secondary_y=not loss)
    info = run.metadata
    title = f"training of {run.out.name}: {info.get('optimizer')}, lr {info.get('lr')}, batch {info.get('batch_size')}"
    fig.update_layout(legend={"orientation": "h", "y": -0.2}, title={"text": title})
    fig.update_xaxes(title_text="epoch")
    def values(loss: bool) -> np.ndarray:
        return np.array([h.get(k) for h in history for k in keys if k.endswith("_loss") == loss], dtype=np.float64)

    fig.update_yaxes(title_text="loss (log scale)", type="log", secondary_y=False, **readable_axis(values(True), log=True))
    if any(not k.endswith("_loss") for k in keys):
        fig.update_yaxes(title_text="accuracy", showgrid=False, secondary_y=True, **readable_axis(values(False), log=False))
    return fig
