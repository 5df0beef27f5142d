"""Seed data of the DigitalOcean emulator: regions, sizes and public images (read-only, paginated)."""
from tests.sandbox.emulators.digitalocean_core import Response, Route, not_found, paginate

_FEATURES = ["backups", "ipv6", "metadata", "install_agent", "storage", "image_transfer"]

# slug, name, available
_REGIONS = [
    ("nyc1", "New York 1", True),
    ("nyc2", "New York 2", False),
    ("nyc3", "New York 3", True),
    ("sfo2", "San Francisco 2", True),
    ("sfo3", "San Francisco 3", True),
    ("ams2", "Amsterdam 2", False),
    ("ams3", "Amsterdam 3", True),
    ("sgp1", "Singapore 1", True),
    ("lon1", "London 1", True),
    ("fra1", "Frankfurt 1", True),
    ("tor1", "Toronto 1", True),
    ("blr1", "Bangalore 1", True),
    ("syd1", "Sydney 1", True),
]
AVAILABLE_REGIONS = [slug for slug, _, available in _REGIONS if available]

# slug, memory MiB, vcpus, disk GiB, transfer TiB, $/month, $/hour, description, regions (None = all)
_SIZES = [
    ("s-1vcpu-512mb-10gb", 512, 1, 10, 0.5, 4.0, 0.00595, "Basic", None),
    ("s-1vcpu-1gb", 1024, 1, 25, 1.0, 6.0, 0.00893, "Basic", None),
    ("s-1vcpu-2gb", 2048, 1, 50, 2.0, 12.0, 0.01786, "Basic", None),
    ("s-2vcpu-2gb", 2048, 2, 60, 3.0, 18.0, 0.02679, "Basic", None),
    ("s-2vcpu-4gb", 4096, 2, 80, 4.0, 24.0, 0.03571, "Basic", None),
    ("s-4vcpu-8gb", 8192, 4, 160, 5.0, 48.0, 0.07143, "Basic", None),
    ("s-8vcpu-16gb", 16384, 8, 320, 6.0, 96.0, 0.14286, "Basic", None),
    ("g-2vcpu-8gb", 8192, 2, 25, 4.0, 63.0, 0.09375, "General Purpose",
     ["nyc1", "nyc3", "sfo3", "ams3", "fra1", "lon1", "sgp1", "tor1", "blr1", "syd1"]),
    ("c-2", 4096, 2, 25, 4.0, 42.0, 0.0625, "CPU-Optimized", ["nyc1", "nyc3", "sfo3", "ams3", "fra1", "lon1"]),
]

# id, slug, name, distribution, type filter, created_at, min_disk_size, size_gigabytes, description
_IMAGES = [
    (160232537, "ubuntu-24-04-x64", "24.04 (LTS) x64", "Ubuntu", "distribution", "2024-07-24T13:38:48Z", 7, 2.63,
     "Ubuntu 24.04 (LTS) x64"),
    (129211873, "ubuntu-22-04-x64", "22.04 (LTS) x64", "Ubuntu", "distribution", "2023-04-21T15:39:51Z", 7, 2.34,
     "Ubuntu 22.04 (LTS) x64"),
    (139264926, "debian-12-x64", "12 x64", "Debian", "distribution", "2023-09-01T18:39:57Z", 7, 0.81,
     "Debian 12 x64 (bookworm)"),
    (160211467, "rockylinux-9-x64", "9 x64", "Rocky Linux", "distribution", "2024-07-10T16:07:26Z", 10, 0.92,
     "Rocky Linux 9 x64"),
    (153992367, "docker-20-04", "Docker on Ubuntu 22.04", "Ubuntu", "application", "2024-03-28T19:51:43Z", 25, 3.96,
     "Docker 25.0.3 on Ubuntu 22.04"),
]


def _build():
    sizes = {}
    for slug, memory, vcpus, disk, transfer, monthly, hourly, description, regions in _SIZES:
        sizes[slug] = {
            "slug": slug,
            "memory": memory,
            "vcpus": vcpus,
            "disk": disk,
            "transfer": transfer,
            "price_monthly": monthly,
            "price_hourly": hourly,
            "regions": sorted(regions or AVAILABLE_REGIONS),
            "available": True,
            "description": description,
            "disk_info": [{"type": "local", "size": {"amount": disk, "unit": "gib"}}],
        }
    regions = {}
    for slug, name, available in _REGIONS:
        regions[slug] = {
            "name": name,
            "slug": slug,
            "features": list(_FEATURES) if available else [],
            "available": available,
            "sizes": [s for s in sizes if slug in sizes[s]["regions"]] if available else [],
        }
    images = {}
    for image_id, slug, name, distribution, kind, created, min_disk, gigabytes, description in _IMAGES:
        images[image_id] = {
            "id": image_id,
            "name": name,
            "distribution": distribution,
            "slug": slug,
            "public": True,
            "regions": list(AVAILABLE_REGIONS),
            "created_at": created,
            "min_disk_size": min_disk,
            "type": "base",
            "size_gigabytes": gigabytes,
            "description": description,
            "tags": [],
            "status": "available",
            "error_message": "",
            "_kind": kind,
        }
    return sizes, regions, images


SIZES, REGIONS, IMAGES = _build()


def public_image(image):
    return {key: value for key, value in image.items() if not key.startswith("_")}


def find_image(ref):
    """An image by numeric id (int or digit string) or slug, else None."""
    if isinstance(ref, bool):
        return None
    if isinstance(ref, int) or (isinstance(ref, str) and ref.isdigit()):
        return IMAGES.get(int(ref))
    for image in IMAGES.values():
        if image["slug"] == ref:
            return image
    return None


def list_sizes(state, request):
    return paginate(request, list(SIZES.values()), "sizes")


def list_regions(state, request):
    return paginate(request, list(REGIONS.values()), "regions")


def list_images(state, request):
    kind = request.arg("type")
    private = (request.arg("private") or "").lower() == "true"
    tag = request.arg("tag_name")
    images = [
        public_image(image) for image in IMAGES.values()
        if (kind is None or image["_kind"] == kind) and not private and (tag is None or tag in image["tags"])
    ]
    return paginate(request, images, "images")


def get_image(state, request):
    image = find_image(request.params["image_id"])
    if image is None:
        raise not_found()
    return Response(200, {"image": public_image(image)})


ROUTES = [
    Route("GET", "/v2/sizes", "sizes.list", list_sizes),
    Route("GET", "/v2/regions", "regions.list", list_regions),
    Route("GET", "/v2/images", "images.list", list_images),
    Route("GET", "/v2/images/{image_id}", "images.get", get_image),
]
