"""The mixins compose like DRF's: a viewset gets the bulk methods of the mixins it has,
and the ``perform_bulk_*`` hooks are where a project changes what happens."""

import pytest
from django.urls import include, path
from rest_framework import viewsets
from rest_framework.routers import DefaultRouter
from rest_framework.test import APIRequestFactory, force_authenticate

from bulkops.mixins import BulkCreateMixin, BulkDestroyMixin, BulkMixin
from project.catalog.models import Product
from project.catalog.serializers import ProductSerializer
from project.catalog.views import ProductViewSet
from tests.api.helpers import new_product, skus

pytestmark = pytest.mark.django_db


class CreateOnly(BulkCreateMixin, viewsets.ModelViewSet):
    queryset = Product.objects.all()
    serializer_class = ProductSerializer


class CreateAndDelete(BulkCreateMixin, BulkDestroyMixin, viewsets.ModelViewSet):
    queryset = Product.objects.all()
    serializer_class = ProductSerializer


class NoBulk(BulkMixin, viewsets.ModelViewSet):
    queryset = Product.objects.all()
    serializer_class = ProductSerializer


def bulk_methods(viewset) -> set[str]:
    router = DefaultRouter()
    router.register("p", viewset, basename="p")
    for pattern in router.urls:
        if pattern.name == "p-bulk":
            return set(pattern.callback.actions)
    return set()


def test_the_route_has_the_methods_of_the_mixins():
    assert bulk_methods(CreateOnly) == {"post"}
    assert bulk_methods(CreateAndDelete) == {"post", "delete"}
    assert bulk_methods(NoBulk) == set()
    assert bulk_methods(ProductViewSet) == {"post", "patch", "put", "delete"}


_router = DefaultRouter()
_router.register("products", CreateOnly, basename="only")
urlpatterns = [path("api/", include(_router.urls))]


@pytest.mark.urls(__name__)
def test_a_method_the_viewset_lacks_is_405(api, tools):
    client = api
    assert client.patch("/api/products/bulk/", {"items": []}, format="json").status_code == 405
    assert client.post("/api/products/bulk/", {"items": []}, format="json").status_code == 200


def test_perform_hooks_can_pass_engine_options(admin, tools):
    written = []

    class Hooked(ProductViewSet):
        def perform_bulk_create(self, *, items, options):
            return self.run_bulk(
                mode="create",
                items=items,
                options=options,
                after_write=lambda action, objs: written.extend((action, o.sku) for o in objs),
            )

    request = APIRequestFactory().post(
        "/api/products/bulk/", {"items": [new_product("H-1")]}, format="json"
    )
    force_authenticate(request, admin)

    response = Hooked.as_view({"post": "bulk_create"})(request)

    assert response.status_code == 200
    assert written == [("create", "H-1")]
    assert skus() == ["H-1"]


def test_options_describes_the_route(api):
    response = api.options("/api/products/bulk/")
    assert response.status_code == 200
    assert set(response.headers["Allow"].split(", ")) == {
        "POST",
        "PATCH",
        "PUT",
        "DELETE",
        "OPTIONS",
    }
    assert set(response.json()["actions"]) == {"POST", "PUT"}
    assert "sku" in response.json()["actions"]["POST"]


def test_options_shows_only_what_the_user_may_send(make_user, client_for):
    client = client_for(make_user("add_product"))
    response = client.options("/api/products/bulk/")
    assert set(response.json()["actions"]) == {"POST"}  # PUT needs change too


def test_deleting_a_referenced_object_is_409_not_500(api, products):
    response = api.delete(f"/api/categories/{products[0].category.pk}/")

    assert response.status_code == 409
    assert response.json()["detail"] == (
        "Cannot delete category Tools: 5 products refer to it; delete or change them first."
    )
