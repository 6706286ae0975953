"""What an image folder keeps per file (issue 25): its paths as two numpy arrays, not a Python
object per file that every forked DataLoader worker would copy as it reads them; the
behaviour, ids, manifest, fingerprints and pickling are what they were with tuples of str."""

from __future__ import annotations

import gc
import hashlib
import pickle

import numpy as np
import pytest
import torch
from image_folders import write_image_folder

from unlearnkit.data import load_dataset
from unlearnkit.data.loader import in_order, iterate_batches
from unlearnkit.data.paths import PathTable
from unlearnkit.data.samples import FileSamples


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    root = write_image_folder(tmp_path_factory.mktemp("mem") / "imgs", per_class=9, size=10)
    return load_dataset("imagefolder", str(root), image_size=8, public_fraction=0.3)


def _per_file_containers(obj, n: int) -> list:
    """Lists, tuples and dicts with ``n`` or more entries that ``obj`` holds as attributes."""
    held = list(vars(obj).values()) if hasattr(obj, "__dict__") else gc.get_referents(obj)
    return [r for r in held if isinstance(r, list | tuple | dict) and len(r) >= n]


def test_the_folder_source_holds_no_python_object_per_file(bundle):
    samples = bundle.train.samples
    assert isinstance(samples, FileSamples) and isinstance(samples.files, PathTable)
    n = samples.store_len
    assert n >= 10 and _per_file_containers(samples, n) == []
    assert _per_file_containers(samples.files, n) == []
    arrays = [r for r in gc.get_referents(samples.files) if isinstance(r, np.ndarray)]
    assert len(arrays) == 2  # the joined bytes and the starts, whatever the file count
    assert isinstance(bundle.train.paths, PathTable)
    assert _per_file_containers(bundle.train, len(bundle.train)) == []


def test_paths_ids_and_fingerprints_are_as_with_tuples_of_str(bundle):
    samples, train = bundle.train.samples, bundle.train
    files = list(samples.files)
    assert files == sorted(files)  # by sorted relative path
    manifest = {e.path: e for e in bundle.manifest.entries}
    assert [manifest[p].id for p in train.paths] == train.ids.tolist()
    old = hashlib.sha256("\n".join(files).encode()).hexdigest()  # the tuple-of-str identity
    assert samples._identity() == f"files:{old}:{samples.sample_shape}".encode()
    as_tuple = FileSamples(samples.rows, samples.prep, samples.divisor, samples.root,
                           tuple(files), samples.channels, samples.size, 8)  # fmt: skip
    assert as_tuple.files == samples.files and torch.equal(as_tuple.load(), samples.load())
    view = train.subset(torch.tensor([3, 0, 5]))
    assert list(view.paths) == [train.paths[3], train.paths[0], train.paths[5]]
    assert torch.equal(view.samples.load(), samples.load(torch.tensor([3, 0, 5])))


def test_a_pickled_view_loads_and_fingerprints_the_same(bundle):
    view = bundle.train.subset(torch.arange(2, 9))
    back = pickle.loads(pickle.dumps(view))
    assert torch.equal(back.samples.load(), view.samples.load())
    assert back.fingerprint() == view.fingerprint() and back.paths == view.paths


def test_workers_start_with_the_parent_frozen_and_leave_it_unfrozen(bundle):
    split = bundle.train
    plan = in_order(len(split), 5)
    main = [x for x, _, _ in iterate_batches(split, plan)]
    forked = [x for x, _, _ in iterate_batches(split, plan, workers=2)]
    assert all(torch.equal(a, b) for a, b in zip(main, forked, strict=True))
    assert gc.get_freeze_count() == 0


def test_path_table_is_a_sequence_of_str():
    paths = ["a/x.jpg", "b/ü ñ.png", "", "c/d/e.jpeg"]
    table = PathTable.of(paths)
    assert list(table) == paths and len(table) == 4 and table[-1] == "c/d/e.jpeg"
    assert table == tuple(paths) and table != paths[:3]
    assert list(table.take([3, 1])) == ["c/d/e.jpeg", "b/ü ñ.png"]
    assert list(table[1:3]) == paths[1:3] and list(table + table) == paths * 2
    assert table.joined() == "\n".join(paths).encode()
    assert len(PathTable.of([])) == 0 and list(PathTable.of([])) == []
    with pytest.raises(IndexError):
        table[4]
