# Copyright: lxcri.cloud developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""GCP: VMs are Compute Engine instances in one zone (instances.py), containers are Cloud Run v2 services
(run.py); metrics and alarms are Cloud Monitoring v3's (monitoring.py)."""

from __future__ import annotations

from ansible_collections.lxcri.cloud.plugins.module_utils.info import Field, ProviderInfo

INFO = ProviderInfo(
    name="gcp",
    title="GCP",
    kinds=("vm", "container"),
    connection={
        "project": Field("Project id.", env=("GOOGLE_CLOUD_PROJECT", "CLOUDSDK_CORE_PROJECT")),
        "credentials_file": Field("Service account key file.", type="path", env=("GOOGLE_APPLICATION_CREDENTIALS",)),
        "region": Field("A zone such as V(us-central1-a), or a region such as V(us-central1), which means its first "
                        "zone in alphabetical order.", env=("CLOUDSDK_COMPUTE_ZONE", "CLOUDSDK_COMPUTE_REGION")),
    },
    connection_doc="Connection to Google Cloud.",
    sizes={"small": "e2-small", "medium": "e2-medium", "large": "e2-standard-2", "xlarge": "e2-standard-4"},
    images={
        "ubuntu-24.04": "projects/ubuntu-os-cloud/global/images/family/ubuntu-2404-lts-amd64",
        "ubuntu-22.04": "projects/ubuntu-os-cloud/global/images/family/ubuntu-2204-lts",
        "debian-12": "projects/debian-cloud/global/images/family/debian-12",
    },
    prices={"e2-small": 0.016751, "e2-medium": 0.033503, "e2-standard-2": 0.067006, "e2-standard-4": 0.134012},
    # e2-small, n2-standard-4, c3-highmem-8-lssd, custom-2-4096, n2-custom-4-8192-ext ...
    native_size=(r"^[a-z][a-z0-9]*(-[a-z0-9]+){1,5}$", "e2-standard-2 or custom-2-4096"),
    native_image=(r"^(https://[a-z0-9.-]+(:[0-9]+)?/compute/(v1|beta)/)?"
                  r"projects/[a-z][-a-z0-9.:]*[a-z0-9]/global/images/(family/)?[a-z]([-a-z0-9]*[a-z0-9])?$",
                  "projects/debian-cloud/global/images/family/debian-12"),
    cannot={"function": "Cloud Functions are not deployed by this version"},
    alarm_state="evaluated",
    endpoint_doc="API base URL.",
)


def load():
    from ansible_collections.lxcri.cloud.plugins.module_utils.providers.gcp.provider import GcpProvider

    return GcpProvider
