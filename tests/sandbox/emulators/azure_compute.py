"""Microsoft.Compute resource types of the Azure emulator: virtual machines and managed disks.

A VM PUT creates its managed OS disk (and ``Empty`` data disks) as ``Microsoft.Compute/disks``
resources; deleting the VM deletes the disks and NICs whose ``deleteOption`` is ``Delete`` and leaves
the others unattached. Power actions move ``PowerState`` through starting/stopping/deallocating to
running/stopped/deallocated when their operation completes (``provision_seconds`` after the request;
0 = at the next request, i.e. the first poll). A newer operation on a VM preempts the one in progress
(which then fails with ``OperationPreempted``), as Compute does.
"""
import copy
import re
import time
import uuid

from .azure_arm import ArmError, Resource, Response, now_iso
from .azure_routes import ResourceType, register
from .azure_network import NS as NETWORK, vm_of_nic

NS = "Microsoft.Compute"
_TOP_LEVEL = ("tags", "zones", "plan", "identity", "extendedLocation", "placement", "managedBy")
_IMMUTABLE = (("osProfile", "adminUsername"), ("osProfile", "computerName"), ("storageProfile", "osDisk", "name"))


def _dig(doc, path):
    for key in path:
        if not isinstance(doc, dict):
            return None
        doc = doc.get(key)
    return doc


def _invalid(message, target):
    return ArmError(400, "InvalidParameter", message, target=target)


def _missing(name):
    return _invalid(f"Required parameter '{name}' is missing (null).", name)


def _tier(sku_name):
    return {"Premium": "Premium", "Ultra": "Ultra", "PremiumV2": "Premium"}.get(
        re.split(r"SSD|_", sku_name or "Standard")[0], "Standard")


def vms_using_disk(arm, disk_id):
    for vm in arm.of_type(NS, "virtualMachines"):
        storage = vm.props.get("storageProfile") or {}
        for disk in [storage.get("osDisk") or {}] + list(storage.get("dataDisks") or []):
            if str(_dig(disk, ("managedDisk", "id")) or "").lower() == disk_id.lower():
                return vm
    return None


class Disks(ResourceType):
    namespace, type_path, op, state_key = NS, "disks", "disks", "disks"
    create_status, update_status = 202, 200
    patch_mode, patch_op = "merge", "update"
    list_ops = ("listByResourceGroup", "list")

    def build(self, arm, req, rid, existing, body):
        props = copy.deepcopy(body.get("properties") or {})
        creation = props.get("creationData") or {}
        if not creation.get("createOption"):
            raise _missing("createOption")
        if creation["createOption"] == "Empty" and not props.get("diskSizeGB"):
            raise _missing("diskSizeGB")
        if existing is not None and vms_using_disk(arm, existing.id) and \
                props.get("diskSizeGB") not in (None, existing.props.get("diskSizeGB")):
            vm = vms_using_disk(arm, existing.id)
            if vm.private.get("power") != "deallocated":
                raise ArmError(409, "OperationNotAllowed",
                               f"Disk resizing is allowed only when creating a VM or when the VM is deallocated. "
                               f"Disk {existing.name} is attached to VM {vm.id}.")
        doc = self.document(arm, rid, body["location"], (body.get("sku") or {}).get("name"), props.get("diskSizeGB"),
                            creation, props.get("osType"), existing)
        for key in _TOP_LEVEL:
            if body.get(key) is not None and key != "managedBy":
                doc[key] = copy.deepcopy(body[key])
        for key, value in props.items():
            if key not in ("provisioningState", "diskState", "timeCreated", "uniqueId", "diskSizeBytes"):
                doc["properties"].setdefault(key, copy.deepcopy(value))
        return doc, None

    def document(self, arm, rid, location, sku_name, size_gb, creation, os_type=None, existing=None):
        sku_name = sku_name or "Standard_LRS"
        size_gb = int(size_gb or 30)
        old = existing.props if existing is not None else {}
        props = {"creationData": copy.deepcopy(creation), "diskSizeGB": size_gb,
                 "diskIOPSReadWrite": 500 if size_gb <= 64 else 2300, "diskMBpsReadWrite": 60 if size_gb <= 64 else 150,
                 "encryption": {"type": "EncryptionAtRestWithPlatformKey"}, "networkAccessPolicy": "AllowAll",
                 "publicNetworkAccess": "Enabled", "timeCreated": old.get("timeCreated") or now_iso(),
                 "diskSizeBytes": size_gb * 1024 ** 3, "uniqueId": old.get("uniqueId") or str(uuid.uuid4()),
                 "provisioningState": "Succeeded", "diskState": "Unattached"}
        if os_type:
            props["osType"] = os_type
            props["hyperVGeneration"] = "V1"
        return {"name": rid.rsplit("/", 1)[-1], "id": rid, "type": "Microsoft.Compute/disks", "location": location,
                "sku": {"name": sku_name, "tier": _tier(sku_name)}, "properties": props}

    def render(self, arm, res, req):
        doc = copy.deepcopy(res.data)
        doc.pop("managedBy", None)
        vm = vms_using_disk(arm, res.id)
        doc["properties"]["diskState"] = "Unattached"
        if vm is not None:
            doc["managedBy"] = vm.id
            deallocated = vm.private.get("power") == "deallocated"
            doc["properties"]["diskState"] = "Reserved" if deallocated else "Attached"
        return doc

    def check_delete(self, arm, res):
        vm = vms_using_disk(arm, res.id)
        if vm is not None:
            raise ArmError(409, "OperationNotAllowed", f"Disk {res.name} is attached to VM {vm.id}.")


DISKS = register(Disks())


class VirtualMachines(ResourceType):
    namespace, type_path, op, state_key = NS, "virtualMachines", "virtualMachines", "virtualMachines"
    create_state, update_state = "Creating", "Updating"
    patch_mode, patch_op = "merge", "update"
    slow = True
    actions = {"start": ("start", "start"), "poweroff": ("powerOff", "power_off"),
               "deallocate": ("deallocate", "deallocate"), "restart": ("restart", "restart")}
    views = {"instanceview": ("instanceView", "instance_view")}

    # ---- PUT / PATCH ---------------------------------------------------------------------------
    def build(self, arm, req, rid, existing, body):
        name = rid.rsplit("/", 1)[-1]
        group_id = rid.split("/providers/")[0]
        doc = {"name": name, "id": rid, "type": "Microsoft.Compute/virtualMachines", "location": body["location"]}
        for key in _TOP_LEVEL:
            if body.get(key) is not None:
                doc[key] = copy.deepcopy(body[key])
        props = copy.deepcopy(body.get("properties") or {})
        old = existing.props if existing is not None else {}
        for key in ("provisioningState", "instanceView", "vmId", "timeCreated"):
            props.pop(key, None)
        if existing is not None:
            for path in _IMMUTABLE:
                new, was = _dig(props, path), _dig(old, path)
                if new is not None and was is not None and new != was:
                    target = ".".join(path)
                    raise ArmError(409, "PropertyChangeNotAllowed", f"Changing property '{target}' is not allowed.",
                                   target=target)
            if props.get("osProfile") is None and old.get("osProfile") is not None:
                props["osProfile"] = copy.deepcopy(old["osProfile"])
        self._network(arm, rid, name, props)
        storage = props.setdefault("storageProfile", {})
        os_disk = storage.setdefault("osDisk", {})
        create_option = os_disk.setdefault("createOption", "FromImage")
        image = storage.get("imageReference")
        if create_option == "FromImage":
            if not image:
                raise _missing("imageReference")
            self._os_profile(name, props, image, existing is None)
        elif create_option == "Attach":
            if not _dig(os_disk, ("managedDisk", "id")):
                raise _missing("managedDisk")
            props.pop("osProfile", None)
        else:
            raise _invalid(f"The value '{create_option}' of parameter 'osDisk.createOption' is not valid.",
                           "osDisk.createOption")
        windows = bool(_dig(props, ("osProfile", "windowsConfiguration"))) or \
            "windows" in str((image or {}).get("publisher", "")).lower()
        os_type = os_disk.get("osType") or ("Windows" if windows else "Linux")
        if image and not image.get("id"):
            image.setdefault("exactVersion", image.get("version") if image.get("version") != "latest" else "1.0.0")
        creates = []
        self._os_disk(arm, rid, group_id, name, doc, props, existing, os_type, image, creates)
        self._data_disks(arm, rid, group_id, name, doc, props, existing, creates)
        props["vmId"] = old.get("vmId") or str(uuid.uuid4())
        props["timeCreated"] = old.get("timeCreated") or now_iso()
        doc["properties"] = props

        def commit(vm):
            for disk_id, ddoc in creates:
                disk = Resource(disk_id, DISKS, vm.sub, vm.rg)
                arm.store_put(None, disk, ddoc, None, is_new=True)
            if existing is None:
                vm.private["power"] = "starting"
            vm.private["changed"] = time.time()
        return doc, commit

    @staticmethod
    def _network(arm, rid, name, props):
        net = props.get("networkProfile") or {}
        refs = net.get("networkInterfaces") or []
        if not refs and not net.get("networkInterfaceConfigurations"):
            raise _missing("networkProfile")
        for ref in refs:
            nic = arm.get(ref.get("id"))
            if nic is None or nic.rtype.namespace != NETWORK or nic.rtype.type_path != "networkInterfaces":
                raise ArmError(404, "NotFound", f"Resource {ref.get('id')} not found.")
            user, _ = vm_of_nic(arm, nic.id)
            if user is not None and user.id.lower() != rid.lower():
                raise ArmError(400, "NicInUse",
                               f"Network Interface {nic.id} is used by existing resource {user.id}. In order to "
                               "delete the network interface, it must be dissociated from the resource. To learn "
                               "more, see aka.ms/deletenic.", details=[])
        if len(refs) > 1 and sum(1 for r in refs if _dig(r, ("properties", "primary"))) != 1:
            raise _invalid(f"Virtual machine {name} must have one network interface set as the primary.",
                           "networkInterfaces")

    @staticmethod
    def _os_profile(name, props, image, is_new):
        profile = props.get("osProfile")
        if not profile:
            raise _missing("osProfile")
        if not profile.get("adminUsername"):
            raise _missing("adminUsername")
        profile.setdefault("computerName", name)
        profile.pop("customData", None)
        password = profile.pop("adminPassword", None)
        profile.setdefault("secrets", [])
        profile.setdefault("allowExtensionOperations", True)
        profile.setdefault("requireGuestProvisionSignal", True)
        windows = profile.get("windowsConfiguration")
        if windows is not None or "windows" in str(image.get("publisher", "")).lower():
            config = profile.setdefault("windowsConfiguration", {})
            config.setdefault("provisionVMAgent", True)
            config.setdefault("enableAutomaticUpdates", True)
            config.setdefault("patchSettings", {"patchMode": "AutomaticByOS", "assessmentMode": "ImageDefault"})
            config.setdefault("enableVMAgentPlatformUpdates", True)
            if password is None and is_new:
                raise _missing("adminPassword")
            return
        config = profile.setdefault("linuxConfiguration", {})
        keys = _dig(config, ("ssh", "publicKeys")) or []
        if is_new and not keys and (password is None or config.get("disablePasswordAuthentication")):
            raise _invalid("Authentication using either SSH or by user name and password must be enabled in Linux "
                           "profile.", "linuxConfiguration")
        config.setdefault("disablePasswordAuthentication", password is None)
        config.setdefault("provisionVMAgent", True)
        config.setdefault("patchSettings", {"patchMode": "ImageDefault", "assessmentMode": "ImageDefault"})
        config.setdefault("enableVMAgentPlatformUpdates", False)

    @staticmethod
    def _disk_id(group_id, disk_name):
        return f"{group_id}/providers/Microsoft.Compute/disks/{disk_name}"

    def _os_disk(self, arm, rid, group_id, name, doc, props, existing, os_type, image, creates):
        os_disk = props["storageProfile"]["osDisk"]
        previous = _dig(existing.props if existing else {}, ("storageProfile", "osDisk")) or {}
        managed = os_disk.setdefault("managedDisk", {})
        os_disk["osType"] = os_type
        os_disk.setdefault("caching", "ReadWrite")
        os_disk.setdefault("deleteOption", "Detach")
        if previous:  # the OS disk of an existing VM stays what it is
            os_disk["name"] = previous["name"]
            managed["id"] = previous["managedDisk"]["id"]
            managed.setdefault("storageAccountType", previous["managedDisk"].get("storageAccountType"))
            os_disk.setdefault("diskSizeGB", previous.get("diskSizeGB"))
            return
        if os_disk["createOption"] == "Attach":
            disk = arm.get(managed["id"])
            if disk is None or disk.rtype is not DISKS:
                raise ArmError(404, "NotFound", f"Resource {managed['id']} not found.")
            self._free(arm, disk, rid)
            os_disk["name"] = disk.name
            managed["id"] = disk.id
            managed.setdefault("storageAccountType", disk.data["sku"]["name"])
            os_disk["diskSizeGB"] = disk.props.get("diskSizeGB")
            return
        disk_name = os_disk.get("name") or f"{name}_OsDisk_1_{uuid.uuid4().hex}"
        disk_id = self._disk_id(group_id, disk_name)
        if arm.get(disk_id) is not None:
            raise ArmError(409, "ConflictingUserInput",
                           f"Disk {disk_name} already exists in resource group {rid.split('/')[4].upper()}. Only "
                           "CreateOption.Attach is supported.", target="/disks/" + disk_name)
        vm_size = str(_dig(props, ("hardwareProfile", "vmSize")) or "")
        premium = re.match(r"Standard_([A-Z]*S[A-Z]*\d|[A-Z]+\d+[a-z]*s)", vm_size) is not None
        managed.setdefault("storageAccountType", "Premium_LRS" if premium else "Standard_LRS")
        os_disk.setdefault("diskSizeGB", 127 if os_type == "Windows" else 30)
        os_disk["name"] = disk_name
        managed["id"] = disk_id
        if image.get("id"):
            image_id = image["id"]
        else:
            image_id = (f"/Subscriptions/{rid.split('/')[2]}/Providers/Microsoft.Compute/Locations/{doc['location']}"
                        f"/Publishers/{image.get('publisher')}/ArtifactTypes/VMImage/Offers/{image.get('offer')}"
                        f"/Skus/{image.get('sku')}/Versions/{image.get('exactVersion')}")
        creation = {"createOption": "FromImage", "imageReference": {"id": image_id}}
        creates.append((disk_id, DISKS.document(arm, disk_id, doc["location"], managed["storageAccountType"],
                                                os_disk["diskSizeGB"], creation, os_type)))

    def _data_disks(self, arm, rid, group_id, name, doc, props, existing, creates):
        storage = props["storageProfile"]
        disks = storage.setdefault("dataDisks", [])
        previous = {d.get("lun"): d for d in _dig(existing.props if existing else {}, ("storageProfile",
                                                                                       "dataDisks")) or []}
        luns = set()
        for disk in disks:
            lun = disk.get("lun")
            if not isinstance(lun, int) or lun in luns:
                raise _invalid(f"The value of parameter dataDisk.lun is invalid: {lun}.", "dataDisk.lun")
            luns.add(lun)
            managed = disk.setdefault("managedDisk", {})
            disk.setdefault("caching", "None")
            disk.setdefault("deleteOption", "Detach")
            disk.setdefault("toBeDetached", False)
            old = previous.get(lun)
            if old and (not managed.get("id") or managed["id"].lower() == old["managedDisk"]["id"].lower()):
                disk["name"], managed["id"] = old["name"], old["managedDisk"]["id"]
                disk["createOption"] = old.get("createOption", disk.get("createOption"))
                managed.setdefault("storageAccountType", old["managedDisk"].get("storageAccountType"))
                disk.setdefault("diskSizeGB", old.get("diskSizeGB"))
                continue
            option = disk.get("createOption")
            if option == "Attach":
                target = arm.get(managed.get("id"))
                if target is None or target.rtype is not DISKS:
                    raise ArmError(404, "NotFound", f"Resource {managed.get('id')} not found.")
                self._free(arm, target, rid)
                disk["name"], managed["id"] = target.name, target.id
                managed.setdefault("storageAccountType", target.data["sku"]["name"])
                disk["diskSizeGB"] = target.props.get("diskSizeGB")
            elif option == "Empty":
                if not disk.get("diskSizeGB"):
                    raise _missing("diskSizeGB")
                disk_name = disk.get("name") or f"{name}_disk{lun + 2}_{uuid.uuid4().hex}"
                disk_id = self._disk_id(group_id, disk_name)
                if arm.get(disk_id) is not None:
                    raise ArmError(409, "ConflictingUserInput",
                                   f"Disk {disk_name} already exists in resource group "
                                   f"{rid.split('/')[4].upper()}. Only CreateOption.Attach is supported.",
                                   target="/disks/" + disk_name)
                managed.setdefault("storageAccountType", "Standard_LRS")
                disk["name"], managed["id"] = disk_name, disk_id
                creates.append((disk_id, DISKS.document(arm, disk_id, doc["location"], managed["storageAccountType"],
                                                        disk["diskSizeGB"], {"createOption": "Empty"})))
            else:
                raise _invalid(f"The value '{option}' of parameter 'dataDisk.createOption' is not valid.",
                               "dataDisk.createOption")

    @staticmethod
    def _free(arm, disk, rid):
        user = vms_using_disk(arm, disk.id)
        if user is not None and user.id.lower() != rid.lower():
            raise ArmError(409, "OperationNotAllowed", f"Disk {disk.name} is attached to VM {user.id}.")

    # ---- reads ---------------------------------------------------------------------------------
    def render(self, arm, res, req):
        doc = copy.deepcopy(res.data)
        expand = str(req.param("$expand") or "").lower() if req is not None else ""
        if "userdata" not in expand:
            doc["properties"].pop("userData", None)
        if "instanceview" in expand:
            doc["properties"]["instanceView"] = self.view(arm, res)
        return doc

    def view(self, arm, res):
        power = res.private.get("power", "running")
        state = res.props.get("provisioningState", "Succeeded")
        changed = now_iso(res.private.get("changed"))
        statuses = [{"code": f"ProvisioningState/{state.lower()}", "level": "Info",
                     "displayStatus": "Provisioning succeeded" if state == "Succeeded" else state}]
        if state == "Succeeded":
            statuses[0]["time"] = changed
        statuses.append({"code": f"PowerState/{power}", "level": "Info", "displayStatus": f"VM {power}"})
        storage = res.props.get("storageProfile") or {}
        disks = [{"name": d.get("name"),
                  "statuses": [{"code": "ProvisioningState/succeeded", "level": "Info",
                                "displayStatus": "Provisioning succeeded", "time": changed}]}
                 for d in [storage.get("osDisk") or {}] + list(storage.get("dataDisks") or [])]
        view = {"disks": disks, "hyperVGeneration": "V1", "statuses": statuses}
        if power in ("running", "stopping", "stopped", "starting"):
            image = storage.get("imageReference") or {}
            windows = (storage.get("osDisk") or {}).get("osType") == "Windows"
            offer = str(image.get("offer") or "linux").lower()
            view.update({
                "platformUpdateDomain": 0, "platformFaultDomain": 0,
                "computerName": _dig(res.props, ("osProfile", "computerName")) or res.name,
                "osName": "Windows Server 2022 Datacenter" if windows else ("ubuntu" if "ubuntu" in offer else offer),
                "osVersion": "Microsoft Windows NT 10.0.20348.0" if windows else str(image.get("sku") or ""),
                "vmAgent": {"vmAgentVersion": "2.11.1.12", "extensionHandlers": [],
                            "statuses": [{"code": "ProvisioningState/succeeded", "level": "Info",
                                          "displayStatus": "Ready" if power == "running" else "Not Ready",
                                          "message": "Guest Agent is running", "time": changed}]}})
        return view

    def instance_view(self, arm, req, res):
        return Response(200, self.view(arm, res))

    # ---- power actions -------------------------------------------------------------------------
    def _transition(self, arm, req, res, transient, final):
        if transient:
            res.private["power"] = transient
        res.props["provisioningState"] = "Updating"
        res.private["changed"] = time.time()

        def done():
            if arm.get(res.id) is res:
                res.private["power"] = final
                res.props["provisioningState"] = "Succeeded"
                res.private["changed"] = time.time()
        op = arm.begin(res.sub, NS, res.location, done, res=res, slow=True)
        return Response(202, None, arm.lro_headers(req, op, ("Azure-AsyncOperation", "Location")))

    def start(self, arm, req, res):
        running = res.private.get("power") == "running"
        return self._transition(arm, req, res, None if running else "starting", "running")

    def power_off(self, arm, req, res):
        if res.private.get("power") in ("deallocated", "deallocating"):
            return self._transition(arm, req, res, None, "deallocated")
        return self._transition(arm, req, res, "stopping", "stopped")

    def deallocate(self, arm, req, res):
        return self._transition(arm, req, res, "deallocating", "deallocated")

    def restart(self, arm, req, res):
        if res.private.get("power") in ("deallocated", "deallocating"):
            raise ArmError(409, "OperationNotAllowed",
                           f"Operation 'Restart' is not allowed on VM '{res.name}' since the VM is deallocated or "
                           "marked to be deallocated.")
        return self._transition(arm, req, res, "starting", "running")

    # ---- lifecycle -----------------------------------------------------------------------------
    def on_provisioned(self, arm, res):
        if res.private.get("power") == "starting":
            res.private["power"] = "running"
        res.private["changed"] = time.time()

    def on_deleted(self, arm, res):
        storage = res.props.get("storageProfile") or {}
        for disk in [storage.get("osDisk") or {}] + list(storage.get("dataDisks") or []):
            if disk.get("deleteOption") == "Delete":
                target = arm.get(_dig(disk, ("managedDisk", "id")))
                if target is not None:
                    arm.remove(target)
        for ref in _dig(res.props, ("networkProfile", "networkInterfaces")) or []:
            if _dig(ref, ("properties", "deleteOption")) == "Delete":
                nic = arm.get(ref.get("id"))
                if nic is not None:
                    arm.remove(nic)


register(VirtualMachines())
