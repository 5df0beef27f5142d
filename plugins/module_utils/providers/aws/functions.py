# Copyright: lxcri.cloud developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""AWS functions: Lambda functions.

Function `<name>`: the Lambda function `<name>` with the execution role `lxcri-lambda-<name>` (logs
only), its code from function.code, and a function URL (AuthType NONE) when function.url. `stopped` sets
its reserved concurrency to 0 (every invocation is throttled), `running` removes it; `restarted` updates
its description, which makes Lambda start fresh execution environments. Lambda keeps no creation time:
the tag `lxcri-created` holds it. `absent` also deletes the log group /aws/lambda/<name>.
"""

from __future__ import annotations

import datetime

from ansible_collections.lxcri.cloud.plugins.module_utils.provider import ProviderError, iso_utc, record
from ansible_collections.lxcri.cloud.plugins.module_utils.providers.aws.errors import error_code
from ansible_collections.lxcri.cloud.plugins.module_utils.providers.aws.services import Service, identity, user_tags
from ansible_collections.lxcri.cloud.plugins.module_utils.spec import DEPLOYMENT_TAG, KIND_TAG, SpecError

CREATED_TAG = "lxcri-created"
URL_STATEMENTS = ("lxcri-url", "lxcri-url-invoke")
ZIP_MAX = 50 * 1024 * 1024  # Lambda's limit for a zip uploaded in the request
# How long a new role may take to be usable by Lambda (IAM is eventually consistent).
ROLE_PROPAGATION = 60.0


class Functions(Service):
    kind = "function"

    @classmethod
    def validate(cls, spec):
        function = spec["function"]
        if not 128 <= function["memory"] <= 10240:
            raise SpecError(f"function.memory must be between 128 and 10240 (MiB) on aws Lambda, got {function['memory']}")
        if not 1 <= function["timeout"] <= 900:
            raise SpecError(f"function.timeout must be between 1 and 900 (seconds) on aws Lambda, got {function['timeout']}")
        if len(function["zip"]) > ZIP_MAX:
            raise SpecError(f"function.code zips to {len(function['zip']) // 2 ** 20} MiB: Lambda takes at most 50 MiB "
                            "uploaded directly")

    def lam(self, region):
        return self.client("lambda", region)

    # -- reading ------------------------------------------------------------------------------------

    def _fetch(self, name, region):
        function = self.p.unless_gone(self.lam(region).get_function, FunctionName=name)
        if function is None:
            return None
        tags = function.get("Tags") or {}
        if tags.get(DEPLOYMENT_TAG) != name or tags.get(KIND_TAG) != self.kind:
            return None
        return function

    def find(self, name, region):
        function = self._fetch(name, region)
        return [self._record(function, region)] if function else []

    def list(self, region, tags):
        names = [f["FunctionName"] for f in self.p.pages(self.lam(region), "list_functions", "Functions")]
        return [rec for found in self.p.each(lambda n: self.find(n, region), names) for rec in found]

    def _record(self, function, region):
        lam = self.lam(region)
        cfg = function["Configuration"]
        name = cfg["FunctionName"]
        tags = function.get("Tags") or {}
        # get_function's Concurrency is left out by some implementations when it is 0: ask directly
        reserved = self.call(lam.get_function_concurrency, FunctionName=name).get("ReservedConcurrentExecutions")
        url = (self.p.unless_gone(lam.get_function_url_config, FunctionName=name) or {}).get("FunctionUrl")
        if cfg.get("State") == "Failed" or cfg.get("LastUpdateStatus") == "Failed":
            state = "error"
        elif cfg.get("State") == "Pending" or cfg.get("LastUpdateStatus") == "InProgress":
            state = "pending"
        else:
            state = "stopped" if reserved == 0 else "running"
        return record(
            self.p.name, native={"function": function, "url": url}, kind=self.kind, name=name, deployment=name,
            id=cfg["FunctionArn"], state=state, region=region,
            native_size=f"{cfg.get('MemorySize')} MiB / {cfg.get('Timeout')} s", image=cfg.get("Runtime"), url=url,
            tags=user_tags(tags), created_at=tags.get(CREATED_TAG) or iso_utc(cfg.get("LastModified")),
        )

    def settings(self, native):
        cfg = native["function"]["Configuration"]
        return {
            "runtime": cfg.get("Runtime"), "handler": cfg.get("Handler"), "code": cfg.get("CodeSha256"),
            "env": dict((cfg.get("Environment") or {}).get("Variables") or {}), "memory": cfg.get("MemorySize"),
            "timeout": cfg.get("Timeout"), "url": native["url"] is not None,
        }

    @staticmethod
    def _configuration(function):
        return {"Runtime": function["runtime"], "Handler": function["handler"], "MemorySize": function["memory"],
                "Timeout": function["timeout"], "Environment": {"Variables": dict(function["env"])}}

    def _ready(self, name, region):
        """Wait until the function is Active and no update is in progress; fail on a failed one."""
        cfg = self.p.wait(
            lambda: self.call(self.lam(region).get_function_configuration, FunctionName=name),
            lambda c: c.get("State") != "Pending" and c.get("LastUpdateStatus") != "InProgress",
            f"the Lambda function {name} to be active",
            describe=lambda c: f"State={c.get('State')} LastUpdateStatus={c.get('LastUpdateStatus')}",
        )
        if cfg.get("State") == "Failed" or cfg.get("LastUpdateStatus") == "Failed":
            reason = cfg.get("LastUpdateStatusReason") or cfg.get("StateReason") or "no reason given"
            raise ProviderError(f"the Lambda function {name} in {region} failed: {reason}")
        return cfg

    # -- changing -----------------------------------------------------------------------------------

    def create(self, spec, region, names):
        name, function = spec["name"], spec["function"]
        now = datetime.datetime.now(datetime.timezone.utc)
        tags = {**spec["tags"], **identity(name, self.kind, {CREATED_TAG: iso_utc(now)})}
        policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Resource": "*", "Action": [
            "logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"]}]}
        try:
            role = self.ensure_role(f"lxcri-lambda-{name}", name, "lambda.amazonaws.com", policy, region)
            kwargs = dict(self._configuration(function), FunctionName=name, Role=role, Code={"ZipFile": function["zip"]},
                          Tags=tags, Description="lxcri.cloud function", PackageType="Zip")
            self._create_function(self.lam(region), kwargs)
            self._ready(name, region)
            if function["url"]:
                self._url(name, region, True)
        except Exception as exc:
            raise self.failed("Lambda function", name, region, exc) from None
        return self.find(name, region)

    def _create_function(self, lam, kwargs):
        """CreateFunction; a role created a moment ago may not be assumable yet (IAM is eventually consistent)."""

        def attempt():
            try:
                return self.call(lam.create_function, **kwargs)
            except Exception as exc:
                if error_code(exc) == "ResourceConflictException":  # a retried call that had worked
                    return self.call(lam.get_function_configuration, FunctionName=kwargs["FunctionName"])
                if error_code(exc) == "InvalidParameterValueException" and "assume" in str(exc).lower():
                    return None
                raise

        return self.p.wait(attempt, bool, f"the new role of {kwargs['FunctionName']} to be usable by Lambda",
                           deadline=self.p.deadline.within(ROLE_PROPAGATION))

    def _url(self, name, region, wanted):
        lam = self.lam(region)
        if wanted:
            try:
                self.call(lam.create_function_url_config, FunctionName=name, AuthType="NONE")
            except Exception as exc:
                if error_code(exc) != "ResourceConflictException":
                    raise
            self._permission(lam, name, URL_STATEMENTS[0], Action="lambda:InvokeFunctionUrl", FunctionUrlAuthType="NONE")
            self._permission(lam, name, URL_STATEMENTS[1], Action="lambda:InvokeFunction", InvokedViaFunctionUrl=True)
            return
        for statement in URL_STATEMENTS:
            self.p.unless_gone(lam.remove_permission, FunctionName=name, StatementId=statement)
        self.p.unless_gone(lam.delete_function_url_config, FunctionName=name)

    def _permission(self, lam, name, statement, **kwargs):
        try:
            self.call(lam.add_permission, FunctionName=name, StatementId=statement, Principal="*", **kwargs)
        except Exception as exc:
            if error_code(exc) != "ResourceConflictException":  # the statement is there already
                raise

    def update(self, rec, spec, changes):
        name, region, function = spec["name"], rec["region"], spec["function"]
        lam = self.lam(region)
        try:
            if "code" in changes:
                self._ready(name, region)
                self.call(lam.update_function_code, FunctionName=name, ZipFile=function["zip"])
            if {"runtime", "handler", "env", "memory", "timeout"} & set(changes):
                self._ready(name, region)
                self.call(lam.update_function_configuration, FunctionName=name, **self._configuration(function))
            if "url" in changes:
                self._url(name, region, function["url"])
            self._ready(name, region)
        except ProviderError:
            raise
        except Exception as exc:
            raise ProviderError(f"updating the Lambda function {name} in {region} failed: {exc}") from None
        return self.find(name, region)[0], False

    def retag(self, rec, add, remove):
        lam = self.lam(rec["region"])
        if add:
            self.call(lam.tag_resource, Resource=rec["id"], Tags=dict(add))
        if remove:
            self.call(lam.untag_resource, Resource=rec["id"], TagKeys=list(remove))

    def stop_one(self, rec):
        self.call(self.lam(rec["region"]).put_function_concurrency, FunctionName=rec["deployment"],
                  ReservedConcurrentExecutions=0)

    def start_one(self, rec):
        self.call(self.lam(rec["region"]).delete_function_concurrency, FunctionName=rec["deployment"])

    def restart_one(self, rec):
        name, region = rec["deployment"], rec["region"]
        self._ready(name, region)
        stamp = iso_utc(datetime.datetime.now(datetime.timezone.utc))
        self.call(self.lam(region).update_function_configuration, FunctionName=name,
                  Description=f"lxcri.cloud function, restarted {stamp}")

    def remove(self, name, region):
        if self._fetch(name, region):
            self.p.unless_gone(self.lam(region).delete_function, FunctionName=name)
        self.delete_role(f"lxcri-lambda-{name}", region)
        self.p.unless_gone(self.client("logs", region).delete_log_group, logGroupName=f"/aws/lambda/{name}")
