"""``bulkops.engine.options``: mode names, the natural key's default, DRF's error key."""

import pytest
from rest_framework import serializers

from bulkops.engine import MODES, run_batch
from bulkops.engine.options import check_mode, natural_key_of
from bulkops.exceptions import InvalidOptions
from project.catalog.serializers import OrderSerializer, ProductSerializer


class Line(serializers.Serializer):
    code = serializers.CharField()


def test_the_modes():
    assert MODES == ("create", "update", "upsert", "delete")


def test_unknown_mode_lists_the_modes():
    with pytest.raises(InvalidOptions) as caught:
        check_mode("merge")

    assert caught.value.message == (
        "Unknown mode 'merge'; use one of create, update, upsert, delete."
    )


@pytest.mark.parametrize("serializer", [ProductSerializer, ProductSerializer()])
def test_natural_key_defaults_to_the_serializer_meta(serializer):
    assert natural_key_of(serializer) == ("sku",)
    assert natural_key_of(serializer, None) == ("sku",)
    assert natural_key_of(serializer, ()) == ()
    assert natural_key_of(serializer, ["name"]) == ("name",)
    assert natural_key_of(OrderSerializer) == ()
    assert natural_key_of(Line) == ()


@pytest.mark.django_db
def test_errors_of_no_field_go_under_drfs_non_field_errors_key(settings, products):
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "NON_FIELD_ERRORS_KEY": "__all__"}

    result = run_batch(
        serializer_class=ProductSerializer,
        rows=[{"price": "1"}, "junk"],
        mode="update",
    )

    assert [r.errors for r in result.results] == [
        {"__all__": ["Each item must name its object by 'id' or by 'sku'."]},
        {"__all__": ["Invalid data. Expected a dictionary, but got str."]},
    ]
