"""The database layer: engine.py (connections, migrations, schema check), models.py (tables),
and one query module per aggregate (accounts.py, projects.py, stats.py). Errors in errors.py."""
