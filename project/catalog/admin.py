"""The catalog's admin: every model has Import spreadsheet and Export (bulkops.admin)."""

from django.contrib import admin

from bulkops.admin import BulkImportExportMixin

from .models import Category, Customer, Order, Product


@admin.register(Category)
class CategoryAdmin(BulkImportExportMixin, admin.ModelAdmin):
    search_fields = ["name"]


@admin.register(Product)
class ProductAdmin(BulkImportExportMixin, admin.ModelAdmin):
    list_display = ["sku", "name", "category", "price", "quantity", "active", "released"]
    list_filter = ["active", "category"]
    search_fields = ["sku", "name"]
    list_select_related = ["category"]


@admin.register(Customer)
class CustomerAdmin(BulkImportExportMixin, admin.ModelAdmin):
    list_display = ["email", "name", "country"]
    search_fields = ["email", "name"]


@admin.register(Order)
class OrderAdmin(BulkImportExportMixin, admin.ModelAdmin):
    list_display = ["id", "customer", "product", "quantity", "placed_at"]
    list_select_related = ["customer", "product"]
    autocomplete_fields = ["customer"]
    raw_id_fields = ["product"]
