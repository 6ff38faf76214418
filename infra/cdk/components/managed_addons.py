"""The EKS managed add-ons of the cluster, pinned: VPC CNI (NetworkPolicy enforced), kube-proxy,
CoreDNS and the Pod Identity agent.

EKS also installs self-managed vpc-cni, kube-proxy and coredns when it creates a cluster; the
managed add-ons take those over. Conflicts resolve to OVERWRITE: this template is the only source of
their configuration (nothing edits aws-node or coredns in the cluster), so on create the
self-managed defaults are replaced and on update an in-cluster edit never silently wins.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from aws_cdk import aws_eks_v2 as eks
from constructs import Construct

from contracts.config import EksAddons

RESOLVE_CONFLICTS = "OVERWRITE"
# The vpc-cni add-on's configuration schema (describe-addon-configuration) types this as the string
# "true"; the node agent in aws-node then enforces NetworkPolicies (off by default).
VPC_CNI_CONFIGURATION = {"enableNetworkPolicy": "true"}


@dataclass(frozen=True)
class ManagedAddonsProps:
    cluster: eks.Cluster
    versions: EksAddons


class ManagedAddons(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, props: ManagedAddonsProps) -> None:
        super().__init__(scope, construct_id)
        cluster_name = props.cluster.cluster_name

        def addon(name: str, version: str, configuration: dict[str, str] | None = None) -> eks.CfnAddon:
            return eks.CfnAddon(
                self,
                "".join(part.capitalize() for part in name.split("-")),
                cluster_name=cluster_name,
                addon_name=name,
                addon_version=version,
                configuration_values=json.dumps(configuration) if configuration else None,
                resolve_conflicts=RESOLVE_CONFLICTS,
            )

        self.vpc_cni = addon("vpc-cni", props.versions.vpc_cni, VPC_CNI_CONFIGURATION)
        self.kube_proxy = addon("kube-proxy", props.versions.kube_proxy)
        self.pod_identity_agent = addon("eks-pod-identity-agent", props.versions.pod_identity_agent)
        # A Deployment: it becomes ACTIVE only once nodes can run it (see needs_nodes).
        self.coredns = addon("coredns", props.versions.coredns)

    @property
    def before_nodes(self) -> tuple[eks.CfnAddon, ...]:
        """DaemonSets a node needs when it joins: networking (with policy enforcement from its first
        pod on), service routing, and the credentials its pods' service accounts get."""
        return (self.vpc_cni, self.kube_proxy, self.pod_identity_agent)

    @property
    def needs_nodes(self) -> tuple[eks.CfnAddon, ...]:
        return (self.coredns,)
