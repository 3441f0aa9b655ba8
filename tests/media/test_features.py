"""Feature files for TAL: npy / npz / safetensors round trips and errors naming file, key and shape."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import safetensors.numpy

from instract_eval.errors import InputError
from instract_eval.media import feature_path, feature_times, read_features


@pytest.fixture()
def features() -> np.ndarray:
    return np.random.default_rng(0).standard_normal((7, 5)).astype(np.float32)


def test_npy_round_trip(tmp_path: Path, features: np.ndarray) -> None:
    path = feature_path(tmp_path, "video_1", ".npy")
    assert path == tmp_path / "video_1.npy"
    np.save(path, features)
    out = read_features(path, dim=5)
    np.testing.assert_array_equal(out, features)
    assert out.dtype == np.float32


def test_npz_round_trip_by_key_and_single_array(tmp_path: Path, features: np.ndarray) -> None:
    np.savez(tmp_path / "many.npz", rgb=features, flow=features * 2)
    np.testing.assert_array_equal(read_features(tmp_path / "many.npz", key="flow"), features * 2)
    np.savez_compressed(tmp_path / "one.npz", feats=features)
    np.testing.assert_array_equal(read_features(tmp_path / "one.npz"), features)


def test_safetensors_round_trip(tmp_path: Path, features: np.ndarray) -> None:
    path = tmp_path / "v.safetensors"
    safetensors.numpy.save_file({"features": features.astype(np.float16), "other": features}, str(path))
    out = read_features(path, key="features")
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, features, atol=1e-2)
    assert read_features(path, key="features", dtype=None).dtype == np.float16


def test_transposed_layout(tmp_path: Path, features: np.ndarray) -> None:
    np.save(tmp_path / "dt.npy", features.T)  # stored [D, T]
    np.testing.assert_array_equal(read_features(tmp_path / "dt.npy", transpose=True, dim=5), features)


def test_missing_file_and_unknown_format(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not found") as caught:
        read_features(tmp_path / "absent.npy")
    assert caught.value.path == str(tmp_path / "absent.npy")
    (tmp_path / "f.pt").write_bytes(b"x")
    with pytest.raises(InputError, match="unsupported feature file type"):
        read_features(tmp_path / "f.pt")


@pytest.mark.parametrize("suffix", [".npy", ".npz", ".safetensors"])
def test_corrupt_file_names_the_file(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"corrupt{suffix}"
    path.write_bytes(b"\x93NUMPY" + bytes(range(200)) if suffix == ".npy" else bytes(range(200)))
    with pytest.raises(InputError, match="cannot read") as caught:
        read_features(path)
    assert caught.value.path == str(path)
    assert str(path) in str(caught.value)


def test_unknown_or_ambiguous_key(tmp_path: Path, features: np.ndarray) -> None:
    np.savez(tmp_path / "many.npz", rgb=features, flow=features)
    with pytest.raises(InputError, match=r"no array named 'i3d'; the file holds \['flow', 'rgb'\]") as caught:
        read_features(tmp_path / "many.npz", key="i3d")
    assert caught.value.field == "i3d"
    with pytest.raises(InputError, match="holds 2 arrays"):
        read_features(tmp_path / "many.npz")
    safetensors.numpy.save_file({"a": features, "b": features}, str(tmp_path / "s.safetensors"))
    with pytest.raises(InputError, match="no array named 'c'"):
        read_features(tmp_path / "s.safetensors", key="c")
    np.save(tmp_path / "one.npy", features)
    with pytest.raises(InputError, match="one unnamed array"):
        read_features(tmp_path / "one.npy", key="rgb")


@pytest.mark.parametrize(
    ("array", "kwargs", "message"),
    [
        (np.zeros(5, np.float32), {}, r"2-D \[T, D\] feature array, got shape \(5,\)"),
        (np.zeros((2, 3, 4), np.float32), {}, r"got shape \(2, 3, 4\)"),
        (np.zeros((7, 5), np.float32), {"dim": 2048}, r"D=2048, got shape \(7, 5\)"),
        (np.zeros((0, 5), np.float32), {}, "no time steps"),
        (np.array([[0.0, 1.0], [np.nan, 2.0]]), {}, "NaN or infinity .first at time step 1"),
        (np.array([["a", "b"]]), {}, "must be numeric"),
    ],
)
def test_bad_arrays(tmp_path: Path, array: np.ndarray, kwargs: dict, message: str) -> None:
    np.savez(tmp_path / "x.npz", feats=array)
    with pytest.raises(InputError, match=message) as caught:
        read_features(tmp_path / "x.npz", **kwargs)
    assert caught.value.path == str(tmp_path / "x.npz")
    assert caught.value.field == "feats"


def test_feature_times_follow_actionformer() -> None:
    # THUMOS14 I3D: 30 fps, 16-frame windows, stride 4 -> centres at (4 i + 8) / 30 s
    np.testing.assert_allclose(feature_times(3, fps=30.0, stride_frames=4, window_frames=16), [8 / 30, 12 / 30, 16 / 30])
    with pytest.raises(ValueError):
        feature_times(3, fps=0.0, stride_frames=4, window_frames=16)
