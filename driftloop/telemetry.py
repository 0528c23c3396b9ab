"""The CloudWatch metrics the Lambdas publish (Powertools' embedded metric format) and the dashboard shows."""

from __future__ import annotations

from typing import Final

NAMESPACE: Final = "driftloop"
SERVICE: Final = "driftloop"
DRIFT_STATISTIC: Final = "DriftStatistic"
DRIFT_DETECTED: Final = "DriftDetected"
BATCH_SIZE: Final = "BatchSize"
CHALLENGER_ACCURACY: Final = "ChallengerAccuracy"
CHAMPION_ACCURACY: Final = "ChampionAccuracy"
PROMOTED: Final = "Promoted"
