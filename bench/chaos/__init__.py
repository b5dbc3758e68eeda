"""The chaos suite: thousands of jobs through a real fleet while its processes and servers fail.

``python -m bench.chaos`` (``make chaos``) starts a private ``redis-server`` and a private
PostgreSQL cluster, two or more ``celery worker`` processes and a ``celery beat``, enqueues
jobs of every memory-tree kind (their handlers write one effect row per job, in the job's
transaction) and, on a schedule and at random (seeded), kills worker processes with
``kill -9``, restarts and flushes Redis, restarts PostgreSQL or terminates its connections,
pauses a worker past its lease and runs two beats at once. A checker then proves that every
job ended, none was lost, no effect happened twice, no finished row changed afterwards and
every expired lease was taken over in time.

Modules: :mod:`.settings` (what a run uses), :mod:`.redis_server` and
:mod:`.postgres_server` (the private servers), :mod:`.fleet` (worker and beat processes),
:mod:`.handlers` (the effect-writing handlers the workers load), :mod:`.workload` (the jobs
and the paced producer), :mod:`.observer` (what the run watches while it goes),
:mod:`.faults` (the fault driver), :mod:`.checker` (the verdict) and :mod:`.run`.
"""
