"""Real HTTP against the Serve app on localhost with a tiny model registered in a real SQLite MLflow store."""

import concurrent.futures as cf
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import httpx
import pytest

from polyglot_lion.testing import audio_bytes

pytestmark = [pytest.mark.ray, pytest.mark.serve]

KEY = "s3cret-key"


def _free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    """Two registered versions of a tiny model; alias champion -> 1."""
    from mlflow.tracking import MlflowClient

    from polyglot_lion.model.tiny import save_tiny_checkpoint
    from polyglot_lion.testing import TINY_TEXTS

    root = tmp_path_factory.mktemp("serve")
    db = f"sqlite:///{root}/mlflow.db"
    client = MlflowClient(tracking_uri=db)
    client.create_registered_model("tiny-serve")
    for seed in (0, 1):
        client.create_model_version("tiny-serve", save_tiny_checkpoint(str(root / f"v{seed + 1}"), TINY_TEXTS, seed))
    client.set_registered_model_alias("tiny-serve", "champion", "1")
    (root / "key").write_text(KEY + "\n")
    return {"db": db, "key_file": str(root / "key"), "root": root, "client": client}


@pytest.fixture(scope="module")
def server(ray_session, registry):
    from ray import serve

    from polyglot_lion.serving.app import build_app

    port = _free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    args = {"model": "models:/tiny-serve@champion", "tracking_uri": registry["db"], "api_key_file": registry["key_file"],
            "max_upload_mb": 1, "max_audio_s": 20, "max_batch_size": 16, "batch_wait_timeout_s": 0.1}
    opts = {"ray_actor_options": {"num_cpus": 0.5}}
    # the replica's own 503, with OpenAI's body; request batching (@serve.batch), the other apps batch continuously
    tight = dict(args, api_key_file=None, max_in_flight=1, batching="request")
    # continuous batching with 2 slots and no queue; every sequence decodes its whole budget (16 + 15/s)
    loop = dict(args, api_key_file=None, max_batch_size=2, max_queue=0, stop_at_eos=False, stop_on_loop=False)
    # the probe's setup: default limits (25 MB uploads, 600 s of audio), no key
    probe = {"model": args["model"], "tracking_uri": registry["db"], "api_key_env": "POLYGLOT_LION_TEST_NO_KEY"}
    # deployed together: the four replicas start and load the model side by side (serve.run waits for each app)
    serve.run_many([serve.RunTarget(build_app(settings, opts), name=name, route_prefix=prefix)
                    for name, prefix, settings in (("main", "/", args), ("tight", "/tight", tight),
                                                   ("loop", "/loop", loop), ("probe", "/probe", probe))])
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            if all(httpx.get(f"{url}{app}/healthz", timeout=2).status_code == 200
                   for app in ("", "/tight", "/probe", "/loop")):
                break
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    yield {"url": url, "args": args, "opts": opts, **registry}
    serve.shutdown()


def assert_openai_error(r) -> None:
    """A non-2xx answer with OpenAI's error body and no object reprs in it."""
    assert r.status_code >= 400, r.status_code
    assert r.headers["content-type"].startswith("application/json"), (r.status_code, r.text[:200])
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}, err
    assert isinstance(err["message"], str) and err["message"] and " at 0x" not in err["message"], err


def post(url, data: bytes, key=KEY, fmt=None, language=None, name="a.wav", timeout=120, model="polyglot-lion"):
    fields = {"model": model} if model else {}
    if fmt:
        fields["response_format"] = fmt
    if language:
        fields["language"] = language
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.post(f"{url}/v1/audio/transcriptions", files={"file": (name, data, "audio/wav")}, data=fields,
                      headers=headers, timeout=timeout)


def test_upload_and_response_formats(server):
    wav = audio_bytes(1.0)
    r = post(server["url"], wav)
    assert r.status_code == 200 and set(r.json()) == {"text"} and r.headers["x-model-version"] == "1"
    t = post(server["url"], wav, fmt="text")
    assert t.status_code == 200 and t.headers["content-type"].startswith("text/plain") and t.text == r.json()["text"]
    v = post(server["url"], wav, fmt="verbose_json", language="ms").json()
    assert v["language"] == "ms" and v["duration"] == pytest.approx(1.0) and v["model"]["version"] == "1"
    assert v["model"]["id"] == "tiny-serve" and v["model"]["alias"] == "champion"
    flac = audio_bytes(1.0, fmt="FLAC")
    assert post(server["url"], flac, name="a.flac").json()["text"] == r.json()["text"]  # same audio, same text


def test_models_and_health(server):
    m = httpx.get(f"{server['url']}/v1/models", headers={"Authorization": f"Bearer {KEY}"}).json()
    assert m["data"][0]["id"] == "tiny-serve" and m["data"][0]["version"] == "1"
    assert httpx.get(f"{server['url']}/healthz").json()["status"] == "ok"


def test_openai_client_works_unchanged(server, tmp_path):
    from openai import OpenAI

    (tmp_path / "a.wav").write_bytes(audio_bytes(1.0))
    client = OpenAI(base_url=f"{server['url']}/v1", api_key=KEY)
    with open(tmp_path / "a.wav", "rb") as f:
        out = client.audio.transcriptions.create(model="polyglot-lion", file=f)
    assert isinstance(out.text, str)
    with open(tmp_path / "a.wav", "rb") as f:
        verbose = client.audio.transcriptions.create(model="polyglot-lion", file=f, response_format="verbose_json")
    assert verbose.duration == pytest.approx(1.0)


@pytest.mark.parametrize("case,status,needle", [
    ("too_big", 413, "above the limit of 1 MB"),
    ("too_long", 413, "audio is too long"),
    ("garbage", 400, "unreadable_audio"),
    ("empty", 400, "empty_audio"),
    ("bad_format", 400, "response_format 'srt' is not supported"),
    ("bad_language", 400, "language 'fr' is not supported"),
    ("no_key", 401, "API key"),
    ("wrong_key", 401, "API key"),
    ("unknown_model", 404, "model 'whisper-1' is not served here"),
    ("no_model", 400, "missing the 'model' field"),
    ("bad_multipart", 400, "malformed multipart body"),
])
def test_errors(server, case, status, needle):
    url = server["url"]
    wav = audio_bytes(0.5)
    r = {
        "too_big": lambda: post(url, b"\x00" * (1024 * 1024 + 200_000)),
        "too_long": lambda: post(url, audio_bytes(25.0, rate=8000)),  # 400 KB, 25 s > 20 s
        "garbage": lambda: post(url, b"this is not audio at all" * 10),
        "empty": lambda: post(url, b""),
        "bad_format": lambda: post(url, wav, fmt="srt"),
        "bad_language": lambda: post(url, wav, language="fr"),
        "no_key": lambda: post(url, wav, key=None),
        "wrong_key": lambda: post(url, wav, key="nope"),
        "unknown_model": lambda: post(url, wav, model="whisper-1"),
        "no_model": lambda: post(url, wav, model=None),
        "bad_multipart": lambda: httpx.post(f"{url}/v1/audio/transcriptions", content=b"--x\r\nnonsense",
                                            headers={"Authorization": f"Bearer {KEY}",
                                                     "Content-Type": "multipart/form-data"}),
    }[case]()
    assert r.status_code == status, r.text
    assert needle in r.json()["error"]["message"]
    assert_openai_error(r)
    if case == "unknown_model":
        assert r.json()["error"]["code"] == "model_not_found" and "tiny-serve@champion" in r.text


def test_missing_file_field_and_no_paths(server):
    r = httpx.post(f"{server['url']}/v1/audio/transcriptions", data={"file": "/etc/passwd", "model": "x"},
                   files={"other": ("x", b"1")}, headers={"Authorization": f"Bearer {KEY}"})
    assert r.status_code == 400 and "never read" in r.json()["error"]["message"]


def test_32_concurrent_requests_are_batched(server):
    wavs = [audio_bytes(0.5 + 0.05 * i, seed=i) for i in range(32)]
    solo = {i: post(server["url"], wavs[i], fmt="text").text for i in (0, 31)}
    with cf.ThreadPoolExecutor(32) as ex:
        rs = list(ex.map(lambda w: post(server["url"], w, fmt="verbose_json"), wavs))
    assert all(r.status_code == 200 for r in rs), [r.status_code for r in rs]
    assert [round(r.json()["duration"], 2) for r in rs] == [round(0.5 + 0.05 * i, 2) for i in range(32)]
    assert rs[0].json()["text"] == solo[0] and rs[31].json()["text"] == solo[31]  # batched == alone
    sizes = [r.json()["batch_size"] for r in rs]
    assert max(sizes) > 1, sizes


def test_overload_gets_503_with_retry_after(server):
    wav = audio_bytes(1.0)
    with cf.ThreadPoolExecutor(24) as ex:
        rs = list(ex.map(lambda _: post(f"{server['url']}/tight", wav, key=None), range(24)))
    codes = [r.status_code for r in rs]
    assert set(codes) <= {200, 503} and codes.count(503) > 0 and codes.count(200) > 0, codes
    rejected = next(r for r in rs if r.status_code == 503)
    assert rejected.headers.get("retry-after") == "2"
    assert_openai_error(rejected)
    assert rejected.json()["error"]["code"] == "overloaded"
    assert httpx.get(f"{server['url']}/tight/healthz").status_code == 200  # the replica survived


def test_a_short_request_sent_after_a_long_one_is_answered_first(server):
    """Continuous batching: the long clip (19.5 s: 308 tokens) is decoding when the short one (0.5 s: 23 tokens)
    arrives; the short one takes the free slot and is answered while the long one still decodes."""
    url = f"{server['url']}/loop"
    done: list[str] = []

    def send(name, seconds, seed):
        r = post(url, audio_bytes(seconds, seed=seed), key=None, fmt="verbose_json")
        done.append(name)
        return r

    with cf.ThreadPoolExecutor(2) as ex:
        long_future = ex.submit(send, "long", 19.5, 1)
        deadline = time.time() + 60
        while httpx.get(f"{url}/v1/stats", timeout=5).json()["decode_loop"]["running"] == 0:
            assert time.time() < deadline and not long_future.done(), "the long request never started decoding"
            time.sleep(0.01)
        short_future = ex.submit(send, "short", 0.5, 2)
        long_r, short_r = long_future.result(), short_future.result()
    assert long_r.status_code == short_r.status_code == 200, (long_r.text, short_r.text)
    assert done == ["short", "long"], done
    assert short_r.json()["batch_size"] == 2 and short_r.json()["duration"] == pytest.approx(0.5)
    assert short_r.json()["processing_s"] < long_r.json()["processing_s"]


def test_full_slots_and_queue_get_503_with_retry_after(server):
    """Continuous batching: 2 slots and no queue; of 8 long requests at once, those that find both slots taken are
    refused with OpenAI's body and Retry-After, the others answered; /healthz answers while the loop decodes."""
    url = f"{server['url']}/loop"
    wav = audio_bytes(19.5, seed=3)
    health_ms: list[float] = []
    sent = []

    def poll():
        with httpx.Client(timeout=5) as http:
            while not sent or not all(f.done() for f in sent):
                t0 = time.perf_counter()
                assert http.get(f"{url}/healthz").status_code == 200
                health_ms.append(1000 * (time.perf_counter() - t0))
                time.sleep(0.02)

    with cf.ThreadPoolExecutor(9) as ex:
        sent.extend(ex.submit(post, url, wav, None) for _ in range(8))
        poller = ex.submit(poll)
        rs = [f.result() for f in sent]
        poller.result()
    assert len(health_ms) >= 3 and max(health_ms) < 1000, health_ms
    codes = [r.status_code for r in rs]
    assert set(codes) <= {200, 503} and codes.count(503) > 0 and codes.count(200) >= 2, codes
    rejected = next(r for r in rs if r.status_code == 503)
    assert rejected.headers.get("retry-after") == "2"
    assert_openai_error(rejected)
    assert rejected.json()["error"]["code"] == "overloaded"
    assert "2 of 2 slots taken" in rejected.json()["error"]["message"], rejected.text
    stats = httpx.get(f"{url}/v1/stats", timeout=5).json()
    assert stats["errors"].get("503", 0) >= codes.count(503) and stats["decode_loop"]["slots"] == 2
    assert httpx.get(f"{url}/healthz").status_code == 200 and post(url, audio_bytes(0.5), key=None).status_code == 200


def test_version_switch_during_load_drops_nothing(server):
    from ray import serve

    from polyglot_lion.serving.app import build_app

    url = server["url"]
    wav = audio_bytes(1.0, seed=5)
    with cf.ThreadPoolExecutor(8) as ex:
        futures = []
        for i in range(40):
            futures.append(ex.submit(post, url, wav, KEY, "verbose_json"))
            if i == 10:  # promote version 2 and redeploy with a new revision: replicas reload in place
                server["client"].set_registered_model_alias("tiny-serve", "champion", "2")
                user_config = {"model": "models:/tiny-serve@champion", "revision": 2, "max_batch_size": 16,
                               "batch_wait_timeout_s": 0.1, "max_batch_audio_s": 480}
                serve.run(build_app(server["args"], {**server["opts"], "user_config": user_config}), name="main",
                          route_prefix="/", blocking=False)
            time.sleep(0.1)
        rs = [f.result() for f in futures]
    assert all(r.status_code == 200 for r in rs), [r.status_code for r in rs]
    deadline = time.time() + 60
    while post(url, wav, fmt="verbose_json").json()["model"]["version"] != "2":
        assert time.time() < deadline, "the switch to version 2 never happened"
        time.sleep(0.5)
    assert {r.json()["model"]["version"] for r in rs} <= {"1", "2"}


def test_upload_page_in_headless_chromium(server, tmp_path):
    chromium = shutil.which("chromium")
    assert chromium, "Debian's chromium is needed for the browser test: scripts/install-system-deps.sh"
    from playwright.sync_api import sync_playwright

    (tmp_path / "hello.wav").write_bytes(audio_bytes(1.0))
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        page = browser.new_page()
        page.goto(server["url"] + "/")
        assert "Polyglot-Lion" in page.title()
        page.fill("#key", KEY)
        page.set_input_files("#file", str(tmp_path / "hello.wav"))
        page.click("#send")
        page.wait_for_selector("#transcript[data-done='1']", timeout=60_000)
        status = page.inner_text("#status")
        browser.close()
    assert "1.0 s of audio" in status and "model tiny-serve" in status


def test_serve_cli_runs_in_foreground_and_stops_on_sigterm(registry):
    port = _free_port()
    env = dict(os.environ, RAY_DATA_DISABLE_PROGRESS_BARS="1")
    env.pop("RAY_ADDRESS", None)
    proc = subprocess.Popen([sys.executable, "-m", "polyglot_lion.cli", "serve", "--model", str(registry["root"] / "v1"),
                             "--port", str(port)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    try:
        deadline = time.time() + 150
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None and time.time() < deadline, proc.stdout.read() if proc.poll() else "timeout"
            time.sleep(1)
        r = post(f"http://127.0.0.1:{port}", audio_bytes(0.5), key=None)
        assert r.status_code == 200
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0, out[-2000:]
        assert "stopping" in out
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)


def test_lowercase_bearer_and_the_key_guards_everything_but_healthz(server):
    url = server["url"]
    assert post(url, audio_bytes(0.5), key=None).status_code == 401
    r = httpx.post(f"{url}/v1/audio/transcriptions", files={"file": ("a.wav", audio_bytes(0.5), "audio/wav")},
                   data={"model": "tiny-serve"}, headers={"Authorization": f"bearer {KEY}"}, timeout=120)
    assert r.status_code == 200, r.text  # the scheme is case-insensitive (RFC 7235)
    assert httpx.get(f"{url}/v1/models", headers={"authorization": f"BEARER {KEY}"}).status_code == 200
    for path in ("/v1/stats", "/v1/models", "/docs", "/openapi.json"):
        r = httpx.get(url + path)
        assert r.status_code == 401, (path, r.status_code)
        assert_openai_error(r)
        assert httpx.get(url + path, headers={"Authorization": f"Bearer {KEY}"}).status_code == 200, path
    assert "/v1/audio/transcriptions" in httpx.get(f"{url}/openapi.json",
                                                   headers={"Authorization": f"Bearer {KEY}"}).json()["paths"]
    assert httpx.get(f"{url}/healthz").status_code == 200


def test_fastapis_own_errors_have_the_openai_body(server):
    url, auth = server["url"], {"Authorization": f"Bearer {KEY}"}
    r404 = httpx.get(f"{url}/v1/nope", headers=auth)
    r405 = httpx.get(f"{url}/v1/audio/transcriptions", headers=auth)
    assert (r404.status_code, r405.status_code) == (404, 405)
    for r in (r404, r405):
        assert_openai_error(r)
    assert "GET /v1/nope" in r404.json()["error"]["message"]


def test_bomb_is_refused_from_its_header_while_healthz_answers_and_memory_stays_bounded(server):
    """The probe's bomb (430 KB FLAC, 590 s x 192 kHz x 2 channels): before, +1.3 GB in the replica and /healthz
    stalled 10.8 s. Now 413 from the header; decoding of what is accepted runs off the event loop."""
    from polyglot_lion.testing.hostile import bomb_flac

    url, auth = server["url"] + "/probe", {}
    bomb = bomb_flac()
    heavy = bomb_flac(seconds=19)  # within every limit (29 MiB decoded), but real work: decoded, then resampled
    before = httpx.get(f"{url}/v1/stats", headers=auth).json()["process"]
    health_ms: list[float] = []
    stop = time.time() + 600

    def poll():
        with httpx.Client(timeout=5) as http:  # one warm connection: the time is the replica's, not a handshake
            assert http.get(f"{url}/healthz").status_code == 200
            while time.time() < stop:
                t0 = time.perf_counter()
                assert http.get(f"{url}/healthz").status_code == 200
                health_ms.append(1000 * (time.perf_counter() - t0))
                time.sleep(0.05)

    with cf.ThreadPoolExecutor(9) as ex:
        poller = ex.submit(poll)
        bombs = [ex.submit(post, url, bomb, name="bomb.flac") for _ in range(6)]
        heavies = [ex.submit(post, url, heavy, name="heavy.flac") for _ in range(2)]
        rs = [f.result() for f in bombs]
        hs = [f.result() for f in heavies]
        stop = 0
        poller.result()
    for r in rs:
        assert r.status_code == 413, r.text
        assert_openai_error(r)
        assert r.json()["error"]["code"] == "over_decode_limits"
        assert "590.0 s x 192000 Hz x 2 channels" in r.json()["error"]["message"]
    assert all(h.status_code == 200 for h in hs), [h.text[:200] for h in hs]
    assert len(health_ms) >= 3 and max(health_ms) < 1000, health_ms
    after = httpx.get(f"{url}/v1/stats", headers=auth).json()["process"]
    # the bombs would have asked ~865 MiB each; the replica's peak grew by far less than one of them
    assert after["max_rss_mb"] - before["max_rss_mb"] < 300, (before, after)
    print(f"bombs 413; /healthz max {max(health_ms):.0f} ms over {len(health_ms)} polls; replica peak RSS "
          f"{before['max_rss_mb']:.0f} -> {after['max_rss_mb']:.0f} MB")


def test_fuzzed_requests_get_2xx_or_the_openai_error_and_the_replica_lives(server):
    """Random methods, paths, headers and multipart bodies (bounded: 150 requests, 180 s), 127.0.0.1 only."""
    import random

    rng = random.Random(24)
    url = server["url"]
    wav = audio_bytes(0.3)
    paths = ["/v1/audio/transcriptions"] * 14 + ["/v1/models", "/v1/stats", "/healthz", "/v1/nope", "/docs",
                                                "/openapi.json", "/v1/audio/transcriptions/x"]
    deadline = time.time() + 180
    seen: dict[int, int] = {}
    for i in range(150):
        assert time.time() < deadline, f"fuzzing took too long ({i} requests)"
        method = rng.choice(["POST"] * 9 + ["GET", "PUT", "DELETE", "PATCH"])
        headers = {}
        if rng.random() < 0.8:
            headers["Authorization"] = rng.choice([f"Bearer {KEY}"] * 4 + [f"bearer {KEY}", f"Basic {KEY}", "Bearer",
                                                   f"Bearer  {KEY}", "Bearer x" * rng.randrange(1, 50)])
        boundary = rng.choice(["b0undary", "", "x" * 80, "--", "b\u00e9"])
        parts = []
        for _ in range(rng.randrange(0, 5)):
            name = rng.choice(["file", "model", "language", "response_format", "x" * rng.randrange(1, 300)])
            value = rng.choice([wav, b"", rng.randbytes(rng.randrange(1, 3000)), b"tiny-serve", b"ms", b"srt",
                                b"json", "\u00e9\u4e2d".encode()])
            filename = rng.choice(['; filename="a.wav"', "", '; filename=""', '; filename="../../etc/passwd"'])
            parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"{filename}\r\n\r\n'.encode()
                         + value + b"\r\n")
        body = b"".join(parts) + (f"--{boundary}--\r\n".encode() if rng.random() < 0.7 else b"")
        if rng.random() < 0.15:
            body = rng.randbytes(rng.randrange(0, 5000))
        ctype = rng.choice([f"multipart/form-data; boundary={boundary}", "multipart/form-data",
                            "application/json", "text/plain", None, "multipart/form-data; boundary="])
        if ctype:
            headers["Content-Type"] = ctype.encode("utf-8")  # raw bytes: a non-ASCII boundary too
        r = httpx.request(method, url + rng.choice(paths), content=body, headers=headers, timeout=60)
        seen[r.status_code] = seen.get(r.status_code, 0) + 1
        assert r.status_code < 300 or r.status_code >= 400, r.status_code
        if r.status_code >= 400:
            assert_openai_error(r)
    assert httpx.get(f"{url}/healthz", timeout=5).status_code == 200
    assert post(url, wav).status_code == 200  # the replica still transcribes
    assert sum(seen.values()) > 100 and len(seen) >= 4, seen
    print(f"fuzz: statuses {dict(sorted(seen.items()))}")
