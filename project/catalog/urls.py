"""``/api/``: one DefaultRouter for the catalog resources and their bulk routes."""

from rest_framework.routers import DefaultRouter

from . import views

router = DefaultRouter()
router.register("categories", views.CategoryViewSet)
router.register("products", views.ProductViewSet)
router.register("customers", views.CustomerViewSet)
router.register("orders", views.OrderViewSet)

urlpatterns = router.urls
