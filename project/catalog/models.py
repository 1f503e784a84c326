"""The demo domain of CONTRACT §2: every foreign key is named by a natural key."""

from django.core.validators import MinValueValidator, RegexValidator
from django.db import models


class Category(models.Model):
    name = models.CharField(max_length=100, unique=True)

    class Meta:
        ordering = ["name"]
        verbose_name_plural = "categories"

    def __str__(self) -> str:
        return self.name


class Product(models.Model):
    sku = models.CharField("SKU", max_length=64, unique=True)
    name = models.CharField(max_length=200)
    category = models.ForeignKey(Category, on_delete=models.PROTECT, related_name="products")
    price = models.DecimalField(max_digits=10, decimal_places=2, validators=[MinValueValidator(0)])
    quantity = models.IntegerField(default=0, validators=[MinValueValidator(0)])
    active = models.BooleanField(default=True)
    released = models.DateField(null=True, blank=True)

    class Meta:
        ordering = ["sku"]
        constraints = [
            models.CheckConstraint(condition=models.Q(price__gte=0), name="product_price_gte_0"),
            models.CheckConstraint(condition=models.Q(quantity__gte=0), name="product_qty_gte_0"),
        ]

    def __str__(self) -> str:
        return self.sku


class Customer(models.Model):
    email = models.EmailField(unique=True)
    name = models.CharField(max_length=200)
    country = models.CharField(
        max_length=2,
        validators=[RegexValidator(r"^[A-Z]{2}$", "Enter an ISO 3166-1 alpha-2 code, e.g. DE.")],
        help_text="ISO 3166-1 alpha-2 code, e.g. DE",
    )

    class Meta:
        ordering = ["email"]

    def __str__(self) -> str:
        return self.email


class Order(models.Model):
    customer = models.ForeignKey(Customer, on_delete=models.PROTECT, related_name="orders")
    product = models.ForeignKey(Product, on_delete=models.PROTECT, related_name="orders")
    quantity = models.PositiveIntegerField(validators=[MinValueValidator(1)])
    placed_at = models.DateTimeField()

    class Meta:
        ordering = ["-placed_at", "id"]
        constraints = [
            models.CheckConstraint(condition=models.Q(quantity__gt=0), name="order_qty_gt_0"),
        ]

    def __str__(self) -> str:
        return f"Order {self.pk}"
