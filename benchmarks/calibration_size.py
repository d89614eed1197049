"""How many held-out rows a temperature needs, and what out-of-fold rows do to it.

The linear model's temperature was fitted on validation + 5-fold out-of-fold
training predictions at every size. At 431,306 rows that made test ECE worse.
This measures, on one generated archive:

1. **Validation size.** The softmax layer is fitted on the training split; the
   temperature is fitted on random subsets of the validation split of each size
   (20 draws each) and scored on the test split. Where the test ECE of a subset's
   temperature matches that of the whole validation split, validation is enough
   (`model.calibration.ENOUGH_VALIDATION_ROWS`).
2. **Out-of-fold rows.** Temperatures fitted on the validation split alone, on the
   out-of-fold predictions alone, and on both (what training did), each scored on
   the test split, next to the mean confidence and accuracy of each set.

    python -m benchmarks.calibration_size --rows 60000 --out benchmarks/results/calibration_size.json
"""

from __future__ import annotations

import argparse
import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np

from model.calibration import expected_calibration_error, fit_temperature, softmax
from model.config import LinearConfig
from model.data import stratified_split
from model.linear import OtherRows, out_of_fold_logits, train_linear
from model.sample import generate

SIZES = (250, 500, 1_000, 2_000, 5_000)


def _describe(logits: np.ndarray, labels: np.ndarray) -> dict:
    probabilities = softmax(logits)
    return {"rows": len(labels), "mean_confidence": float(probabilities.max(axis=1).mean()),
            "accuracy": float((probabilities.argmax(axis=1) == labels).mean())}


def measure(rows: int, seed: int, draws: int, folds: int) -> dict:
    frame = generate(rows, seed=seed)
    labels = sorted(frame["category"].unique())
    label_ids = np.searchsorted(labels, frame["category"].to_numpy())
    texts = frame["text"].to_numpy(dtype=object)
    split = stratified_split(label_ids, 0.1, 0.1, seed)
    config = LinearConfig()
    started = time.monotonic()
    fit = train_linear(config, texts[split.train].tolist(), label_ids[split.train], len(labels), seed,
                       other=OtherRows(np.concatenate([texts[split.validation], texts[split.test]]).tolist()))
    other = fit.logits_of_other_rows()
    val_logits, test_logits = other[: len(split.validation)], other[len(split.validation):]
    y_val, y_test = label_ids[split.validation], label_ids[split.test]
    result = {"rows": rows, "seed": seed, "fit_seconds": round(time.monotonic() - started, 1),
              "validation": _describe(val_logits, y_val), "test": _describe(test_logits, y_test),
              "test_ece_uncalibrated": expected_calibration_error(softmax(test_logits), y_test)}
    full_t = fit_temperature(val_logits, y_val)
    result["whole_validation"] = {"rows": len(y_val), "temperature": full_t,
                                  "test_ece": expected_calibration_error(softmax(test_logits, full_t), y_test)}
    rng = np.random.default_rng(seed)
    result["by_size"] = []
    for size in (s for s in SIZES if s < len(y_val)):
        temperatures, eces = [], []
        for _ in range(draws):
            subset = rng.choice(len(y_val), size, replace=False)
            t = fit_temperature(val_logits[subset], y_val[subset])
            temperatures.append(t)
            eces.append(expected_calibration_error(softmax(test_logits, t), y_test))
        result["by_size"].append({
            "validation_rows": size,
            "temperature_p10": float(np.percentile(temperatures, 10)),
            "temperature_p90": float(np.percentile(temperatures, 90)),
            "test_ece_mean": float(np.mean(eces)),
            "test_ece_p90": float(np.percentile(eces, 90)),
        })
    # Out-of-fold predictions of the training split, as training computes them (each fold is a full fit).
    y_train = label_ids[split.train]
    oof = out_of_fold_logits(fit.rows[: fit.trained_rows], y_train, len(labels), config, seed, folds)
    sets = {"validation": (val_logits, y_val), "out-of-fold": (oof, y_train),
            "validation + out-of-fold": (np.concatenate([oof, val_logits]), np.concatenate([y_train, y_val]))}
    result["out_of_fold"] = []
    for name, (logits, y) in sets.items():
        t = fit_temperature(logits, y)
        result["out_of_fold"].append({"fitted_on": name, **_describe(logits, y), "temperature": t,
                                      "test_ece": expected_calibration_error(softmax(test_logits, t), y_test)})
    return result


def print_tables(result: dict) -> None:
    whole = result["whole_validation"]
    print(f"\n{result['rows']:,} generated rows; test ECE uncalibrated {result['test_ece_uncalibrated']:.4f}; "
          f"whole validation ({whole['rows']:,} rows): T={whole['temperature']:.3f}, test ECE {whole['test_ece']:.4f}")
    print(f"{'validation rows':>16} {'T p10':>7} {'T p90':>7} {'test ECE mean':>14} {'test ECE p90':>13}")
    for row in result["by_size"]:
        print(f"{row['validation_rows']:>16,} {row['temperature_p10']:>7.3f} {row['temperature_p90']:>7.3f} "
              f"{row['test_ece_mean']:>14.4f} {row['test_ece_p90']:>13.4f}")
    print(f"\n{'temperature fitted on':<26} {'rows':>8} {'confidence':>10} {'accuracy':>9} {'T':>6} {'test ECE':>9}")
    for row in result["out_of_fold"]:
        print(f"{row['fitted_on']:<26} {row['rows']:>8,} {row['mean_confidence']:>10.4f} {row['accuracy']:>9.4f} "
              f"{row['temperature']:>6.3f} {row['test_ece']:>9.4f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=60_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--draws", type=int, default=20, help="Random validation subsets per size")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--out", default="benchmarks/results/calibration_size.json")
    args = parser.parse_args()
    result = measure(args.rows, args.seed, args.draws, args.folds)
    print_tables(result)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
