# Copyright: lxcri.cloud developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""AWS: VMs are EC2 instances (instances.py), containers ECS services on Fargate (containers.py), functions
Lambda functions (functions.py); metrics and alarms are CloudWatch's, alarms notify through SNS (monitoring.py)."""

from __future__ import annotations

from ansible_collections.lxcri.cloud.plugins.module_utils.info import Field, ProviderInfo

INFO = ProviderInfo(
    name="aws",
    title="AWS",
    kinds=("vm", "container", "function"),
    connection={
        "access_key": Field("Access key id.", env=("AWS_ACCESS_KEY_ID", "AWS_ACCESS_KEY")),
        "secret_key": Field("Secret access key.", env=("AWS_SECRET_ACCESS_KEY", "AWS_SECRET_KEY"), secret=True),
        "session_token": Field("Session token of temporary credentials.", env=("AWS_SESSION_TOKEN",), secret=True),
        "profile": Field("Named profile of the shared credentials file.", env=("AWS_PROFILE",)),
        "region": Field("Default region.", env=("AWS_REGION", "AWS_DEFAULT_REGION")),
    },
    connection_doc="Connection to AWS.",
    sizes={"small": "t3.small", "medium": "t3.medium", "large": "t3.large", "xlarge": "t3.xlarge"},
    # AWS images differ per region: the provider looks the newest one up by owner and name pattern.
    images={
        "ubuntu-24.04": {"owner": "099720109477", "name": "ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-amd64-server-*"},
        "ubuntu-22.04": {"owner": "099720109477", "name": "ubuntu/images/hvm-ssd/ubuntu-jammy-22.04-amd64-server-*"},
        "debian-12": {"owner": "136693071363", "name": "debian-12-amd64-*"},
    },
    prices={"t3.small": 0.0208, "t3.medium": 0.0416, "t3.large": 0.0832, "t3.xlarge": 0.1664},
    native_size=(r"^[a-z][a-z0-9-]*\.[a-z0-9-]+$", "t3.micro"),
    native_image=(r"^ami-[0-9a-f]{8,17}$", "ami-0123456789abcdef0"),
    alarm_state="native",
    endpoint_doc="API base URL instead of AWS's own, for example the sandbox.",
)


def load():
    from ansible_collections.lxcri.cloud.plugins.module_utils.providers.aws.provider import AwsProvider

    return AwsProvider
