import re

import pytest

from ansible_collections.lxcri.cloud.plugins.module_utils.spec import (
    SpecError,
    member_index,
    member_names,
    validate_deployment,
)


class FakeProvider:
    name = "aws"
    title = "AWS"
    NATIVE_SIZE = re.compile(r"^[a-z][a-z0-9-]*\.[a-z0-9-]+$")
    NATIVE_SIZE_EXAMPLE = "t3.micro"
    NATIVE_IMAGE = re.compile(r"^ami-[0-9a-f]{8,17}$")
    NATIVE_IMAGE_EXAMPLE = "ami-0123456789abcdef0"

    @classmethod
    def validate(cls, spec):
        pass


def params(**kw):
    base = {"name": "web", "count": 1, "tags": {}, "size": "small", "image": "ubuntu-24.04", "wait_timeout": 60,
            "ssh_public_key": None, "user_data": None}
    base.update(kw)
    return base


def test_a_good_spec_passes_with_native_values():
    spec = validate_deployment(params(size="m7g.large", image="ami-0123456789abcdef0", tags={"n": 1}), FakeProvider)
    assert spec["size"] == "m7g.large" and spec["tags"] == {"n": "1"} and spec["cloud_init"] is None


@pytest.mark.parametrize("bad, message", [
    ({"size": "huge"}, "size 'huge' is not valid for aws: use one of small, medium, large, xlarge or a native AWS size such as t3.micro"),
    ({"image": "windows"}, "image 'windows' is not valid for aws: use one of ubuntu-24.04, ubuntu-22.04, debian-12"),
    ({"count": -1}, "count must be 0 or more, got -1"),
    ({"name": "Web"}, "name 'Web' is not valid"),
    ({"name": "web-"}, "name 'web-' is not valid"),
    ({"tags": {"lxcri-x": "1"}}, "tags: key 'lxcri-x' is reserved"),
    ({"tags": {"a": [1]}}, "tags: value of 'a' must be a string, number or boolean"),
    ({"ssh_public_key": "ssh-ed25519 AAA", "user_data": "#cloud-config"}, "mutually exclusive"),
    ({"wait_timeout": 0}, "wait_timeout must be more than 0"),
])
def test_bad_input_names_the_option(bad, message):
    with pytest.raises(SpecError) as err:
        validate_deployment(params(**bad), FakeProvider)
    assert message in str(err.value)


def test_ssh_key_becomes_cloud_config():
    spec = validate_deployment(params(ssh_public_key="ssh-ed25519 AAAA me@host\n"), FakeProvider)
    assert spec["cloud_init"] == "#cloud-config\nssh_authorized_keys:\n  - ssh-ed25519 AAAA me@host\n"


def test_member_names_and_indexes():
    assert member_names("web", 3) == ["web-1", "web-2", "web-3"]
    assert member_names("web", 0) == []
    assert member_index("web", "web-12") == 12
    assert member_index("web", "web-x") is None
    assert member_index("web", "webby-1") is None
