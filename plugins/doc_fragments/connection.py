# Copyright: lxcri.cloud developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:
    # The connection options of all five providers. Each is optional, so that module_defaults for the
    # action group lxcri.cloud.all can carry all of them at once.
    DOCUMENTATION = r"""
options:
  aws:
    description:
      - Connection to AWS. Every field falls back to the environment variable named beside it.
    type: dict
    suboptions:
      access_key:
        description: Access key id. Falls back to E(AWS_ACCESS_KEY_ID).
        type: str
      secret_key:
        description: Secret access key. Falls back to E(AWS_SECRET_ACCESS_KEY).
        type: str
      session_token:
        description: Session token of temporary credentials. Falls back to E(AWS_SESSION_TOKEN).
        type: str
      profile:
        description: Named profile of the shared credentials file. Falls back to E(AWS_PROFILE).
        type: str
      region:
        description: Default region. Falls back to E(AWS_REGION), then E(AWS_DEFAULT_REGION).
        type: str
      endpoint:
        description: API base URL instead of AWS's own, for example the sandbox. Falls back to E(LXCRI_AWS_ENDPOINT).
        type: str
      validate_certs:
        description: Verify the API's TLS certificate.
        type: bool
        default: true
      ca_bundle:
        description: CA bundle to verify the API's certificate with. Falls back to E(LXCRI_AWS_CA_BUNDLE).
        type: path
  azure:
    description:
      - Connection to Azure (a service principal). Every field falls back to the environment variable named beside it.
    type: dict
    suboptions:
      subscription_id:
        description: Subscription. Falls back to E(AZURE_SUBSCRIPTION_ID).
        type: str
      tenant_id:
        description: Directory (tenant). Falls back to E(AZURE_TENANT_ID).
        type: str
      client_id:
        description: Application (client) id. Falls back to E(AZURE_CLIENT_ID).
        type: str
      client_secret:
        description: Client secret. Falls back to E(AZURE_CLIENT_SECRET).
        type: str
      authority_host:
        description: Microsoft Entra authority. Falls back to E(AZURE_AUTHORITY_HOST).
        type: str
      resource_group:
        description: Resource group of the deployments; by default one per deployment, named after it.
        type: str
      region:
        description: Default location. Falls back to E(AZURE_LOCATION).
        type: str
      endpoint:
        description: Resource Manager base URL. Falls back to E(LXCRI_AZURE_ENDPOINT).
        type: str
      validate_certs:
        description: Verify the API's TLS certificate.
        type: bool
        default: true
      ca_bundle:
        description: CA bundle to verify the API's certificate with. Falls back to E(LXCRI_AZURE_CA_BUNDLE).
        type: path
  gcp:
    description:
      - Connection to Google Cloud. Every field falls back to the environment variable named beside it.
    type: dict
    suboptions:
      project:
        description: Project id. Falls back to E(GOOGLE_CLOUD_PROJECT), then E(CLOUDSDK_CORE_PROJECT).
        type: str
      credentials_file:
        description: Service account key file. Falls back to E(GOOGLE_APPLICATION_CREDENTIALS).
        type: path
      region:
        description:
          - A zone such as V(us-central1-a), or a region such as V(us-central1), which means its first zone in
            alphabetical order. Falls back to E(CLOUDSDK_COMPUTE_ZONE), then E(CLOUDSDK_COMPUTE_REGION).
        type: str
      endpoint:
        description: API base URL. Falls back to E(LXCRI_GCP_ENDPOINT).
        type: str
      validate_certs:
        description: Verify the API's TLS certificate.
        type: bool
        default: true
      ca_bundle:
        description: CA bundle to verify the API's certificate with. Falls back to E(LXCRI_GCP_CA_BUNDLE).
        type: path
  digitalocean:
    description:
      - Connection to DigitalOcean. Every field falls back to the environment variable named beside it.
    type: dict
    suboptions:
      token:
        description: API token. Falls back to E(DIGITALOCEAN_TOKEN), E(DIGITALOCEAN_ACCESS_TOKEN), then E(DO_API_TOKEN).
        type: str
      region:
        description: Default region slug. Falls back to E(DIGITALOCEAN_REGION).
        type: str
      endpoint:
        description: API base URL. Falls back to E(LXCRI_DIGITALOCEAN_ENDPOINT).
        type: str
      validate_certs:
        description: Verify the API's TLS certificate.
        type: bool
        default: true
      ca_bundle:
        description: CA bundle to verify the API's certificate with. Falls back to E(LXCRI_DIGITALOCEAN_CA_BUNDLE).
        type: path
  proxmox:
    description:
      - Connection to a Proxmox VE cluster, with an API token or a user and password.
      - Every field falls back to the environment variable named beside it.
    type: dict
    suboptions:
      endpoint:
        description: API base URL, for example V(https://pve.example.com:8006). Falls back to E(LXCRI_PROXMOX_ENDPOINT).
        type: str
      user:
        description: User for password login, for example V(root@pam). Falls back to E(PROXMOX_USER).
        type: str
      password:
        description: Password. Falls back to E(PROXMOX_PASSWORD).
        type: str
      token_id:
        description: API token id, for example V(root@pam!ansible). Falls back to E(PROXMOX_TOKEN_ID).
        type: str
      token_secret:
        description: API token secret. Falls back to E(PROXMOX_TOKEN_SECRET).
        type: str
      region:
        description: Default node. Falls back to E(PROXMOX_NODE).
        type: str
      templates:
        description:
          - Portable image name to the name of the template VM that is cloned for it.
          - Defaults to V(ubuntu-24.04-cloudinit), V(ubuntu-22.04-cloudinit) and V(debian-12-cloudinit).
        type: dict
      storage:
        description: Storage for the disks of full clones; by default the template's own.
        type: str
      validate_certs:
        description: Verify the API's TLS certificate.
        type: bool
        default: true
      ca_bundle:
        description: CA bundle to verify the API's certificate with. Falls back to E(LXCRI_PROXMOX_CA_BUNDLE).
        type: path
"""
