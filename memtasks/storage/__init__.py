"""Storage: typed tables, engines, migrations and repositories (SQLAlchemy 2.0 Core)."""
