"""ComputeGate: an admission controller for export-controlled AI compute on Kubernetes.

Layers, checked by import-linter (``make lint``):

- ``computegate.models``   pydantic models of our CRDs and of the Kubernetes objects we read.
- ``computegate.engine``   the pure, synchronous decision: models in, a verdict out. No I/O.
- adapters                 ``statefiles`` (YAML on disk), ``webhook`` (Kopf), ``devcluster``
                           (local control plane), ``cli``: each turns its input into the same
                           engine input.
"""

__version__ = "0.1.0"
