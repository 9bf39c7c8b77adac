"""A real Kubernetes cluster on this machine: etcd, kube-apiserver, kube-controller-manager,
kube-scheduler and kwok's simulated nodes as local processes.

The rule of this package: it only ever runs the real, pinned upstream binaries (built by
``make binaries`` or supplied by the user, see ``find_binaries``), bound to 127.0.0.1, with
RBAC on; it never fakes the API server. It is an adapter: it may use the models (to install
the CRDs) but nothing in the engine depends on it. No kubelet runs and no container: kwok
writes the nodes' and pods' status. ``ControlPlane`` alone (and ``dev up --bare``) is etcd and
kube-apiserver only: pods stay Pending and deleted namespaces stay Terminating.

- ``ControlPlane``: start/attach/stop, admin kubeconfig, ``mint_user`` (client certificates for
  any user and groups), ``mint_serving_cert`` (TLS for a webhook on loopback), logs.
- ``install_crds`` / ``seed``: ComputeGate's CRDs, and a folder of YAML restored as from a backup.
  Every call to the API server goes through the ``kubernetes`` client, configured by
  ``computegate.kubeclient`` (``ControlPlane.api_client()``: one for the admin or any kubeconfig).
- ``cluster_step`` / ``start_cluster``: kube-controller-manager, kube-scheduler and kwok.
- ``dev_up`` / ``dev_down`` and ``DEV_UP_STEPS``: the detached cluster of ``computegate dev``.

docs/dev-cluster.md describes the flags, the lookup order of the binaries and the tests.
"""

from computegate.devcluster._binaries import (
    CLUSTER_BINARIES,
    ETCD_VERSION,
    HELM_VERSION,
    KUBERNETES_VERSION,
    KWOK_VERSION,
    Binaries,
    BinariesNotFound,
    default_assets_dir,
    find_binaries,
)
from computegate.devcluster._controlplane import ADMIN_USER, ControlPlane, ControlPlaneError, ServingCert
from computegate.devcluster._dev import (
    DEV_UP_STEPS,
    DevSession,
    DevStep,
    default_dev_dir,
    dev_down,
    dev_up,
    install_crds_step,
    run_dev_command,
    seed_step,
)
from computegate.devcluster._kubeconfig import write_kubeconfig
from computegate.devcluster._pki import CertificateAuthority, KeyPair
from computegate.devcluster._process import ManagedProcess
from computegate.devcluster._seed import AppliedObject, install_crds, seed
from computegate.devcluster._state import (
    NODE_DEFAULT_CAPACITY,
    SeedError,
    StateDocument,
    check_state,
    live_node_status,
    read_state,
)
from computegate.devcluster._webhook import (  # issue 4: the webhook operator's dev up step
    WEBHOOK_PROCESS,
    start_webhook,
    wait_for_webhook,
    webhook_step,
)

from computegate.devcluster._cluster import (  # isort: skip  (issue 9: the full cluster's step)
    CONTROLLER_MANAGER,
    CONTROLLER_MANAGER_USER,
    KWOK,
    KWOK_USER,
    POD_COMPLETE_DELAY_ANNOTATION,
    SCHEDULER,
    SCHEDULER_USER,
    cluster_step,
    kwok_stages_path,
    start_cluster,
)

# issue 9: the controllers, scheduler and kwok start before seeding (seeded pods need their
# namespace's `default` ServiceAccount); nothing with `dev up --bare`.
DEV_UP_STEPS.insert(DEV_UP_STEPS.index(seed_step), cluster_step)
# issue 4: `dev up` ends by starting the webhook operator and registering its webhooks (after
# seeding, so restored pods are not re-judged).
DEV_UP_STEPS.append(webhook_step)

__all__ = [
    "ADMIN_USER",
    "CLUSTER_BINARIES",
    "CONTROLLER_MANAGER",
    "CONTROLLER_MANAGER_USER",
    "DEV_UP_STEPS",
    "ETCD_VERSION",
    "HELM_VERSION",
    "KUBERNETES_VERSION",
    "KWOK",
    "KWOK_USER",
    "KWOK_VERSION",
    "NODE_DEFAULT_CAPACITY",
    "POD_COMPLETE_DELAY_ANNOTATION",
    "SCHEDULER",
    "SCHEDULER_USER",
    "WEBHOOK_PROCESS",
    "AppliedObject",
    "Binaries",
    "BinariesNotFound",
    "CertificateAuthority",
    "ControlPlane",
    "ControlPlaneError",
    "DevSession",
    "DevStep",
    "KeyPair",
    "ManagedProcess",
    "SeedError",
    "ServingCert",
    "StateDocument",
    "check_state",
    "cluster_step",
    "default_assets_dir",
    "default_dev_dir",
    "dev_down",
    "dev_up",
    "find_binaries",
    "install_crds",
    "install_crds_step",
    "kwok_stages_path",
    "live_node_status",
    "read_state",
    "run_dev_command",
    "seed",
    "seed_step",
    "start_cluster",
    "start_webhook",
    "wait_for_webhook",
    "webhook_step",
    "write_kubeconfig",
]
