"""Pre-trade risk: limits checked before an order leaves, and the daily-loss kill switch.

States:

ACTIVE
    every limit applies, any order may pass.
REDUCING
    entered when the day's loss reaches ``reduce_at_loss_fraction`` of the limit: only orders
    that bring a position closer to flat pass.  Left again (back to ACTIVE) when the loss falls
    below 90 % of that threshold, so the state does not flap around the line.
HALTED
    the kill switch, entered when the day's loss reaches ``daily_loss_limit`` (or by
    :meth:`RiskEngine.halt`): no order passes and the coordinator cancels the open ones.  Only
    :meth:`RiskEngine.reset` -- an operator's decision -- leaves it; a new day does not.

The day's P&L is total P&L (realized + unrealized, net of fees) minus the total at the first
reading of the UTC day (the *anchor*), which the coordinator journals so a restart keeps it.
"""

from __future__ import annotations

import enum
from collections import deque
from typing import Callable, Final, NamedTuple

from ..config import RiskConfig
from ..log import get_logger

__all__ = ["RiskState", "RiskVerdict", "RiskEngine", "DAY_US"]

DAY_US: Final = 86_400_000_000
_SECOND_US: Final = 1_000_000
# REDUCING is left only once the loss is this far back under its threshold.
_RECOVER_FRACTION: Final = 0.9


class RiskState(str, enum.Enum):
    ACTIVE = "active"
    REDUCING = "reducing"
    HALTED = "halted"


class RiskVerdict(NamedTuple):
    """``ok``, or the rejection ``reason`` (a stable code) and a human ``detail``."""
    ok: bool
    reason: str = ""
    detail: str = ""


_PASS: Final = RiskVerdict(True)

StateListener = Callable[[RiskState, RiskState, str], None]


class RiskEngine:
    """Checks orders against :class:`~sigfuse.config.RiskConfig` and runs the kill switch."""

    def __init__(self, config: RiskConfig | None = None, *,
                 on_state_change: StateListener | None = None) -> None:
        self.config = config or RiskConfig()
        self.state = RiskState.ACTIVE
        self.on_state_change = on_state_change
        self.day: int | None = None
        self.day_anchor_pnl = 0.0
        self.daily_pnl = 0.0
        self._recent: deque[int] = deque()
        self.rejections: dict[str, int] = {}
        self._log = get_logger("execution.risk")

    # --- state -------------------------------------------------------------------------------

    def _set_state(self, state: RiskState, reason: str) -> None:
        if state is self.state:
            return
        old, self.state = self.state, state
        self._log.warning("risk_state", from_state=old.value, to_state=state.value, reason=reason)
        if self.on_state_change is not None:
            self.on_state_change(old, state, reason)

    def halt(self, reason: str) -> None:
        """Trip the kill switch."""
        self._set_state(RiskState.HALTED, reason)

    def reset(self, reason: str = "operator reset") -> None:
        """Back to ACTIVE (an operator's decision after a halt)."""
        self._set_state(RiskState.ACTIVE, reason)

    def restore(self, *, state: RiskState, day: int | None, anchor_pnl: float) -> None:
        """Reload what the journal holds, without reporting it as a change."""
        self.state = state
        self.day = day
        self.day_anchor_pnl = anchor_pnl

    def update_pnl(self, total_pnl: float, now_us: int) -> bool:
        """Feed the current total P&L; moves between states on the daily-loss thresholds.

        Returns True when a new UTC day started (the caller journals the new anchor).
        """
        day = now_us // DAY_US
        new_day = day != self.day
        if new_day:
            self.day = day
            self.day_anchor_pnl = total_pnl
        self.daily_pnl = total_pnl - self.day_anchor_pnl
        loss = -self.daily_pnl
        limit = self.config.daily_loss_limit
        reduce_at = self.config.reduce_at_loss_fraction * limit
        if self.state is RiskState.HALTED:
            return new_day
        if loss >= limit:
            self.halt(f"daily loss {loss:.2f} reached the limit {limit:.2f}")
        elif loss >= reduce_at:
            if self.state is RiskState.ACTIVE:
                self._set_state(RiskState.REDUCING, f"daily loss {loss:.2f} reached {reduce_at:.2f}")
        elif self.state is RiskState.REDUCING and loss < _RECOVER_FRACTION * reduce_at:
            self._set_state(RiskState.ACTIVE, f"daily loss {loss:.2f} back under {reduce_at:.2f}")
        return new_day

    # --- pre-trade checks ----------------------------------------------------------------------

    def _reject(self, reason: str, detail: str) -> RiskVerdict:
        self.rejections[reason] = self.rejections.get(reason, 0) + 1
        return RiskVerdict(False, reason, detail)

    def check(self, *, pair: str, side: int, qty: float, price: float, position: float,
              open_qty: float, gross_exposure: float, now_us: int) -> RiskVerdict:
        """Check one order.  ``position`` is the pair's net position and ``open_qty`` the net
        signed quantity of its open orders (base units); ``gross_exposure`` the account's gross
        notional including open orders.  A passing order counts towards the order rate."""
        cfg = self.config
        if self.state is RiskState.HALTED:
            return self._reject("halted", "kill switch engaged")
        signed = -qty if side else qty
        exposure_now = position + open_qty
        exposure_after = exposure_now + signed
        reducing = abs(exposure_after) < abs(exposure_now) and exposure_after * exposure_now >= 0
        if self.state is RiskState.REDUCING and not reducing:
            return self._reject("reducing_only", f"{pair}: position {exposure_now:+.6g} would grow")
        notional = qty * price
        if notional > cfg.max_order_notional:
            return self._reject("max_order_notional",
                                f"{notional:.2f} > {cfg.max_order_notional:.2f}")
        if not reducing:
            after = abs(exposure_after) * price
            if after > cfg.max_position_per_pair * (1 + 1e-9):
                return self._reject("max_position_per_pair",
                                    f"{pair}: {after:.2f} > {cfg.max_position_per_pair:.2f}")
            if gross_exposure + notional > cfg.max_gross_exposure * (1 + 1e-9):
                return self._reject("max_gross_exposure",
                                    f"{gross_exposure + notional:.2f} > {cfg.max_gross_exposure:.2f}")
        recent = self._recent
        while recent and recent[0] <= now_us - _SECOND_US:
            recent.popleft()
        if len(recent) >= cfg.max_orders_per_second:
            return self._reject("max_orders_per_second",
                                f"{len(recent)} orders in the last second")
        recent.append(now_us)
        return _PASS
