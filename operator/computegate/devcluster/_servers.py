"""How the dev cluster's etcd and kube-apiserver run: their certificates, their command lines,
and the loopback ports they take. ``_controlplane`` starts, watches and stops them."""

from __future__ import annotations

import http.client
import socket
from collections.abc import Sequence
from pathlib import Path

from computegate.devcluster._binaries import Binaries
from computegate.devcluster._kubeconfig import write_kubeconfig
from computegate.devcluster._pki import CertificateAuthority, write_service_account_keys

__all__ = [
    "ADMIN_GROUPS",
    "ADMIN_USER",
    "HOST",
    "SERVICE_CLUSTER_IP_RANGE",
    "apiserver_argv",
    "etcd_argv",
    "etcd_healthy",
    "free_ports",
    "write_pki",
]

HOST = "127.0.0.1"
ADMIN_USER = "computegate-admin"
ADMIN_GROUPS = ("system:masters",)
SERVICE_CLUSTER_IP_RANGE = "10.0.0.0/24"
_APISERVER_SANS = (
    HOST,
    "localhost",
    "10.0.0.1",  # the first address of the service range: the in-cluster `kubernetes` service
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
)


def free_ports(count: int) -> list[int]:
    """``count`` distinct ports that are free on 127.0.0.1 right now."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind((HOST, 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def etcd_healthy(port: int) -> bool:
    connection = http.client.HTTPConnection(HOST, port, timeout=2)
    try:
        connection.request("GET", "/health")
        response = connection.getresponse()
        body = response.read()
    except OSError:
        return False
    finally:
        connection.close()
    return response.status == 200 and b'"health":"true"' in body.replace(b" ", b"")


def write_pki(pki: Path, *, kubeconfig: Path, url: str) -> None:
    """The CA, the API server's serving certificate, the service-account keys, and the admin's
    client certificate and kubeconfig."""
    ca = CertificateAuthority.generate()
    ca.write(pki / "ca.crt", pki / "ca.key")
    ca.issue("kube-apiserver", hosts=_APISERVER_SANS, server=True).write(
        pki / "apiserver.crt", pki / "apiserver.key"
    )
    write_service_account_keys(pki / "sa.key", pki / "sa.pub")
    admin = ca.issue(ADMIN_USER, organizations=ADMIN_GROUPS, client=True)
    admin.write(pki / "admin.crt", pki / "admin.key")
    write_kubeconfig(kubeconfig, server=url, ca_pem=ca.cert_pem, user=ADMIN_USER, credentials=admin)


def etcd_argv(binaries: Binaries, data_dir: Path, *, port: int, peer_port: int) -> list[str]:
    client_url = f"http://{HOST}:{port}"
    peer_url = f"http://{HOST}:{peer_port}"
    return [
        str(binaries.etcd),
        "--name=computegate-dev",
        f"--data-dir={data_dir / 'etcd'}",
        f"--listen-client-urls={client_url}",
        f"--advertise-client-urls={client_url}",
        f"--listen-peer-urls={peer_url}",
        f"--initial-advertise-peer-urls={peer_url}",
        f"--initial-cluster=computegate-dev={peer_url}",
        "--unsafe-no-fsync=true",  # throw-away data: speed over durability
    ]


def apiserver_argv(
    binaries: Binaries,
    pki: Path,
    *,
    url: str,
    port: int,
    etcd_port: int,
    service_account_admission: bool,
    extra_args: Sequence[str] = (),
) -> list[str]:
    return [
        str(binaries.kube_apiserver),
        f"--advertise-address={HOST}",
        f"--bind-address={HOST}",
        f"--secure-port={port}",
        f"--cert-dir={pki}",
        f"--tls-cert-file={pki / 'apiserver.crt'}",
        f"--tls-private-key-file={pki / 'apiserver.key'}",
        f"--client-ca-file={pki / 'ca.crt'}",
        f"--etcd-servers=http://{HOST}:{etcd_port}",
        f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
        f"--service-account-issuer={url}",
        f"--service-account-key-file={pki / 'sa.pub'}",
        f"--service-account-signing-key-file={pki / 'sa.key'}",
        "--authorization-mode=Node,RBAC",
        # Without a controller-manager nothing creates a namespace's `default` service account,
        # so the ServiceAccount admission plugin would refuse every pod (envtest does the same).
        *([] if service_account_admission else ["--disable-admission-plugins=ServiceAccount"]),
        "--allow-privileged=true",
        # 1.37 refuses a loopback advertise address for the `kubernetes` Service's endpoints;
        # nothing in this cluster reaches the API server through that Service anyway.
        "--endpoint-reconciler-type=none",
        "--profiling=false",
        "--v=1",
        *extra_args,
    ]
