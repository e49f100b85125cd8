"Fast checks of sharpbalance.theory: argument errors name the argument; phi reduces to Marchenko-Pastur moments."
import warnings
import pytest
from sharpbalance.core import SBError
from sharpbalance.theory import phi, sam_theory, sharpbalance_theory, simulate_sam, simulate_sharpbalance, DivergenceWarning

@pytest.mark.parametrize("call, name", [
    (lambda: sam_theory(3000, 150, 0, 0.1), "k"),
    (lambda: sam_theory(0, 150, 3, 0.1), "n"),
    (lambda: sam_theory(3000, -2, 3, 0.1), "d"),
    (lambda: sam_theory(3000, 150, 3, 0.1, eta=-0.01), "eta"),
    (lambda: sam_theory(3000, 150, 3, -0.1), "rho"),
    (lambda: sharpbalance_theory(3000, 150, 0, 3, 0.1), "s"),
    (lambda: sharpbalance_theory(3000, 150, 10, 0, 0.1), "k"),
    (lambda: simulate_sam(300, 15, 50, 3, -1.0), "rho"),
    (lambda: simulate_sharpbalance(300, 15, 50, 0, 3, 0.1), "s"),
    (lambda: phi(2, 0, 0.01, 0.1, 0.0), "r"),
])
def test_errors_name_the_argument(call, name):
    with pytest.raises(ValueError) as e: call()
    assert isinstance(e.value, SBError)
    assert str(e.value).startswith(f"{name} must be"), str(e.value)

def mp(q, r):
    "Marchenko-Pastur moments written out by hand."
    return [1, r, r + r**2, r + 3*r**2 + r**3, r + 6*r**2 + 6*r**3 + r**4][q]

@pytest.mark.parametrize("r", [0.5, 1.0, 2.0, 20.0])
def test_phi_moments(r):
    assert phi(0, 0, 0.01, 0.5, r) == 1.0
    for q in range(5): assert phi(0, q, 0.01, 0.5, r) == pytest.approx(mp(q, r), rel=1e-12)
    assert phi(1, 0, 0.01, 0.5, r) == pytest.approx(1 - 0.01 * r - 0.01 * 0.5 * (r + r**2), rel=1e-12)

def test_divergence_warning():
    with pytest.warns(DivergenceWarning): sam_theory(3000, 150, 3, 0.5)
    with warnings.catch_warnings():
        warnings.simplefilter("error", DivergenceWarning)
        sam_theory(3000, 150, 3, 0.1)
