"""Data stack: encrypted, versioned, private, TLS-only, logged, retained buckets; ECR; data roles."""

from __future__ import annotations

import json

from aws_cdk.assertions import Match
from cdk_synthesis import synthesized

from contracts.aws_names import BUCKET_KINDS, REPOSITORY_KINDS


def _data_buckets(synth):
    return {
        k: r for k, r in synth.resources("data", "AWS::S3::Bucket").items() if not k.startswith("AccessLogs")
    }


def _data_key(synth) -> str:
    (key_id,) = [k for k in synth.resources("data", "AWS::KMS::Key") if k.startswith("DataKey")]
    return key_id


def test_three_data_buckets_with_kms_versioning_and_no_public_access():
    synth = synthesized()
    buckets = _data_buckets(synth)
    assert sorted(k.split("Bucket")[0] for k in buckets) == sorted(k.capitalize() for k in BUCKET_KINDS)
    for bucket in buckets.values():
        props = bucket["Properties"]
        (rule,) = props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
        assert rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"] == "aws:kms"
        assert rule["ServerSideEncryptionByDefault"]["KMSMasterKeyID"] == {
            "Fn::GetAtt": [_data_key(synth), "Arn"]
        }
        assert props["VersioningConfiguration"] == {"Status": "Enabled"}
        assert props["PublicAccessBlockConfiguration"] == {
            "BlockPublicAcls": True,
            "BlockPublicPolicy": True,
            "IgnorePublicAcls": True,
            "RestrictPublicBuckets": True,
        }


def test_every_bucket_logs_access_aborts_incomplete_uploads_and_expires_old_versions():
    synth = synthesized()
    (log_bucket,) = [k for k in synth.resources("data", "AWS::S3::Bucket") if k.startswith("AccessLogs")]
    for name, bucket in _data_buckets(synth).items():
        logging = bucket["Properties"]["LoggingConfiguration"]
        assert logging["DestinationBucketName"] == {"Ref": log_bucket}
        assert logging["LogFilePrefix"] == name.split("Bucket")[0].lower() + "/"
    buckets = synth.resources("data", "AWS::S3::Bucket").values()
    assert len(buckets) == len(BUCKET_KINDS) + 1
    for bucket in buckets:
        assert bucket["Properties"]["VersioningConfiguration"] == {"Status": "Enabled"}
        rules = bucket["Properties"]["LifecycleConfiguration"]["Rules"]
        assert {
            "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 7},
            "NoncurrentVersionExpiration": {"NoncurrentDays": 90},
            "Status": "Enabled",
        } in rules


def test_every_bucket_denies_requests_without_tls():
    synth = synthesized()
    policies = synth.resources("data", "AWS::S3::BucketPolicy").values()
    secured = set()
    for policy in policies:
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            if statement["Effect"] == "Deny" and statement.get("Condition") == {
                "Bool": {"aws:SecureTransport": "false"}
            }:
                assert statement["Action"] == "s3:*" and statement["Principal"] == {"AWS": "*"}
                secured.add(policy["Properties"]["Bucket"]["Ref"])
    assert secured == set(synth.resources("data", "AWS::S3::Bucket"))


def test_buckets_repositories_and_data_key_are_retained_never_auto_deleted():
    synth = synthesized()
    for resource_type in ("AWS::S3::Bucket", "AWS::ECR::Repository"):
        for resource in synth.resources("data", resource_type).values():
            assert resource["DeletionPolicy"] == "Retain" and resource["UpdateReplacePolicy"] == "Retain"
    assert synth.templates["data"]["Resources"][_data_key(synth)]["DeletionPolicy"] == "Retain"
    text = json.dumps(synth.templates["data"])
    assert "Custom::S3AutoDeleteObjects" not in text and "AWS::Lambda::Function" not in text


def test_repositories_are_immutable_scanned_and_kms_encrypted():
    synth = synthesized()
    repositories = synth.resources("data", "AWS::ECR::Repository").values()
    names = sorted(r["Properties"]["RepositoryName"] for r in repositories)
    assert names == sorted(f"bmtest/{kind}" for kind in REPOSITORY_KINDS)
    for repository in repositories:
        props = repository["Properties"]
        assert props["ImageTagMutability"] == "IMMUTABLE"
        assert props["ImageScanningConfiguration"] == {"ScanOnPush": True}
        assert props["EncryptionConfiguration"]["EncryptionType"] == "KMS"
        assert props["EncryptionConfiguration"]["KmsKey"] == {"Fn::GetAtt": [_data_key(synth), "Arn"]}


def test_repositories_expire_untagged_images_and_keep_the_newest_tagged_ones():
    synth = synthesized()
    repositories = synth.resources("data", "AWS::ECR::Repository").values()
    assert len(repositories) == len(REPOSITORY_KINDS)
    for repository in repositories:
        policy = json.loads(repository["Properties"]["LifecyclePolicy"]["LifecyclePolicyText"])
        rules = sorted(policy["rules"], key=lambda r: r["rulePriority"])
        assert [(r["selection"], r["action"]) for r in rules] == [
            (
                {
                    "tagStatus": "untagged",
                    "countType": "sinceImagePushed",
                    "countNumber": 14,
                    "countUnit": "days",
                },
                {"type": "expire"},
            ),
            (
                {
                    "tagStatus": "tagged",
                    "tagPatternList": ["*"],
                    "countType": "imageCountMoreThan",
                    "countNumber": 30,
                },
                {"type": "expire"},
            ),
        ]


def test_all_keys_rotate():
    synth = synthesized()
    for role in synth.templates:
        for key in synth.resources(role, "AWS::KMS::Key").values():
            assert key["Properties"]["EnableKeyRotation"] is True


def _policy_of(synth, prefix: str) -> list[dict]:
    (policy,) = [
        r for k, r in synth.resources("data", "AWS::IAM::ManagedPolicy").items() if k.startswith(prefix)
    ]
    return policy["Properties"]["PolicyDocument"]["Statement"]


def _bucket_ref(synth, kind: str) -> str:
    (logical_id,) = [k for k in _data_buckets(synth) if k.startswith(kind.capitalize())]
    return logical_id


def test_model_sync_role_reads_only_the_models_bucket_through_pod_identity():
    synth = synthesized()
    synth.template("data").has_resource_properties(
        "AWS::IAM::Role",
        {
            "AssumeRolePolicyDocument": {
                "Statement": [
                    {
                        "Action": ["sts:AssumeRole", "sts:TagSession"],
                        "Effect": "Allow",
                        "Principal": {"Service": "pods.eks.amazonaws.com"},
                    }
                ]
            }
        },
    )
    statements = _policy_of(synth, "ModelSyncAccess")
    actions = {
        a for s in statements for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])
    }
    assert actions == {
        "s3:ListBucket",
        "s3:GetBucketLocation",
        "s3:ListBucketMultipartUploads",
        "s3:GetObject",
        "s3:GetObjectVersion",
        "kms:Decrypt",
    }
    models = _bucket_ref(synth, "models")
    resources = json.dumps([s["Resource"] for s in statements])
    assert models in resources
    assert _bucket_ref(synth, "datasets") not in resources and _bucket_ref(synth, "results") not in resources


def test_training_role_reads_and_writes_the_three_buckets_and_pulls_the_training_image():
    synth = synthesized()
    statements = _policy_of(synth, "TrainingAccess")
    resources = json.dumps([s["Resource"] for s in statements])
    for kind in BUCKET_KINDS:
        assert _bucket_ref(synth, kind) in resources
    object_statement = next(s for s in statements if "s3:PutObject" in s["Action"])
    assert "s3:*" not in json.dumps(statements)
    assert len(object_statement["Resource"]) == 3
    pull = next(s for s in statements if "ecr:BatchGetImage" in s["Action"])
    assert len(pull["Resource"]) == 1 and "TrainImages" in json.dumps(pull["Resource"])
    synth.template("data").has_resource_properties(
        "AWS::IAM::Role",
        {
            "AssumeRolePolicyDocument": Match.object_like(
                {"Statement": [Match.object_like({"Principal": {"Service": "ec2.amazonaws.com"}})]}
            ),
            "ManagedPolicyArns": Match.array_with(
                [
                    {
                        "Fn::Join": [
                            "",
                            [
                                "arn:",
                                {"Ref": "AWS::Partition"},
                                ":iam::aws:policy/AmazonSSMManagedInstanceCore",
                            ],
                        ]
                    }
                ]
            ),
        },
    )
