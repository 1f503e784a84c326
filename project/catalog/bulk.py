"""The catalog's bulk-enabled models (found by bulkops when Django starts)."""

from bulkops.registry import register

from .models import Category, Customer, Order, Product
from .serializers import CategorySerializer, CustomerSerializer, OrderSerializer, ProductSerializer

register(Category, CategorySerializer)
register(Product, ProductSerializer)
register(Customer, CustomerSerializer)
register(Order, OrderSerializer)
