"""Computing on the real server: lazyexpr, concatenate, stack."""

from __future__ import annotations

import uuid
from pathlib import PurePosixPath

import numpy as np
import pytest

from cat2sync import BadRequest, Client, Dataset, NotFound

A = np.arange(60, dtype="f8").reshape(6, 10)
B = np.linspace(-1, 1, 60).reshape(6, 10)


@pytest.fixture
def operands(alice: Client, remote_dir: str, make_b2nd) -> dict[str, str]:
    paths = {"a": f"{remote_dir}/a.b2nd", "b": f"{remote_dir}/b.b2nd"}
    alice.upload(make_b2nd("a.b2nd", A, chunks=(3, 10)), paths["a"])
    alice.upload(make_b2nd("b.b2nd", B, chunks=(2, 5)), paths["b"])
    return paths


@pytest.fixture
def expr_name() -> str:
    return f"expr_{uuid.uuid4().hex[:10]}"


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("a + a", A + A),
        ("a * b - 1", A * B - 1),
        ("sin(b) + sqrt(a)", np.sin(B) + np.sqrt(A)),
        ("where(a > 30, a, b)", np.where(A > 30, A, B)),
    ],
)
def test_lazyexpr_result_equals_numpy(
    alice: Client, operands: dict[str, str], expr_name: str, expression: str, expected: np.ndarray
) -> None:
    path = alice.lazyexpr(expr_name, expression, operands)
    assert path == PurePosixPath(f"@personal/{expr_name}.b2nd")
    assert f"{expr_name}.b2nd" in alice.get_list("@personal")
    np.testing.assert_allclose(alice.fetch(path), expected)
    ds = alice.get(path)
    assert isinstance(ds, Dataset)
    assert ds.shape == expected.shape
    alice.remove(path)


def test_lazyexpr_overwrites_and_compute_flag_is_accepted(
    alice: Client, operands: dict[str, str], expr_name: str
) -> None:
    alice.lazyexpr(expr_name, "a + 1", {"a": operands["a"]}, compute=True)
    path = alice.lazyexpr(expr_name, "a * 3", {"a": operands["a"]}, compute=False)
    np.testing.assert_allclose(alice.fetch(path), A * 3)  # readable although not "computed"
    alice.remove(path)


def test_lazyexpr_operands_accept_paths(
    alice: Client, operands: dict[str, str], expr_name: str
) -> None:
    path = alice.lazyexpr(
        expr_name, "x - y", {"x": PurePosixPath(operands["a"]), "y": operands["b"]}
    )
    np.testing.assert_allclose(alice.fetch(path, (slice(1, 3), slice(2, 4))), (A - B)[1:3, 2:4])
    alice.remove(path)


@pytest.mark.parametrize("name", ["../x", "a/b", "..", ".hidden", "", "semi;colon", "sp ace"])
def test_lazyexpr_refuses_unsafe_names_client_side(
    alice: Client, remote_dir: str, name: str
) -> None:
    requests = alice.stats.requests
    with pytest.raises(BadRequest):
        alice.lazyexpr(name, "a + a", {"a": f"{remote_dir}/a.b2nd"})
    assert alice.stats.requests == requests  # nothing was sent


def test_lazyexpr_with_an_unknown_symbol(
    alice: Client, operands: dict[str, str], expr_name: str
) -> None:
    with pytest.raises(BadRequest) as err:
        alice.lazyexpr(expr_name, "a + c", {"a": operands["a"]})
    assert "c" in err.value.detail


@pytest.mark.parametrize("axis", [0, 1, -1])
def test_concatenate_equals_numpy(
    alice: Client, operands: dict[str, str], remote_dir: str, axis: int
) -> None:
    dst = f"{remote_dir}/cat.b2nd"
    srcs = [operands["a"], operands["b"], operands["a"]]
    assert alice.concatenate(srcs, dst, axis=axis) == dst
    np.testing.assert_array_equal(alice.fetch(dst), np.concatenate([A, B, A], axis=axis))


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_stack_equals_numpy(
    alice: Client, operands: dict[str, str], remote_dir: str, axis: int
) -> None:
    dst = f"{remote_dir}/st.b2nd"
    assert alice.stack([operands["a"], operands["b"]], dst, axis=axis) == dst
    np.testing.assert_array_equal(alice.fetch(dst), np.stack([A, B], axis=axis))


def test_combine_dst_without_suffix_gets_b2nd(
    alice: Client, operands: dict[str, str], remote_dir: str
) -> None:
    srcs = [operands["a"], operands["b"]]
    assert alice.concatenate(srcs, f"{remote_dir}/joined", axis=0) == f"{remote_dir}/joined.b2nd"
    assert alice.stack(srcs, f"{remote_dir}/stacked", axis=0) == f"{remote_dir}/stacked.b2nd"
    assert sorted(alice.get_list(remote_dir)) == ["a.b2nd", "b.b2nd", "joined.b2nd", "stacked.b2nd"]
    assert alice.get_info(f"{remote_dir}/joined.b2nd")["shape"] == [12, 10]
    assert alice.get_info(f"{remote_dir}/stacked.b2nd")["shape"] == [2, 6, 10]


def test_combine_errors(
    alice: Client, operands: dict[str, str], remote_dir: str, make_b2nd
) -> None:
    with pytest.raises(BadRequest):
        alice.concatenate([], f"{remote_dir}/x.b2nd", axis=0)
    with pytest.raises(BadRequest):
        alice.concatenate([operands["a"]], f"{remote_dir}/x.txt", axis=0)
    alice.upload(make_b2nd("small.b2nd", np.zeros((2, 3))), f"{remote_dir}/small.b2nd")
    with pytest.raises(BadRequest):  # trailing shapes differ
        alice.concatenate(
            [operands["a"], f"{remote_dir}/small.b2nd"], f"{remote_dir}/x.b2nd", axis=0
        )


def test_combine_of_a_missing_source(
    alice: Client, operands: dict[str, str], remote_dir: str
) -> None:
    missing = f"{remote_dir}/missing.b2nd"
    with pytest.raises(NotFound) as err:
        alice.concatenate([operands["a"], missing], f"{remote_dir}/x.b2nd", axis=0)
    assert err.value.path == missing
    assert alice.get_list(remote_dir) == ["a.b2nd", "b.b2nd"]


def test_lazyexpr_with_a_missing_operand(
    alice: Client, operands: dict[str, str], remote_dir: str, expr_name: str
) -> None:
    missing = f"{remote_dir}/missing.b2nd"
    with pytest.raises(NotFound) as err:
        alice.lazyexpr(expr_name, "a + m", {"a": operands["a"], "m": missing})
    assert err.value.path == missing
