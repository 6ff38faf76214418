"""Launch-template user data for AL2023 managed nodes: an nodeadm NodeConfig carrying kubelet settings.

EKS merges its own NodeConfig (cluster endpoint, CA) with this one, so only the kubelet settings
are given. User data for a managed node group's launch template must be MIME multipart; nodeadm
reads the parts of type application/node.eks.aws.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from email import encoders
from email.mime.application import MIMEApplication
from email.mime.multipart import MIMEMultipart
from typing import Any

import yaml

NODE_CONFIG_CONTENT_TYPE = "application/node.eks.aws"
# Fixed, so the same settings give the same template (no launch template version per synth).
BOUNDARY = "BONE-MARROW-NODECONFIG"

# The static CPU manager gives a Guaranteed pod with whole CPUs exclusive cores. It needs a non-zero
# CPU reservation; nodeadm always sets kubeReserved.cpu on EKS AMIs (6% of the first core and less
# of each further one), so none is added here and the node's allocatable stays nodeadm's.
STATIC_CPU_MANAGER: Mapping[str, Any] = {"cpuManagerPolicy": "static"}


def node_config_document(kubelet_config: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "node.eks.aws/v1alpha1",
        "kind": "NodeConfig",
        "spec": {"kubelet": {"config": dict(kubelet_config)}},
    }


def nodeadm_user_data(kubelet_config: Mapping[str, Any]) -> str:
    """Base64 MIME multipart user data (as EC2 launch templates take it) with one NodeConfig."""
    message = MIMEMultipart("mixed", boundary=BOUNDARY)
    part = MIMEApplication(
        yaml.safe_dump(node_config_document(kubelet_config), sort_keys=True),
        _subtype="node.eks.aws",
        _encoder=encoders.encode_7or8bit,
    )
    message.attach(part)
    return base64.b64encode(message.as_bytes()).decode("ascii")
