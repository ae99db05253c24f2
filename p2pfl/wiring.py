"""Building node ``i`` of a plan: its attack or honest behaviour, its filter, its evaluation
and its transport (with the run's network faults), wired into a :class:`~p2pfl.node.Node`.

Used by every way of starting nodes (:mod:`p2pfl.launch`, :mod:`p2pfl.deployment`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import zmq.asyncio

from .behaviour import Honest
from .config import RunConfig
from .node import Node
from .plan import Plan
from .transport import CurveKeys, Transport


def make_node(
    plan: Plan,
    node_id: int,
    transport: Transport,
    *,
    executor: ThreadPoolExecutor | None = None,
    on_record: Callable[[dict[str, Any]], None] | None = None,
    x_init: np.ndarray | None = None,
) -> Node:
    """Build node ``node_id`` of ``plan`` on a bound and connected transport."""
    from .data import identity_difference
    from .filters import build_filter

    cfg = plan.config
    data, validation = plan.node_data(node_id)
    trainer = plan.trainer(node_id)
    test = plan.test  # clean: never stamped or relabelled
    backdoor = getattr(plan, "backdoor", None)
    success = backdoor.success_set if backdoor is not None else plan.aux  # single: the aux set
    behaviour = Honest()
    attack = plan.attack_for(node_id)
    timing = None
    if attack.name != "none":
        from .attacks import build_attack
        from .timing import check_timing, strip_timing

        timing = check_timing(attack.params, mode=cfg.mode)
        behaviour = build_attack(attack.name, strip_timing(attack.params), plan=plan, node=node_id)
    filt = None
    defence = plan.defence_for(node_id)
    if defence.name != "none":
        filt = build_filter(defence.name, dict(defence.params))
        filt.check(len(plan.topology.neighbours(node_id)))

    def evaluate(x: np.ndarray) -> dict[str, float]:
        ev = trainer.evaluate(x, test)
        out = {"accuracy": round(ev.accuracy, 6), "loss": round(ev.loss, 6)}
        if success is not None:
            out.update(attack_metrics(trainer, x, success))
        return out

    validate = None
    if validation is not None:
        def validate(x: np.ndarray) -> float:
            return trainer.evaluate(x, validation).accuracy

    return Node(
        node_id=node_id,
        exp_id=plan.exp_id,
        x0=plan.x0,
        neighbours=plan.topology.neighbours(node_id),
        weights=plan.neighbour_weights(node_id),
        rounds=cfg.rounds,
        transport=transport,
        trainer=trainer,
        data=data,
        behaviour=behaviour,
        filter=filt,
        evaluate=evaluate,
        validate=validate,
        executor=executor,
        on_record=on_record,
        net=cfg.net,
        epochs=cfg.train.epochs,
        seed=cfg.seed,
        role=plan.role(node_id),
        eval_every=cfg.eval_every,
        config_digest=plan.exp_id,
        x_init=x_init,
        max_message_bytes=plan.max_message_bytes(),
        data_identity=plan.data_identity,
        data_difference=identity_difference,
        mode=cfg.mode,
        speed=cfg.speed_of(node_id),
        churn=_churn_ticks(cfg, node_id),
        time_budget=cfg.time_budget,
        timing=timing,
        keep_deltas=attack.name != "none",  # only attacks read their neighbours' last deltas
    )


def reopener(plan: Plan, node_id: int, addresses: Mapping[int, str], context: zmq.asyncio.Context | None,
              curve: CurveKeys | None = None, factory: Callable[..., Transport] = Transport
              ) -> Callable[[], Transport]:
    """A function that builds node ``node_id``'s transport again, bound at the same address and
    connected to its neighbours (a node rejoining after churn)."""
    def reopen() -> Transport:
        tr = transport_for(plan, node_id, addresses[node_id], context, curve, factory=factory)
        try:
            tr.bind()
            tr.connect({j: addresses[j] for j in plan.topology.neighbours(node_id)})
        except Exception:
            tr.close(linger_ms=0)
            raise
        return tr

    return reopen


def _churn_ticks(cfg: RunConfig, node_id: int) -> tuple[int, int] | None:
    entry = cfg.churn_of(node_id)
    return (entry.leave, entry.rejoin) if entry is not None else None


def attack_metrics(trainer: Any, x: np.ndarray, success: Any) -> dict[str, float]:
    """Share of the backdoor's success set classified as its target, and the mean target confidence.

    ``success`` is :attr:`p2pfl.attacks.backdoor.Backdoor.success_set`: the auxiliary examples
    (single), held-out class-S test examples labelled T (class), or held-out stamped test
    images of the other classes labelled T (trigger).
    """
    probs = trainer.predict_proba(x, success.x)
    target = success.y.numpy()
    hit = probs.argmax(axis=1) == target
    conf = probs[np.arange(len(target)), target]
    return {"attack_success": round(float(hit.mean()), 6), "target_confidence": round(float(conf.mean()), 6)}


def transport_for(plan: Plan, node_id: int, listen: str, context: zmq.asyncio.Context | None,
               curve: CurveKeys | None = None, factory: Callable[..., Transport] = Transport) -> Transport:
    """Build node ``node_id``'s transport with ``factory`` (a Transport class or callable).

    When the run injects network faults (``net.loss``, ``net.delay_ms``, ...) the transport is a
    :class:`~p2pfl.faults.FaultyTransport`: a Transport ``factory`` is combined with it (its
    ``send`` runs underneath the faults), a FaultyTransport ``factory`` receives ``faults=``.
    """
    net = plan.config.net
    kwargs: dict[str, Any] = dict(context=context, hwm=net.hwm, linger_ms=net.linger_ms,
                                  max_message_bytes=plan.max_message_bytes(), send_timeout=net.send_timeout,
                                  curve=curve)
    faults = net.faults(plan.config.seed)
    if faults is None:
        return factory(node_id, listen, **kwargs)
    from .faults import FaultyTransport

    if not (isinstance(factory, type) and issubclass(factory, Transport)):
        raise TypeError(f"network faults ({faults}) need a Transport subclass as transport factory, "
                        f"not {factory!r}")
    if factory is Transport:
        factory = FaultyTransport
    elif not issubclass(factory, FaultyTransport):
        factory = type(f"Faulty{factory.__name__}", (FaultyTransport, factory), {})
    return factory(node_id, listen, faults=faults, **kwargs)


__all__ = ["attack_metrics", "make_node", "reopener", "transport_for"]
