import pytest

from ansible_collections.lxcri.cloud.plugins.module_utils import catalog
from ansible_collections.lxcri.cloud.plugins.module_utils.spec import PROVIDERS


@pytest.mark.parametrize("provider", PROVIDERS)
def test_every_provider_maps_every_portable_size_and_image(provider):
    assert set(catalog.SIZES[provider]) == set(catalog.PORTABLE_SIZES)
    assert set(catalog.IMAGES[provider]) == set(catalog.PORTABLE_IMAGES)


@pytest.mark.parametrize("provider", PROVIDERS)
def test_portable_sizes_grow(provider):
    natives = [catalog.native_size(provider, size) for size in catalog.PORTABLE_SIZES]
    assert len(set(natives)) == len(natives)
    prices = [catalog.hourly_cost(provider, native) for native in natives]
    if provider != "proxmox":
        assert prices == sorted(prices) and all(prices)


def test_native_values_pass_through_and_map_back():
    assert catalog.native_size("aws", "medium") == "t3.medium"
    assert catalog.native_size("aws", "m7g.large") == "m7g.large"
    assert catalog.portable_size("aws", "t3.medium") == "medium"
    assert catalog.portable_size("aws", "m7g.large") is None
    assert catalog.native_image("digitalocean", "debian-12") == "debian-12-x64"
    assert catalog.native_image("proxmox", "my-template") == "my-template"
    assert catalog.portable_image("gcp", catalog.IMAGES["gcp"]["ubuntu-22.04"]) == "ubuntu-22.04"


def test_unknown_price_is_none():
    assert catalog.hourly_cost("aws", "x9.huge") is None
    assert catalog.hourly_cost("proxmox", "2c4096m") is None
