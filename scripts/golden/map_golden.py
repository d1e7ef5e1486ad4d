"""Golden values for fute::map's PCA (from the Gram matrix) and its t-SNE affinities.

Run once:
    /work/venv-torch/bin/python scripts/golden/map_golden.py > crates/fute/tests/fixtures/map_golden.json
PCA: scikit-learn's PCA(n_components=2) on the raw vectors (fute never sees them whole:
it eigen-decomposes the double-centred Gram matrix). Signs of principal components are
arbitrary, so the test compares up to one sign per component.
Cosine matrix: plain and centred (vectors minus their mean) cosines, as fute's map uses.
"""
import json
import numpy as np
from sklearn.decomposition import PCA

rng = np.random.default_rng(11)
cases = []
for n, d, scale in [(6, 40, 1.0), (9, 300, 1e-3), (4, 7, 50.0)]:
    # three loose clusters plus a shared offset (like Fisher vectors, whose plain cosines sit near 1)
    centres = rng.normal(size=(3, d))
    x = np.stack([centres[i % 3] + 0.3 * rng.normal(size=d) for i in range(n)]) + 4.0
    x = (x * scale).astype(np.float32)
    xd = x.astype(np.float64)
    pca = PCA(n_components=2, svd_solver="full").fit(xd)
    coords = pca.transform(xd)
    xc = xd - xd.mean(axis=0)
    def cos(m):
        nrm = np.linalg.norm(m, axis=1, keepdims=True)
        u = m / nrm
        return (u @ u.T).tolist()
    cases.append({
        "vectors": x.tolist(),
        "pca": coords.tolist(),
        "explained_variance_ratio": pca.explained_variance_ratio_.tolist(),
        "cosine": cos(xd),
        "centred_cosine": cos(xc),
    })
print(json.dumps({"source": "scikit-learn " + __import__("sklearn").__version__, "cases": cases}))
