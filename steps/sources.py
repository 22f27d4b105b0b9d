"""Generated built-in sources: raw CSV text with a known ground truth, seeded.

- ``sales``: users (and other drivers) -> sales, a linear model plus Gaussian noise, so a
  regression's error can be compared with the noise level that made the data.
- ``loans``: loan records exported the way real systems export them: FICO as ranges
  ('675-679'), rates as '12.5%', amounts as '$12,000.00', blanks and 'n/a', duplicated rows,
  a repeated header line, malformed lines, mixed-case categories, outliers.
"""

from __future__ import annotations

import csv
import io
from typing import Any

import numpy as np

PURPOSES = ["debt_consolidation", "credit_card", "home_improvement", "small_business", "educational", "major_purchase"]
PURPOSE_RISK = {"debt_consolidation": 0.0, "credit_card": -0.2, "home_improvement": -0.1, "small_business": 0.8,
                "educational": 0.3, "major_purchase": -0.3}  # fmt: skip
LOAN_COLUMNS = ["fico_range", "int_rate", "loan_amount", "annual_income", "purpose", "defaulted"]


def sales(params: dict[str, Any]) -> bytes:
    """``params``: rows, seed, features (names), weights, bias, noise, low, high.

    sales = bias + sum(weights * features) + N(0, noise²), features uniform in [low, high].
    """
    rng = np.random.default_rng(params["seed"])
    names, weights = list(params["features"]), np.array(params["weights"], dtype=np.float64)
    if len(names) != len(weights):
        raise ValueError(f"source: {len(names)} features but {len(weights)} weights")
    x = rng.uniform(params["low"], params["high"], size=(params["rows"], len(names)))
    y = params["bias"] + x @ weights + rng.normal(0.0, params["noise"], size=params["rows"])
    lines = [",".join([*names, "sales"])]
    lines += [",".join(f"{v:.4f}" for v in (*row, target)) for row, target in zip(x, y, strict=True)]
    return ("\n".join(lines) + "\n").encode()


def _messy_case(rng: np.random.Generator, text: str) -> str:
    style = rng.integers(4)
    return [text, text.upper(), text.title(), f" {text.replace('_', ' ')} "][style]


def loans(params: dict[str, Any]) -> bytes:
    """``params``: rows, seed, dirt (share of rows given each kind of dirt).

    Default risk grows with the interest rate, the amount and a risky purpose, and falls with
    FICO and income: a logistic regression can learn it, and a forest too.
    """
    rng = np.random.default_rng(params["seed"])
    n, dirt = params["rows"], params["dirt"]
    fico = np.clip(np.round(rng.normal(705, 38, n) / 5) * 5, 600, 845)
    rate = np.clip(26 - (fico - 600) * 0.055 + rng.normal(0, 1.8, n), 5.0, 30.0)
    amount = np.round(rng.uniform(1000, 35000, n) / 25) * 25
    income = np.round(np.exp(rng.normal(11.0, 0.45, n)), 2)
    purpose = rng.choice(PURPOSES, size=n, p=[0.4, 0.22, 0.12, 0.08, 0.06, 0.12])
    risk = np.array([PURPOSE_RISK[p] for p in purpose])
    logit = -1.6 - 0.02 * (fico - 705) + 0.12 * (rate - 13) + 0.00003 * (amount - 15000) - 0.00001 * (income - 65000)
    defaulted = (rng.random(n) < 1 / (1 + np.exp(-(logit + risk)))).astype(int)

    rows = []
    for i in range(n):
        row = [
            f"{fico[i]:.0f}-{fico[i] + 4:.0f}",
            f"{rate[i]:.2f}%",
            f"${amount[i]:,.2f}",
            f"${income[i]:,.2f}",
            _messy_case(rng, str(purpose[i])),
            str(defaulted[i]),
        ]
        if rng.random() < dirt["blank"]:
            row[rng.integers(len(row) - 1)] = ""
        if rng.random() < dirt["na"]:
            row[rng.integers(len(row) - 1)] = "n/a"
        if rng.random() < dirt["outlier"]:
            row[3] = "$99,999,999.00"
        if rng.random() < dirt["garbage"]:
            row[1] = "see notes"
        rows.append(row)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(LOAN_COLUMNS)
    for i, row in enumerate(rows):
        writer.writerow(row)
        if rng.random() < dirt["duplicate"]:
            writer.writerow(row)  # an export that repeated a record
        if rng.random() < dirt["malformed"]:
            out.write(",".join(row[:3]) + "\n")  # a truncated line
        if i in (n // 3, 2 * n // 3):
            writer.writerow(LOAN_COLUMNS)  # two exports pasted together
    return out.getvalue().encode()
