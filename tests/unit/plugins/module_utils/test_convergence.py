"""Convergence through the real Provider base and an in-memory cloud: plan, act, converge again with no
change, partial failure and the rollback of what the task made, the one deadline, dispatch by kind."""
import pytest

from ansible_collections.lxcri.cloud.plugins.module_utils.converge import Convergence
from ansible_collections.lxcri.cloud.plugins.module_utils.provider import ProviderError
from ansible_collections.lxcri.cloud.plugins.module_utils.wait import Deadline, WaitTimeout
from memory_provider import Cloud, MemoryProvider, spec


@pytest.fixture
def cloud():
    return Cloud()


def run(cloud, check_mode=False, deadline=None, **changes):
    wanted = spec(**changes)
    provider = MemoryProvider({"cloud": cloud}, deadline=deadline or Deadline(wanted["wait_timeout"], "wait_timeout"))
    return Convergence(provider, wanted, check_mode=check_mode).run()


def members(cloud):
    return sorted((res["name"], res["state"]) for res in cloud.resources.values() if res["kind"] == "vm")


def test_creates_the_members_then_changes_nothing(cloud):
    first = run(cloud, count=3, tags={"env": "prod"})
    assert first["changed"] and first["actions"] == {"create": ["web-1", "web-2", "web-3"]}
    assert [rec["name"] for rec in first["deployments"]] == ["web-1", "web-2", "web-3"]
    assert all(rec["tags"] == {"env": "prod"} and rec["state"] == "running" for rec in first["deployments"])
    calls = len(cloud.calls)
    again = run(cloud, count=3, tags={"env": "prod"})
    assert not again["changed"] and again["actions"] == {} and len(cloud.calls) == calls


def test_check_mode_predicts_and_touches_nothing(cloud):
    result = run(cloud, check_mode=True, count=2)
    assert result["changed"] and [rec["name"] for rec in result["deployments"]] == ["web-1", "web-2"]
    assert cloud.resources == {} and cloud.calls == []


def test_scale_down_retag_and_power_touch_only_what_differs(cloud):
    run(cloud, count=3)
    result = run(cloud, count=2, tags={"team": "a"}, state="stopped")
    assert result["actions"] == {"delete": ["web-3"], "tag": ["web-1", "web-2"], "stop": ["web-1", "web-2"]}
    assert members(cloud) == [("web-1", "stopped"), ("web-2", "stopped")]
    assert not run(cloud, count=2, tags={"team": "a"}, state="stopped")["changed"]


def test_a_partial_create_removes_what_this_task_made_and_says_so(cloud):
    run(cloud, count=1)
    cloud.fail_create.add("web-3")
    with pytest.raises(ProviderError) as err:
        run(cloud, count=4)
    message = str(err.value)
    assert "creating web-3 failed: quota" in message
    assert "the members this task had made were removed again: web-2, web-4" in message
    assert members(cloud) == [("web-1", "running")]  # what was there before the task stays


def test_a_rollback_that_fails_names_what_is_left(cloud):
    cloud.fail_create.add("web-2")
    cloud.fail_delete.add("web-1")
    with pytest.raises(ProviderError) as err:
        run(cloud, count=2)
    assert "removing the members this task had made failed" in str(err.value)
    assert "web-1 (deleting web-1 failed: locked)" in str(err.value)
    assert members(cloud) == [("web-1", "running")]


def test_nothing_made_is_a_plain_failure(cloud):
    cloud.fail_create.add("web-1")
    with pytest.raises(ProviderError, match="^creating web-1 failed: quota$"):
        run(cloud, count=1)
    assert cloud.resources == {}


def test_wait_timeout_bounds_the_wait_and_names_what_was_awaited(cloud):
    cloud.stuck.add("web-1")
    with pytest.raises(WaitTimeout, match=r"timed out after 0.2s \(wait_timeout\) waiting for web-1 to be running or stopped"):
        run(cloud, wait_timeout=0.2, deadline=Deadline(0.2, "wait_timeout"))


def test_one_deadline_for_every_wait_of_the_task(cloud):
    deadline = Deadline(0.2, "wait_timeout")
    provider = MemoryProvider({"cloud": cloud}, deadline=deadline)
    assert provider.deadline is deadline
    assert deadline.within(60) is deadline and deadline.within(0.01).seconds == 0.01


def test_services_converge_by_their_settings(cloud):
    container = {"image": "nginx:1", "port": 80, "env": {}, "secret_env": {}, "cpu": 0.25, "memory": 512,
                 "command": [], "public": True}
    first = run(cloud, kind="container", container=container)
    assert first["actions"] == {"create": ["web"]} and first["deployments"][0]["kind"] == "container"
    assert not run(cloud, kind="container", container=container)["changed"]
    changed = run(cloud, kind="container", container=dict(container, image="nginx:2"))
    assert changed["changes"] == ["image"] and changed["actions"] == {"update": ["web"]}
    gone = run(cloud, kind="container", container=container, state="absent")
    assert gone["actions"] == {"delete": ["web"]} and cloud.resources == {}


def test_a_vm_and_a_service_of_one_name_never_see_each_other(cloud):
    container = {"image": "nginx:1", "port": 80, "env": {}, "secret_env": {}, "cpu": 0.25, "memory": 512,
                 "command": [], "public": True}
    run(cloud, count=2)
    run(cloud, kind="container", container=container)
    assert run(cloud, state="absent")["actions"] == {"delete": ["web-1", "web-2"]}
    assert [res["kind"] for res in cloud.resources.values()] == ["container"]


def test_the_base_dispatches_mixed_records_to_each_kind(cloud):
    container = {"image": "nginx:1", "port": 80, "env": {}, "secret_env": {}, "cpu": 0.25, "memory": 512,
                 "command": [], "public": True}
    run(cloud, count=1)
    run(cloud, kind="container", container=container)
    provider = MemoryProvider({"cloud": cloud})
    everything = provider.list("r1")
    assert sorted(rec["kind"] for rec in everything) == ["container", "vm"]
    provider.stop(everything)
    assert {res["state"] for res in cloud.resources.values()} == {"stopped"}
    assert sorted(rec["name"] for rec in provider.refresh(everything)) == ["web", "web-1"]
    with pytest.raises(ProviderError, match="kind 'function' is not supported on memory"):
        provider.find("web", "r1", "function")
