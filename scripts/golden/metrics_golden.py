"""Golden values for fute-core's target metrics, from scikit-learn and SciPy.

Run once (outside the repo's build; any venv with scikit-learn, SciPy and numpy):
    python3 -m venv /tmp/metrics-venv && /tmp/metrics-venv/bin/pip install scikit-learn scipy numpy
    /tmp/metrics-venv/bin/python scripts/golden/metrics_golden.py > crates/fute-core/tests/fixtures/metrics_golden.json
Macro-F1 is scikit-learn's default `average="macro"` with no `labels=`: the mean over the classes
present in gold or predictions. The "absent classes" cases (a binary dataset scored against a
3- or 4-label set, a class only predicted) are the ones where that differs from averaging over
every class of the label set.
The SQuAD numbers follow the official evaluate-v2.0 normalisation and F1 (reimplemented here
from its definition: lower case, strip punctuation and articles, token-overlap F1).
"""
import json, re, string
import numpy as np
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef
from scipy.stats import pearsonr, spearmanr

rng = np.random.default_rng(7)
cases = []
for k, n in [(2, 50), (3, 200), (4, 37), (7, 120)]:
    gold = rng.integers(0, k, n)
    pred = np.where(rng.random(n) < 0.6, gold, rng.integers(0, k, n))
    cases.append({
        "num_classes": k, "pred": pred.tolist(), "gold": gold.tolist(),
        "accuracy": accuracy_score(gold, pred),
        "macro_f1": f1_score(gold, pred, average="macro", zero_division=0),
        "matthews": matthews_corrcoef(gold, pred),
    })
# Classes of the label set absent from gold and predictions (own generator, so the cases
# above and the regression values below stay as they were).
absent_rng = np.random.default_rng(11)
for k, present, n in [(3, [0, 2], 40), (3, [0, 1], 25), (4, [1, 3], 30), (3, [1], 10)]:
    gold = absent_rng.choice(present, n)
    pred = np.where(absent_rng.random(n) < 0.7, gold, absent_rng.choice(present, n))
    cases.append({
        "num_classes": k, "pred": pred.tolist(), "gold": gold.tolist(), "absent_classes": True,
        "accuracy": accuracy_score(gold, pred),
        "macro_f1": f1_score(gold, pred, average="macro", zero_division=0),
        "matthews": matthews_corrcoef(gold, pred),
    })
# A class that occurs only among the predictions counts (F1 = 0 for it), as in scikit-learn.
gold = np.array([0, 0, 1, 1, 0, 1]); pred = np.array([0, 2, 1, 1, 0, 0])
cases.append({
    "num_classes": 3, "pred": pred.tolist(), "gold": gold.tolist(), "absent_classes": True,
    "accuracy": accuracy_score(gold, pred),
    "macro_f1": f1_score(gold, pred, average="macro", zero_division=0),
    "matthews": matthews_corrcoef(gold, pred),
})
reg = []
for n in [10, 64]:
    x = rng.normal(size=n)
    y = 0.5 * x + rng.normal(size=n)
    y[:3] = y[3]  # ties for Spearman
    x = np.round(x, 1)  # more ties
    reg.append({"x": x.tolist(), "y": y.tolist(), "pearson": pearsonr(x, y)[0], "spearman": spearmanr(x, y)[0]})

def normalize(s):
    s = s.lower()
    s = "".join(ch for ch in s if ch not in set(string.punctuation))
    s = re.sub(r"\b(a|an|the)\b", " ", s)
    return " ".join(s.split())

def f1(pred, gold):
    p, g = normalize(pred).split(), normalize(gold).split()
    if not p or not g:
        return float(p == g)
    common = sum(min(p.count(t), g.count(t)) for t in set(p))
    if common == 0:
        return 0.0
    pr, rc = common / len(p), common / len(g)
    return 2 * pr * rc / (pr + rc)

qa = [(p, g, float(normalize(p) == normalize(g)), f1(p, g)) for p, g in [
    ("The Eiffel Tower", "eiffel tower"), ("in Paris, France", "Paris"), ("", ""), ("Paris", ""),
    ("a big red dog", "the red dog"), ("1998", "in 1999"), ("Denver Broncos", "Denver Broncos!"),
]]
print(json.dumps({"classification": cases, "regression": reg,
                  "squad": [{"pred": p, "gold": g, "em": e, "f1": f} for p, g, e, f in qa]}, indent=1))
