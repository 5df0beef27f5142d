"""python -m tests.sandbox.conformance DIR: recordings written by the emulators' JsonlRecorder, checked
against the official descriptions; a violation names provider, method, path template and field."""
import json
import os
import subprocess
import sys
import threading
import time
import urllib.request

import pytest

from tests.sandbox import conformance
from tests.sandbox.emulators import digitalocean, gcp
from tests.sandbox.runtime import ROOT

needs_specs = pytest.mark.skipif(
    not all(path.is_file() for path in conformance.SPEC_FILES.values()),
    reason=f"specs not found under {conformance.SPECS_DIR} (set SANDBOX_SPECS_DIR)")
TOKEN = "dop_v1_conformance_cli"


def _served(server):
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}"


def _call(url, method="GET", body=None, token=TOKEN):
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers={
        "Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.status


def _lines(path, count=None):
    """The records of a file; with count, once that many are there (an emulator records an exchange
    after answering it, so the client may be faster than the record)."""
    deadline = time.monotonic() + 10
    while True:
        with open(path, encoding="utf-8") as handle:
            records = [json.loads(line) for line in handle]
        if count is None or len(records) >= count or time.monotonic() > deadline:
            return records
        time.sleep(0.01)


def _write(path, records):
    with open(path, "w", encoding="utf-8") as handle:
        handle.writelines(json.dumps(record) + "\n" for record in records)


@pytest.fixture
def recorded(tmp_path, monkeypatch):
    """A record directory as a sandbox run leaves it, with one good and one broken DigitalOcean exchange
    and one broken GCP response (recorded by the emulators, then corrupted)."""
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    do_server = digitalocean.make_server("127.0.0.1", 0, token=TOKEN,
                                         recorder=conformance.JsonlRecorder(tmp_path / "digitalocean.jsonl"))
    gcp_server = gcp.make_server("127.0.0.1", 0, recorder=conformance.JsonlRecorder(tmp_path / "gcp.jsonl"))
    try:
        do_url, gcp_url = _served(do_server), _served(gcp_server)
        assert _call(do_url + "/v2/tags", "POST", {"name": "env:test"}) == 201
        assert _call(do_url + "/v2/tags/env%3Atest") == 200  # pydo's spelling of a tag with a colon
        assert _call(gcp_url + "/compute/v1/projects/lxcri-sandbox/zones/us-central1-a") == 200
    finally:
        for server in (do_server, gcp_server):
            server.shutdown()
            server.server_close()

    (good,) = [r for r in _lines(tmp_path / "digitalocean.jsonl", 2) if r["method"] == "GET"]
    assert good["request_headers"]["Authorization"] == "Bearer <redacted>"  # no live token on disk
    bad = json.loads(json.dumps(good))
    body = json.loads(bad["response_body"])
    body["tag"]["resources"]["count"] = "many"
    bad["response_body"] = json.dumps(body)
    _write(tmp_path / "digitalocean.jsonl", [good, bad])

    (zone,) = _lines(tmp_path / "gcp.jsonl", 1)
    zone["response"]["id"] = int(zone["response"]["id"])  # uint64 must be a JSON string
    _write(tmp_path / "gcp.jsonl", [zone])
    return tmp_path


@needs_specs
def test_recorded_violations_name_provider_path_and_field(recorded):
    done = subprocess.run([sys.executable, "-m", "tests.sandbox.conformance", "--providers", "gcp digitalocean",
                           str(recorded)], cwd=ROOT, env=dict(os.environ, PYTHONPATH=ROOT),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert ("digitalocean: 2 exchanges checked (0 outside the API skipped), 1 operations seen, "
            "1 violations (1 distinct)") in lines
    assert "gcp: 1 exchanges checked (0 outside the API skipped), 1 operations seen, 1 violations (1 distinct)" in lines
    violations = [line for line in lines if line.startswith(("digitalocean ", "gcp "))]
    assert violations == [
        "digitalocean GET /v2/tags/{tag_id}: tag.resources.count: 'many' is not of type 'integer'",
        "gcp GET /compute/v1/projects/{project}/zones/{zone}: $.id: expected string, got int "
        f"{int(_lines(recorded / 'gcp.jsonl')[0]['response']['id'])} (uint64 values are JSON strings)",
    ]


@needs_specs
def test_a_clean_recording_passes_and_repeats_are_counted_once(recorded, capsys):
    good, bad = _lines(recorded / "digitalocean.jsonl")
    os.remove(recorded / "gcp.jsonl")
    _write(recorded / "digitalocean.jsonl", [good])
    assert conformance.main([str(recorded)]) == 0
    assert "digitalocean: 1 exchanges checked (0 outside the API skipped), 1 operations seen, 0 violations" \
        in capsys.readouterr().out

    _write(recorded / "digitalocean.jsonl", [good, bad, bad, bad])
    assert conformance.main([str(recorded)]) == 1
    assert ("digitalocean GET /v2/tags/{tag_id}: tag.resources.count: 'many' is not of type 'integer' (x3)"
            in capsys.readouterr().out.splitlines())


@needs_specs
def test_a_provider_that_must_be_there_but_recorded_nothing_is_an_error(recorded, capsys):
    os.remove(recorded / "gcp.jsonl")
    _write(recorded / "digitalocean.jsonl", [_lines(recorded / "digitalocean.jsonl")[0]])
    assert conformance.main(["--providers", "aws gcp digitalocean", str(recorded)]) == 2
    assert f"gcp: nothing recorded at {recorded / 'gcp.jsonl'}" in capsys.readouterr().err
    assert conformance.main(["--providers", "aws digitalocean", str(recorded)]) == 0
    assert conformance.main([str(recorded / "missing")]) == 2
    os.remove(recorded / "digitalocean.jsonl")
    assert conformance.main([str(recorded)]) == 2  # saw nothing: not a pass


@pytest.mark.skipif(not conformance.GCP_MORE_SPECS[0].is_file(), reason="run.v2.json not found")
def test_cloud_run_enums_as_numbers_are_accepted_only_when_asked_for_and_in_range():
    service = "/v2/projects/p/locations/us-central1/services/web"
    record = {"method": "GET", "path": service, "status": 200, "request": None,
              "query": {"$alt": ["json;enum-encoding=int"]}, "response": {"ingress": 1, "launchStage": 99}}
    report = conformance.check_gcp([record, dict(record, query={})])
    assert report.lines() == [
        "gcp GET /v2/projects/{projectsId}/locations/{locationsId}/services/{servicesId}: $.ingress: "
        "expected string, got int 1",
        "gcp GET /v2/projects/{projectsId}/locations/{locationsId}/services/{servicesId}: $.launchStage: "
        "expected string, got int 99 (x2)",
    ]


def test_without_the_specs_the_check_is_skipped_with_a_message(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(conformance, "SPECS_DIR", tmp_path / "no-specs")
    assert conformance.main([str(tmp_path)]) == 0
    assert capsys.readouterr().out == f"conformance: skipped: ../shared/specs not found at {tmp_path / 'no-specs'} " \
                                      "(set SANDBOX_SPECS_DIR to check)\n"
