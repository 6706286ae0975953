"""The dataset registry (digits, cifar10/100, fashion_mnist, mnist, imagefolder, synthetic, ...).

``load_dataset`` lives here, next to the registry, so that a loader wrapping another data set
(``noisy``) can call it without importing the package that registers it.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable

from unlearnkit.data.assemble import leaving_out
from unlearnkit.data.base import DatasetBundle
from unlearnkit.errors import UnlearnkitError
from unlearnkit.registry import Registry

DATASETS: Registry[DatasetBundle] = Registry("dataset")


def load_dataset(
    name: str = "digits",
    data_dir: str | None = None,
    seed: int = 0,
    leave_out: Iterable[int] | None = None,
    **options: object,
) -> DatasetBundle:
    """Load a registered data set; unknown options are rejected by name.

    ``leave_out``: ids of D to leave out as if they had never been in the pool (the data a
    retrain from scratch on D minus them would see; the remaining ids keep their values).
    """
    loader = DATASETS.get(name)
    accepted = set(inspect.signature(loader).parameters)
    unknown = sorted(set(options) - accepted)
    if unknown:
        raise UnlearnkitError(
            f"dataset {name!r} has no option {unknown[0]!r}; "
            f"options: {', '.join(sorted(accepted - {'data_dir', 'seed'}))}"
        )
    with leaving_out(leave_out or ()):
        return loader(data_dir=data_dir, seed=seed, **options)
