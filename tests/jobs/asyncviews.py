"""Viewsets whose bulk requests cannot run as jobs, for tests/jobs/test_api_async.py
(``@pytest.mark.urls("tests.jobs.asyncviews")``)."""

from django.urls import include, path
from rest_framework.routers import SimpleRouter

from bulkops.mixins import BulkModelViewSet
from project.catalog.models import Product
from project.catalog.serializers import ProductSerializer


class HookedProducts(BulkModelViewSet):
    """Overrides perform_bulk_create: a job would not run the hook."""

    queryset = Product.objects.all()
    serializer_class = ProductSerializer

    def perform_bulk_create(self, *, items, options):
        return self.run_bulk(mode="create", items=items, options=options)


class ActiveProducts(BulkModelViewSet):
    """Only active products may be changed: a job could reach the others."""

    queryset = Product.objects.filter(active=True)
    serializer_class = ProductSerializer


class SyncProducts(BulkModelViewSet):
    queryset = Product.objects.all()
    serializer_class = ProductSerializer
    bulk_async = False


def _local_serializer():
    class LocalSerializer(ProductSerializer):
        pass

    return LocalSerializer


class LocalSerializerProducts(BulkModelViewSet):
    """A serializer class no worker can import by its dotted path."""

    queryset = Product.objects.all()
    serializer_class = _local_serializer()


router = SimpleRouter()
router.register("hooked", HookedProducts, basename="hooked")
router.register("active", ActiveProducts, basename="active")
router.register("sync", SyncProducts, basename="sync")
router.register("local", LocalSerializerProducts, basename="local")

urlpatterns = [
    path("api/", include("bulkops.jobs.urls")),
    path("api/", include(router.urls)),
]
