"""Flower requires authentication: in every deploy file, in `memtasks flower`, and for real."""

from __future__ import annotations

import base64
import json
import re
import shlex
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from bench.chaos.procs import free_port
from memtasks.cli import fleet as fleet_cli
from memtasks.cli import main
from memtasks.cli.fleet import flower_auth_problem
from tests.deploy.test_deploy import CHART, COMPOSE, SYSTEMD, load_yaml, parse_env_file, parse_unit, single
from tests.pipeline.fleet import ROOT, Fleet, fleet_env, wait_until
from tests.security.conftest import SECRET, assert_no_secret

pytestmark = pytest.mark.security

DEPLOY = ROOT / "deploy"
MEMTASKS = str(Path(sys.executable).parent / "memtasks")
HINT = "set FLOWER_BASIC_AUTH=user:password"


# ── the deploy files ─────────────────────────────────────────────────────────


def test_no_deploy_file_ships_a_password() -> None:
    placeholder = re.compile(r"change-?me|admin:", re.IGNORECASE)
    secret_with_default = re.compile(
        r"\$\{([A-Z0-9_]*(?:PASSWORD|AUTH|SECRET|TOKEN)[A-Z0-9_]*):-", re.IGNORECASE
    )
    for path in sorted(p for p in DEPLOY.rglob("*") if p.is_file()):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            where = f"{path.relative_to(ROOT)}:{number}"
            if line.lstrip().startswith("#"):
                continue
            assert not placeholder.search(line), f"{where} ships a password: {line}"
            assert not secret_with_default.search(line), f"{where} gives a secret a default: {line}"


def test_compose_starts_flower_through_the_guard_with_a_required_secret() -> None:
    compose = load_yaml(COMPOSE)
    flower = compose["services"]["flower"]
    assert flower["command"][:2] == ["memtasks", "flower"]
    auth = flower["environment"]["FLOWER_BASIC_AUTH"]
    assert re.fullmatch(r"\$\{FLOWER_BASIC_AUTH:\?[^}]+\}", auth), f"not a required variable: {auth}"
    # Every service's password is required too (Compose refuses to start without it).
    assert "${POSTGRES_PASSWORD:?" in compose["services"]["postgres"]["environment"]["POSTGRES_PASSWORD"]
    assert "${POSTGRES_PASSWORD:?" in compose["x-memtasks-env"]["MEMTASKS_DATABASE_URL"]
    # Flower's default address is every interface: without the secret the guard refuses.
    args = flower["command"][2:]
    assert flower_auth_problem(args, {}) is not None
    assert flower_auth_problem(args, {"FLOWER_BASIC_AUTH": "ops:pw"}) is None


def test_the_chart_requires_flower_s_basic_auth() -> None:
    values = load_yaml(CHART / "values.yaml")
    assert values["flower"]["basicAuth"] == ""
    assert values["secrets"]["databaseUrl"] == ""
    secret = (CHART / "templates" / "secret.yaml").read_text()
    assert re.search(r'FLOWER_BASIC_AUTH: \{\{ required "[^"]+" \.Values\.flower\.basicAuth', secret)
    deployment = (CHART / "templates" / "flower-deployment.yaml").read_text()
    command = re.search(r"^\s*command:\s*(\[.*\])\s*$", deployment, flags=re.MULTILINE)
    assert command is not None
    assert command[1].startswith('["memtasks", "flower"')
    assert re.search(r"- secretRef:\n\s+name: \{\{ include \"memtasks.fullname\" \. \}\}-flower", deployment)


def test_the_systemd_unit_requires_its_auth_file_and_ships_no_password() -> None:
    unit = parse_unit(SYSTEMD / "memtasks-flower.service")
    files = [value for key, value in unit["Service"] if key == "EnvironmentFile"]
    assert "/etc/memtasks/flower.env" in files, "the file must exist: no '-' prefix"
    argv = shlex.split(single(unit, "Service", "ExecStart"))
    assert argv[0] == "/opt/memtasks/venv/bin/memtasks" and argv[1] == "flower"
    example = parse_env_file(SYSTEMD / "flower.env.example")
    assert example["FLOWER_BASIC_AUTH"] == ""
    assert flower_auth_problem(argv[2:], example) is not None, "the example as shipped does not start"


# ── `memtasks flower` ────────────────────────────────────────────────────────


@pytest.mark.parametrize(
    ("args", "env", "refused"),
    [
        ([], {}, "every interface"),
        (["--address=0.0.0.0"], {}, "0.0.0.0"),
        (["--address=::"], {}, "::"),
        (["--address=flower.example.com"], {}, "flower.example.com"),
        ([], {"FLOWER_ADDRESS": "0.0.0.0"}, "0.0.0.0"),
        (["-address=0.0.0.0"], {}, "0.0.0.0"),
        (["--address=0.0.0.0"], {"FLOWER_ADDRESS": "127.0.0.1"}, "0.0.0.0"),  # the command line wins
        (["--address=0.0.0.0"], {"FLOWER_BASIC_AUTH": ""}, "0.0.0.0"),
        (["--address=0.0.0.0"], {"FLOWER_AUTH": ".*@example.com"}, "0.0.0.0"),  # OAuth needs a provider
        (["--address=127.0.0.1"], {"FLOWER_BASIC_AUTH": "admin"}, "user:password"),
        (["--basic-auth=ops:"], {}, "user:password"),
        (["--basic_auth=ops:pw,:pw2"], {}, "user:password"),
        (["--address=127.0.0.1"], {}, None),
        (["--address=127.3.4.5"], {}, None),
        (["--address=localhost"], {}, None),
        (["--address=::1"], {}, None),
        ([], {"FLOWER_ADDRESS": "127.0.0.1"}, None),
        (["--unix_socket=/run/flower.sock"], {}, None),
        ([], {"FLOWER_BASIC_AUTH": "ops:pw"}, None),
        (["--address=0.0.0.0", "--basic-auth=ops:pw,viewer:pw2"], {}, None),
        (["--address=0.0.0.0"], {"FLOWER_AUTH": ".*@example.com", "FLOWER_AUTH_PROVIDER": "x.Y"}, None),
    ],
)
def test_flower_auth_problem(args: list[str], env: dict[str, str], refused: str | None) -> None:
    problem = flower_auth_problem(args, env)
    if refused is None:
        assert problem is None
    else:
        assert problem is not None and refused in problem


def run_memtasks(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [MEMTASKS, *args],
        env={"PATH": "/usr/bin:/bin", **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    ("args", "where"),
    [(["flower", "--address=0.0.0.0", "--port=1"], "0.0.0.0"), (["flower", "--port=1"], "every interface")],
)
def test_the_command_refuses_an_unauthenticated_public_flower_in_one_line(
    args: list[str], where: str
) -> None:
    done = run_memtasks(*args)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"error: Flower would listen on {where} without authentication — {HINT}")
    assert "--allow-unauthenticated" in lines[0] and "Traceback" not in done.stderr
    assert "celery" not in done.stdout, "nothing was started"


def test_a_malformed_basic_auth_is_refused_even_with_the_opt_out() -> None:
    done = run_memtasks(
        "flower", "--allow-unauthenticated", "--address=127.0.0.1", env={"FLOWER_BASIC_AUTH": "admin"}
    )
    assert done.returncode == 2
    assert done.stderr.startswith("error: FLOWER_BASIC_AUTH must be user:password")
    assert len(done.stderr.strip().splitlines()) == 1 and "--allow-unauthenticated" not in done.stderr


def test_the_opt_out_starts_flower_without_passing_itself_on(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    started: list[list[str]] = []
    monkeypatch.setattr(fleet_cli, "_exec", started.append)
    monkeypatch.setenv("MEMTASKS_DATABASE_URL", f"sqlite:///{tmp_path}/f.sqlite3")
    with pytest.raises(SystemExit) as exited:
        main(["flower", "--allow-unauthenticated", "--address=0.0.0.0", "--port=5999"])
    assert exited.value.code == 0
    [argv] = started
    assert argv[-3:] == ["flower", "--address=0.0.0.0", "--port=5999"]
    assert "--allow-unauthenticated" not in argv


# ── a real Flower ────────────────────────────────────────────────────────────


def get(url: str, credentials: str | None = None) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url)
    if credentials is not None:
        token = base64.b64encode(credentials.encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=5) as reply:
            return reply.status, dict(reply.headers), reply.read()
    except urllib.error.HTTPError as refused:
        return refused.code, dict(refused.headers), refused.read()


@pytest.mark.integration
@pytest.mark.slow
def test_a_real_flower_answers_401_without_credentials_and_200_with_them(
    fleet: Fleet, tmp_path: Path, broker_url: str, lock_url: str
) -> None:
    credentials = f"ops:{SECRET}"
    fleet.env = fleet_env(
        database_url=f"sqlite:///{tmp_path}/flower.sqlite3", broker_url=broker_url, lock_redis_url=lock_url
    )
    fleet.worker("w1", queues="default", concurrency=1)
    port = free_port()
    fleet.env["FLOWER_BASIC_AUTH"] = credentials
    fleet._start("flower", [MEMTASKS, "flower", f"--port={port}", "--address=127.0.0.1"])
    base = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            return get(f"{base}/healthcheck")[0] == 200
        except OSError:
            return False

    wait_until(up, 60, "Flower answers", fleet)
    for path in ("/", "/workers", "/tasks", "/broker", "/api/workers", "/api/tasks"):
        status, headers, _ = get(base + path)
        assert status == 401, f"{path} without credentials: {status} {headers}"
        if not path.startswith("/api/"):  # the pages ask a browser for the password
            assert headers.get("Www-Authenticate") == 'Basic realm="flower"', headers
        assert get(base + path, "ops:wrong")[0] == 401, f"{path} with a wrong password"
        assert get(base + path, f"intruder:{SECRET}")[0] == 401, f"{path} with a wrong user"
    assert get(base + "/", credentials)[0] == 200

    seen: dict[str, Any] = {}

    def lists_w1() -> bool:
        status, _, body = get(f"{base}/api/workers?refresh=1", credentials)
        if status == 200:
            seen.update(json.loads(body))
        return any(name.startswith("w1@") for name in seen)

    wait_until(lists_w1, 60, "Flower lists worker w1 to an authenticated client", fleet)
    # Prometheus' /metrics stays open (a scraper has no password): it shows no secret.
    status, _, metrics = get(f"{base}/metrics")
    assert status == 200
    assert_no_secret(metrics.decode(), "Flower's /metrics")
    log = fleet.log("flower")
    assert "celery -A memtasks.worker.app flower --port=" in log
    assert ":**@127.0.0.1" in log, "Flower names its broker with the password masked"
    assert_no_secret(log, "Flower's log")
