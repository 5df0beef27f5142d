# Copyright: lxcri.cloud developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the AWS service kinds (ECS containers, Lambda functions) share: identity tags, IAM roles, tagging,
and removing what a failed create made."""

from __future__ import annotations

import json

from ansible_collections.lxcri.cloud.plugins.module_utils.provider import Backend, ProviderError, native_of, tag_changes
from ansible_collections.lxcri.cloud.plugins.module_utils.providers.aws.errors import error_code
from ansible_collections.lxcri.cloud.plugins.module_utils.spec import DEPLOYMENT_TAG, KIND_TAG, TAG_PREFIX


def scrub(text, secrets):
    for value in (secrets or {}).values():
        if value:
            text = text.replace(value, "***")
    return text


def identity(name, kind, extra=None):
    return {DEPLOYMENT_TAG: name, KIND_TAG: kind, **(extra or {})}


def user_tags(tags):
    return {k: v for k, v in tags.items() if not k.startswith(TAG_PREFIX)}


def _trust(service):
    return json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"}]})


class Service(Backend):
    """One ECS service or Lambda function per deployment, named like it; its record's native is what config()
    reads the portable settings from."""

    members = False

    def client(self, service, region):
        return self.p.client(service, region)

    def call(self, func, **kwargs):
        return self.p.call(func, **kwargs)

    def ensure_role(self, role, name, trusted, policy, region):
        """The ARN of the IAM role `role` (created when missing) with one inline policy."""
        iam = self.client("iam", region)
        tags = [{"Key": k, "Value": v} for k, v in identity(name, self.kind).items()]
        try:
            arn = self.call(iam.create_role, RoleName=role, AssumeRolePolicyDocument=_trust(trusted), Tags=tags,
                            Description=f"lxcri.cloud {self.kind} {name}")["Role"]["Arn"]
        except Exception as exc:
            if error_code(exc) != "EntityAlreadyExists":
                raise
            arn = self.call(iam.get_role, RoleName=role)["Role"]["Arn"]
        self.call(iam.put_role_policy, RoleName=role, PolicyName="lxcri", PolicyDocument=json.dumps(policy))
        return arn

    def delete_role(self, role, region):
        iam = self.client("iam", region)
        policies = self.p.unless_gone(iam.list_role_policies, RoleName=role)
        if policies is None:
            return
        for policy in policies.get("PolicyNames", []):
            self.p.unless_gone(iam.delete_role_policy, RoleName=role, PolicyName=policy)
        for policy in (self.p.unless_gone(iam.list_attached_role_policies, RoleName=role) or {}).get("AttachedPolicies", []):
            self.p.unless_gone(iam.detach_role_policy, RoleName=role, PolicyArn=policy["PolicyArn"])
        self.p.unless_gone(iam.delete_role, RoleName=role)

    def tag_one(self, rec, tags, purge):
        add, remove = tag_changes(rec["tags"], tags, purge)
        self.retag(rec, add, remove)

    def retag(self, rec, add, remove):
        raise NotImplementedError

    def config(self, rec):
        native = native_of(rec)
        if native is None:
            found = self.find(rec["deployment"], rec["region"])
            if not found:
                raise ProviderError(f"the {self.kind} {rec['deployment']} in {rec['region']} is gone")
            native = native_of(found[0])
        return self.settings(native)

    def settings(self, native):
        """The portable settings from a record's native."""
        raise NotImplementedError

    def delete_one(self, rec):
        self.remove(rec["deployment"], rec["region"])

    def remove(self, name, region):
        raise NotImplementedError

    def failed(self, what, name, region, exc, secrets=None):
        """Remove what a failed create made; the error to raise says so (never with a secret value in it)."""
        try:
            self.remove(name, region)
            left = "what it had created was removed"
        except Exception as cleanup:  # report both; the first failure is the one to fix
            left = f"removing what it had created failed too ({scrub(str(cleanup), secrets)}): run state=absent"
        return ProviderError(f"creating the {what} {name} in {region} failed, {left}: {scrub(str(exc), secrets)}")
