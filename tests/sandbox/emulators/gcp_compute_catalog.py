"""Seed data of the Compute Engine emulator: zones, regions, machine types, public images, the
default network. Seed resources are never reported by ``/_sandbox/state``."""
from .gcp_common import EMPTY_FINGERPRINT, Link, stable_id

CREATED = "1969-12-31T16:00:00.000-08:00"  # what GCE shows for zones, regions and machine types

REGIONS = {
    # region: (zones, default-subnet CIDR of an auto-mode network, description)
    "us-central1": (["us-central1-a", "us-central1-b", "us-central1-c", "us-central1-f"], "10.128.0.0/20"),
    "europe-west1": (["europe-west1-b", "europe-west1-c", "europe-west1-d"], "10.132.0.0/20"),
    "europe-west4": (["europe-west4-a", "europe-west4-b", "europe-west4-c"], "10.164.0.0/20"),
}
ZONES = {zone: region for region, (zones, _cidr) in REGIONS.items() for zone in zones}
CPU_PLATFORMS = ["Intel Broadwell", "Intel Cascade Lake", "Intel Ice Lake", "Intel Sapphire Rapids",
                 "AMD Rome", "AMD Milan", "AMD Genoa"]

# name: (guestCpus, memoryMb, shared core, description)
MACHINE_TYPES = {
    "e2-micro": (2, 1024, True, "Efficient Instance, 2 vCPU (1/8 shared physical core) and 1 GB RAM"),
    "e2-small": (2, 2048, True, "Efficient Instance, 2 vCPU (1/4 shared physical core) and 2 GB RAM"),
    "e2-medium": (2, 4096, True, "Efficient Instance, 2 vCPU (1/2 shared physical core) and 4 GB RAM"),
    "e2-standard-2": (2, 8192, False, "Efficient Instance, 2 vCPUs, 8 GB RAM"),
    "e2-standard-4": (4, 16384, False, "Efficient Instance, 4 vCPUs, 16 GB RAM"),
    "e2-standard-8": (8, 32768, False, "Efficient Instance, 8 vCPUs, 32 GB RAM"),
    "n1-standard-1": (1, 3840, False, "1 vCPU, 3.75 GB RAM"),
    "n2-standard-2": (2, 8192, False, "2 vCPUs 8 GB RAM"),
    "n2-standard-4": (4, 16384, False, "4 vCPUs 16 GB RAM"),
    "n2d-standard-2": (2, 8192, False, "2 vCPUs 8 GB RAM"),
}

_UBUNTU_FEATURES = ["VIRTIO_SCSI_MULTIQUEUE", "SEV_CAPABLE", "SEV_SNP_CAPABLE", "SEV_LIVE_MIGRATABLE",
                    "SEV_LIVE_MIGRATABLE_V2", "IDPF", "UEFI_COMPATIBLE", "GVNIC", "TDX_CAPABLE"]
_DEBIAN_FEATURES = ["UEFI_COMPATIBLE", "VIRTIO_SCSI_MULTIQUEUE", "GVNIC", "SEV_CAPABLE",
                    "SEV_LIVE_MIGRATABLE_V2"]
# project: [(image name, family, license, description, archiveSizeBytes, guest OS features)]
PUBLIC_IMAGES = {
    "ubuntu-os-cloud": [
        ("ubuntu-2404-noble-amd64-v20250130", "ubuntu-2404-lts-amd64", "ubuntu-2404-lts",
         "Canonical, Ubuntu, 24.04 LTS, amd64 noble image built on 2025-01-30", "3148945088", _UBUNTU_FEATURES),
        ("ubuntu-2204-jammy-v20250128", "ubuntu-2204-lts", "ubuntu-2204-lts",
         "Canonical, Ubuntu, 22.04 LTS, amd64 jammy image built on 2025-01-28", "2693410688", _UBUNTU_FEATURES),
    ],
    "debian-cloud": [
        ("debian-12-bookworm-v20250113", "debian-12", "debian-12-bookworm",
         "Debian, Debian GNU/Linux, 12 (bookworm), amd64 built on 20250113", "1215264768", _DEBIAN_FEATURES),
    ],
}


def zone_res(project, zone):
    region = ZONES[zone]
    return {"kind": "compute#zone", "id": stable_id("zone", zone), "creationTimestamp": CREATED, "name": zone,
            "description": zone, "status": "UP", "region": Link(f"projects/{project}/regions/{region}"),
            "selfLink": Link(f"projects/{project}/zones/{zone}"), "availableCpuPlatforms": CPU_PLATFORMS,
            "supportsPzs": False}


def region_res(project, region):
    zones, _cidr = REGIONS[region]
    quotas = [{"metric": "CPUS", "limit": 24.0, "usage": 0.0},
              {"metric": "DISKS_TOTAL_GB", "limit": 4096.0, "usage": 0.0},
              {"metric": "IN_USE_ADDRESSES", "limit": 8.0, "usage": 0.0}]
    return {"kind": "compute#region", "id": stable_id("region", region), "creationTimestamp": CREATED,
            "name": region, "description": region, "status": "UP",
            "zones": [Link(f"projects/{project}/zones/{zone}") for zone in zones], "quotas": quotas,
            "selfLink": Link(f"projects/{project}/regions/{region}"), "supportsPzs": False}


def machine_type_res(project, zone, name):
    cpus, memory, shared, description = MACHINE_TYPES[name]
    return {"kind": "compute#machineType", "id": stable_id("machineType", name), "creationTimestamp": CREATED,
            "name": name, "description": description, "guestCpus": cpus, "memoryMb": memory, "imageSpaceGb": 0,
            "maximumPersistentDisks": 16 if shared else 128,
            "maximumPersistentDisksSizeGb": "3072" if shared else "263168", "zone": zone,
            "selfLink": Link(f"projects/{project}/zones/{zone}/machineTypes/{name}"), "isSharedCpu": shared,
            "architecture": "X86_64"}


def image_res(project, entry):
    name, family, license_name, description, size, features = entry
    return {"kind": "compute#image", "id": stable_id("image", project, name),
            "creationTimestamp": "2025-01-13T16:00:00.000-08:00", "name": name, "description": description,
            "sourceType": "RAW", "status": "READY", "archiveSizeBytes": size, "diskSizeGb": "10",
            "licenses": [Link(f"projects/{project}/global/licenses/{license_name}")],
            "licenseCodes": [stable_id("license", license_name)], "family": family,
            "selfLink": Link(f"projects/{project}/global/images/{name}"), "labelFingerprint": EMPTY_FINGERPRINT,
            "guestOsFeatures": [{"type": feature} for feature in features], "storageLocations": ["eu", "asia", "us"],
            "architecture": "X86_64", "satisfiesPzi": False, "enableConfidentialCompute": False}


def find_image(project, name=None, family=None):
    for entry in PUBLIC_IMAGES.get(project, []):
        if (name and entry[0] == name) or (family and entry[1] == family):
            return image_res(project, entry)
    return None


def default_network(project):
    return {"kind": "compute#network", "id": stable_id("network", project, "default"),
            "creationTimestamp": "2024-01-01T00:00:00.000-08:00", "name": "default",
            "description": "Default network for the project", "selfLink": Link(f"projects/{project}/global/networks/default"),
            "selfLinkWithId": Link(f"projects/{project}/global/networks/" + stable_id("network", project, "default")),
            "autoCreateSubnetworks": True,
            "subnetworks": [Link(f"projects/{project}/regions/{region}/subnetworks/default") for region in REGIONS],
            "routingConfig": {"routingMode": "REGIONAL", "bgpBestPathSelectionMode": "LEGACY"},
            "networkFirewallPolicyEnforcementOrder": "AFTER_CLASSIC_FIREWALL"}


def default_subnetwork(project, region):
    cidr = REGIONS[region][1]
    return {"kind": "compute#subnetwork", "id": stable_id("subnetwork", project, region),
            "creationTimestamp": "2024-01-01T00:00:00.000-08:00", "name": "default",
            "network": Link(f"projects/{project}/global/networks/default"), "ipCidrRange": cidr,
            "gatewayAddress": cidr.rsplit(".", 1)[0] + ".1", "region": Link(f"projects/{project}/regions/{region}"),
            "selfLink": Link(f"projects/{project}/regions/{region}/subnetworks/default"),
            "privateIpGoogleAccess": False, "fingerprint": "gDv8JrUvnHU=", "purpose": "PRIVATE",
            "stackType": "IPV4_ONLY"}


def default_firewalls(project):
    rules = {
        "default-allow-icmp": ("Allow ICMP from anywhere", [{"IPProtocol": "icmp"}], ["0.0.0.0/0"]),
        "default-allow-internal": ("Allow internal traffic on the default network",
                                   [{"IPProtocol": "tcp", "ports": ["0-65535"]},
                                    {"IPProtocol": "udp", "ports": ["0-65535"]}, {"IPProtocol": "icmp"}],
                                   ["10.128.0.0/9"]),
        "default-allow-rdp": ("Allow RDP from anywhere", [{"IPProtocol": "tcp", "ports": ["3389"]}], ["0.0.0.0/0"]),
        "default-allow-ssh": ("Allow SSH from anywhere", [{"IPProtocol": "tcp", "ports": ["22"]}], ["0.0.0.0/0"]),
    }
    out = {}
    for name, (description, allowed, ranges) in rules.items():
        out[name] = {"kind": "compute#firewall", "id": stable_id("firewall", project, name),
                     "creationTimestamp": "2024-01-01T00:00:00.000-08:00", "name": name, "description": description,
                     "network": Link(f"projects/{project}/global/networks/default"), "priority": 65534,
                     "sourceRanges": ranges, "allowed": allowed, "direction": "INGRESS",
                     "logConfig": {"enable": False}, "disabled": False,
                     "selfLink": Link(f"projects/{project}/global/firewalls/{name}")}
    return out
