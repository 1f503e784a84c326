"""The catalog API (CONTRACT §3): ordinary ModelViewSets plus the bulk route."""

from django.db.models import ProtectedError
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from rest_framework.exceptions import APIException

from bulkops.mixins import BulkModelViewSet
from bulkops.openapi import DetailErrorSerializer

from .models import Category, Customer, Order, Product
from .serializers import (
    CategorySerializer,
    CustomerSerializer,
    OrderSerializer,
    ProductSerializer,
)


class ObjectInUse(APIException):
    status_code = 409
    default_code = "protected"
    default_detail = "The object is in use."


@extend_schema_view(
    destroy=extend_schema(
        responses={
            204: OpenApiResponse(description="Deleted."),
            409: OpenApiResponse(DetailErrorSerializer, description="Other objects refer to it."),
        }
    )
)
class CatalogViewSet(BulkModelViewSet):
    """A catalog resource: list, retrieve, create, update, delete, and ``bulk/``."""

    def perform_destroy(self, instance):
        # Every foreign key of the catalog is PROTECT: say so instead of a 500.
        try:
            instance.delete()
        except ProtectedError as exc:
            kinds = sorted({str(obj._meta.verbose_name_plural) for obj in exc.protected_objects})
            raise ObjectInUse(
                f"Cannot delete {instance._meta.verbose_name} {instance}: "
                f"{len(exc.protected_objects)} {' and '.join(kinds)} refer to it; "
                "delete or change them first."
            ) from None


class CategoryViewSet(CatalogViewSet):
    """Categories, named by `name`."""

    queryset = Category.objects.all()
    serializer_class = CategorySerializer


class ProductViewSet(CatalogViewSet):
    """Products, named by `sku`; `category` by its name."""

    queryset = Product.objects.select_related("category")
    serializer_class = ProductSerializer


class CustomerViewSet(CatalogViewSet):
    """Customers, named by `email`."""

    queryset = Customer.objects.all()
    serializer_class = CustomerSerializer


class OrderViewSet(CatalogViewSet):
    """Orders; `customer` by email, `product` by SKU. No natural key: no bulk upsert."""

    queryset = Order.objects.select_related("customer", "product")
    serializer_class = OrderSerializer
