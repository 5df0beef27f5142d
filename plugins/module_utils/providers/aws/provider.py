# Copyright: lxcri.cloud developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The AWS connection: one boto3 session, clients per (service, region), error classes, pagination."""

from __future__ import annotations

from ansible_collections.lxcri.cloud.plugins.module_utils.provider import MissingSDK, Provider, ProviderError
from ansible_collections.lxcri.cloud.plugins.module_utils.providers.aws import INFO
from ansible_collections.lxcri.cloud.plugins.module_utils.providers.aws.containers import Containers
from ansible_collections.lxcri.cloud.plugins.module_utils.providers.aws.errors import error_code, gone
from ansible_collections.lxcri.cloud.plugins.module_utils.providers.aws.functions import Functions
from ansible_collections.lxcri.cloud.plugins.module_utils.providers.aws.instances import Instances
from ansible_collections.lxcri.cloud.plugins.module_utils.providers.aws.monitoring import Monitoring, validate_alarm
from ansible_collections.lxcri.cloud.plugins.module_utils.retry import FATAL, THROTTLED, TRANSIENT, parse_retry_after

try:
    import boto3
    import botocore.config
    import botocore.exceptions
except ImportError:
    boto3 = None

THROTTLE_CODES = {
    "Throttling", "ThrottlingException", "ThrottledException", "RequestLimitExceeded", "TooManyRequestsException",
    "RequestThrottled", "RequestThrottledException", "SlowDown", "PriorRequestNotComplete",
}
TRANSIENT_CODES = {"InternalError", "InternalFailure", "ServiceUnavailable", "Unavailable", "RequestTimeout"}

# (request token, response token) of the paginated operations
PAGE_TOKENS = {
    "list_services": ("nextToken", "nextToken"), "list_task_definitions": ("nextToken", "nextToken"),
    "describe_parameters": ("NextToken", "NextToken"), "list_functions": ("Marker", "NextMarker"),
    "get_metric_data": ("NextToken", "NextToken"), "describe_alarms": ("NextToken", "NextToken"),
    "list_subscriptions_by_topic": ("NextToken", "NextToken"), "get_resources": ("PaginationToken", "PaginationToken"),
    "describe_instances": ("NextToken", "NextToken"),
}


class AwsProvider(Provider):
    info = INFO
    BACKENDS = {"vm": Instances, "container": Containers, "function": Functions}
    POLL_MAX = 5.0

    def connect(self):
        if boto3 is None:
            raise MissingSDK("the aws provider needs boto3: pip install -r requirements.txt")
        conn = self.connection
        self.session = boto3.session.Session(
            aws_access_key_id=conn.get("access_key"),
            aws_secret_access_key=conn.get("secret_key"),
            aws_session_token=conn.get("session_token"),
            profile_name=conn.get("profile"),
        )
        if self.session.get_credentials() is None:
            raise ProviderError(
                "no AWS credentials: set aws.access_key and aws.secret_key (or AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY), or aws.profile"
            )
        self._clients = {}
        self._accounts = {}
        self.monitoring = Monitoring(self)

    @classmethod
    def validate_alarm(cls, alarm):
        validate_alarm(alarm)

    def client(self, service, region):
        key = (service, region)
        if key not in self._clients:
            # Retries are ours (retry.py), so botocore makes exactly one attempt per call.
            config = botocore.config.Config(
                retries={"total_max_attempts": 1}, connect_timeout=10, read_timeout=60, user_agent_extra="lxcri.cloud"
            )
            self._clients[key] = self.session.client(
                service, region_name=region, endpoint_url=self.connection.get("endpoint"), verify=self.verify, config=config
            )
        return self._clients[key]

    def classify(self, exc):
        if isinstance(exc, botocore.exceptions.ClientError):
            meta = exc.response.get("ResponseMetadata", {})
            status = meta.get("HTTPStatusCode", 0)
            retry_after = parse_retry_after(meta.get("HTTPHeaders", {}).get("retry-after"))
            if error_code(exc) in THROTTLE_CODES or status == 429:
                return THROTTLED, retry_after
            if error_code(exc) in TRANSIENT_CODES or status >= 500:
                return TRANSIENT, retry_after
            return FATAL, None
        if self.unreachable(exc):
            return FATAL, None
        if isinstance(exc, (botocore.exceptions.ConnectionError, botocore.exceptions.HTTPClientError)):
            return TRANSIENT, None
        return FATAL, None

    def unreachable(self, exc):
        return isinstance(exc, botocore.exceptions.EndpointConnectionError) and not isinstance(
            exc, botocore.exceptions.ConnectionClosedError
        )

    def gone(self, exc):
        return gone(exc)

    def pages(self, client, operation, key, **kwargs):
        """Every item under `key` of a paginated operation, each page under the retry policy."""
        token_key, out_key = PAGE_TOKENS[operation]

        def page(token):
            answer = getattr(client, operation)(**kwargs, **({token_key: token} if token else {}))
            return answer.get(key, []), answer.get(out_key)

        return self.paginate(page)

    def partition(self, region):
        return self.session.get_partition_for_region(region)

    def account(self, region):
        if region not in self._accounts:
            self._accounts[region] = self.call(self.client("sts", region).get_caller_identity)["Account"]
        return self._accounts[region]
