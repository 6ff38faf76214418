"""One first inference per OpenVINO infer request, in the calling thread, before any concurrency.

pyopenvino makes its numpy bridge (pybind11's numpy API, behind C++ function-local statics) on the
first numpy use of a tensor. Two threads making that first use at once can deadlock: one holds the
GIL while it waits at a static's guard, the other owns that guard and waits for the GIL inside its
initialisation. A fresh local server's first two concurrent requests were seen never answered that
way (both inference threads in ``tensor.data``). Warming every request from one thread first makes
the first use single-threaded, and a client's first requests never pay for a request's first run.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def warm_up_request(request: Any, compiled: Any) -> None:
    """Run ``request`` once on zeros (dynamic dimensions as 1) and read its output as numpy."""
    port = compiled.input(0)
    shape = [d.get_length() if d.is_static else 1 for d in port.get_partial_shape()]
    request.infer({0: np.zeros(shape, dtype=port.get_element_type().to_dtype())})
    np.asarray(request.get_output_tensor(0).data)
