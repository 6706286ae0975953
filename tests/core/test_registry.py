import pytest

from unlearnkit.errors import UnlearnkitError
from unlearnkit.registry import Registry


def test_register_create_and_list():
    reg: Registry[int] = Registry("widget")

    @reg.register("double")
    def double(x: int = 1) -> int:
        return 2 * x

    assert reg.create("double", x=4) == 8
    assert reg.names() == ["double"]
    assert "double" in reg


def test_unknown_name_lists_choices():
    reg: Registry[int] = Registry("widget")
    reg.register("a")(lambda: 1)
    with pytest.raises(UnlearnkitError, match=r"unknown widget 'b'; choose one of: a"):
        reg.get("b")


def test_double_registration_is_a_bug():
    reg: Registry[int] = Registry("widget")
    reg.register("a")(lambda: 1)
    with pytest.raises(RuntimeError):
        reg.register("a")(lambda: 2)
