"""The broker speaks JSON only: a pickle message is refused, logged once and dropped.

A pickle payload would run code when unpickled; the one here would create a marker file.
"""

from __future__ import annotations

import os
import pickle
import uuid
from pathlib import Path

import pytest
import redis
from kombu import Producer
from kombu.exceptions import ContentDisallowed
from kombu.serialization import loads
from sqlalchemy import func, select

from memtasks.config import load_settings
from memtasks.storage.engine import get_engine
from memtasks.storage.tables import mem_tree_jobs as t
from memtasks.worker import names
from memtasks.worker.app import create_app
from tests.pipeline.fleet import Fleet, fleet_env, wait_until
from tests.pipeline.test_pipeline import client_app, settings_from

pytestmark = pytest.mark.security

PICKLE = "application/x-python-serialize"
REFUSED = (
    "Received invalid task message: "
    "Refusing to deserialize untrusted content of type pickle (application/x-python-serialize)"
)
"""Celery's log line for a message whose content type is not in ``accept_content``."""


class CreatesFile:
    """Unpickling this object creates ``path`` (what an attacker's payload would do)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.mkdir, (str(self.path),))


def test_every_serializer_of_the_app_is_json() -> None:
    app = create_app(load_settings())
    conf = app.conf
    assert conf.accept_content == ["json"]
    assert conf.result_accept_content == ["json"]
    assert (conf.task_serializer, conf.result_serializer, conf.event_serializer) == ("json",) * 3
    assert conf.result_backend is None and conf.task_ignore_result is True, "no result backend to poison"
    # Remote control (``celery inspect``, Flower's buttons) and events obey the same rule.
    assert app.control.mailbox.accept == ["json"] and app.control.mailbox.serializer == "json"
    with app.connection_for_read() as conn:
        assert app.events.Receiver(conn, handlers={}).accept == {"json"}
        assert app.amqp.TaskConsumer(conn).accept == {"application/json"}


def test_the_apps_accept_list_refuses_a_pickle_before_unpickling_it(tmp_path: Path) -> None:
    marker = tmp_path / "unpickled"
    body = pickle.dumps(((CreatesFile(marker),), {}, {}))
    accept = create_app(load_settings()).conf.accept_content
    with pytest.raises(ContentDisallowed, match="untrusted content of type pickle"):
        loads(body, PICKLE, "binary", accept=accept)
    assert not marker.exists()
    loads(body, PICKLE, "binary", accept=[PICKLE])  # the payload is live: unpickling creates the file
    assert marker.exists()


def _rows(db_url: str) -> int:
    with get_engine(db_url).connect() as conn:
        return int(conn.execute(select(func.count()).select_from(t)).scalar_one())


def _done(db_url: str) -> int:
    with get_engine(db_url).connect() as conn:
        return int(conn.execute(select(func.count()).select_from(t).where(t.c.status == "done")).scalar_one())


@pytest.mark.integration
@pytest.mark.slow
def test_a_live_worker_refuses_pickle_messages_logs_them_once_and_keeps_working(
    fleet: Fleet, tmp_path: Path, broker_url: str, lock_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    db_url = f"sqlite:///{tmp_path}/pickle.sqlite3"
    fleet.env = fleet_env(database_url=db_url, broker_url=broker_url, lock_redis_url=lock_url)
    settings = settings_from(fleet.env, monkeypatch)
    fleet.worker(queues="default,critical", concurrency=1)
    marker = tmp_path / "unpickled"

    def valid_enqueue(app: object, tree: str) -> None:
        app.send_task(  # type: ignore[attr-defined]
            names.MEM_TREE_ENQUEUE,
            kwargs={"kind": "seal", "payload": {"tree_id": tree, "level": 0}},
            queue=names.DEFAULT,
        )

    with client_app(settings) as app:
        # 1. A producer that sends its task with the pickle serializer.
        app.send_task(
            names.MEM_TREE_ENQUEUE,
            kwargs={"kind": "seal", "payload": {"tree_id": CreatesFile(marker), "level": 0}},
            queue=names.DEFAULT,
            serializer="pickle",
        )
        # 2. A hand-made message on the wire: a protocol-2 task whose body is a pickle.
        task_id = str(uuid.uuid4())
        with app.connection_for_write() as conn:
            queue = app.amqp.queues[names.CRITICAL]
            Producer(conn).publish(
                pickle.dumps(((CreatesFile(marker),), {}, {"callbacks": None, "errbacks": None})),
                exchange=queue.exchange,
                routing_key=names.CRITICAL,
                content_type=PICKLE,
                content_encoding="binary",
                headers={"lang": "py", "task": names.MEM_TREE_RUN, "id": task_id, "root_id": task_id},
                declare=[queue],
            )
        # 3. Then a valid message: the worker still runs jobs.
        valid_enqueue(app, "after-pickle")

    wait_until(lambda: _done(db_url) == 1, 60, "the valid job after the pickles done", fleet)
    wait_until(lambda: fleet.log("w1").count(REFUSED) == 2, 30, "both pickles refused in the log", fleet)
    log = fleet.log("w1")
    assert log.count("The message has been ignored and discarded.") == 2
    assert not marker.exists(), "a pickle was unpickled"

    # Dropped, not redelivered: another round trip through the worker, and still two refusals,
    # nothing in the queues, nothing unacknowledged.
    with client_app(settings) as app:
        valid_enqueue(app, "later")
    wait_until(lambda: _done(db_url) == 2, 60, "a second valid job done", fleet)
    assert fleet.log("w1").count(REFUSED) == 2
    broker = redis.Redis.from_url(broker_url)
    queued = [key for key in broker.scan_iter("*") if broker.type(key) == b"list" and broker.llen(key)]
    assert queued == [], f"messages left in {queued}"
    assert broker.hlen("unacked") == 0
    assert _rows(db_url) == 2, "the pickled enqueue inserted nothing"
    assert fleet.processes["w1"].poll() is None, "the worker is still running"
    assert not marker.exists()
