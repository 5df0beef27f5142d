from ansible_collections.lxcri.cloud.plugins.module_utils.converge import plan
from ansible_collections.lxcri.cloud.plugins.module_utils.provider import record


def member(name, state="running", tags=None):
    return record("aws", name=name, deployment="web", id=f"id-{name}", state=state, tags=tags or {})


def spec(**kw):
    base = {"name": "web", "count": 1, "state": "present", "tags": {}, "purge_tags": True}
    base.update(kw)
    return base


def names(items):
    return [item if isinstance(item, str) else item["name"] for item in items]


def test_nothing_to_do_when_it_matches():
    steps = plan([member("web-1")], spec())
    assert not any(steps.values())


def test_scale_up_creates_the_missing_indexes_only():
    steps = plan([member("web-2")], spec(count=3))
    assert steps["create"] == ["web-1", "web-3"] and steps["delete"] == []


def test_scale_down_removes_the_highest_indexes():
    current = [member(f"web-{i}") for i in (1, 2, 10, 3)]
    steps = plan(current, spec(count=2))
    assert names(steps["delete"]) == ["web-3", "web-10"]


def test_tags_purged_or_merged():
    current = [member("web-1", tags={"a": "1", "b": "2"})]
    assert names(plan(current, spec(tags={"a": "1"}))["tag"]) == ["web-1"]
    assert plan(current, spec(tags={"a": "1"}, purge_tags=False))["tag"] == []


def test_power_states():
    current = [member("web-1", "stopped"), member("web-2", "running")]
    assert names(plan(current, spec(count=2, state="running"))["start"]) == ["web-1"]
    assert names(plan(current, spec(count=2, state="stopped"))["stop"]) == ["web-2"]
    restarted = plan(current, spec(count=2, state="restarted"))
    assert names(restarted["restart"]) == ["web-2"] and names(restarted["start"]) == ["web-1"]
    present = plan(current, spec(count=2))
    assert present["start"] == [] and present["stop"] == []


def test_absent_deletes_everything():
    steps = plan([member("web-1"), member("web-2")], spec(state="absent"))
    assert names(steps["delete"]) == ["web-1", "web-2"] and steps["create"] == []
