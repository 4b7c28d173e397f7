"""Keys and buckets hold PHI: a refactor that would change their logical ids (and so make
CloudFormation replace them) must fail here. Changing this list is a deliberate decision."""

from __future__ import annotations

import pytest

from tests.infra.conftest import ALL_SLUGS, OFFBOARDED_SLUGS

STATEFUL_LOGICAL_IDS = {
    "StorageDataKeyE15BA43B": "AWS::KMS::Key",
    "StorageDataBucketB1B922FA": "AWS::S3::Bucket",
    "StorageAccessLogBucket76E80A12": "AWS::S3::Bucket",
}


@pytest.mark.parametrize("slug", ALL_SLUGS + OFFBOARDED_SLUGS)
def test_stateful_resources_keep_their_logical_ids(templates, slug):
    resources = templates[slug].to_json()["Resources"]
    for logical_id, resource_type in STATEFUL_LOGICAL_IDS.items():
        assert logical_id in resources, f"{logical_id} ({resource_type}) would be replaced"
        assert resources[logical_id]["Type"] == resource_type
        assert resources[logical_id]["DeletionPolicy"] == "Retain"


@pytest.mark.parametrize("slug", ALL_SLUGS + OFFBOARDED_SLUGS)
def test_every_key_and_bucket_is_pinned(templates, slug):
    resources = templates[slug].to_json()["Resources"]
    stateful = {k for k, v in resources.items() if v["Type"] in ("AWS::KMS::Key",
                                                                  "AWS::S3::Bucket")}
    assert stateful == set(STATEFUL_LOGICAL_IDS)
