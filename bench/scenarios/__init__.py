"""Scenario registry. A scenario has a worker side (``setup`` then ``run``, in each generator process) and a
parent side (``figures``: turn the merged stats and the run's context into the reported numbers)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bench.client import TargetKind
    from bench.stats import Stats
    from bench.worker import WorkerCtx

SCENARIO_NAMES = ("idle", "cart", "order-race", "reconnect-storm", "failover")


class Scenario:
    name = ""
    kinds: tuple[TargetKind, ...] = ("tableside",)
    default_duration = 10.0
    default_warmup = 0.0

    async def setup(self, ctx: WorkerCtx) -> dict[str, Any]:
        raise NotImplementedError

    async def run(self, ctx: WorkerCtx) -> None:
        raise NotImplementedError

    def figures(self, stats: Stats, run: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError


def get_scenario(name: str) -> Scenario:
    from bench.scenarios.cart import CartScenario
    from bench.scenarios.failover import FailoverScenario
    from bench.scenarios.idle import IdleScenario
    from bench.scenarios.order_race import OrderRaceScenario
    from bench.scenarios.reconnect_storm import ReconnectStormScenario

    registry: dict[str, type[Scenario]] = {
        "idle": IdleScenario,
        "cart": CartScenario,
        "order-race": OrderRaceScenario,
        "reconnect-storm": ReconnectStormScenario,
        "failover": FailoverScenario,
    }
    try:
        return registry[name]()
    except KeyError:
        raise ValueError(f"unknown scenario {name!r}; choose from {', '.join(SCENARIO_NAMES)}") from None
