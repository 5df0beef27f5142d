import pytest

from ansible_collections.lxcri.cloud.plugins.module_utils import monitoring
from ansible_collections.lxcri.cloud.plugins.module_utils.provider import Provider
from ansible_collections.lxcri.cloud.plugins.module_utils.spec import SpecError

ALARM = {
    "name": "web-cpu", "state": "present", "metric": "cpu", "comparison": "above", "threshold": "80",
    "period": "5m", "evaluation_periods": 2, "statistic": "average", "deployments": ["web", "api", "web"],
    "kind": None, "notify": {"emails": ["ops@example.com"], "webhooks": ["https://hooks.example.com/T0/secret"]},
    "tags": {"team": "web"}, "description": None,
}


@pytest.mark.parametrize("value, seconds", [(300, 300), ("300", 300), ("90s", 90), ("5m", 300), ("1h", 3600), ("2d", 172800)])
def test_duration_accepts_seconds_and_units(value, seconds):
    assert monitoring.duration("window", value) == seconds


@pytest.mark.parametrize("value", ["", "5x", "-5m", "0", None, "1.5h"])
def test_duration_names_the_option(value):
    with pytest.raises(SpecError, match="^window .* is not a duration"):
        monitoring.duration("window", value)


def test_time_range_is_whole_periods_back_from_now():
    start, end, period = monitoring.time_range("1h", "5m", now=10_000)
    assert (start, end, period) == (9_900 - 3600, 9_900, 300)


@pytest.mark.parametrize("window, period, message", [
    ("1h", "90s", "whole number of minutes"), ("1m", "5m", "at least one period"), ("30d", "1m", "at most 1440"),
])
def test_time_range_refuses_what_no_provider_serves(window, period, message):
    with pytest.raises(SpecError, match=message):
        monitoring.time_range(window, period)


def test_unknown_metric_lists_the_portable_ones():
    with pytest.raises(SpecError, match="unknown metric gpu: use one of cpu, memory, network_in"):
        monitoring.validate_metrics(["cpu", "gpu"])
    assert monitoring.validate_metrics(None) == list(monitoring.DEFAULT_METRICS)


def test_summarize_gives_latest_average_max_in_time_order():
    answer = monitoring.series("CPUUtilization", "Percent", [(120, 30.0), (60, 10.0), (180, float("nan"))])
    out = monitoring.summarize("cpu", answer)
    assert out["unit"] == "percent" and out["native_name"] == "CPUUtilization"
    assert [p["value"] for p in out["points"]] == [10.0, 30.0]
    assert (out["latest"], out["average"], out["max"], out["reason"]) == (30.0, 20.0, 30.0, None)


def test_summarize_missing_metric_is_null_with_the_reason():
    out = monitoring.summarize("memory", monitoring.missing("needs the agent"))
    assert out["points"] is None and out["latest"] is None and out["reason"] == "needs the agent"
    empty = monitoring.summarize("cpu", monitoring.series("x", "Percent", []))
    assert empty["points"] == [] and empty["reason"] == "no data points in the window"


def test_resample_averages_or_sums_each_period():
    samples = [(0, 1.0), (60, 3.0), (120, 5.0), (180, None), (300, 7.0)]
    assert monitoring.resample(samples, 0, 300, 120) == [(0, 2.0), (120, 5.0)]
    assert monitoring.resample(samples, 0, 360, 180, how="sum") == [(0, 9.0), (180, 7.0)]


class Cloud(Provider):
    name = "aws"

    def __init__(self, series_by_member=None):
        super().__init__({})
        self.series_by_member = series_by_member or {}

    def find(self, name, region, kind="vm"):
        return [{"name": member, "id": member} for member in self.series_by_member if member.startswith(name)]

    def metrics(self, records, names, start, end, period):
        return [{"cpu": monitoring.series("cpu", "Percent", self.series_by_member[rec["name"]])} for rec in records]


def test_validate_alarm_normalizes_the_portable_spec():
    alarm = monitoring.validate_alarm(ALARM, Cloud)
    assert alarm["threshold"] == 80.0 and alarm["period"] == 300 and alarm["kind"] == "vm"
    assert alarm["deployments"] == ["api", "web"]
    assert alarm["notify"]["emails"] == ["ops@example.com"] and alarm["description"] == ""


@pytest.mark.parametrize("change, message", [
    ({"metric": "gpu"}, "metric 'gpu' is not a portable metric: use one of cpu, memory"),
    ({"threshold": "high"}, "threshold must be a number, got 'high'"),
    ({"threshold": None}, "threshold must be a number"),
    ({"threshold": "nan"}, "threshold must be a finite number"),
    ({"period": "30s"}, "period must be a whole number of minutes"),
    ({"evaluation_periods": 0}, "evaluation_periods must be 1 or more"),
    ({"deployments": []}, "deployments is required"),
    ({"deployments": ["Web"]}, "deployments 'Web' is not valid"),
    ({"notify": {"emails": ["ops"]}}, "notify.emails: 'ops' is not an email address"),
    ({"notify": {"webhooks": ["ftp://hooks.example.com/T0/secret"]}}, "notify.webhooks: ftp://hooks.example.com/"),
    ({"tags": {"lxcri-alarm": "x"}}, "reserved"),
])
def test_validate_alarm_names_the_bad_option(change, message):
    with pytest.raises(SpecError, match=message.replace(".", r"\.").replace("(", r"\(")):
        monitoring.validate_alarm(dict(ALARM, **change), Cloud)


def test_a_webhook_never_shows_its_path():
    shown = monitoring.redact_webhook("https://hooks.example.com/T0/secret?token=abc")
    assert "secret" not in shown and "abc" not in shown and shown.startswith("https://hooks.example.com/")
    with pytest.raises(SpecError) as error:
        monitoring.validate_alarm(dict(ALARM, notify={"webhooks": ["mailto:secret"]}), Cloud)
    assert "secret" not in str(error.value)


def test_alarm_config_ignores_conversion_noise_and_state():
    spec = monitoring.validate_alarm(ALARM, Cloud)
    wanted = monitoring.alarm_record("aws", targets=["i-2", "i-1"], **{k: spec[k] for k in monitoring.ALARM_CONFIG if k != "targets"})
    read_back = dict(wanted, threshold=80.0000000001, targets=["i-1", "i-2"], state="alarm", id="arn")
    assert monitoring.alarm_config(read_back) == monitoring.alarm_config(wanted)
    assert monitoring.alarm_config(dict(read_back, threshold=81)) != monitoring.alarm_config(wanted)


def test_evaluated_state_needs_every_recent_period_to_breach():
    alarm = monitoring.alarm_record("aws", name="web-cpu", region="r", metric="cpu", comparison="above", threshold=50,
                                    period=60, evaluation_periods=2, deployments=["web"], kind="vm")
    firing = Cloud({"web-1": [(0, 10.0)], "web-2": [(0, 10.0), (60, 60.0), (120, 70.0)]})
    state, reason = firing.evaluated_state(alarm, now=180)
    assert state == "alarm" and "web-2" in reason
    assert Cloud({"web-1": [(0, 90.0), (60, 40.0)]}).evaluated_state(alarm, now=180)[0] == "ok"
    assert Cloud({"web-1": [(0, 90.0)]}).evaluated_state(alarm, now=180)[0] == "insufficient_data"
    assert Cloud({}).evaluated_state(alarm, now=180)[0] == "insufficient_data"


def test_removing_checks_only_the_name_and_hands_the_provider_no_more():
    seen = []

    class Strict(Cloud):
        @classmethod
        def validate_alarm(cls, alarm):
            seen.append(alarm)

    alarm = monitoring.validate_alarm(dict(ALARM, state="absent", threshold="high", period=None), Strict)
    assert alarm == seen[0] == {"name": "web-cpu", "state": "absent", "kind": "vm", "tags": {"team": "web"}}
