"""A synthetic predictive-maintenance table: sensor readings per machine and period, 3% failures.

No real sensor table ships with danlu; this one has the shape of one (after the AI4I 2020 data set's
columns) so that the predictive_maintenance template runs end to end. Failures come from heat that
cannot be shed, torque too high for the speed, and worn tools, plus a little noise. Fixed seed: the
same rows every time.

    python -m danlu.templates.maintenance_data maintenance.csv [--rows 5000] [--seed 0]
"""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd


def make(rows: int = 5000, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    kind = rng.choice(["L", "M", "H"], size=rows, p=[0.5, 0.3, 0.2])
    air = rng.normal(300, 2, rows)
    process = air + 10 + rng.normal(0, 1, rows)
    speed = rng.normal(1540, 180, rows)
    torque = np.clip(rng.normal(40, 10, rows), 3, None)
    wear = rng.integers(0, 250, rows)
    heat = (process - air < 8.8) & (speed < 1400)
    strain = torque * speed / 9549 > 9.5 + (kind == "H") * 1.5
    worn = wear > 215 + (kind == "L") * -15
    score = 2.5 * heat + 2.0 * strain + 1.8 * worn + rng.normal(0, 0.6, rows)
    failure = score > np.quantile(score, 0.97)
    return pd.DataFrame({"machine_type": kind, "air_temperature": air.round(1), "process_temperature":
                         process.round(1), "rotational_speed": speed.round(0), "torque": torque.round(1),
                         "tool_wear": wear, "failure": failure.astype(int)})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out")
    parser.add_argument("--rows", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    make(args.rows, args.seed).to_csv(args.out, index=False)


if __name__ == "__main__":
    main()
