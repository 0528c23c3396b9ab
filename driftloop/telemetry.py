"""The CloudWatch metrics the Lambdas publish (Powertools' embedded metric format) and the dashboard shows."""

from __future__ import annotations

from typing import Final

NAMESPACE: Final = "driftloop"
SERVICE: Final = "driftloop"
DRIFT_STATISTIC: Final = "DriftStatistic"
DRIFT_DETECTED: Final = "DriftDetected"
BATCH_SIZE: Final = "BatchSize"
# The serve batch's label-free accuracy estimate (a fraction) and its interval (driftloop.ml.accuracy_estimate).
ESTIMATED_ACCURACY: Final = "EstimatedAccuracy"
ESTIMATED_ACCURACY_LOWER: Final = "EstimatedAccuracyLower"
ESTIMATED_ACCURACY_UPPER: Final = "EstimatedAccuracyUpper"
# An estimate outside its calibration's domain goes under this name instead (no interval), so the
# dashboard draws it apart, as unreliable, not as a number to believe.
ESTIMATED_ACCURACY_UNRELIABLE: Final = "EstimatedAccuracyUnreliable"
CHALLENGER_ACCURACY: Final = "ChallengerAccuracy"
CHAMPION_ACCURACY: Final = "ChampionAccuracy"
PROMOTED: Final = "Promoted"
# A served batch's accuracy on the labels that came back for it (a fraction), once per batch each
# time its labels are joined (driftloop.production.join_new_labels), and how many images it was measured on.
LABELLED_ACCURACY: Final = "LabelledAccuracy"
LABELLED_IMAGES: Final = "LabelledImages"
