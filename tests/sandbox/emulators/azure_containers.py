"""Microsoft.ContainerInstance resource type of the Azure emulator: container groups (Azure Container Instances),
in the shapes of api-version 2023-05-01 (azure-mgmt-containerinstance 10.1.0).

What it does, as ACI does it:

* ``PUT`` creates (201) or updates (200) a group; both are long-running (``Azure-AsyncOperation`` +
  ``retry-after-ms``, provisioningState ``Pending`` until the operation completes, ``provision_seconds``
  after the request, else at the next request). A created group runs: ``instanceView.state`` ``Running``,
  each container's ``instanceView.currentState.state`` ``Running`` (``Waiting`` while pending,
  ``Terminated`` while stopped), a public IP in ``ipAddress.ip`` and, with a ``dnsNameLabel``, the
  ``fqdn`` ``<dnsNameLabel>.<location>.azurecontainer.io`` (the default ``Unsecure`` label scope).
* Updating: a PUT on an existing group may change images, environment variables, commands, ports, the DNS
  name label and tags: the containers restart in place and the group keeps its IP. It may NOT change the OS
  type, the restart policy, the network profile (subnetIds), the zones, the SKU or any container's
  CPU, memory or GPU request: ACI answers ``InvalidContainerGroupUpdate`` ("... you must delete it first and
  then create a new one"), here with HTTP 409. Properties left out of the PUT revert to their defaults
  (restartPolicy ``Always``), as ACI documents, so leaving one out can also be such an update. A PUT on a
  stopped group deploys it anew (it runs again, with a new IP), as ACI documents for terminated groups.
* ``PATCH`` (``container_groups.update``) replaces the tags only, synchronously (200).
* ``DELETE``: 202 with ``Azure-AsyncOperation``; gone when the operation completes; 204 when there is none.
* ``POST .../start``: 202 + ``Azure-AsyncOperation`` (a stopped group is started, with a new IP), 204 when it
  is running or starting already. ``POST .../stop``: 204, synchronous: the containers stop, the IP is released
  (billing stops), the DNS label and fqdn stay. ``POST .../restart``: 204 + ``Azure-AsyncOperation`` (the
  only status the SDK accepts); the containers restart in place. Restarting a stopped group starts it
  (sandbox assumption: the real service's answer there is not documented).
* ``environmentVariables[].secureValue`` is stored but never returned: a GET shows such a variable by its
  name only, as ARM does.
* Validation with ACI's own codes and messages where they are known: ``InvalidOsType``,
  ``ResourceRequestsNotSpecified``, ``InvalidContainerEnvironmentVariable``, ``InvalidDnsNameLabel`` (label:
  5 to 63 lower-case letters, digits and hyphens, starting with a letter, not ending with a hyphen),
  ``DnsNameLabelAlreadyTaken`` (a label is unique per location), ``InvalidContainerGroupUpdate``.
  Where the real code is not known the sandbox says ``InvalidRequestContent`` (schema errors) or, for a
  Private IP without a subnet, ``PrivateIPAddressRequiresSubnet`` (a sandbox name). HTTP statuses of these
  errors are the sandbox's choice (400 for invalid input, 409 for conflicts with what exists).
"""
import copy
import re
import time

from .azure_arm import ArmError, Response, now_iso
from .azure_routes import ResourceType, register

NS = "Microsoft.ContainerInstance"
TYPE = f"{NS}/containerGroups"
_GROUP_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_LABEL = re.compile(r"^[a-z][-a-z0-9]{3,61}[a-z0-9]$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_OS_TYPES = ("Linux", "Windows")
_RESTART_POLICIES = ("Always", "OnFailure", "Never")
_TOP_LEVEL = ("tags", "zones", "identity")
# Properties of a group that ACI cannot change on an existing group (besides each container's resources).
_FIXED = ("osType", "restartPolicy", "subnetIds", "sku", "priority", "confidentialComputeProperties")
_UPDATE_INVALID = ("The updates on container group '{name}' are invalid. If you are going to update the os type, "
                   "restart policy, network profile, CPU, memory or GPU resources for a container group, you must "
                   "delete it first and then create a new one.")


def _bad(message, code="InvalidRequestContent", status=400):
    return ArmError(status, code, message)


def _number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _resources(container):
    requests = ((container.get("properties") or {}).get("resources") or {}).get("requests") or {}
    return {"cpu": requests.get("cpu"), "memoryInGB": requests.get("memoryInGB"), "gpu": requests.get("gpu")}


class ContainerGroups(ResourceType):
    namespace, type_path, op, state_key = NS, "containerGroups", "containerGroups", "containerGroups"
    create_state, update_state = "Pending", "Pending"
    delete_headers = ("Azure-AsyncOperation",)
    patch_mode, patch_op = "tags", "update"
    list_ops = ("listByResourceGroup", "list")
    slow = True
    actions = {"start": ("start", "start"), "stop": ("stop", "stop"), "restart": ("restart", "restart")}

    # ---- PUT -----------------------------------------------------------------------------------
    def build(self, arm, req, rid, existing, body):
        name = rid.rsplit("/", 1)[-1]
        if not _GROUP_NAME.match(name):
            raise _bad(f"The container group name '{name}' is invalid. The name must be 1 to 63 lower-case letters, "
                       "numbers or hyphens, and cannot start or end with a hyphen.", "InvalidContainerGroupName")
        props = copy.deepcopy(body.get("properties") or {})
        for key in ("provisioningState", "instanceView"):
            props.pop(key, None)
        if props.get("osType") not in _OS_TYPES:
            raise _bad(f"The 'osType' for container group '{name}' is invalid. The value must be one of "
                       f"'{','.join(sorted(_OS_TYPES, reverse=True))}'.", "InvalidOsType")
        props.setdefault("restartPolicy", "Always")
        if props["restartPolicy"] not in _RESTART_POLICIES:
            raise _bad(f"The restart policy '{props['restartPolicy']}' of container group '{name}' is invalid. The "
                       f"value must be one of '{','.join(_RESTART_POLICIES)}'.", "InvalidRestartPolicy")
        containers = props.get("containers")
        if not isinstance(containers, list) or not containers:
            raise _bad(f"The container group '{name}' must have at least one container in 'properties.containers'.")
        seen = set()
        for container in containers:
            self._container(name, container, seen)
        exposed = {p.get("port") for c in containers for p in (c["properties"].get("ports") or [])}
        self._ip_address(arm, rid, name, body["location"], props, exposed)
        if existing is not None:
            self._check_update(name, existing, props, body)
        doc = {"id": rid, "name": name, "type": TYPE, "location": body["location"]}
        for key in _TOP_LEVEL:
            if body.get(key) is not None:
                doc[key] = copy.deepcopy(body[key])
        props.setdefault("imageRegistryCredentials", [])
        doc["properties"] = props
        stopped = existing is not None and existing.private.get("state") == "Stopped"

        def commit(res):
            private = res.private
            private["state"] = "Pending"
            private["changed"] = time.time()
            if existing is None or stopped:  # deployed (anew): a new public IP when it runs
                private.pop("ip", None)
                private["started"] = None
        return doc, commit

    @staticmethod
    def _container(group, container, seen):
        cname = container.get("name") if isinstance(container, dict) else None
        if not cname or not _GROUP_NAME.match(str(cname)):
            raise _bad(f"The container name '{cname}' in container group '{group}' is invalid. The name must be 1 to "
                       "63 lower-case letters, numbers or hyphens, and cannot start or end with a hyphen.",
                       "InvalidContainerName")
        if cname in seen:
            raise _bad(f"The container name '{cname}' is used more than once in container group '{group}'.",
                       "DuplicateContainerName")
        seen.add(cname)
        cprops = container.get("properties")
        if not isinstance(cprops, dict) or not cprops.get("image"):
            raise _bad(f"The image of container '{cname}' in container group '{group}' is required.")
        requests = (cprops.get("resources") or {}).get("requests") or {}
        if requests.get("cpu") is None or requests.get("memoryInGB") is None:
            raise _bad(f"The resource requests are not specified in container '{cname}' of contain group '{group}'. "
                       "Both memory and CPU requests are required since API version '2017-07-01-preview'.",
                       "ResourceRequestsNotSpecified")
        for key in ("cpu", "memoryInGB"):
            if not _number(requests[key]) or requests[key] <= 0:
                raise _bad(f"The '{key}' request {requests[key]!r} of container '{cname}' in container group "
                           f"'{group}' is invalid: it must be a number greater than 0.", "InvalidResourceRequests")
        names = set()
        for var in cprops.get("environmentVariables") or []:
            var_name = var.get("name") if isinstance(var, dict) else None
            if not var_name or not _ENV_NAME.match(str(var_name)) or var_name in names:
                raise _bad(f"The environment variable name in container '{cname}' of container group '{group}' is "
                           "invalid. A valid environment variable name must start with alphabetic character or '_', "
                           "followed by a string of alphanumeric characters or '_' (e.g. 'my_name',  or 'MY_NAME',  "
                           "or 'MyName').", "InvalidContainerEnvironmentVariable")
            names.add(var_name)
        for port in cprops.get("ports") or []:
            if not isinstance(port, dict) or not isinstance(port.get("port"), int) or not 0 < port["port"] < 65536:
                raise _bad(f"The port {port!r} of container '{cname}' in container group '{group}' is invalid.",
                           "InvalidContainerPort")
            port.setdefault("protocol", "TCP")
        if cprops.get("command") is not None and not isinstance(cprops["command"], list):
            raise _bad(f"The command of container '{cname}' in container group '{group}' must be a list of strings.")

    @staticmethod
    def _ip_address(arm, rid, group, location, props, exposed):
        address = props.get("ipAddress")
        if address is None:
            return
        address.pop("fqdn", None)
        address.pop("ip", None)
        if address.get("type") not in ("Public", "Private"):
            raise _bad(f"The IP address type '{address.get('type')}' of container group '{group}' is invalid. The "
                       "value must be one of 'Public,Private'.", "InvalidIpAddressType")
        if address["type"] == "Private" and not props.get("subnetIds"):
            raise _bad(f"The container group '{group}' asks for a private IP address but has no subnetIds: a "
                       "private IP address needs a subnet of a virtual network.", "PrivateIPAddressRequiresSubnet")
        ports = address.get("ports")
        if not isinstance(ports, list) or not ports:
            raise _bad(f"The ports in the 'ipAddress' of container group '{group}' cannot be empty.",
                       "InvalidIpAddressPorts")
        for port in ports:
            if not isinstance(port, dict) or port.get("port") not in exposed:
                raise _bad(f"The port {port!r} in the 'ipAddress' of container group '{group}' is not exposed by "
                           "any of its containers.", "InvalidIpAddressPorts")
            port.setdefault("protocol", "TCP")
        label = address.get("dnsNameLabel")
        if label is None:
            return
        if address["type"] != "Public" or not _LABEL.match(str(label)):
            raise _bad(f"The DNS name label '{label}' in container group '{group}' is invalid. It can contain only "
                       "lowercase letters, numbers and hyphens. The first character must be a letter. The last "
                       "character must be a letter or number. The value must be between 5 and 63 characters long.",
                       "InvalidDnsNameLabel")
        address.setdefault("autoGeneratedDomainNameLabelScope", "Unsecure")
        for other in arm.of_type(NS, "containerGroups"):
            other_label = ((other.props.get("ipAddress") or {}).get("dnsNameLabel") or "").lower()
            if other.id.lower() != rid.lower() and other.location == location and other_label == label.lower():
                raise ArmError(409, "DnsNameLabelAlreadyTaken",
                               f"The DNS name label '{label}' in container group '{group}' is not available. Try "
                               "using a different label.")

    @staticmethod
    def _check_update(name, existing, props, body):
        old = existing.props
        changed = [key for key in _FIXED if props.get(key) != old.get(key)]
        if list(body.get("zones") or []) != list(existing.data.get("zones") or []):
            changed.append("zones")
        before = {c["name"]: _resources(c) for c in old.get("containers") or []}
        for container in props["containers"]:
            was = before.get(container["name"])
            if was is not None and was != _resources(container):
                changed.append(f"containers[{container['name']}].resources")
        if changed:
            raise ArmError(409, "InvalidContainerGroupUpdate", _UPDATE_INVALID.format(name=name))

    # ---- reads ---------------------------------------------------------------------------------
    def render(self, arm, res, req):
        doc = copy.deepcopy(res.data)
        props = doc["properties"]
        state = res.private.get("state", "Running")
        started, stopped_at = res.private.get("started"), res.private.get("stopped")
        for container in props.get("containers") or []:
            cprops = container.setdefault("properties", {})
            for var in cprops.get("environmentVariables") or []:
                var.pop("secureValue", None)  # write-only, as ARM answers
            cprops.setdefault("command", [])
            cprops.setdefault("environmentVariables", [])
            cprops.setdefault("ports", [])
            cprops["instanceView"] = self._container_view(cprops, state, started, stopped_at)
        props["instanceView"] = {"events": [], "state": state}
        address = props.get("ipAddress")
        if address is not None:
            if address.get("type") == "Public" and res.private.get("ip") and state != "Stopped":
                address["ip"] = res.private["ip"]
            if address.get("dnsNameLabel"):
                address["fqdn"] = f"{address['dnsNameLabel']}.{res.location}.azurecontainer.io"
        return doc

    @staticmethod
    def _container_view(cprops, state, started, stopped_at):
        image = cprops.get("image")
        if state == "Running":
            current = {"state": "Running", "startTime": now_iso(started), "detailStatus": ""}
        elif state == "Stopped":
            current = {"state": "Terminated", "startTime": now_iso(started or stopped_at),
                       "finishTime": now_iso(stopped_at), "exitCode": 0, "detailStatus": "Completed"}
        else:
            current = {"state": "Waiting", "detailStatus": "ContainerCreating"}
        view = {"restartCount": 0, "currentState": current, "events": []}
        if started:
            stamp = now_iso(started)
            view["events"] = [
                {"count": 1, "firstTimestamp": stamp, "lastTimestamp": stamp, "name": "Pulling",
                 "message": f'pulling image "{image}"', "type": "Normal"},
                {"count": 1, "firstTimestamp": stamp, "lastTimestamp": stamp, "name": "Pulled",
                 "message": f'Successfully pulled image "{image}"', "type": "Normal"},
                {"count": 1, "firstTimestamp": stamp, "lastTimestamp": stamp, "name": "Started",
                 "message": "Started container", "type": "Normal"},
            ]
        return view

    # ---- lifecycle -----------------------------------------------------------------------------
    def _run(self, arm, res):
        """The group runs (at the end of a PUT, start or restart operation), unless it was stopped meanwhile."""
        if arm.get(res.id) is not res or res.private.get("state") != "Pending":
            return
        res.private["state"] = "Running"
        res.props["provisioningState"] = "Succeeded"  # also after a start that preempted a PUT
        res.private["started"] = time.time()
        res.private["changed"] = time.time()
        address = res.props.get("ipAddress") or {}
        if address.get("type") == "Public" and not res.private.get("ip"):
            n = arm.counter("containerGroupIp")
            res.private["ip"] = f"20.{50 + (n >> 16) % 150}.{(n >> 8) % 256}.{n % 256}"

    def on_provisioned(self, arm, res):
        self._run(arm, res)

    def _begin(self, arm, req, res, status):
        res.private["state"] = "Pending"
        res.private["changed"] = time.time()
        op = arm.begin(res.sub, NS, res.location, lambda: self._run(arm, res), res=res, slow=True)
        return Response(status, None, arm.lro_headers(req, op))

    def start(self, arm, req, res):
        if res.private.get("state") in ("Running", "Pending"):
            return Response(204)  # running or starting already
        res.private.pop("ip", None)  # a stopped group gets a new IP when it starts
        return self._begin(arm, req, res, 202)

    def stop(self, arm, req, res):
        if res.private.get("state") != "Stopped":
            res.private["state"] = "Stopped"
            res.private["stopped"] = time.time()
            res.private.pop("ip", None)  # compute is deallocated: the IP goes, the DNS label stays
        return Response(204)

    def restart(self, arm, req, res):
        if res.private.get("state") == "Stopped":
            res.private.pop("ip", None)
        return self._begin(arm, req, res, 204)


register(ContainerGroups())
