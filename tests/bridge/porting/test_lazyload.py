"""Models as a legacy app has them: lazy on the Flask side, refused clearly in a port."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from flask import Flask, g
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import Engine, ForeignKey, String, delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncAttrs
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship, selectinload

from bridge import AsyncDatabase, AsyncDatabaseError, DbSession, run_async, scalar
from bridge._porting.database import DatabaseSettings
from bridge._porting.repository import Operation
from tests.bridge.apps import TABLE_SUFFIX
from tests.conftest import checked_out

pytestmark = [pytest.mark.anyio, pytest.mark.async_side]


class Base(AsyncAttrs, DeclarativeBase):
    pass


db = SQLAlchemy(model_class=Base)


class Author(db.Model):  # type: ignore[name-defined,misc]
    __tablename__ = f"lazy_author_{TABLE_SUFFIX}"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(50))
    books: Mapped[list[Book]] = relationship(back_populates="author", order_by="Book.id")

    @property
    def book_count(self) -> int:
        """As legacy models do: a query through Flask-SQLAlchemy's ``Model.query``."""
        return int(Book.query.filter_by(author_id=self.id).count())

    @property
    def is_mine(self) -> bool:
        """As legacy models do: who is asking, from Flask's ``g``."""
        return bool(g.user == self.name)


class Book(db.Model):  # type: ignore[name-defined,misc]
    __tablename__ = f"lazy_book_{TABLE_SUFFIX}"

    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(String(50))
    author_id: Mapped[int] = mapped_column(ForeignKey(Author.id))
    author: Mapped[Author] = relationship(back_populates="books")


LAZY_BOOKS = (
    "Author.books is not loaded and a port cannot load it lazily: add "
    ".options(selectinload(Author.books)) to the statement that loads the Author, "
    "or await obj.awaitable_attrs.books on a model with sqlalchemy.ext.asyncio.AsyncAttrs"
)


@pytest.fixture
def library(sync_engine: Engine) -> Iterator[Engine]:
    db.metadata.create_all(sync_engine)
    with sync_engine.begin() as connection:
        connection.execute(insert(Author), [{"id": 1, "name": "Le Guin"}])
        connection.execute(
            insert(Book),
            [
                {"id": 1, "title": "Earthsea", "author_id": 1},
                {"id": 2, "title": "Lathe", "author_id": 1},
            ],
        )
    yield sync_engine
    db.metadata.drop_all(sync_engine)


@pytest.fixture
def legacy(database_settings: DatabaseSettings, library: Engine) -> Iterator[Flask]:
    app = Flask(__name__)
    app.config.update(database_settings.flask_config())
    db.init_app(app)

    @app.get("/authors/<int:author_id>")
    def author(author_id: int) -> dict[str, Any]:
        found = db.get_or_404(Author, author_id)
        return {"books": [book.title for book in found.books], "count": found.book_count}

    @app.get("/books/<int:book_id>")
    def book(book_id: int) -> dict[str, Any]:
        return {"author": db.get_or_404(Book, book_id).author.name}

    yield app
    with app.app_context():
        leaked = checked_out(db.engine)
        db.engine.dispose()
    assert leaked == 0


def author_by_id(author_id: int) -> Operation[Author | None]:
    found: Author | None = yield from scalar(select(Author).where(Author.id == author_id))
    return found


def titles_of(author_id: int) -> Operation[list[str]]:
    """A repository operation written for the Flask side: it lazy-loads."""
    found = yield from author_by_id(author_id)
    assert found is not None
    return [book.title for book in found.books]


def ported(database: AsyncDatabase) -> FastAPI:
    app = FastAPI(lifespan=database.lifespan)
    database.install(app)

    @app.get("/lazy/{author_id}")
    async def lazy(author_id: int, session: DbSession) -> list[str]:
        found = await session.get(Author, author_id)
        assert found is not None
        return [book.title for book in found.books]

    @app.get("/operation/{author_id}")
    async def operation(author_id: int, session: DbSession) -> list[str]:
        return await run_async(session, titles_of(author_id))

    @app.get("/eager/{author_id}")
    async def eager(author_id: int, session: DbSession) -> list[str]:
        statement = select(Author).where(Author.id == author_id)
        found = await session.scalar(statement.options(selectinload(Author.books)))
        assert found is not None
        return [book.title for book in found.books]

    @app.get("/awaited/{author_id}")
    async def awaited(author_id: int, session: DbSession) -> list[str]:
        found = await session.get(Author, author_id)
        assert found is not None
        return [book.title for book in await found.awaitable_attrs.books]

    @app.get("/book/{book_id}")
    async def book(book_id: int, session: DbSession) -> str:
        found = await session.get(Book, book_id)
        assert found is not None
        return found.author.name

    @app.get("/book-after-author/{book_id}")
    async def book_after_author(book_id: int, session: DbSession) -> str:
        # The author in the identity map: no SQL, as on the Flask side.
        author = await session.get(Author, 1)
        found = await session.get(Book, book_id)
        assert found is not None
        assert found.author is author
        return found.author.name

    @app.post("/rename/{author_id}")
    async def rename(author_id: int, name: str, session: DbSession) -> str:
        # ORM statements that are not SELECTs run as they do on the Flask side.
        await session.execute(update(Author).where(Author.id == author_id).values(name=name))
        await session.execute(delete(Book).where(Book.author_id == author_id, Book.id == 2))
        found = await session.get(Author, author_id, populate_existing=True)
        assert found is not None
        return found.name

    @app.get("/mine/{author_id}")
    async def mine(author_id: int, session: DbSession) -> bool:
        found = await session.get(Author, author_id)
        assert found is not None
        return found.is_mine

    @app.get("/count/{author_id}")
    async def count(author_id: int, session: DbSession) -> int:
        found = await session.get(Author, author_id)
        assert found is not None
        return found.book_count

    return app


@asynccontextmanager
async def serving(database: AsyncDatabase) -> AsyncIterator[httpx.AsyncClient]:
    app = ported(database)
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://testserver") as client,
    ):
        yield client
        assert checked_out(database.engine.sync_engine) == 0


def test_the_flask_side_lazy_loads(legacy: Flask) -> None:
    client = legacy.test_client()

    assert client.get("/authors/1").json == {"books": ["Earthsea", "Lathe"], "count": 2}
    assert client.get("/books/2").json == {"author": "Le Guin"}


async def test_a_lazy_load_in_a_port_names_the_relationship_and_the_option(
    database_settings: DatabaseSettings, library: Engine
) -> None:
    async with serving(AsyncDatabase(database_settings)) as client:
        with pytest.raises(AsyncDatabaseError) as in_route:
            await client.get("/lazy/1")
        with pytest.raises(AsyncDatabaseError) as in_operation:
            await client.get("/operation/1")
        with pytest.raises(AsyncDatabaseError) as many_to_one:
            await client.get("/book/1")

    assert str(in_route.value) == LAZY_BOOKS
    assert str(in_operation.value) == LAZY_BOOKS
    assert str(many_to_one.value).startswith(
        "Book.author is not loaded and a port cannot load it lazily: "
        "add .options(selectinload(Book.author)) to the statement that loads the Book"
    )


async def test_loaded_relationships_work_in_a_port(
    database_settings: DatabaseSettings, library: Engine
) -> None:
    async with serving(AsyncDatabase(database_settings)) as client:
        eager = await client.get("/eager/1")
        awaited = await client.get("/awaited/1")
        from_identity_map = await client.get("/book-after-author/2")
        renamed = await client.post("/rename/1", params={"name": "Ursula"})
        after = await client.get("/eager/1")

    assert eager.json() == ["Earthsea", "Lathe"]
    assert awaited.json() == ["Earthsea", "Lathe"]
    assert from_identity_map.json() == "Le Guin"
    assert renamed.json() == "Ursula"
    assert after.json() == ["Earthsea"]


async def test_model_query_and_g_in_a_port_need_the_flask_app(
    database_settings: DatabaseSettings, library: Engine
) -> None:
    async with serving(AsyncDatabase(database_settings)) as client:
        with pytest.raises(RuntimeError, match=r"^Working outside of application context\."):
            await client.get("/count/1")
        with pytest.raises(RuntimeError, match=r"^Working outside of application context\."):
            await client.get("/mine/1")
