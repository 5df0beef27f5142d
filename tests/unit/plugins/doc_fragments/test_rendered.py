"""The doc fragments rendered from the registry: YAML that ansible-doc merges, matching the argument spec."""
import yaml

from ansible_collections.lxcri.cloud.plugins.doc_fragments.connection import ModuleDocFragment as Connection
from ansible_collections.lxcri.cloud.plugins.doc_fragments.providers import ModuleDocFragment as Providers
from ansible_collections.lxcri.cloud.plugins.module_utils import registry, spec


def test_every_connection_field_is_documented_as_the_argument_spec_has_it():
    documented = yaml.safe_load(Connection.DOCUMENTATION)["options"]
    argument_spec = spec.connection_argument_spec()
    assert list(documented) == list(registry.NAMES)
    for name, option in argument_spec.items():
        fields = documented[name]["suboptions"]
        assert set(fields) == set(option["options"]), name
        for field, given in option["options"].items():
            assert fields[field]["type"] == given["type"] and fields[field].get("default") == given.get("default")
            for variable in (given.get("fallback") or (None, []))[1]:
                assert f"E({variable})" in fields[field]["description"], (name, field, variable)


def test_provider_choices_are_the_registry():
    assert yaml.safe_load(Providers.DOCUMENTATION) == {"options": {"provider": {"choices": list(registry.NAMES)}}}
    assert yaml.safe_load(Providers.INVENTORY)["options"]["providers"]["choices"] == list(registry.NAMES)
