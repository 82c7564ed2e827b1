"""kb: a troubleshooting knowledge base for PostgreSQL errors with guided runbooks."""


def create_app(config=None):
    """Build the Flask application (see kb.web.app.create_app)."""
    from kb.web.app import create_app as _create_app

    return _create_app(config)
