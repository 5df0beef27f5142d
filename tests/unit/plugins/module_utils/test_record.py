import datetime

import pytest

from ansible_collections.lxcri.cloud.plugins.module_utils.provider import RECORD_FIELDS, iso_utc, record


def test_every_field_is_present_and_portable_values_are_filled_in():
    rec = record("aws", name="web-1", state="running", native_size="t3.medium")
    assert set(rec) == set(RECORD_FIELDS)
    assert rec["provider"] == "aws" and rec["kind"] == "vm"
    assert rec["size"] == "medium" and rec["hourly_cost"] == 0.0416
    assert rec["tags"] == {} and rec["public_ip"] is None


def test_unknown_states_become_unknown_and_terminated_costs_nothing():
    assert record("gcp", state="SUSPENDING")["state"] == "unknown"
    assert record("aws", state="terminated", native_size="t3.small")["hourly_cost"] is None


def test_unknown_fields_are_refused():
    with pytest.raises(ValueError):
        record("aws", ip="1.2.3.4")


@pytest.mark.parametrize("value", [
    datetime.datetime(2026, 11, 26, 11, 0, tzinfo=datetime.timezone(datetime.timedelta(hours=1))),
    "2026-11-26T10:00:00Z",
    "2026-11-26T10:00:00.000+00:00",
    1795687200,
])
def test_iso_utc(value):
    assert iso_utc(value) == "2026-11-26T10:00:00Z"
