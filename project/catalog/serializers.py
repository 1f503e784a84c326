"""One serializer per model, shared by the single endpoints and every bulk surface."""

from rest_framework import serializers

from .models import Category, Customer, Order, Product


class CategorySerializer(serializers.ModelSerializer):
    class Meta:
        model = Category
        fields = ["id", "name"]
        natural_key = ("name",)


class ProductSerializer(serializers.ModelSerializer):
    category = serializers.SlugRelatedField(slug_field="name", queryset=Category.objects.all())

    class Meta:
        model = Product
        fields = ["id", "sku", "name", "category", "price", "quantity", "active", "released"]
        natural_key = ("sku",)


class CustomerSerializer(serializers.ModelSerializer):
    class Meta:
        model = Customer
        fields = ["id", "email", "name", "country"]
        natural_key = ("email",)


class OrderSerializer(serializers.ModelSerializer):
    customer = serializers.SlugRelatedField(slug_field="email", queryset=Customer.objects.all())
    product = serializers.SlugRelatedField(slug_field="sku", queryset=Product.objects.all())

    class Meta:
        model = Order
        fields = ["id", "customer", "product", "quantity", "placed_at"]
