"""The order state machine."""

from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from sigfuse.execution.orders import (Fill, InvalidTransition, Order, OrderState, TERMINAL_STATES)


def make_order(qty: float = 10.0) -> Order:
    return Order(client_order_id="sf0001-0000001", pair="BTC/USDT", side=0, qty=qty, limit_price=101.0,
                 venue="alpha", created_us=1)


def fill(qty: float, n: int = 1, price: float = 100.0) -> Fill:
    return Fill("alpha", f"alpha-{n}", "sf0001-0000001", "BTC/USDT", 0, qty, price, qty * price * 1e-4, n)


def test_happy_path_records_every_transition() -> None:
    order = make_order()
    order.transition(OrderState.SUBMITTED, 2)
    order.apply_fill(fill(4.0, 1))
    assert order.state is OrderState.PARTIALLY_FILLED
    order.apply_fill(fill(6.0, 2))
    assert order.state is OrderState.FILLED and order.remaining == 0.0
    assert [(t.from_state, t.to_state) for t in order.history] == [
        (OrderState.NEW, OrderState.SUBMITTED),
        (OrderState.SUBMITTED, OrderState.PARTIALLY_FILLED),
        (OrderState.PARTIALLY_FILLED, OrderState.FILLED)]
    assert order.avg_price == pytest.approx(100.0)
    assert order.fees == pytest.approx(0.1)


def test_fill_before_ack_passes_through_submitted() -> None:
    order = make_order()
    changes = order.apply_fill(fill(10.0))
    assert [c.to_state for c in changes] == [OrderState.SUBMITTED, OrderState.FILLED]
    assert changes[0].reason == "fill before ack"


@pytest.mark.parametrize("terminal", sorted(TERMINAL_STATES, key=lambda s: s.value))
def test_terminal_states_are_final(terminal: OrderState) -> None:
    order = make_order()
    if terminal is not OrderState.REJECTED:
        order.transition(OrderState.SUBMITTED, 1)
    if terminal is OrderState.FILLED:
        order.apply_fill(fill(10.0))
    else:
        order.transition(terminal, 2, "test")
    for target in OrderState:
        with pytest.raises(InvalidTransition):
            order.transition(target, 3)


@pytest.mark.parametrize("target", [OrderState.PARTIALLY_FILLED, OrderState.FILLED, OrderState.EXPIRED])
def test_new_cannot_skip_submission(target: OrderState) -> None:
    with pytest.raises(InvalidTransition, match="new -> "):
        make_order().transition(target, 1)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(min_value=0.01, max_value=5.0), min_size=1, max_size=12))
def test_partial_fills_sum_up(parts: list[float]) -> None:
    total = sum(parts)
    order = make_order(total)
    order.transition(OrderState.SUBMITTED, 0)
    for i, qty in enumerate(parts):
        order.apply_fill(fill(qty, i + 1))
    assert order.state is OrderState.FILLED
    assert order.filled_qty == pytest.approx(total)
    assert all(t.to_state is OrderState.PARTIALLY_FILLED for t in order.history[1:-1])
