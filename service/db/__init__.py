"""Storage of the service: SQLAlchemy models, engine/session factories, schema migrations."""
