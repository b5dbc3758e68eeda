"""The deployment artefacts of deploy/: Dockerfile, Compose, systemd units, Helm chart.

Nothing here builds an image, starts a container or runs the ``memtasks`` command: the files
are parsed and checked against the code. Every ``MEMTASKS_*`` name must be a field of
:class:`memtasks.config.Settings`, every command one that exists, every queue one that the
app declares; beat runs once; the migration runs first. ``helm template`` and
``systemd-analyze verify`` are used when they are installed.

YAML is read with PyYAML when it is importable; otherwise with the small, strict reader
below, which refuses what it does not understand (and is compared with PyYAML when both
are there).
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from importlib.metadata import version as installed_version
from itertools import takewhile
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from packaging.specifiers import SpecifierSet

from memtasks.config import Settings, check_queue_list, load_settings
from memtasks.worker import names

try:
    import yaml
except ImportError:  # PyYAML is not (yet) a dependency of memtasks
    yaml = None

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
COMPOSE = DEPLOY / "compose.yaml"
DOCKERFILE = DEPLOY / "Dockerfile"
SYSTEMD = DEPLOY / "systemd"
CHART = DEPLOY / "helm" / "memtasks"

QUEUES = {"critical", "default", "bulk", "llm", "maintenance"}
CELERY_APP = "memtasks.worker.app"
CELERY_SUBCOMMANDS = {"worker", "beat", "flower"}
MEMTASKS_COMMANDS = {
    ("db", "upgrade"),
    ("db", "current"),
    ("metrics",),
    ("web",),
    ("status",),
    ("flower",),
    ("worker",),
}
SET_BY_SETTINGS = {
    "-Q": "MEMTASKS_WORKER_QUEUES",
    "--queues": "MEMTASKS_WORKER_QUEUES",
    "-c": "MEMTASKS_WORKER_CONCURRENCY",
    "--concurrency": "MEMTASKS_WORKER_CONCURRENCY",
    "--port": "MEMTASKS_FLOWER_PORT or MEMTASKS_METRICS_PORT",
    "--address": "MEMTASKS_METRICS_ADDRESS",
    "--allow-unauthenticated": "MEMTASKS_FLOWER_ALLOW_UNAUTHENTICATED",
    "--created-by": "MEMTASKS_OPERATOR",
}
"""Options of the ``memtasks`` commands that have a setting: the deploy files set the variable
instead, so that one name configures a thing wherever it runs."""
OTHER_PROGRAMS_VARIABLES = {
    "FLOWER_BASIC_AUTH": "Flower",
    "FLOWER_ADDRESS": "Flower",
    "POSTGRES_USER": "the postgres image",
    "POSTGRES_PASSWORD": "the postgres image",
    "POSTGRES_DB": "the postgres image",
    "PYTHONDONTWRITEBYTECODE": "Python",
    "PYTHONUNBUFFERED": "Python",
    "PIP_DISABLE_PIP_VERSION_CHECK": "pip",
    "PIP_NO_CACHE_DIR": "pip",
    "HOME": "the shell",
}
"""The variables the deploy files may set that are not memtasks settings, and whose they are."""
DATA_DIR = "/var/lib/memtasks"
SETTING_NAMES = {f"MEMTASKS_{name.upper()}" for name in Settings.model_fields}
SETTING_NAME = re.compile(r"\bMEMTASKS_[A-Z0-9_]*[A-Z0-9]\b")
PLACEHOLDER = "<template>"


# ── YAML ─────────────────────────────────────────────────────────────────────


@dataclass
class _Line:
    number: int
    indent: int
    text: str


class MiniYaml:
    """Block mappings and sequences, quoted and plain scalars, flow sequences, anchors,
    aliases and ``<<`` merges: the subset the deploy files use. Anything else raises."""

    _KEY = re.compile(
        r"""^(?:"(?P<dq>(?:[^"\\]|\\.)*)"|'(?P<sq>(?:[^']|'')*)'|(?P<plain>[^\s"'\[\]{}#&*!|>%@`,][^#]*?))"""
        r"""\s*:(?:\s+(?P<rest>.*))?$"""
    )
    _AMBIGUOUS = re.compile(
        r"^(?:y|n|yes|no|on|off|[-+]?\.(?:inf|nan)|0[0-9_]+|0[xob].*|[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+"
        r"|[-+]?[0-9]+_[0-9_]*|[-+]?[0-9.]*[0-9][eE][-+]?[0-9]+|[0-9]{4}-[0-9]{1,2}-[0-9]{1,2}.*)$",
        re.IGNORECASE,
    )

    def __init__(self, text: str) -> None:
        self.anchors: dict[str, Any] = {}
        self.lines: list[_Line] = []
        for number, raw in enumerate(text.splitlines(), 1):
            line = self._strip_comment(raw).rstrip()
            if not line.strip():
                continue
            if line == "---" and not self.lines:
                continue
            body = line.lstrip(" ")
            if body.startswith("\t") or line.startswith("---") or line.startswith("..."):
                raise ValueError(f"line {number}: not supported by MiniYaml: {raw!r}")
            self.lines.append(_Line(number, len(line) - len(body), body))

    @staticmethod
    def _strip_comment(line: str) -> str:
        quote = ""
        previous = " "
        i = 0
        while i < len(line):
            char = line[i]
            if quote == '"':
                if char == "\\":
                    i += 1
                elif char == '"':
                    quote = ""
            elif quote == "'":
                if char == "'":
                    quote = ""
            elif char in "\"'" and previous in " :-[,":
                quote = char
            elif char == "#" and previous in " \t":
                return line[:i]
            previous = char
            i += 1
        return line

    def load(self) -> Any:
        if not self.lines:
            return None
        value, end = self._block(0, self.lines[0].indent)
        if end != len(self.lines):
            line = self.lines[end]
            raise ValueError(f"line {line.number}: unexpected indentation: {line.text!r}")
        return value

    def _is_item(self, i: int) -> bool:
        text = self.lines[i].text
        return text == "-" or text.startswith("- ")

    def _block(self, i: int, indent: int) -> tuple[Any, int]:
        if self._is_item(i):
            return self._sequence(i, indent)
        return self._mapping(i, indent)

    def _nested(self, i: int, indent: int, *, in_mapping: bool) -> tuple[Any, int]:
        """The block value of the key or item of line i-1 (None when there is none)."""
        if i < len(self.lines):
            line = self.lines[i]
            if line.indent > indent or (in_mapping and line.indent == indent and self._is_item(i)):
                return self._block(i, line.indent)
        return None, i

    def _sequence(self, i: int, indent: int) -> tuple[list[Any], int]:
        items: list[Any] = []
        while i < len(self.lines) and self.lines[i].indent == indent and self._is_item(i):
            line = self.lines[i]
            rest = line.text[1:].lstrip(" ")
            if not rest:
                value, i = self._nested(i + 1, indent, in_mapping=False)
            elif self._KEY.match(rest):
                self.lines[i] = _Line(line.number, indent + len(line.text) - len(rest), rest)
                value, i = self._mapping(i, self.lines[i].indent)
            else:
                value, i = self._scalar(rest, line.number), i + 1
            items.append(value)
        return items, i

    def _mapping(self, i: int, indent: int) -> tuple[dict[str, Any], int]:
        result: dict[str, Any] = {}
        merges: list[Any] = []
        while i < len(self.lines) and self.lines[i].indent == indent and not self._is_item(i):
            line = self.lines[i]
            match = self._KEY.match(line.text)
            if not match:
                raise ValueError(f"line {line.number}: not a mapping entry: {line.text!r}")
            if match["dq"] is not None:
                key = json.loads(f'"{match["dq"]}"')
            elif match["sq"] is not None:
                key = match["sq"].replace("''", "'")
            else:
                key = match["plain"].rstrip()
            rest = (match["rest"] or "").strip()
            anchor = None
            if rest.startswith("&"):
                anchor, _, rest = rest.partition(" ")
                rest = rest.strip()
            if rest:
                value, i = self._scalar(rest, line.number), i + 1
            else:
                value, i = self._nested(i + 1, indent, in_mapping=True)
            if anchor:
                self.anchors[anchor[1:]] = value
            if key == "<<":
                merges.extend(value if isinstance(value, list) else [value])
            elif key in result:
                raise ValueError(f"line {line.number}: duplicate key {key!r}")
            else:
                result[key] = value
        for merged in merges:
            if not isinstance(merged, dict):
                raise ValueError(f"<< merges a mapping, not {merged!r}")
            for key, value in merged.items():
                result.setdefault(key, value)
        return result, i

    def _scalar(self, text: str, number: int) -> Any:
        if text.startswith("*"):
            if text[1:] not in self.anchors:
                raise ValueError(f"line {number}: unknown alias {text}")
            return self.anchors[text[1:]]
        if text.startswith('"'):
            if not text.endswith('"') or len(text) < 2:
                raise ValueError(f"line {number}: unterminated string {text!r}")
            return json.loads(text)
        if text.startswith("'"):
            if not text.endswith("'") or len(text) < 2:
                raise ValueError(f"line {number}: unterminated string {text!r}")
            return text[1:-1].replace("''", "'")
        if text.startswith("["):
            if not text.endswith("]"):
                raise ValueError(f"line {number}: multi-line flow sequences are not supported")
            return [self._scalar(item, number) for item in self._flow_items(text[1:-1], number)]
        if text == "{}":
            return {}
        if text[0] in "{&!|>%@`":
            raise ValueError(f"line {number}: not supported by MiniYaml: {text!r}")
        if text in {"null", "Null", "NULL", "~"}:
            return None
        if text in {"true", "True", "TRUE"}:
            return True
        if text in {"false", "False", "FALSE"}:
            return False
        if self._AMBIGUOUS.match(text):
            raise ValueError(f"line {number}: {text!r} means different things in YAML 1.1 and 1.2: quote it")
        if re.fullmatch(r"[-+]?(?:0|[1-9][0-9]*)", text):
            return int(text)
        if re.fullmatch(r"[-+]?(?:[0-9]+\.[0-9]*|\.[0-9]+)", text):
            return float(text)
        return text

    @staticmethod
    def _flow_items(text: str, number: int) -> Iterator[str]:
        item, quote, escaped = "", "", False
        for char in text:
            if quote:
                item += char
                if escaped:
                    escaped = False
                elif char == "\\" and quote == '"':
                    escaped = True
                elif char == quote:
                    quote = ""
            elif char in "\"'" and not item.strip():
                quote, item = char, item + char
            elif char in "[]{}":
                raise ValueError(f"line {number}: nested flow collections are not supported")
            elif char == ",":
                yield item.strip()
                item = ""
            else:
                item += char
        if quote:
            raise ValueError(f"line {number}: unterminated string in a flow sequence")
        if item.strip():
            yield item.strip()


def load_yaml(path: Path) -> Any:
    text = path.read_text()
    if yaml is not None:
        return yaml.safe_load(text)
    return MiniYaml(text).load()


YAML_FILES = [COMPOSE, CHART / "Chart.yaml", CHART / "values.yaml"]


@pytest.mark.parametrize("path", YAML_FILES, ids=lambda p: str(p.relative_to(DEPLOY)))
def test_the_minimal_yaml_reader_agrees_with_pyyaml(path: Path) -> None:
    if yaml is None:
        pytest.skip("PyYAML is not installed: the deploy files are read with MiniYaml only")
    assert MiniYaml(path.read_text()).load() == yaml.safe_load(path.read_text())


def test_the_minimal_yaml_reader_refuses_what_it_does_not_know() -> None:
    doc = (
        "a: &base\n  x: 1\n  y: 'it''s'\nb:\n  <<: *base\n  y: \"two\"\nc:\n- [\"p, q\", r]\n- k: v\n  l: ~\n"
    )
    assert MiniYaml(doc).load() == {
        "a": {"x": 1, "y": "it's"},
        "b": {"x": 1, "y": "two"},
        "c": [["p, q", "r"], {"k": "v", "l": None}],
    }
    for bad in ("a: yes\n", "a: 0644\n", "a: 22:22\n", "a: |\n  x\n", "a: *nope\n", "a: 1\na: 2\n"):
        with pytest.raises(ValueError):  # noqa: PT011 - each message differs
            MiniYaml(bad).load()


# ── commands ─────────────────────────────────────────────────────────────────


@dataclass(frozen=True)
class Command:
    program: str
    words: tuple[str, ...]
    queues: frozenset[str] | None  # None: not a worker, or queues given by a template or unit variable


def check_command(argv: list[str], where: str, env: dict[str, str] | None = None) -> Command:
    """The command of a process: one that exists, with known queues, as the docs say."""
    assert argv, f"{where}: empty command"
    program = Path(argv[0].lstrip("-@+!:")).name
    if program == "celery":
        assert argv[1:3] == ["-A", CELERY_APP], f"{where}: celery without -A {CELERY_APP}: {argv}"
        assert len(argv) > 3 and argv[3] in CELERY_SUBCOMMANDS, f"{where}: unknown celery command: {argv}"
        sub = argv[3]
        assert "-B" not in argv and "--beat" not in argv, f"{where}: a worker with an embedded beat"
        queues = None
        if sub == "worker":
            assert "-Q" in argv, f"{where}: a worker without -Q consumes only the 'celery' queue"
            assert "--without-mingle" in argv and "--without-gossip" in argv, where
            assert "-c" in argv, f"{where}: worker without -c"
            value = argv[argv.index("-Q") + 1]
            if "$" not in value and PLACEHOLDER not in value:
                queues = frozenset(value.split(","))
                assert queues <= QUEUES, f"{where}: unknown queues {sorted(queues - QUEUES)}"
        if sub == "beat":
            assert "-s" in argv, f"{where}: beat without its schedule file"
            assert argv[argv.index("-s") + 1].startswith(DATA_DIR + "/"), (
                f"{where}: schedule outside {DATA_DIR}"
            )
        return Command("celery", (sub,), queues)
    if program == "memtasks":
        words = tuple(takewhile(lambda arg: not arg.startswith("-") and arg != PLACEHOLDER, argv[1:]))
        assert words in MEMTASKS_COMMANDS, f"{where}: unknown memtasks command {words}"
        for arg in argv[1:]:
            option = arg.split("=", 1)[0]
            assert option not in SET_BY_SETTINGS, (
                f"{where}: {arg} — set {SET_BY_SETTINGS[option]} instead (the same name everywhere)"
            )
        queues = None
        if words == ("worker",):
            assert "-B" not in argv and "--beat" not in argv, f"{where}: a worker with an embedded beat"
            value = (env or {}).get("MEMTASKS_WORKER_QUEUES")
            if env is not None and value is None:
                queues = frozenset(QUEUES)  # the setting's default: every queue
            elif value is not None and "$" not in value and "%" not in value:
                try:
                    queues = frozenset(check_queue_list(value).split(","))
                except ValueError as exc:
                    raise AssertionError(f"{where}: MEMTASKS_WORKER_QUEUES={value!r}: {exc}") from None
        return Command("memtasks", words, queues)
    raise AssertionError(f"{where}: neither celery nor memtasks: {argv}")


def test_the_known_queues_are_the_apps_queues() -> None:
    assert set(names.QUEUES) == QUEUES


def test_the_command_check_fails_on_what_does_not_exist() -> None:
    ok = [
        "celery",
        "-A",
        CELERY_APP,
        "worker",
        "-Q",
        "critical",
        "-c",
        "1",
        "--without-mingle",
        "--without-gossip",
    ]
    assert check_command(ok, "ok").queues == {"critical"}
    worker = ["memtasks", "worker", "-l", "info"]
    assert check_command(worker, "ok", {"MEMTASKS_WORKER_QUEUES": "bulk,llm"}).queues == {"bulk", "llm"}
    assert check_command(worker, "ok", {}).queues == QUEUES
    assert check_command(worker, "ok").queues is None
    with pytest.raises(AssertionError, match="unknown queue 'urgent'"):
        check_command(worker, "bad", {"MEMTASKS_WORKER_QUEUES": "critical,urgent"})
    bad = [
        ["celery", "-A", CELERY_APP, "inspect", "ping"],
        ["celery", "-A", "memtasks.app", "worker"],
        [*ok[:5], "critical,urgent", *ok[6:]],
        [*ok, "-B"],
        ["memtasks", "db", "downgrade"],
        ["memtasks", "migrate"],
        ["python", "-m", "memtasks"],
        ["memtasks", "worker", "-Q", "critical"],
        ["memtasks", "worker", "-c", "2"],
        ["memtasks", "worker", "-B"],
        ["memtasks", "metrics", "--port", "9808"],
        ["memtasks", "flower", "--port=5555"],
    ]
    for argv in bad:
        with pytest.raises(AssertionError):
            check_command(argv, "bad")


# ── settings ─────────────────────────────────────────────────────────────────


def deploy_files() -> list[Path]:
    return sorted(p for p in DEPLOY.rglob("*") if p.is_file())


def test_every_memtasks_variable_named_in_deploy_is_a_setting() -> None:
    found: dict[str, set[str]] = {}
    for path in deploy_files():
        for name in SETTING_NAME.findall(path.read_text()):
            found.setdefault(name, set()).add(str(path.relative_to(DEPLOY)))
    unknown = {name: sorted(paths) for name, paths in found.items() if name not in SETTING_NAMES}
    assert not unknown, f"not fields of memtasks.config.Settings: {unknown}"
    # Each kind of artefact names the settings it deploys with.
    for part in ("compose.yaml", "Dockerfile", "systemd/memtasks.env.example", "helm/memtasks/values.yaml"):
        assert any(part in paths for paths in found.values()), f"{part} names no MEMTASKS_* variable"


def variables_set_in_deploy() -> dict[str, set[str]]:
    """Every environment variable the deploy files give a value → where."""
    found: dict[str, set[str]] = {}

    def add(names: object, where: str) -> None:
        for name in names:  # type: ignore[attr-defined]
            found.setdefault(str(name), set()).add(where)

    compose = load_yaml(COMPOSE)
    for name, service in compose["services"].items():
        add(service.get("environment", {}), f"compose.yaml {name}")
    add(
        (
            word.split("=", 1)[0]
            for keyword, args in dockerfile_instructions()
            if keyword == "ENV"
            for word in args.split()
        ),
        "Dockerfile",
    )
    for path in sorted(SYSTEMD.iterdir()):
        if path.name.endswith(".env.example"):
            add(parse_env_file(path), f"systemd/{path.name}")
        elif path.suffix == ".service":
            for value in values_of(parse_unit(path), "Service", "Environment"):
                add((word.split("=", 1)[0] for word in shlex.split(value)), f"systemd/{path.name}")
    add(load_yaml(CHART / "values.yaml")["config"], "values.yaml config")
    for path in sorted((CHART / "templates").iterdir()):
        text = path.read_text()
        add(re.findall(r"- name: ([A-Za-z_][A-Za-z0-9_]*)\n\s+value:", text), f"helm/{path.name} env")
        if path.name in {"secret.yaml", "_helpers.tpl"}:  # stringData keys
            add(re.findall(r"^\s*([A-Z][A-Z0-9_]*): \{\{", text, flags=re.MULTILINE), f"helm/{path.name}")
    return found


def test_every_variable_the_deploy_files_set_is_a_setting_or_another_programs() -> None:
    found = variables_set_in_deploy()
    unknown = {
        name: sorted(where)
        for name, where in found.items()
        if name not in SETTING_NAMES and name not in OTHER_PROGRAMS_VARIABLES
    }
    assert not unknown, f"neither a memtasks setting nor a variable of another program: {unknown}"
    # The reader sees each kind of file (a reader that found nothing would pass above).
    for name, where in (
        ("MEMTASKS_WORKER_QUEUES", "compose.yaml worker-critical"),
        ("MEMTASKS_WORKER_CONCURRENCY", "Dockerfile"),
        ("MEMTASKS_WORKER_QUEUES", "systemd/worker-bulk.env.example"),
        ("MEMTASKS_WORKER_QUEUES", "systemd/memtasks-worker@.service"),
        ("MEMTASKS_WORKER_QUEUES", "helm/worker-deployment.yaml env"),
        ("MEMTASKS_FLOWER_PORT", "helm/flower-deployment.yaml env"),
        ("MEMTASKS_METRICS_PORT", "helm/metrics-deployment.yaml env"),
        ("MEMTASKS_DATABASE_URL", "helm/_helpers.tpl"),
        ("FLOWER_BASIC_AUTH", "helm/secret.yaml"),
        ("MEMTASKS_AUTO_MIGRATE", "values.yaml config"),
    ):
        assert where in found.get(name, set()), f"{name} not read from {where}"


def assert_valid_settings(env: dict[str, str], monkeypatch: pytest.MonkeyPatch, where: str) -> Settings:
    for name, value in env.items():
        assert name in SETTING_NAMES, f"{where}: {name} is not a setting"
        monkeypatch.setenv(name, value)
    settings = load_settings()
    assert settings.auto_migrate is False, f"{where}: MEMTASKS_AUTO_MIGRATE must be false (migrate runs once)"
    return settings


# ── Dockerfile ───────────────────────────────────────────────────────────────


def dockerfile_instructions() -> list[tuple[str, str]]:
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        keyword, _, args = line.partition(" ")
        instructions.append((keyword.upper(), args.strip()))
    assert not pending, "the Dockerfile ends inside a continued line"
    return instructions


def exec_form(args: str, keyword: str) -> list[str]:
    try:
        argv = json.loads(args)
    except json.JSONDecodeError:
        argv = None
    assert isinstance(argv, list), (
        f"{keyword} must be the exec form (JSON list): a shell as PID 1 eats SIGTERM"
    )
    return argv


def test_the_dockerfile_builds_one_non_root_image_of_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    instructions = dockerfile_instructions()
    keywords = [keyword for keyword, _ in instructions]
    assert keywords[0] == "FROM"
    image = instructions[0][1]
    # Pinned: an exact Python patch release on a named Debian release, never a moving tag.
    match = re.fullmatch(r"python:(\d+\.\d+)\.\d+-slim-[a-z]+", image)
    assert match, f"base image {image} is not pinned to an exact release"
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    assert match[1] + ".0" in SpecifierSet(requires), f"{image} does not satisfy requires-python {requires}"

    copied: set[str] = set()
    for keyword, args in instructions:
        if keyword == "COPY":
            assert "--from" not in args
            *sources, _ = args.split()
            for source in sources:
                assert (ROOT / source).exists(), f"COPY {source}: not in the build context (repo root)"
                copied.add(source)
    assert {"pyproject.toml", "README.md", "beat_schedule.py", "memtasks"} <= copied
    runs = " && ".join(args for keyword, args in instructions if keyword == "RUN")
    installed = re.search(r"pip install (--no-cache-dir )?-c constraints\.txt '\.\[([a-z,]+)\]'", runs)
    assert installed, "the package is not installed with the constraints file"
    assert ("COPY", "deploy/constraints.txt ./constraints.txt") in instructions
    pins = [line for line in (DEPLOY / "constraints.txt").read_text().splitlines() if line.strip()]
    assert pins and all(re.fullmatch(r"[A-Za-z0-9_.-]+==[^=\s]+", line) for line in pins), "pins only"
    pinned = {line.split("==")[0].lower() for line in pins}
    assert {"celery", "kombu", "sqlalchemy", "psycopg", "flower", "redis"} <= pinned
    healthcheck = [args for keyword, args in instructions if keyword == "HEALTHCHECK"]
    assert healthcheck and "inspect ping" in healthcheck[0], "the default role (a worker) has a health check"
    # The base install is the broker-only client: every process of the image needs these.
    assert set(installed.group(2).split(",")) >= {"worker", "postgres", "flower"}

    assert ("WORKDIR", "/app") in instructions
    assert ("VOLUME", DATA_DIR) in instructions
    env = dict(
        word.split("=", 1) for keyword, args in instructions if keyword == "ENV" for word in args.split()
    )
    assert env["MEMTASKS_DATA_DIR"] == DATA_DIR

    users = [args for keyword, args in instructions if keyword == "USER"]
    assert users, "the image runs as root"
    user = users[-1].split(":")[0]
    assert user not in {"root", "0"}
    assert keywords.index("USER") > max(i for i, k in enumerate(keywords) if k == "RUN"), "RUN after USER"
    # Kubernetes' runAsNonRoot needs the numeric id, the same as the chart's.
    values = load_yaml(CHART / "values.yaml")
    assert user == str(values["podSecurityContext"]["runAsUser"])

    entrypoint = [args for keyword, args in instructions if keyword == "ENTRYPOINT"]
    cmd = [args for keyword, args in instructions if keyword == "CMD"]
    assert cmd, "no default command"
    argv = (exec_form(entrypoint[-1], "ENTRYPOINT") if entrypoint else []) + exec_form(cmd[-1], "CMD")
    command = check_command(argv, "Dockerfile CMD", env)
    assert command == Command("memtasks", ("worker",), frozenset(QUEUES)), (
        "the default worker takes every queue"
    )
    with monkeypatch.context() as patch:
        for name, value in env.items():
            if name.startswith("MEMTASKS_"):
                assert name in SETTING_NAMES, f"Dockerfile ENV {name} is not a setting"
                patch.setenv(name, value)
        assert load_settings().worker_concurrency == 4, "a container's CPU count is the host's: say how many"


# ── Compose ──────────────────────────────────────────────────────────────────

REQUIRED_SERVICES = {
    "redis",
    "postgres",
    "migrate",
    "worker-critical",
    "worker-bulk",
    "worker-maintenance",
    "beat",
    "flower",
    "metrics",
    "web",
}


REQUIRED_SECRETS = {
    "POSTGRES_PASSWORD": "pw-of-the-test",
    "FLOWER_BASIC_AUTH": "ops:pw-of-the-test",
    "MEMTASKS_WEB_BASIC_AUTH": "ops:pw-of-the-test",
}
"""Compose variables with no default (``${VAR:?message}``): the secrets an operator must set."""


def interpolate(value: str) -> str:
    """Compose's ``${VAR:-default}`` with VAR unset; ``${VAR:?…}`` (a required secret) with a
    test value; a variable with neither fails."""

    def default(match: re.Match[str]) -> str:
        if match[2] == "?":
            assert match[1] in REQUIRED_SECRETS, f"${{{match[1]}}} is required but not a known secret"
            return REQUIRED_SECRETS[match[1]]
        assert match[3] is not None, f"${{{match[1]}}} has no default"
        return match[3]

    return re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::([-?])([^}]*))?\}", default, value)


def seconds(duration: str) -> float:
    parts = re.findall(r"(\d+(?:\.\d+)?)(h|m|s)", duration)
    assert parts and "".join(n + u for n, u in parts) == duration, f"duration {duration!r}"
    return sum(float(n) * {"h": 3600, "m": 60, "s": 1}[u] for n, u in parts)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    document = load_yaml(COMPOSE)
    assert isinstance(document, dict)
    return document


def app_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: service for name, service in compose["services"].items() if "build" in service}


def test_compose_has_every_service_built_from_the_repository(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) >= REQUIRED_SERVICES
    assert services["redis"]["image"].startswith("redis:7")
    assert services["postgres"]["image"].startswith("postgres:16")
    assert "x-memtasks-env" in compose
    apps = app_services(compose)
    assert set(apps) == REQUIRED_SERVICES - {"redis", "postgres"}
    for name, service in apps.items():
        assert service["build"] == {"context": "..", "dockerfile": "deploy/Dockerfile"}, name
        assert (COMPOSE.parent / service["build"]["context"] / service["build"]["dockerfile"]).resolve() == (
            DOCKERFILE.resolve()
        )


def test_compose_commands_exist_and_every_queue_is_consumed(compose: dict[str, Any]) -> None:
    commands = {
        name: check_command(
            service["command"],
            f"compose {name}",
            {k: interpolate(str(v)) for k, v in service["environment"].items()},
        )
        for name, service in app_services(compose).items()
    }
    consumed = set()
    for name, command in commands.items():
        if command.words == ("worker",):
            assert command.queues, name
            consumed |= command.queues
            service = compose["services"][name]
            assert service["stop_signal"] == "SIGTERM", name
            assert seconds(service["stop_grace_period"]) >= 600, f"{name}: no time for a warm shutdown"
    assert consumed == QUEUES
    assert commands["migrate"] == Command("memtasks", ("db", "upgrade"), None)
    assert commands["metrics"].words == ("metrics",)
    assert commands["flower"].words == ("flower",)
    assert {name for name, command in commands.items() if command.words == ("worker",)} == {
        "worker-critical",
        "worker-bulk",
        "worker-maintenance",
    }


def test_compose_runs_exactly_one_beat(compose: dict[str, Any]) -> None:
    beats = [
        name
        for name, service in app_services(compose).items()
        if check_command(service["command"], name).words == ("beat",)
    ]
    assert beats == ["beat"]
    service = compose["services"]["beat"]
    assert service["deploy"]["replicas"] == 1
    assert "scale" not in service


def test_compose_migrates_first_and_once(compose: dict[str, Any]) -> None:
    services = compose["services"]
    migrate = services["migrate"]
    assert migrate["restart"] == "no"
    assert migrate["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert "pg_isready" in services["postgres"]["healthcheck"]["test"]
    for name in set(app_services(compose)) - {"migrate"}:
        depends = services[name]["depends_on"]
        assert depends["migrate"]["condition"] == "service_completed_successfully", name


def test_compose_settings_are_valid_and_point_at_its_services(
    compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    services = compose["services"]
    shared = compose["x-memtasks-env"]
    for name, service in app_services(compose).items():
        env = {k: interpolate(str(v)) for k, v in service["environment"].items()}
        assert {k: interpolate(str(v)) for k, v in shared.items()}.items() <= env.items(), name
        settings_env = {k: v for k, v in env.items() if k.startswith("MEMTASKS_")}
        with monkeypatch.context() as patch:
            settings = assert_valid_settings(settings_env, patch, f"compose {name}")
        assert settings.data_dir == Path(DATA_DIR)
        for url in (settings.resolved_database_url, settings.broker_url, settings.lock_redis_url):
            assert urlsplit(url).hostname in services, f"{name}: {url} is not a compose service"
        database = urlsplit(settings.resolved_database_url)
        postgres = {k: interpolate(str(v)) for k, v in services["postgres"]["environment"].items()}
        assert (database.username, database.password, database.path) == (
            postgres["POSTGRES_USER"],
            postgres["POSTGRES_PASSWORD"],
            "/" + postgres["POSTGRES_DB"],
        )
        if name == "flower":  # the published port is the one `memtasks flower` listens on
            assert f"{settings.flower_port}:{settings.flower_port}" in service["ports"]
        if name == "metrics":
            assert f"{settings.metrics_port}:{settings.metrics_port}" in service["ports"]
            assert settings.metrics_address == "0.0.0.0", "the exporter must be reachable from outside"
    flower = services["flower"]
    assert re.fullmatch(r"[^:]+:.+", interpolate(flower["environment"]["FLOWER_BASIC_AUTH"]))
    assert "5555:5555" in flower["ports"]
    assert "9808:9808" in services["metrics"]["ports"]
    web = services["web"]
    assert re.fullmatch(r"[^:]+:.+", interpolate(web["environment"]["MEMTASKS_WEB_BASIC_AUTH"]))
    assert web["environment"]["MEMTASKS_WEB_ADDRESS"] == "0.0.0.0" and "9810:9810" in web["ports"]
    assert "/healthz" in " ".join(web["healthcheck"]["test"])


# ── systemd ──────────────────────────────────────────────────────────────────

UNITS = [
    "memtasks-migrate.service",
    "memtasks-worker@.service",
    "memtasks-beat.service",
    "memtasks-flower.service",
    "memtasks-metrics.service",
]
MIGRATE_UNIT = "memtasks-migrate.service"


def parse_unit(path: Path) -> dict[str, list[tuple[str, str]]]:
    """A unit file: section → [(key, value)], duplicates kept, continued lines joined."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current = None
    pending = ""
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.strip()
        if not pending and (not line or line[0] in "#;"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line, pending = pending + line, ""
        if line.startswith("["):
            assert line.endswith("]"), f"{path.name}:{number}: {raw!r}"
            current = line[1:-1]
            assert current not in sections, f"{path.name}: section [{current}] twice"
            sections[current] = []
            continue
        assert current is not None and "=" in line, f"{path.name}:{number}: {raw!r}"
        key, _, value = line.partition("=")
        sections[current].append((key.strip(), value.strip()))
    return sections


def values_of(unit: dict[str, list[tuple[str, str]]], section: str, key: str) -> list[str]:
    return [value for k, value in unit.get(section, []) if k == key]


def single(unit: dict[str, list[tuple[str, str]]], section: str, key: str) -> str:
    found = values_of(unit, section, key)
    assert len(found) == 1, f"[{section}] {key}: {found}"
    return found[0]


def parse_env_file(path: Path) -> dict[str, str]:
    env = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        assert sep and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key), f"{path.name}: {raw!r}"
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        else:
            assert '"' not in value, f"{path.name}: systemd removes unescaped double quotes: {raw!r}"
        env[key] = value
    return env


@pytest.mark.parametrize("name", UNITS)
def test_each_unit_runs_an_existing_command_as_memtasks(name: str) -> None:
    unit = parse_unit(SYSTEMD / name)
    assert {"Unit", "Service", "Install"} <= set(unit), name
    assert single(unit, "Install", "WantedBy") == "multi-user.target"
    assert single(unit, "Service", "User") == "memtasks"
    assert single(unit, "Service", "Restart") == "on-failure"
    assert "/etc/memtasks/memtasks.env" in values_of(unit, "Service", "EnvironmentFile")
    exec_start = single(unit, "Service", "ExecStart")
    assert exec_start.startswith("/opt/memtasks/venv/bin/"), exec_start
    check_command(shlex.split(exec_start), name)


@pytest.mark.parametrize("name", ["memtasks-worker@.service", "memtasks-beat.service"])
def test_workers_and_beat_stop_warm_and_start_after_the_migration(name: str) -> None:
    unit = parse_unit(SYSTEMD / name)
    assert single(unit, "Service", "KillMode") == "mixed"
    assert single(unit, "Service", "KillSignal") == "SIGTERM"
    assert int(single(unit, "Service", "TimeoutStopSec")) >= 600
    for key in ("Requires", "After"):
        assert MIGRATE_UNIT in " ".join(values_of(unit, "Unit", key)).split(), (
            f"{name}: no {key}={MIGRATE_UNIT}"
        )


def test_the_migrate_unit_is_a_oneshot_db_upgrade() -> None:
    unit = parse_unit(SYSTEMD / MIGRATE_UNIT)
    assert single(unit, "Service", "Type") == "oneshot"
    assert single(unit, "Service", "RemainAfterExit") == "yes"
    command = check_command(shlex.split(single(unit, "Service", "ExecStart")), MIGRATE_UNIT)
    assert command.words == ("db", "upgrade")


def test_the_worker_template_reads_its_queues_from_its_group_file(monkeypatch: pytest.MonkeyPatch) -> None:
    unit = parse_unit(SYSTEMD / "memtasks-worker@.service")
    assert "-/etc/memtasks/worker-%i.env" in values_of(unit, "Service", "EnvironmentFile")
    assert values_of(unit, "Service", "Environment") == [
        "MEMTASKS_WORKER_QUEUES=%i MEMTASKS_WORKER_CONCURRENCY=2"
    ], "without its group file, a worker consumes the queue named like the instance"
    argv = shlex.split(single(unit, "Service", "ExecStart"))
    assert check_command(argv, "memtasks-worker@.service").words == ("worker",)
    assert "-n" in argv, "several worker groups on one host need distinct node names"
    consumed: set[str] = set()
    examples = sorted(SYSTEMD.glob("worker-*.env.example"))
    assert SYSTEMD / "worker-critical.env.example" in examples
    for path in examples:
        env = parse_env_file(path)
        assert set(env) == {"MEMTASKS_WORKER_QUEUES", "MEMTASKS_WORKER_CONCURRENCY"}, path.name
        with monkeypatch.context() as patch:
            for name, value in env.items():
                patch.setenv(name, value)
            settings = load_settings()
        assert settings.worker_concurrency is not None and settings.worker_concurrency >= 1
        consumed |= set(settings.worker_queues.split(","))
    assert consumed == QUEUES


def test_the_environment_examples_are_valid(monkeypatch: pytest.MonkeyPatch) -> None:
    env = parse_env_file(SYSTEMD / "memtasks.env.example")
    assert {"MEMTASKS_DATABASE_URL", "MEMTASKS_BROKER_URL", "MEMTASKS_LOCK_REDIS_URL"} <= set(env)
    settings = assert_valid_settings(env, monkeypatch, "memtasks.env.example")
    assert settings.data_dir == Path(DATA_DIR)
    assert settings.metrics_address == "0.0.0.0", "the exporter must be reachable from outside"
    assert "MEMTASKS_WORKER_QUEUES" not in env, "each worker group's file sets its queues"
    flower = parse_env_file(SYSTEMD / "flower.env.example")
    assert flower["FLOWER_BASIC_AUTH"] == "", (
        "no default password is shipped (tests/security checks the rest)"
    )
    unit = parse_unit(SYSTEMD / "memtasks-flower.service")
    assert "/etc/memtasks/flower.env" in values_of(unit, "Service", "EnvironmentFile"), "Flower without auth"


def require_systemd_analyze() -> None:
    if shutil.which("systemd-analyze") is None:
        pytest.fail(
            "systemd-analyze is not installed (Debian: apt-get install systemd; `make test` installs it)"
        )


def test_systemd_analyze_verifies_the_units(tmp_path: Path) -> None:
    require_systemd_analyze()
    for name in UNITS:
        shutil.copy(SYSTEMD / name, tmp_path / name)
    for group in ("critical", "bulk", "maintenance"):
        shutil.copy(SYSTEMD / "memtasks-worker@.service", tmp_path / f"memtasks-worker@{group}.service")
    units = [str(p) for p in sorted(tmp_path.glob("*.service")) if not p.name.endswith("@.service")]
    result = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", *units],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    # The virtualenv is not installed on this machine: that is the one complaint allowed.
    missing = re.compile(r"^[\w@.-]+: Command /opt/memtasks/venv/bin/(celery|memtasks) is not executable")
    problems = [
        line for line in (result.stdout + result.stderr).splitlines() if line and not missing.match(line)
    ]
    assert not problems, "\n".join(problems)


# ── Helm ─────────────────────────────────────────────────────────────────────

TEMPLATES = {
    "_helpers.tpl",
    "worker-deployment.yaml",
    "beat-deployment.yaml",
    "flower-deployment.yaml",
    "metrics-deployment.yaml",
    "migrate-job.yaml",
    "secret.yaml",
    "configmap.yaml",
    "NOTES.txt",
    "pdb.yaml",
    "keda-scaledobject.yaml",
    "servicemonitor.yaml",
    "web-deployment.yaml",
}


def template(name: str) -> str:
    return (CHART / "templates" / name).read_text()


def template_commands(text: str, where: str) -> list[list[str]]:
    """``command: [...]`` lines, each template expression a placeholder string."""
    commands = []
    for line in re.findall(r"^\s*command:\s*(\[.*\])\s*$", text, flags=re.MULTILINE):
        flat = re.sub(r"\{\{.*?\}\}", json.dumps(PLACEHOLDER), line)
        argv = json.loads(flat)
        check_command(argv, where)
        commands.append(argv)
    return commands


@pytest.fixture(scope="module")
def values() -> dict[str, Any]:
    document = load_yaml(CHART / "values.yaml")
    assert isinstance(document, dict)
    return document


def test_the_chart_has_its_metadata_and_every_template() -> None:
    chart = load_yaml(CHART / "Chart.yaml")
    assert chart["apiVersion"] == "v2"
    assert chart["name"] == "memtasks"
    assert chart["type"] == "application"
    assert re.fullmatch(r"\d+\.\d+\.\d+", chart["version"])
    # The image tag defaults to appVersion: the version of the package it installs.
    assert chart["appVersion"] == installed_version("memtasks")
    assert {p.name for p in (CHART / "templates").iterdir()} == TEMPLATES


@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_each_template_is_balanced_and_uses_defined_helpers_and_values(
    name: str, values: dict[str, Any]
) -> None:
    text = template(name)
    assert text.count("{{") == text.count("}}"), name
    opened = len(re.findall(r"\{\{-?\s*(?:if|range|with|define|block)\b", text))
    closed = len(re.findall(r"\{\{-?\s*end\b", text))
    assert opened == closed, f"{name}: {opened} blocks opened, {closed} closed"
    defined = set(re.findall(r'\{\{-?\s*define\s+"([^"]+)"', template("_helpers.tpl")))
    for helper in re.findall(r'include\s+"([^"]+)"', text):
        assert helper in defined, f"{name}: include of undefined {helper!r}"
    for top, second in re.findall(r"\.Values\.([A-Za-z0-9_]+)(?:\.([A-Za-z0-9_]+))?", text):
        assert top in values, f"{name}: .Values.{top} is not in values.yaml"
        if second:
            assert isinstance(values[top], dict) and second in values[top], f"{name}: .Values.{top}.{second}"


def test_workers_and_beat_have_probes_budgets_and_resources(values: dict[str, Any]) -> None:
    """Liveness and readiness for every worker group (a remote-control ping through the
    broker), liveness for beat (its schedule file keeps being written), a disruption budget
    for groups of more than one pod, requests and limits everywhere."""
    worker = template("worker-deployment.yaml")
    for probe in ("livenessProbe", "readinessProbe"):
        assert f"{{{{- with $.Values.worker.{probe} }}}}\n          {probe}:" in worker, probe
        command = " ".join(values["worker"][probe]["exec"]["command"])
        assert "inspect ping -d celery@$(hostname)" in command, command
        assert values["worker"][probe]["timeoutSeconds"] >= 10
    assert "livenessProbe:" in template("beat-deployment.yaml")
    beat = " ".join(values["beat"]["livenessProbe"]["exec"]["command"])
    assert "celerybeat-schedule" in beat and "-mmin" in beat
    pdb = template("pdb.yaml")
    assert "kind: PodDisruptionBudget" in pdb and "maxUnavailable" in pdb
    assert values["podDisruptionBudget"] == {"enabled": True, "maxUnavailable": 1}
    assert any(w["replicas"] > 1 for w in values["workers"]), "a budget applies to some group"
    parts = [
        *values["workers"],
        values["beat"],
        values["flower"],
        values["metrics"],
        values["web"],
        values["migrate"],
    ]
    for part in parts:
        resources = part["resources"]
        assert resources["requests"]["cpu"] and resources["requests"]["memory"], part
        assert resources["limits"]["memory"], part


def test_optional_autoscaler_and_service_monitor(values: dict[str, Any]) -> None:
    keda = template("keda-scaledobject.yaml")
    assert keda.lstrip().startswith("{{- /*") and "{{- if .Values.autoscaling.enabled }}" in keda
    assert (
        "kind: ScaledObject" in keda and "type: postgresql" in keda and "kind: TriggerAuthentication" in keda
    )
    assert values["autoscaling"]["enabled"] is False
    query = values["autoscaling"]["query"]
    assert "status = 'ready'" in query and "state = 'pending'" in query and "now()" in query
    monitor = template("servicemonitor.yaml")
    assert "kind: ServiceMonitor" in monitor and "port: metrics" in monitor
    assert values["metrics"]["serviceMonitor"]["enabled"] is False


def test_the_chart_values_deploy_every_queue_with_valid_settings(
    values: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    consumed = set()
    names_seen = []
    for worker in values["workers"]:
        assert {"name", "queues", "concurrency", "replicas"} <= set(worker), worker
        assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", worker["name"]), worker["name"]
        assert set(worker["queues"]) <= QUEUES, worker
        assert isinstance(worker["concurrency"], int) and worker["concurrency"] >= 1
        assert isinstance(worker["replicas"], int) and worker["replicas"] >= 0
        consumed |= set(worker["queues"])
        names_seen.append(worker["name"])
    assert consumed == QUEUES
    assert len(names_seen) == len(set(names_seen))
    assert values["worker"]["terminationGracePeriodSeconds"] >= 600
    config = {k: str(v) for k, v in values["config"].items()}
    settings = assert_valid_settings(config, monkeypatch, "values.yaml config")
    assert settings.data_dir == Path(DATA_DIR)
    secrets = values["secrets"]
    assert {"existingSecret", "databaseUrl", "brokerUrl", "lockRedisUrl"} <= set(secrets)
    assert values["flower"]["basicAuth"] == "", "no default password is shipped: the install requires one"


def test_the_chart_templates_run_existing_commands() -> None:
    found = {}
    for name in sorted(TEMPLATES - {"_helpers.tpl", "NOTES.txt"}):
        for argv in template_commands(template(name), name):
            found[name] = check_command(argv, name)
    assert found["worker-deployment.yaml"].words == ("worker",)
    assert found["beat-deployment.yaml"].words == ("beat",)
    assert found["flower-deployment.yaml"].words == ("flower",)
    assert found["metrics-deployment.yaml"].words == ("metrics",)
    assert found["web-deployment.yaml"].words == ("web",)
    assert found["migrate-job.yaml"].words == ("db", "upgrade")
    worker = template("worker-deployment.yaml")
    assert re.search(r"range \$worker := \.Values\.workers", worker), "one Deployment per workers entry"
    assert re.search(
        r"- name: MEMTASKS_WORKER_QUEUES\n\s+value: \{\{ join \",\" .*\$worker\.queues", worker
    ), "a group's queues are its MEMTASKS_WORKER_QUEUES"
    assert re.search(r"- name: MEMTASKS_WORKER_CONCURRENCY\n\s+value: \{\{ \$worker\.concurrency", worker)
    assert "$worker.replicas" in worker
    assert re.search(
        r"- name: MEMTASKS_FLOWER_PORT\n\s+value: \{\{ \.Values\.flower\.port ",
        template("flower-deployment.yaml"),
    )
    metrics = template("metrics-deployment.yaml")
    assert re.search(r"- name: MEMTASKS_METRICS_PORT\n\s+value: \{\{ \.Values\.metrics\.port ", metrics)
    assert re.search(r'- name: MEMTASKS_METRICS_ADDRESS\n\s+value: "0\.0\.0\.0"', metrics)


def test_the_chart_runs_one_beat_and_migrates_in_a_hook() -> None:
    beat = template("beat-deployment.yaml")
    assert re.findall(r"^[ \t]*replicas:.*$", beat, flags=re.MULTILINE) == ["  replicas: 1"]
    assert re.search(r"strategy:\n\s+type: Recreate\n", beat)
    job = template("migrate-job.yaml").split("kind: Job", 1)
    assert len(job) == 2, "migrate-job.yaml has no Job"
    assert '"helm.sh/hook": pre-install,pre-upgrade' in job[1]
    assert '"helm.sh/hook-delete-policy": before-hook-creation' in job[1]
    assert "restartPolicy: Never" in job[1]


def test_the_chart_reads_settings_from_its_secret_and_configmap() -> None:
    helpers = template("_helpers.tpl")
    env_from = helpers.split('define "memtasks.envFrom"', 1)[1].split("{{- end }}", 1)[0]
    assert "configMapRef:" in env_from and "secretRef:" in env_from
    for name in (
        "worker-deployment.yaml",
        "beat-deployment.yaml",
        "flower-deployment.yaml",
        "metrics-deployment.yaml",
    ):
        assert re.search(r'envFrom:\n\s+\{\{- include "memtasks.envFrom"', template(name)), name
    secret_data = helpers.split('define "memtasks.secretData"', 1)[1].split("{{- end }}", 1)[0]
    for key in ("MEMTASKS_DATABASE_URL", "MEMTASKS_BROKER_URL", "MEMTASKS_LOCK_REDIS_URL"):
        assert f"{key}:" in secret_data
    secret = template("secret.yaml")
    assert secret.count("stringData:") == 3
    assert not re.search(r"^[ \t]*data:", secret, flags=re.MULTILINE), "values in stringData, not base64 data"
    assert "FLOWER_BASIC_AUTH:" in secret and ".Values.flower.basicAuth" in secret
    assert "MEMTASKS_WEB_BASIC_AUTH:" in secret and ".Values.web.basicAuth" in secret
    web = template("web-deployment.yaml")
    assert "path: /healthz" in web and "MEMTASKS_WEB_ADDRESS" in web and "-web" in web
    assert "range $name, $value := .Values.config" in template("configmap.yaml")


@pytest.mark.skipif(
    shutil.which("helm") is None,
    reason="helm is not installed and cannot be here: Debian ships no helm package and the tests"
    " download nothing; the chart is checked structurally by the tests above",
)
def test_helm_template_renders_the_chart(tmp_path: Path, values: dict[str, Any]) -> None:
    if yaml is None:
        pytest.skip("PyYAML is not installed: cannot read the rendered manifests")
    secrets = [
        "--set",
        "secrets.databaseUrl=postgresql+psycopg://m:pw@db:5432/m",
        "--set",
        "flower.basicAuth=ops:pw",
    ]
    result = subprocess.run(
        ["helm", "template", "demo", str(CHART), *secrets],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    docs = [doc for doc in yaml.safe_load_all(result.stdout) if doc]
    by_name = {(doc["kind"], doc["metadata"]["name"]): doc for doc in docs}
    workers = [worker["name"] for worker in values["workers"]]
    for worker in values["workers"]:
        deployment = by_name["Deployment", f"demo-memtasks-worker-{worker['name']}"]
        assert deployment["spec"]["replicas"] == worker["replicas"]
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        env = {entry["name"]: entry["value"] for entry in container.get("env", [])}
        assert check_command(container["command"], worker["name"], env).queues == set(worker["queues"])
    assert by_name["Deployment", "demo-memtasks-beat"]["spec"]["replicas"] == 1
    job = by_name["Job", "demo-memtasks-migrate"]
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "pre-install,pre-upgrade"
    for doc in docs:
        if doc["kind"] in {"Deployment", "Job"}:
            for container in doc["spec"]["template"]["spec"]["containers"]:
                check_command(container["command"], doc["metadata"]["name"])
    assert len([d for d in docs if d["kind"] == "Deployment"]) == len(workers) + 3


SECURITY_MAX = 3.0


@pytest.mark.parametrize("name", UNITS)
def test_every_unit_is_hardened(name: str, tmp_path: Path) -> None:
    """``systemd-analyze security`` rates each unit at most 3.0 ("OK"): no privileges, no
    devices, a read-only system but the state directory, IP and Unix sockets only."""
    require_systemd_analyze()
    unit = tmp_path / (name.replace("@.service", "@critical.service"))
    shutil.copy(SYSTEMD / name, unit)
    result = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", "--no-pager", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    found = re.search(r"Overall exposure level for \S+: (\d+(?:\.\d+)?)", result.stdout + result.stderr)
    assert found is not None, result.stdout[-2000:] + result.stderr[-2000:]
    assert float(found.group(1)) <= SECURITY_MAX, result.stdout[-4000:]


def test_compose_checks_the_health_of_every_long_running_service(compose: dict[str, Any]) -> None:
    """Each service that keeps running says how to tell it is healthy; the one-shot migration
    has none. Workers answer a ping through the broker, beat keeps writing its schedule,
    Flower and the exporter answer on their health endpoints."""
    services = compose["services"]
    for name, service in services.items():
        check = service.get("healthcheck")
        assert check is not None, f"{name} has no healthcheck"
        if name == "migrate":
            assert check == {"disable": True}
            continue
        test = " ".join(check["test"])
        assert check["interval"] and check["retries"] >= 3, name
        if name.startswith("worker-"):
            assert "inspect ping" in test, name
        elif name == "beat":
            assert "celerybeat-schedule" in test
        elif name == "flower":
            assert "/healthcheck" in test
        elif name == "metrics":
            assert "/healthz" in test
    for name, service in services.items():
        for needed, condition in service.get("depends_on", {}).items():
            if needed in {"redis", "postgres"}:
                assert condition["condition"] == "service_healthy", f"{name} → {needed}"
