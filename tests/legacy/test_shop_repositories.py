"""shop.repositories operations run directly on the legacy app's session."""

from __future__ import annotations

import pytest
from sqlalchemy import inspect, select, update
from sqlalchemy.orm import Session

from bridge._porting.repository import Operation, run_sync
from shop import repositories as repo
from shop.errors import ConflictError, NotFoundError, OutOfStockError, ValidationError
from shop.models import Order, OrderItem, Product, Review, User
from shop.seed import is_seeded
from shop.validation import NewProduct, NewReview, OrderLine


def stock_of(session: Session, product_id: int) -> int:
    return session.scalars(select(Product.stock).where(Product.id == product_id)).one()


def count(session: Session, model: type[object]) -> int:
    return len(session.scalars(select(model)).all())


def none_found(*args: object) -> Operation[None]:
    """An operation that finds nothing, as a lookup racing a concurrent insert would."""
    yield select(User.id).where(User.id == -1)
    return None


def test_merge_lines_adds_repeats_in_first_seen_order() -> None:
    lines = [OrderLine(5, 1), OrderLine(2, 2), OrderLine(5, 3)]
    assert repo.merge_lines(lines) == {5: 4, 2: 2}
    assert list(repo.merge_lines(lines)) == [5, 2]


def test_seed_is_seen(db_session: Session) -> None:
    assert run_sync(db_session, is_seeded()) is True


def test_place_order_merges_repeats_into_one_item(db_session: Session) -> None:
    order = run_sync(db_session, repo.place_order(3, [OrderLine(3, 2), OrderLine(3, 1)]))
    assert [(i.product_id, i.quantity) for i in order.items] == [(3, 3)]
    assert order.total_cents == 3 * 4599
    assert stock_of(db_session, 3) == 2


def test_guarded_decrement_takes_the_last_unit_then_refuses(db_session: Session) -> None:
    run_sync(db_session, repo.place_order(3, [OrderLine(25, 1)]))
    assert stock_of(db_session, 25) == 0
    with pytest.raises(OutOfStockError) as caught:
        run_sync(db_session, repo.place_order(3, [OrderLine(25, 1)]))
    assert (caught.value.product_id, caught.value.requested, caught.value.available) == (25, 1, 0)


def test_out_of_stock_leaves_earlier_decrements_for_the_rollback(db_session: Session) -> None:
    orders_before = count(db_session, Order)
    with pytest.raises(OutOfStockError):
        run_sync(db_session, repo.place_order(3, [OrderLine(1, 2), OrderLine(4, 1)]))
    assert stock_of(db_session, 1) == 10  # taken inside the transaction...
    db_session.rollback()
    assert stock_of(db_session, 1) == 12  # ...and given back by the caller's rollback
    assert count(db_session, Order) == orders_before


def test_unknown_product_is_reported_before_any_stock_is_taken(db_session: Session) -> None:
    with pytest.raises(NotFoundError, match="product 998 does not exist"):
        run_sync(db_session, repo.place_order(3, [OrderLine(1, 1), OrderLine(998, 1)]))
    assert stock_of(db_session, 1) == 12


def test_create_user_translates_the_unique_violation(
    db_session: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The lookup misses, as when another request inserts the same email just after it.
    monkeypatch.setattr(repo, "user_by_email", none_found)
    with pytest.raises(ConflictError, match=r"a user with email bob@example\.com already exists"):
        run_sync(db_session, repo.create_user("bob@example.com", "Bob", "hash"))
    db_session.rollback()
    assert count(db_session, User) == 3


def test_create_product_translates_the_unique_violation(
    db_session: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(repo, "product_by_sku", none_found)
    new = NewProduct("BK-001", "Again", "books", 1, 1)
    with pytest.raises(ConflictError, match="a product with sku BK-001 already exists"):
        run_sync(db_session, repo.create_product(new))
    db_session.rollback()


def test_cancel_order_trusts_the_database_over_the_loaded_status(db_session: Session) -> None:
    order = run_sync(db_session, repo.get_order(2))
    # Another request cancels it after it was loaded; this session's copy still says "placed".
    db_session.execute(
        update(Order)
        .where(Order.id == 2)
        .values(status="cancelled")
        .execution_options(synchronize_session=False)
    )
    assert order.status == "placed"
    with pytest.raises(ConflictError, match="order 2 is already cancelled"):
        run_sync(db_session, repo.cancel_order(order))
    assert stock_of(db_session, 1) == 12  # not restocked a second time


def test_cancel_order_updates_the_loaded_order(db_session: Session) -> None:
    order = run_sync(db_session, repo.cancel_order(run_sync(db_session, repo.get_order(2))))
    assert order.status == "cancelled"
    assert stock_of(db_session, 23) == 15


def test_delete_product_removes_its_reviews(db_session: Session) -> None:
    run_sync(db_session, repo.delete_product(21))
    assert db_session.scalars(select(Review).where(Review.product_id == 21)).all() == []
    assert run_sync(db_session, repo.product_by_id(21)) is None


def test_delete_ordered_product_is_refused(db_session: Session) -> None:
    with pytest.raises(ConflictError):
        run_sync(db_session, repo.delete_product(11))
    assert count(db_session, OrderItem) == 5


def test_create_review_loads_its_author(db_session: Session) -> None:
    review = run_sync(db_session, repo.create_review(2, 3, NewReview(4, "ok")))
    assert review.user.name == "Bob Builder"


def test_category_counts(db_session: Session) -> None:
    assert run_sync(db_session, repo.category_counts())[0] == repo.CategoryCount("books", 7)


def test_product_list_select_is_pure_and_checks_its_arguments() -> None:
    statement = repo.product_list_select(q="50%_off", sort="-price", in_stock=True)
    sql = str(statement.compile(compile_kwargs={"literal_binds": True}))
    assert "lower(products.name) LIKE '%' || '50/%/_off' || '%' ESCAPE '/'" in sql
    assert sql.endswith("ORDER BY products.price_cents DESC, products.id DESC")
    with pytest.raises(ValidationError, match="sort must be one of"):
        repo.product_list_select(sort="price desc")
    with pytest.raises(ValidationError, match="min_price must be an integer from 0"):
        repo.product_list_select(min_price=-1)


def test_update_product_leaves_every_column_loaded(db_session: Session) -> None:
    # The async side cannot lazy-load: after the flush nothing may be expired.
    product = run_sync(db_session, repo.update_product(1, {"price_cents": 1}))
    assert inspect(product).expired_attributes == set()
    assert inspect(product).unloaded == {"reviews"}
