"""Smoke tests of the project as `make run` starts it: checks, migrations, demo data, admin."""

import importlib.util
import shutil
import socket
from io import StringIO
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.urls import reverse

from project.catalog.models import Category, Customer, Order, Product

CATALOG_MODELS = [Category, Product, Customer, Order]
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _fast_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def load_demo_data(*args: str) -> str:
    out = StringIO()
    call_command("load_demo_data", *args, stdout=out)
    return out.getvalue()


def catalog_counts() -> dict[str, int]:
    return {model.__name__: model.objects.count() for model in CATALOG_MODELS}


@pytest.mark.django_db
def test_system_checks_pass():
    call_command("check", fail_level="WARNING")


@pytest.mark.django_db
def test_migrations_are_up_to_date():
    out = StringIO()
    try:
        call_command("makemigrations", "--check", "--dry-run", stdout=out)
    except SystemExit:
        pytest.fail(
            f"Models changed without a migration; run manage.py makemigrations.\n{out.getvalue()}"
        )


@pytest.mark.django_db
def test_load_demo_data_creates_the_catalog_and_admin_once():
    first = load_demo_data()
    counts = catalog_counts()
    second = load_demo_data()

    assert counts == {"Category": 8, "Product": 200, "Customer": 50, "Order": 100}
    assert catalog_counts() == counts
    assert Product.objects.filter(sku="SKU-00001").exists()
    assert Product.objects.filter(sku="SKU-00200").exists()
    admin = get_user_model().objects.get()
    assert (admin.username, admin.is_superuser, admin.is_staff) == ("admin", True, True)
    assert admin.check_password("admin")
    assert "Created superuser 'admin'" in first
    assert "(0 new)" in second
    assert "no demo superuser created" in second


@pytest.mark.django_db
def test_load_demo_data_leaves_rows_that_were_edited():
    load_demo_data()
    Product.objects.filter(sku="SKU-00001").update(name="Renamed", price=1)
    Order.objects.filter(pk=Order.objects.order_by("pk").first().pk).delete()

    load_demo_data()

    assert Product.objects.get(sku="SKU-00001").name == "Renamed"
    assert Order.objects.count() == 100


@pytest.mark.django_db
def test_load_demo_data_creates_no_admin_when_a_user_exists():
    get_user_model().objects.create_user("ann", password="secret")

    out = load_demo_data()

    assert list(get_user_model().objects.values_list("username", flat=True)) == ["ann"]
    assert "no demo superuser created" in out


@pytest.mark.django_db
def test_load_demo_data_no_admin_flag():
    load_demo_data("--no-admin")

    assert not get_user_model().objects.exists()
    assert Product.objects.count() == 200


@pytest.mark.django_db
@pytest.mark.parametrize("model", CATALOG_MODELS, ids=lambda model: model.__name__)
def test_admin_changelist_renders_for_the_demo_superuser(client, model):
    load_demo_data()
    assert client.login(username="admin", password="admin")

    opts = model._meta
    response = client.get(reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist"))

    assert response.status_code == 200
    assert f"{model.objects.count()} {opts.verbose_name_plural}" in response.text


# scripts/run.py (`make run`) is not a package; load it by path.
spec = importlib.util.spec_from_file_location("run_script", ROOT / "scripts" / "run.py")
run_script = importlib.util.module_from_spec(spec)
spec.loader.exec_module(run_script)


def unused_redis_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"redis://127.0.0.1:{port}/0"


def test_run_falls_back_to_in_process_jobs_without_redis(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # no redis-server to start
    processes = run_script.Processes()

    assert not run_script.ensure_redis(unused_redis_url(), processes)
    assert processes.running == {}


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server is not installed")
def test_run_starts_and_stops_a_local_redis_server():
    url = unused_redis_url()
    processes = run_script.Processes()

    try:
        assert run_script.ensure_redis(url, processes)
        assert list(processes.running) == ["redis-server"]
    finally:
        processes.stop_all()

    assert not run_script.redis_answers(url)
