"""The presence waves' schedule on DynamoDB (one item in RoundsTable, PresenceWavesModel): the
sweeper's conditional read-modify-write, and the machine API's read, cached per execution
environment for `PresencePolicy.cache_s` (a wave is stored `horizon_s` before it opens, longer
than any cache, so a cached schedule never lacks a wave whose checks are being announced)."""

from __future__ import annotations

from collections.abc import Sequence

from pynamodb.exceptions import DoesNotExist, PutError

from gpuproof.adapters.tables import PresenceWavesModel
from gpuproof.logic.waves import Wave, WaveSchedule

WAVES_KEY = ("#presence-waves", 0)
_MODELS: dict[tuple[str, str], type[PresenceWavesModel]] = {}


def waves_model(rounds_table: str, region: str) -> type[PresenceWavesModel]:
    """PresenceWavesModel on one table: a subclass per (table, region) instead of the global `bind`,
    so two stores of different tables in one process (a test beside the local stack's sweeper
    thread) never read each other's schedule."""
    key = (rounds_table, region)
    if key not in _MODELS:
        meta = type("Meta", (), {"table_name": rounds_table, "region": region})
        _MODELS[key] = type(f"PresenceWaves_{len(_MODELS)}", (PresenceWavesModel,), {"Meta": meta})
    return _MODELS[key]


def waves_models() -> list[type[PresenceWavesModel]]:
    """Every table's model made so far (benchmarks count the requests of their connections)."""
    return list(_MODELS.values())


class DynamoWaveStore:
    def __init__(self, rounds_table: str, region: str, cache_s: float = 0.0) -> None:
        self._model = waves_model(rounds_table, region)
        self._cache_s = cache_s
        self._cached: tuple[float, tuple[Wave, ...]] | None = None

    def load(self) -> WaveSchedule | None:
        try:
            item = self._model.get(*WAVES_KEY, consistent_read=True)
        except DoesNotExist:
            return None
        waves = tuple(Wave.from_dict(w) for w in item.waves or [])
        return WaveSchedule(waves, item.drawn_for, int(item.version))

    def save(self, schedule: WaveSchedule, previous: WaveSchedule | None) -> bool:
        item = self._model(
            *WAVES_KEY,
            waves=[w.as_dict() for w in schedule.waves],
            drawn_for=schedule.drawn_for,
            version=(previous.version if previous is not None else 0) + 1,
        )
        condition = (
            self._model.machine_id.does_not_exist()
            if previous is None
            else self._model.version == previous.version
        )
        try:
            item.save(condition=condition)
        except PutError as exc:
            if exc.cause_response_code == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def waves(self, now: float) -> Sequence[Wave]:
        """The schedule as last read, read again when older than cache_s (or never read)."""
        if self._cached is None or not now - self._cache_s < self._cached[0] <= now:
            stored = self.load()
            self._cached = (now, stored.waves if stored is not None else ())
        return self._cached[1]
