"""job tables vacuumed as queue tables

Every job writes its row three times (insert, claim, settle) and the prune deletes it: on
PostgreSQL each write leaves a dead row version behind until a vacuum. Autovacuum's default
waits for a fifth of a table to be dead (``autovacuum_vacuum_scale_factor`` 0.2): at a million
retained rows, 200,000 dead versions and the index entries pointing at them, which every claim
then walks past. The job tables vacuum and analyze after 1 % and 2 % instead (plus a fixed 1,000
rows), as queue tables are usually tuned. PostgreSQL only; SQLite reuses freed pages. A
downgrade restores the server's defaults.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04 04:00:00.000000
"""

from __future__ import annotations

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(
        "ALTER TABLE mem_tree_jobs SET (autovacuum_vacuum_scale_factor = 0.01,"
        " autovacuum_vacuum_threshold = 1000, autovacuum_analyze_scale_factor = 0.02)"
    )
    op.execute(
        "ALTER TABLE decay_jobs SET (autovacuum_vacuum_scale_factor = 0.01,"
        " autovacuum_vacuum_threshold = 1000, autovacuum_analyze_scale_factor = 0.02)"
    )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(
        "ALTER TABLE mem_tree_jobs RESET (autovacuum_vacuum_scale_factor,"
        " autovacuum_vacuum_threshold, autovacuum_analyze_scale_factor)"
    )
    op.execute(
        "ALTER TABLE decay_jobs RESET (autovacuum_vacuum_scale_factor,"
        " autovacuum_vacuum_threshold, autovacuum_analyze_scale_factor)"
    )
