"""Pre-trade risk limits and the kill switch."""

from __future__ import annotations

import pytest

from sigfuse.config import RiskConfig
from sigfuse.execution.risk import DAY_US, RiskEngine, RiskState

CFG = RiskConfig(max_order_notional=1_000, max_position_per_pair=2_000, max_gross_exposure=5_000,
                 max_orders_per_second=3, daily_loss_limit=100, reduce_at_loss_fraction=0.5)
T0 = 100 * DAY_US + 1


def check(risk: RiskEngine, *, qty: float = 1.0, price: float = 100.0, side: int = 0, position: float = 0.0,
          open_qty: float = 0.0, gross: float = 0.0, now: int = T0):
    return risk.check(pair="X", side=side, qty=qty, price=price, position=position, open_qty=open_qty,
                      gross_exposure=gross, now_us=now)


@pytest.mark.parametrize("kwargs, reason", [
    (dict(qty=11.0), "max_order_notional"),
    (dict(qty=5.0, position=16.0), "max_position_per_pair"),
    (dict(qty=5.0, open_qty=16.0), "max_position_per_pair"),
    (dict(qty=5.0, side=1, position=-16.0), "max_position_per_pair"),
    (dict(qty=5.0, gross=4_600.0), "max_gross_exposure"),
])
def test_limits(kwargs: dict, reason: str) -> None:
    risk = RiskEngine(CFG)
    verdict = check(risk, **kwargs)
    assert not verdict.ok and verdict.reason == reason and verdict.detail
    assert risk.rejections == {reason: 1}


def test_reducing_orders_pass_position_and_exposure_limits() -> None:
    risk = RiskEngine(CFG)
    assert check(risk, qty=5.0, side=1, position=30.0, gross=9_999.0).ok


def test_order_rate_is_a_sliding_second() -> None:
    risk = RiskEngine(CFG)
    assert all(check(risk, now=T0 + i).ok for i in range(3))
    assert check(risk, now=T0 + 10).reason == "max_orders_per_second"
    assert check(risk, now=T0 + 1_000_000).ok  # the first has left the window


def test_loss_limit_trips_the_kill_switch_and_it_holds() -> None:
    changes = []
    risk = RiskEngine(CFG, on_state_change=lambda old, new, why: changes.append((old, new)))
    assert risk.update_pnl(1_000.0, T0) is True  # first reading of the day sets the anchor
    risk.update_pnl(960.0, T0 + 1)
    assert risk.state is RiskState.ACTIVE
    risk.update_pnl(940.0, T0 + 2)   # lost 60 >= 50: reducing only
    assert risk.state is RiskState.REDUCING
    assert check(risk, qty=1.0, position=5.0).reason == "reducing_only"
    assert check(risk, qty=1.0, side=1, position=5.0).ok
    assert check(risk, qty=6.0, side=1, position=5.0).reason == "reducing_only"  # would flip
    risk.update_pnl(900.0, T0 + 3)   # lost 100: halted
    assert risk.state is RiskState.HALTED
    assert check(risk, side=1, position=5.0).reason == "halted"
    risk.update_pnl(2_000.0, T0 + 4)
    risk.update_pnl(2_000.0, T0 + DAY_US)  # neither a recovery nor a new day resets it
    assert risk.state is RiskState.HALTED
    risk.reset()
    assert risk.state is RiskState.ACTIVE
    assert changes == [(RiskState.ACTIVE, RiskState.REDUCING), (RiskState.REDUCING, RiskState.HALTED),
                       (RiskState.HALTED, RiskState.ACTIVE)]


def test_reducing_recovers_with_hysteresis() -> None:
    risk = RiskEngine(CFG)
    risk.update_pnl(0.0, T0)
    risk.update_pnl(-50.0, T0)
    assert risk.state is RiskState.REDUCING
    risk.update_pnl(-46.0, T0)  # back under 50 but not under 45
    assert risk.state is RiskState.REDUCING
    risk.update_pnl(-44.0, T0)
    assert risk.state is RiskState.ACTIVE


def test_daily_pnl_is_measured_from_the_day_anchor() -> None:
    risk = RiskEngine(CFG)
    risk.update_pnl(-500.0, T0)        # yesterday's losses are not today's
    assert risk.daily_pnl == 0.0 and risk.state is RiskState.ACTIVE
    assert risk.update_pnl(-560.0, T0 + DAY_US) is True
    assert risk.daily_pnl == 0.0
    risk.restore(state=RiskState.ACTIVE, day=T0 // DAY_US, anchor_pnl=0.0)
    risk.update_pnl(-120.0, T0 + 5)
    assert risk.state is RiskState.HALTED
