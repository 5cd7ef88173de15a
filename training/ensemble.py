"""Join independently trained networks into one ensemble checkpoint (``gaitid ensemble``).

The members' weights are copied whole into ``model.ensemble.LMGCSEnsemble``; its joint 256-d
head is left unfitted here and fitted by ``gaitid ensemble`` on the members' training walks
(``training.embedding_fit``), as for a single network. Why an ensemble and how its embedding is
formed: ``model/ensemble.py``.

What the result records, so that its figures stay honest: ``meta.train_subjects`` is the union
of the members' training subjects (a subject any member saw is not held out for the ensemble),
and ``members`` keeps each member's config, identities, recipe (no local paths) and metadata
less its calibrated thresholds, which describe that member's embedding and not the ensemble's.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gaitid import __version__
from gaitid.contract import TEST_TIME_SHIFTS_KEY, THRESHOLD_KEYS
from gaitid.model.ensemble import EnsembleError, LMGCSEnsemble
from gaitid.model.export import (
    ENSEMBLE_MEMBERS_KEY,
    CheckpointError,
    checkpoint_model,
    member_description,
    network_variant,
    read_checkpoint,
)
from gaitid.model.lmgcs import LMGCS

__all__ = ["chosen_network", "ensemble_checkpoint"]

#: A member's metadata that describes its own embedding function, not the ensemble's.
_MEMBER_ONLY_META = (
    "embedding_fit",
    TEST_TIME_SHIFTS_KEY,
    *(key for pair in THRESHOLD_KEYS for key in pair),
)


def ensemble_checkpoint(paths: Sequence[Path], *, version: str | None = None) -> dict[str, Any]:
    """The ensemble of the networks in ``paths`` as a checkpoint dict, its joint head unfitted.

    Each path is a training checkpoint or a shipped weights file of one network (an ensemble
    is not nested). ``version`` names the ensemble's embedding (default: the members'
    versions joined by ``+``). Raises :class:`CheckpointError` for fewer than two files, a file
    given twice, or members that cannot share one embedding (:class:`EnsembleError`'s reasons).
    """
    if len(paths) < 2:
        raise CheckpointError(f"an ensemble needs at least two networks, got {len(paths)}")
    resolved = [Path(path).resolve() for path in paths]
    if len(set(resolved)) != len(resolved):
        raise CheckpointError("a network is given twice: an ensemble of a network with itself")
    states = [read_checkpoint(path) for path in paths]
    members: list[LMGCS] = []
    for path, state in zip(paths, states, strict=True):
        if ENSEMBLE_MEMBERS_KEY in state:
            raise CheckpointError(f"{path} is an ensemble already; give its members instead")
        network = checkpoint_model(state, path)
        assert isinstance(network, LMGCS)
        members.append(network)
    try:
        ensemble = LMGCSEnsemble([member.config for member in members])
    except EnsembleError as exc:
        raise CheckpointError(str(exc)) from exc
    for slot, member in zip(ensemble.networks, members, strict=True):
        slot.load_state_dict(member.state_dict(), strict=True)
    described = [
        {**member_description(state), "meta": _member_meta(state, Path(path))}
        for path, state in zip(paths, states, strict=True)
    ]
    versions = [
        str(member["meta"].get("version") or member["meta"]["file"]) for member in described
    ]
    subjects = sorted(
        {str(s) for state in states for s in state.get("meta", {}).get("train_subjects") or []}
    )
    meta: dict[str, Any] = {
        "name": "ensemble",
        "variant": network_variant(ensemble),
        "version": version or _joined_version(versions),
        "training_data": "ensemble of "
        + "; ".join(
            str(member["meta"].get("training_data") or member["meta"]["file"])
            for member in described
        ),
        "train_subjects": subjects,
        "ensemble_of": versions,
    }
    return {
        "model": {key: value.detach().clone() for key, value in ensemble.state_dict().items()},
        ENSEMBLE_MEMBERS_KEY: described,
        "meta": meta,
    }


def _member_meta(state: dict[str, Any], path: Path) -> dict[str, Any]:
    """A member's metadata less what describes its own embedding; its file's name (no path)."""
    meta = {k: v for k, v in (state.get("meta") or {}).items() if k not in _MEMBER_ONLY_META}
    return {**meta, "file": path.name}


def _joined_version(versions: Sequence[str]) -> str:
    """``0.1.0+a.it1+b.it2`` from ``0.1.0+a.it1`` and ``0.1.0+b.it2`` (the package prefix once)."""
    prefix = f"{__version__}+"
    return prefix + "+".join(v.removeprefix(prefix) for v in versions)


def chosen_network(state: dict[str, Any], member: int | None) -> dict[str, Any]:
    """The one network a checkpoint dict holds to continue training from: ``state`` itself,
    or member ``member`` of an ensemble as a one-network checkpoint (its weights, config,
    identities and metadata, as it was before it joined). Raises :class:`CheckpointError` when
    an ensemble is given without a member, a member that is not there, or a member index for a
    checkpoint of one network."""
    members = state.get(ENSEMBLE_MEMBERS_KEY)
    if members is None:
        if member is not None:
            raise CheckpointError(f"it holds one network, not an ensemble: no member {member}")
        return state
    if member is None:
        versions = ", ".join(
            f"{i}: {m.get('meta', {}).get('version', '?')}" for i, m in enumerate(members)
        )
        raise CheckpointError(
            f"it is an ensemble of {len(members)} networks ({versions}): training continues "
            "one network, so choose it (init.member, `gaitid train --init-member N`)"
        )
    if not 0 <= member < len(members):
        raise CheckpointError(f"it has members 0..{len(members) - 1}, not {member}")
    prefix = f"members.{member}."
    weights = {k[len(prefix) :]: v for k, v in state["model"].items() if k.startswith(prefix)}
    return {**members[member], "model": weights}
