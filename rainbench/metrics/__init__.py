"""Image-quality metrics by name: `create_metric("psnr_y")`. Full-reference metrics
follow the deraining papers' MATLAB convention exactly; no-reference ones come from
pyiqa behind one module, so it stays replaceable. `list_metrics()` names them all.
"""

from rainbench.metrics.registry import (
    PROTOCOL_VERSION,
    Metric,
    MetricError,
    create_metric,
    list_metrics,
)

__all__ = ["PROTOCOL_VERSION", "Metric", "MetricError", "create_metric", "list_metrics"]
