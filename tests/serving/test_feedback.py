"""POST /feedback and its log: validation and the written lines in-process, the route answering
as a BentoML API would, the group-commit writer on its own (batching, rotation, a failed write,
the reader), and a real `bentoml serve` stopped by SIGTERM under load without losing an
accepted event."""

from __future__ import annotations

import asyncio
import concurrent.futures
import errno
import json
import os
import re
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from recsys.serving.feedback import (
    DIR_ENV,
    FIELDS,
    MAX_BYTES_ENV,
    FeedbackLog,
    encode_events,
    read_events,
    settings,
)
from recsys.serving.local import PROJECT_ROOT, start_server, stop_server, wait_ready
from tests.conftest import BIN
from tests.helpers import free_port

CLICK = {"type": "click", "user_id": "u", "item_id": "i"}
FILE_NAME = re.compile(r"^events-\d{8}T\d{6}-[A-Za-z0-9._-]+-\d+-\d{4}\.jsonl$")


def events_of(directory: Path, user: str) -> list[dict]:
    return [event for event in read_events(directory) if event["user_id"] == user]


def sample(name: str, labels: dict[str, str]) -> float:
    """The in-process value of one of the service's Prometheus series (0 when never set)."""
    from prometheus_client import REGISTRY

    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.fixture(scope="module")
def version(client) -> str:
    return client.get("/readyz").json()["model_version"]


# --- The endpoint, in-process ---------------------------------------------------------------


def test_feedback_is_logged_with_the_serving_version(client, feedback_dir, packaged, version):
    before = time.time_ns() // 1_000_000
    events = [
        {**CLICK, "user_id": "fb-user", "request_id": "r1", "timestamp": 1_760_000_000_000,
         "model_version": "7"},
        {"type": "impression", "user_id": "fb-user", "item_id": "never-seen-item"},
    ]  # fmt: skip
    response = client.post("/feedback", json={"events": events})
    assert response.status_code == 200, response.text
    assert response.json() == {"accepted": 2}
    click, impression = events_of(feedback_dir, "fb-user")
    assert list(click) == list(FIELDS) == list(impression)
    assert click == {
        **CLICK, "user_id": "fb-user", "request_id": "r1", "timestamp": 1_760_000_000_000,
        "model_version": "7", "served_by": version, "received_at": click["received_at"],
    }  # fmt: skip
    assert before <= click["received_at"] <= time.time_ns() // 1_000_000
    # Absent fields: null request_id, the receive time, the serving model's version.
    assert impression["request_id"] is None
    assert impression["timestamp"] == impression["received_at"]
    assert impression["model_version"] == impression["served_by"] == version
    assert version == packaged.split(":")[1]  # a checkpoint's model: the tag's version part
    assert all(FILE_NAME.match(path.name) for path in feedback_dir.glob("*.jsonl"))


def test_accepted_events_are_counted_by_type_and_version(client, version):
    labels = {"type": "purchase", "model_version": version}
    before = sample("recsys_feedback_events_total", labels)
    other = sample("recsys_feedback_events_total", {"type": "purchase", "model_version": "41"})
    body = {"events": [{**CLICK, "type": "purchase"}] * 3 + [
        {**CLICK, "type": "purchase", "model_version": "41"}]}  # fmt: skip
    assert client.post("/feedback", json=body).status_code == 200
    assert sample("recsys_feedback_events_total", labels) == before + 3
    assert sample(
        "recsys_feedback_events_total", {"type": "purchase", "model_version": "41"}
    ) == other + 1  # fmt: skip


def test_recommendation_lists_are_counted_by_endpoint_version_and_fallback(client, version):
    def count(endpoint: str, fallback: str) -> float:
        labels = {"endpoint": endpoint, "model_version": version, "fallback": fallback}
        return sample("recsys_recommendations_total", labels)

    cold = count("recommend_batch", "popular")
    client.post("/recommend_batch", json={"user_ids": ["cold-a", "cold-b"], "k": 2})
    assert count("recommend_batch", "popular") == cold + 2
    cold = count("recommend", "popular")
    client.post("/recommend", json={"user_id": "cold-c", "k": 2})
    assert count("recommend", "popular") == cold + 1
    model = client.get("/readyz").json()["model"]
    assert sample("recsys_model_info", {"model": model, "model_version": version}) == 1


def test_readyz_names_the_model_it_serves(client, packaged, version):
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"status": "ready", "model": packaged, "model_version": version}


def test_a_failed_write_is_a_503_logged_and_not_counted(
    client, feedback_dir, version, monkeypatch, caplog
):
    def disk_full(self, data: bytes) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(FeedbackLog, "_write", disk_full)
    labels = {"type": "click", "model_version": version}
    before = sample("recsys_feedback_events_total", labels)
    response = client.post("/feedback", json={"events": [{**CLICK, "user_id": "full-disk"}]})
    assert response.status_code == 503
    assert "No space left on device" in response.json()["error"]
    assert sample("recsys_feedback_events_total", labels) == before
    assert events_of(feedback_dir, "full-disk") == []
    assert f"1 event(s) not written to {feedback_dir}" in caplog.text


BAD_FEEDBACK = [
    ({}, "events"),
    ({"events": []}, "events"),
    ({"events": [CLICK] * 1001}, "events"),
    ({"events": CLICK}, "events"),
    ({"events": [CLICK], "source": "web"}, "source"),
    ({"events": [{**CLICK, "type": "like"}]}, "type"),
    ({"events": [{**CLICK, "type": None}]}, "type"),
    ({"events": [{"type": "click", "item_id": "i"}]}, "user_id"),
    ({"events": [{**CLICK, "item_id": 3}]}, "item_id"),
    ({"events": [{**CLICK, "user_id": ""}]}, "user_id"),
    ({"events": [{**CLICK, "item_id": "x" * 513}]}, "item_id"),
    ({"events": [{**CLICK, "request_id": ""}]}, "request_id"),
    ({"events": [{**CLICK, "model_version": 3}]}, "model_version"),
    ({"events": [{**CLICK, "timestamp": 1_760_000_000}]}, "timestamp"),  # seconds
    ({"events": [{**CLICK, "timestamp": "1760000000000"}]}, "timestamp"),
    ({"events": [{**CLICK, "timestamp": 1_760_000_000_000.5}]}, "timestamp"),
    ({"events": [{**CLICK, "timestamp": 5_000_000_000_000}]}, "timestamp"),  # year 2128
    ({"events": [{**CLICK, "clicked": True}]}, "clicked"),
    ({"events": ["click"]}, "events"),
]


@pytest.mark.parametrize(("body", "field"), BAD_FEEDBACK)
def test_bad_feedback_is_a_400_naming_the_field(client, body, field):
    response = client.post("/feedback", json=body)
    assert response.status_code == 400, response.text
    assert any(field in map(str, error["loc"]) for error in response.json()["detail"])


# --- The route in front of BentoML answers as a BentoML API ---------------------------------

INVALID = re.compile(r"^(\d+) validation error for (\w+)IODescriptor$")


def test_the_route_answers_as_the_bentoml_apis_do(client):
    """/feedback skips BentoML's API machinery (FeedbackRoute); its 400 body, its headers and
    its reading of an empty body are still those of a BentoML API such as /recommend."""
    from recsys.serving.service import RecommenderService

    assert "feedback" not in RecommenderService.apis
    api = client.post("/recommend", json={"user_id": "u", "k": 0})
    ours = client.post("/feedback", json={"events": [{"type": "click"}]})
    assert api.status_code == ours.status_code == 400
    assert INVALID.match(api.json()["error"])[2] == "RecommendRequest"
    assert INVALID.match(ours.json()["error"]).groups() == ("2", "FeedbackRequest")
    assert [e["loc"] for e in ours.json()["detail"]] == [
        ["events", 0, f] for f in ("user_id", "item_id")
    ]
    for error in api.json()["detail"] + ours.json()["detail"]:
        assert set(error) == {"type", "loc", "msg", "url"}  # never the input
    accepted = client.post("/feedback", json={"events": [CLICK]})
    for response in (api, ours, accepted):
        assert response.headers["server"] == "BentoML Service/recsys"
        assert re.fullmatch(r"[0-9a-f]{16}", response.headers["x-bentoml-request-id"])
        assert response.headers["content-type"] == "application/json"
    empty = client.post("/feedback", content=b"", headers={"content-type": "application/json"})
    assert [(e["type"], e["loc"]) for e in empty.json()["detail"]] == [("missing", ["events"])]


def test_other_methods_are_a_405_and_a_trailing_slash_redirects(client):
    for method in ("GET", "PUT", "DELETE", "HEAD"):
        api, ours = client.request(method, "/recommend"), client.request(method, "/feedback")
        assert ours.status_code == api.status_code == 405, method
        assert ours.headers["allow"] == api.headers["allow"] == "POST"
        assert ours.content == api.content
    for path in ("/recommend/", "/feedback/"):
        response = client.post(path, json={"events": [CLICK]}, follow_redirects=False)
        assert response.status_code == 307
        assert response.headers["location"] == f"http://testserver{path[:-1]}"


def test_an_unexpected_error_is_a_logged_500(client, feedback_dir, monkeypatch, caplog):
    def broken(*args, **kwargs):
        raise ValueError("a bug")

    monkeypatch.setattr("recsys.serving.feedback_route.encode_events", broken)
    response = client.post("/feedback", json={"events": [{**CLICK, "user_id": "bug"}]})
    assert response.status_code == 500
    assert response.json() == {
        "error": "An unexpected error has occurred, please check the server log."
    }
    assert "ValueError: a bug" in caplog.text
    assert events_of(feedback_dir, "bug") == []


def test_a_process_opens_one_feedback_log(tmp_path):
    from recsys.serving.feedback_route import FeedbackEndpoint

    endpoint = FeedbackEndpoint()
    endpoint.open(FeedbackLog(tmp_path, 100), "1", counter=None)
    with pytest.raises(RuntimeError, match="feedback log is open already"):
        endpoint.open(FeedbackLog(tmp_path, 100), "1", counter=None)


# --- The writer on its own ------------------------------------------------------------------


def lines(*names: str) -> bytes:
    return encode_events([{**CLICK, "user_id": name} for name in names], "v1", 1_700_000_000_000)


def test_concurrent_appends_share_fsyncs_and_stay_whole(tmp_path, monkeypatch):
    syncs = []
    real = os.fdatasync
    monkeypatch.setattr(os, "fdatasync", lambda fd: (syncs.append(fd), real(fd))[1])

    async def main() -> None:
        log = FeedbackLog(tmp_path, 2**20)
        await asyncio.gather(*(log.append(lines(f"a{i}", f"b{i}")) for i in range(200)))
        await log.aclose()

    asyncio.run(main())
    events = list(read_events(tmp_path))
    assert len(events) == 400 and len(list(tmp_path.glob("*.jsonl"))) == 1
    # Each request's lines are adjacent: batches never split or interleave one.
    users = [event["user_id"] for event in events]
    assert all(users[i + 1] == "b" + users[i][1:] for i in range(0, 400, 2))
    assert 1 <= len(syncs) <= 20  # group commit: far fewer fsyncs than requests


def test_files_rotate_by_size_and_each_holds_whole_lines(tmp_path):
    one = len(lines("u000"))

    async def main() -> None:
        log = FeedbackLog(tmp_path, 3 * one)
        for i in range(10):
            await log.append(lines(f"u{i:03d}"))
        await log.aclose()

    asyncio.run(main())
    files = sorted(tmp_path.glob("*.jsonl"))
    assert [p.stat().st_size for p in files] == [3 * one, 3 * one, 3 * one, one]
    assert all(FILE_NAME.match(p.name) for p in files)
    assert [e["user_id"] for e in read_events(tmp_path)] == [f"u{i:03d}" for i in range(10)]


def test_a_failed_write_is_cut_off_and_writing_resumes_in_a_new_file(tmp_path, monkeypatch):
    real = os.fdatasync
    failing = threading.Event()

    def fdatasync(fd: int) -> None:
        if failing.is_set():
            raise OSError(errno.EIO, "Input/output error")
        real(fd)

    monkeypatch.setattr(os, "fdatasync", fdatasync)

    async def main() -> None:
        log = FeedbackLog(tmp_path, 2**20)
        await log.append(lines("kept"))
        failing.set()
        with pytest.raises(OSError, match="Input/output error"):
            await log.append(lines("failed-1", "failed-2"))
        failing.clear()
        await log.append(lines("after"))
        await log.aclose()

    asyncio.run(main())
    first, second = sorted(tmp_path.glob("*.jsonl"), key=lambda p: p.name[-10:])
    assert first.read_bytes() == lines("kept")  # the failed batch was truncated away
    assert second.read_bytes() == lines("after")


def test_the_reader_skips_a_torn_last_line(tmp_path):
    (tmp_path / "events-a.jsonl").write_bytes(lines("whole") + b'{"type":"cli')
    (tmp_path / "events-b.jsonl").write_bytes(lines("next"))
    (tmp_path / "notes.txt").write_text("not an event file\n")
    assert [e["user_id"] for e in read_events(tmp_path)] == ["whole", "next"]


def test_closing_writes_what_is_pending(tmp_path):
    async def main() -> None:
        log = FeedbackLog(tmp_path, 2**20)
        pending = [asyncio.create_task(log.append(lines(f"u{i}"))) for i in range(50)]
        await asyncio.sleep(0)  # they are queued, not written
        await log.aclose()
        await asyncio.gather(*pending)

    asyncio.run(main())
    assert len(list(read_events(tmp_path))) == 50


def test_bad_settings_fail_naming_the_variable(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(RuntimeError, match=f"{DIR_ENV}={blocker}/log: cannot write"):
        FeedbackLog(blocker / "log", 100)
    for bad in ("0", "64MiB"):
        with pytest.raises(ValueError, match=f"{MAX_BYTES_ENV} must be a positive"):
            settings({MAX_BYTES_ENV: bad})
    assert settings({}) == (Path("feedback"), 64 * 2**20)


# --- A real server ---------------------------------------------------------------------------


def own_home(tmp_path: Path) -> str:
    """A BENTOML_HOME sharing the session's model store: `bentoml serve` empties its home's
    Prometheus directory on start, which would wipe the session `server`'s metrics."""
    home = tmp_path / "bentoml"
    home.mkdir()
    (home / "models").symlink_to(Path(os.environ["BENTOML_HOME"]) / "models")
    return str(home)


def post(url: str, body) -> tuple[int, str]:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


@pytest.mark.slow
def test_the_served_metrics_carry_the_model_version(server):
    """The series as Prometheus scrapes them from `bentoml serve` (multiprocess mode)."""
    base, _ = server
    assert post(f"{base}/recommend", {"user_id": "metrics-user", "k": 2})[0] == 200
    ready = json.loads(urllib.request.urlopen(f"{base}/readyz", timeout=30).read())
    version = ready["model_version"]
    status, _ = post(f"{base}/feedback", {"events": [CLICK, {**CLICK, "type": "impression"}]})
    assert status == 200
    metrics = urllib.request.urlopen(f"{base}/metrics", timeout=30).read().decode()
    for line in [
        f'recsys_model_info{{model="{ready["model"]}",model_version="{version}"}} 1.0',
        f'recsys_feedback_events_total{{model_version="{version}",type="click"}}',
        f'recsys_feedback_events_total{{model_version="{version}",type="impression"}}',
        f'recsys_recommendations_total{{endpoint="recommend",fallback="popular",'
        f'model_version="{version}"}}',
    ]:
        assert line in metrics, line
    # BentoML's own request series still count /feedback, answered in front of its APIs.
    served = r'bentoml_service_request_total\{endpoint="/feedback",http_response_code="200",.*\} '
    assert re.search(served + r"[1-9]", metrics), "no BentoML request series for /feedback"


@pytest.mark.slow
def test_sigterm_under_load_loses_no_accepted_event(packaged, tmp_path):
    """Clients post concurrently; SIGTERM reaches the server's main process (as Kubernetes
    sends it) mid-load. Every event a client saw accepted is in the log exactly once."""
    directory, log = tmp_path / "feedback", tmp_path / "serve.log"
    env = {"RECSYS_MODEL": packaged, "RECSYS_FEEDBACK_DIR": str(directory),
           "OMP_WAIT_POLICY": "PASSIVE", "BENTOML_HOME": own_home(tmp_path)}  # fmt: skip
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = start_server(port, env, log)
    accepted: list[str] = []
    sent: list[str] = []
    answered = threading.Semaphore(0)

    def client(name: str) -> None:
        for n in range(100_000):
            ids = [f"{name}-{n}-{i}" for i in range(5)]
            sent.extend(ids)
            body = {"events": [{**CLICK, "user_id": name, "request_id": i} for i in ids]}
            try:
                status, _ = post(f"{base}/feedback", body)
            except OSError:  # refused or closed: the server is going
                return
            assert status == 200
            accepted.extend(ids)
            answered.release()

    try:
        wait_ready(proc, base, log, 180)
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            clients = [pool.submit(client, f"c{c}") for c in range(8)]
            for _ in range(200):  # under load: 200 requests answered
                answered.acquire(timeout=60)
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=60) == 0
            for done in clients:
                done.result()
    finally:
        stop_server(proc)
    logged = [event["request_id"] for event in read_events(directory)]
    assert len(accepted) >= 1000
    assert len(logged) == len(set(logged)), "an event was written twice"
    assert set(accepted) <= set(logged), f"lost {len(set(accepted) - set(logged))} accepted"
    assert set(logged) <= set(sent)
    for path in directory.glob("*.jsonl"):
        assert path.read_bytes().endswith(b"\n")
        for line in path.read_text().splitlines():
            assert list(json.loads(line)) == list(FIELDS)
    assert "Completed async cleanup hook: close_feedback_log" in log.read_text()


@pytest.mark.slow
def test_serve_with_an_unwritable_feedback_dir_fails_at_once(packaged, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    result = subprocess.run(
        [BIN / "bentoml", "serve", "--port", str(free_port())],
        cwd=PROJECT_ROOT,
        env={
            **os.environ,
            "RECSYS_MODEL": packaged,
            DIR_ENV: str(blocker / "log"),
            "BENTOML_HOME": own_home(tmp_path),
        },
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert f"{DIR_ENV}={blocker}/log: cannot write feedback events there" in result.stderr
