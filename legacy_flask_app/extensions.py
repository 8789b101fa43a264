"""The Flask-SQLAlchemy extension, bound to the shop's declarative base.

``SQLAlchemy(model_class=Base)`` makes ``db.Model`` a copy of
:class:`shop.models.Base` that shares its registry and metadata, so the models
declared on ``Base`` (which the async side imports without Flask) work with
``db.session``, ``db.create_all()`` and ``db.paginate()``.

Views run repository operations with ``run_sync(db.session(), op)``:
``db.session`` is a ``scoped_session`` proxy, calling it gives the current
context's :class:`~sqlalchemy.orm.Session`, which is what ``run_sync`` takes.
"""

from __future__ import annotations

from flask_sqlalchemy import SQLAlchemy

from shop.models import Base

db = SQLAlchemy(model_class=Base)
