"""Golden values for fute-core's LogME, from an independent numpy implementation
written from You et al. (ICML 2021), "LogME: Practical Assessment of Pre-trained
Models for Transfer Learning", Algorithm 1 and Eq. (2)-(4).

This version works in the D-dimensional weight space directly: it forms
A = alpha*I + beta*F^T F, solves for m = beta * A^{-1} F^T y, and takes log|A|
with slogdet every iteration (no SVD trick), so it shares no algebra with the
Rust code, which works in the eigenbasis of the smaller Gram matrix.

Run once:
    /work/venv-torch/bin/python scripts/golden/logme_golden.py \
        > crates/fute-core/tests/fixtures/logme_golden.json
"""
import json
import numpy as np


def log_evidence(F, y, alpha, beta):
    n, D = F.shape
    A = alpha * np.eye(D) + beta * (F.T @ F)
    m = beta * np.linalg.solve(A, F.T @ y)
    res = float(np.sum((F @ m - y) ** 2))
    _, logdet = np.linalg.slogdet(A)
    L = (n / 2 * np.log(beta) + D / 2 * np.log(alpha) - n / 2 * np.log(2 * np.pi)
         - beta / 2 * res - alpha / 2 * float(m @ m) - logdet / 2)
    # gamma = sum_i beta*sigma_i/(alpha+beta*sigma_i) = D - alpha * tr(A^{-1})
    gamma = D - alpha * np.trace(np.linalg.inv(A))
    return L, gamma, float(m @ m), res


def evidence(F, y):
    """Fixed-point maximisation of the evidence over (alpha, beta), stopped when the
    evidence changes by less than 1e-9 relatively (or before alpha/beta stop being
    finite and positive, which happens when n <= D and the fit becomes exact)."""
    n, D = F.shape
    alpha, beta = 1.0, 1.0
    best = -np.inf
    for _ in range(1000):
        L, gamma, mm, res = log_evidence(F, y, alpha, beta)
        converged = abs(L - best) <= 1e-9 * max(abs(L), 1.0)
        best = L
        if converged:
            break
        na, nb = gamma / mm, (n - gamma) / res
        if not (np.isfinite(na) and np.isfinite(nb) and na > 0 and nb > 0):
            break
        alpha, beta = na, nb
    return best


def logme_classes(F, labels, k):
    return float(np.mean([evidence(F, (labels == c).astype(float)) for c in range(k)]) / F.shape[0])


def logme_values(F, y):
    return float(evidence(F, y) / F.shape[0])


rng = np.random.default_rng(11)
cases = []
# n > D (right-vector branch) and n < D (left-vector branch), classification and regression.
for n, D, k in [(30, 6, 2), (12, 20, 3), (50, 8, 4)]:
    labels = rng.integers(0, k, n)
    centres = rng.normal(size=(k, D))
    F = centres[labels] * 0.8 + rng.normal(size=(n, D))
    cases.append({"kind": "classes", "n": n, "dim": D, "num_classes": k,
                  "features": F.ravel().tolist(), "labels": labels.tolist(),
                  "logme": logme_classes(F, labels, k)})
for n, D in [(25, 5), (9, 14)]:
    F = rng.normal(size=(n, D))
    w = rng.normal(size=D)
    y = F @ w * 0.5 + rng.normal(size=n)
    cases.append({"kind": "values", "n": n, "dim": D,
                  "features": F.ravel().tolist(), "values": y.tolist(),
                  "logme": logme_values(F, y)})
print(json.dumps({"source": "scripts/golden/logme_golden.py (numpy, direct weight-space formulas)",
                  "cases": cases}))
