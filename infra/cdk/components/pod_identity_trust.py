"""Who may assume a role through EKS Pod Identity: one service account of one cluster, nothing else.

The principal is the EKS Pod Identity service (AssumeRole and TagSession). Its confused-deputy keys
name the account (aws:SourceAccount) and the Pod Identity association that asks (aws:SourceArn,
arn:…:podidentityassociation/<cluster>/<id>: any association of this cluster, the id is not known
before it exists). The session tags Pod Identity sets name the cluster's ARN, the namespace and the
service account, so no other association in the account can use the role. Everything is built
from the cluster's name, so the data stack need not import the cluster stack.
"""

from __future__ import annotations

from aws_cdk import Stack
from aws_cdk import aws_iam as iam
from constructs import Construct

POD_IDENTITY_SERVICE = "pods.eks.amazonaws.com"


def _eks_arn(scope: Construct, resource: str) -> str:
    stack = Stack.of(scope)
    return f"arn:{stack.partition}:eks:{stack.region}:{stack.account}:{resource}"


def cluster_arn(scope: Construct, cluster_name: str) -> str:
    return _eks_arn(scope, f"cluster/{cluster_name}")


def association_arns(scope: Construct, cluster_name: str) -> str:
    """The ARN pattern of every Pod Identity association of the cluster."""
    return _eks_arn(scope, f"podidentityassociation/{cluster_name}/*")


def pod_identity_principal(
    scope: Construct, *, cluster_name: str, namespace: str, service_account: str
) -> iam.IPrincipal:
    stack = Stack.of(scope)
    return (
        iam.ServicePrincipal(POD_IDENTITY_SERVICE)
        .with_conditions(
            {
                "StringEquals": {
                    "aws:SourceAccount": stack.account,
                    "aws:RequestTag/eks-cluster-arn": cluster_arn(scope, cluster_name),
                    "aws:RequestTag/kubernetes-namespace": namespace,
                    "aws:RequestTag/kubernetes-service-account": service_account,
                },
                "ArnLike": {"aws:SourceArn": association_arns(scope, cluster_name)},
            }
        )
        .with_session_tags()
    )
