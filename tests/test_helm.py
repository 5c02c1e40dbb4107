"""The Helm chart (helm/reviewer-roulette): lint, render, Kubernetes schemas, behaviour.

The chart is linted and rendered offline by Helm's own Go code (helm-python-sdk bundles
Helm v4's SDK as a library: no helm binary, no cluster). Every rendered Kubernetes object
is validated against the OpenAPI schemas of Kubernetes 1.30 in strict mode
(kubernetes-validate: an unknown field is an error). The Prometheus Operator's objects,
which those schemas do not cover, are validated against the models generated from the
operator's CRDs (cloudcoil-models-prometheus-operator); a field the model drops (unknown
to the CRD) fails too.
"""

from __future__ import annotations

import copy
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import helm_python as helm
import kubernetes_validate
import pydantic
import pytest
import yaml
from cloudcoil.models.prometheus_operator.v1 import PrometheusRule, ServiceMonitor

from bot.settings import load_settings

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "helm" / "reviewer-roulette"
PRODUCTION = CHART / "ci" / "production-values.yaml"
KUBERNETES = "1.30"
RELEASE, NAMESPACE = "rr", "roulette"
FULLNAME = f"{RELEASE}-reviewer-roulette"
OPERATOR_MODELS: dict[str, type[pydantic.BaseModel]] = {
    "ServiceMonitor": ServiceMonitor,
    "PrometheusRule": PrometheusRule,
}
EVERYTHING_ON: dict[str, Any] = {
    "ingress": {"enabled": True},
    "worker": {"autoscaling": {"enabled": True}},
    "metrics": {"serviceMonitor": {"enabled": True}, "prometheusRule": {"enabled": True}},
    "grafanaDashboard": {"enabled": True},
}


def production_values() -> dict[str, Any]:
    values: dict[str, Any] = yaml.safe_load(PRODUCTION.read_text())
    return values


@pytest.fixture(scope="module")
def chart() -> Iterator[helm.Chart]:
    with helm.Chart.load(CHART) as loaded:
        yield loaded


def render(chart: helm.Chart, values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Every object the chart renders with ``values`` (NOTES.txt aside)."""
    manifests = chart.render(values or {}, name=RELEASE, namespace=NAMESPACE)
    return [
        doc
        for path, text in sorted(manifests.items())
        if path.endswith(".yaml")
        for doc in yaml.safe_load_all(text)
        if doc
    ]


def find(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    matches = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(matches) == 1, f"{kind}/{name}: {len(matches)} rendered"
    return matches[0]


def container(deployment: dict[str, Any]) -> dict[str, Any]:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    result: dict[str, Any] = containers[0]
    return result


def env_of(container_: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The container's variables by name; a name given twice keeps the last (Kubernetes)."""
    return {e["name"]: e for e in container_["env"]}


def plain(container_: dict[str, Any]) -> dict[str, str]:
    return {name: e["value"] for name, e in env_of(container_).items() if "value" in e}


def web(docs: list[dict[str, Any]]) -> dict[str, Any]:
    return find(docs, "Deployment", f"{FULLNAME}-web")


def worker(docs: list[dict[str, Any]]) -> dict[str, Any]:
    return find(docs, "Deployment", f"{FULLNAME}-worker")


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def pod_labels(deployment: dict[str, Any]) -> dict[str, str]:
    labels: dict[str, str] = deployment["spec"]["template"]["metadata"]["labels"]
    return labels


# --------------------------------------------------------------------------- the chart


def test_the_chart_ships_the_bots_version() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    chart_yaml = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart_yaml["apiVersion"] == "v2"
    assert chart_yaml["appVersion"] == project


@pytest.mark.parametrize("values_file", [None, PRODUCTION], ids=["defaults", "production"])
def test_helm_lint_finds_nothing(values_file: Path | None) -> None:
    values = yaml.safe_load(values_file.read_text()) if values_file else None
    report = helm.lint(
        CHART, values, strict=True, namespace=NAMESPACE, kube_version=f"v{KUBERNETES}.0"
    )
    assert report["errors"] == []
    # Only "icon is recommended" (severity 1, info) may remain: no warning, no error.
    assert [m for m in report["messages"] if m["severity"] >= 2] == []


@pytest.mark.parametrize(
    "values",
    [{}, production_values(), EVERYTHING_ON],
    ids=["defaults", "production", "everything-on"],
)
def test_every_rendered_object_fits_its_api_schema(
    chart: helm.Chart, values: dict[str, Any]
) -> None:
    docs = render(chart, values)
    assert docs
    for doc in docs:
        where = f"{doc['kind']}/{doc['metadata']['name']}"
        assert doc["metadata"]["namespace"] in (NAMESPACE, "monitoring"), where
        model = OPERATOR_MODELS.get(doc["kind"])
        if model is None:
            try:
                kubernetes_validate.validate(doc, KUBERNETES, strict=True)
            except kubernetes_validate.ValidationError as e:
                pytest.fail(f"{where}: {e.message} at {list(e.path)}")
            continue
        assert doc["apiVersion"] == "monitoring.coreos.com/v1", where
        parsed = model.model_validate(doc)
        kept = parsed.model_dump(mode="json", by_alias=True, exclude_unset=True)
        assert kept == doc, f"{where}: a field unknown to the CRD"


def test_a_field_the_crd_does_not_know_is_caught(chart: helm.Chart) -> None:
    # The check above is no formality: a misspelt field of a ServiceMonitor is found.
    docs = render(chart, EVERYTHING_ON)
    monitor = copy.deepcopy(find(docs, "ServiceMonitor", FULLNAME))
    monitor["spec"]["endpoints"][0]["pth"] = "/metrics"
    kept = ServiceMonitor.model_validate(monitor).model_dump(
        mode="json", by_alias=True, exclude_unset=True
    )
    assert kept != monitor


# --------------------------------------------------------------------------- the pods


def test_web_replicas_process_no_delivery_and_workers_do(chart: helm.Chart) -> None:
    docs = render(chart)
    assert plain(container(web(docs)))["WEBHOOK_WORKERS"] == "0"
    assert plain(container(worker(docs)))["WEBHOOK_WORKERS"] == "8"
    docs = render(chart, {"worker": {"webhookWorkers": 3}})
    assert plain(container(worker(docs)))["WEBHOOK_WORKERS"] == "3"
    assert plain(container(web(docs)))["WEBHOOK_WORKERS"] == "0"


def test_both_deployments_serve_with_probes_on_the_http_port(chart: helm.Chart) -> None:
    docs = render(chart)
    # Web pods keep receiving GitLab's deliveries while the database is down (they go
    # to the spool): their readiness is the web scope's.
    readiness = {"web": "/readiness?scope=web", "worker": "/readiness"}
    for component, deployment in (("web", web(docs)), ("worker", worker(docs))):
        bot = container(deployment)
        assert bot["command"] == ["roulette-bot", "serve"]
        assert bot["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]
        assert bot["livenessProbe"]["httpGet"] == {"path": "/liveness", "port": "http"}
        assert bot["readinessProbe"]["httpGet"] == {"path": readiness[component], "port": "http"}
        assert bot["startupProbe"]["httpGet"] == {"path": "/liveness", "port": "http"}
        assert bot["resources"] == {
            "requests": {"cpu": "500m", "memory": "512Mi"},
            "limits": {"cpu": "2", "memory": "2Gi"},
        }


def test_pods_run_unprivileged_on_a_read_only_root(chart: helm.Chart) -> None:
    docs = render(chart)
    job = find(docs, "Job", f"{FULLNAME}-migrate")
    for workload in (web(docs), worker(docs), job):
        pod = workload["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] == 10001
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert pod["automountServiceAccountToken"] is False
        context = pod["containers"][0]["securityContext"]
        assert context["readOnlyRootFilesystem"] is True
        assert context["allowPrivilegeEscalation"] is False
        assert context["runAsNonRoot"] is True
        assert context["capabilities"] == {"drop": ["ALL"]}
        # What the bot writes goes to emptyDir volumes: /tmp and its home, /data.
        volumes = {v["name"]: v for v in pod["volumes"]}
        mounts = {m["mountPath"]: m["name"] for m in pod["containers"][0]["volumeMounts"]}
        assert "emptyDir" in volumes[mounts["/tmp"]]
        assert "emptyDir" in volumes[mounts["/data"]]


def test_grace_period_outlasts_the_bots_own_shutdown(chart: helm.Chart) -> None:
    for settings in ({}, {"shutdownTimeout": 60}):
        docs = render(chart, {"settings": settings})
        for deployment in (web(docs), worker(docs)):
            env = plain(container(deployment))
            pod = deployment["spec"]["template"]["spec"]
            lifecycle = container(deployment).get("lifecycle", {})
            sleep = int(lifecycle["preStop"]["exec"]["command"][1]) if lifecycle else 0
            # The bot bounds its shutdown to SHUTDOWN_TIMEOUT + 1 s, after the preStop.
            assert pod["terminationGracePeriodSeconds"] > sleep + int(env["SHUTDOWN_TIMEOUT"]) + 1
    docs = render(chart)
    assert "lifecycle" in container(web(docs)), "web pods keep serving while they leave"
    docs = render(chart, {"terminationGracePeriodSeconds": 120})
    assert web(docs)["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 120


def test_secrets_come_from_the_named_secret_and_only_some_are_required(
    chart: helm.Chart,
) -> None:
    docs = render(chart)
    env = env_of(container(web(docs)))
    refs = {name: e["valueFrom"]["secretKeyRef"] for name, e in env.items() if "valueFrom" in e}
    assert set(refs) == {
        "DATABASE_URL",
        "REDIS_URL",
        "GITLAB_TOKEN",
        "GITLAB_WEBHOOK_SECRET",
        "GITLAB_WEBHOOK_SIGNING_TOKEN",
        "MATTERMOST_TOKEN",
        "MATTERMOST_COMMAND_TOKENS",
        "API_TOKENS",
    }
    assert {r["name"] for r in refs.values()} == {FULLNAME}
    required = {name for name, r in refs.items() if not r.get("optional", False)}
    assert required == {"DATABASE_URL", "GITLAB_TOKEN", "GITLAB_WEBHOOK_SECRET"}
    assert not [d for d in docs if d["kind"] == "Secret"], "the chart creates no Secret"

    docs = render(
        chart, {"secret": {"existingSecret": "vault-synced", "keys": {"DATABASE_URL": "dsn"}}}
    )
    ref = env_of(container(worker(docs)))["DATABASE_URL"]["valueFrom"]["secretKeyRef"]
    assert ref == {"name": "vault-synced", "key": "dsn"}


def test_the_pods_environment_and_config_file_make_valid_settings(
    chart: helm.Chart, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What a pod of the production values would start with, read by the bot's own loader.
    docs = render(chart, production_values())
    config_map = find(docs, "ConfigMap", f"{FULLNAME}-config")
    config_file = tmp_path / "config.yaml"
    config_file.write_text(config_map["data"]["config.yaml"])
    secrets = {
        "DATABASE_URL": "postgresql+psycopg://roulette:pw@postgres:5432/roulette",
        "GITLAB_TOKEN": "glpat-xyz",
        "GITLAB_WEBHOOK_SECRET": "hook-secret",
        "GITLAB_WEBHOOK_SIGNING_TOKEN": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    }
    for deployment, workers in ((web(docs), 0), (worker(docs), 8)):
        bot = container(deployment)
        mount = next(m for m in bot["volumeMounts"] if m["name"] == "config")
        env = plain(bot)
        assert env["ROULETTE_CONFIG"] == f"{mount['mountPath']}/config.yaml"
        for name, value in {**env, **secrets, "ROULETTE_CONFIG": str(config_file)}.items():
            monkeypatch.setenv(name, value)
        settings = load_settings()
        assert settings.webhook_workers == workers
        pool = settings.database_pool_size + settings.database_max_overflow
        assert pool == (16 if workers else 5)
        assert settings.public_url == "https://roulette.example.com"
        assert settings.gitlab_url == "https://gitlab.example.com"
        assert settings.log_format == "json"
        assert settings.shutdown_timeout == 25
        assert [t.name for t in settings.teams] == ["backend", "frontend"]
        assert settings.schedule.timezone == "Europe/Paris"


def test_a_config_change_rolls_the_pods(chart: helm.Chart) -> None:
    def checksum(values: dict[str, Any]) -> str:
        docs = render(chart, values)
        sums = {
            d["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
            for d in (web(docs), worker(docs))
        }
        assert len(sums) == 1
        return sums.pop()

    before = checksum({"config": {"locale": "en"}})
    assert checksum({"config": {"locale": "en"}}) == before
    assert checksum({"config": {"locale": "fr"}}) != before
    assert checksum({"config": {"locale": "en"}, "settings": {"logLevel": "debug"}}) == before


# --------------------------------------------------------------------------- scaling


def test_web_autoscales_on_cpu_and_memory_between_2_and_10(chart: helm.Chart) -> None:
    docs = render(chart)
    hpa = find(docs, "HorizontalPodAutoscaler", f"{FULLNAME}-web")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": f"{FULLNAME}-web",
    }
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 10)
    targets = {m["resource"]["name"]: m["resource"]["target"] for m in hpa["spec"]["metrics"]}
    assert set(targets) == {"cpu", "memory"}
    assert all(t["type"] == "Utilization" for t in targets.values())
    # The HPA owns the web replica count; the workers keep theirs.
    assert "replicas" not in web(docs)["spec"]
    assert worker(docs)["spec"]["replicas"] == 2
    assert [d for d in docs if d["kind"] == "HorizontalPodAutoscaler"] == [hpa]

    docs = render(chart, {"web": {"autoscaling": {"enabled": False}, "replicas": 3}})
    assert web(docs)["spec"]["replicas"] == 3
    assert not [d for d in docs if d["kind"] == "HorizontalPodAutoscaler"]


def most_connections(docs: list[dict[str, Any]]) -> int:
    """The PostgreSQL connections the rendered pods may open at once, at their largest: per
    Deployment, its most replicas (its HPA's maxReplicas) x (DATABASE_POOL_SIZE +
    DATABASE_MAX_OVERFLOW, plus one for LISTEN where WEBHOOK_WORKERS > 0)."""
    most = {
        d["spec"]["scaleTargetRef"]["name"]: d["spec"]["maxReplicas"]
        for d in docs
        if d["kind"] == "HorizontalPodAutoscaler"
    }
    total = 0
    for deployment in (web(docs), worker(docs)):
        env = plain(container(deployment))
        pool = int(env["DATABASE_POOL_SIZE"]) + int(env["DATABASE_MAX_OVERFLOW"])
        pool += int(env["WEBHOOK_WORKERS"]) > 0
        name = deployment["metadata"]["name"]
        total += most.get(name, deployment["spec"].get("replicas", 0)) * pool
    return total


def test_the_largest_release_fits_postgresqls_default_connections(chart: helm.Chart) -> None:
    # PostgreSQL's default max_connections is 100, 3 of them kept for superusers; the
    # migrations job and an operator's psql need a few more.
    docs = render(chart)
    assert plain(container(web(docs)))["DATABASE_POOL_SIZE"] == "3"
    assert plain(container(worker(docs)))["DATABASE_MAX_OVERFLOW"] == "6"
    assert most_connections(docs) == 10 * 5 + 2 * 17 <= 90
    # The values say how many: bigger pools or more replicas count in full.
    bigger = render(chart, {"web": {"databasePool": {"size": 10, "maxOverflow": 10}}})
    assert most_connections(bigger) == 10 * 20 + 2 * 17


def test_the_service_sends_requests_to_web_pods_only(chart: helm.Chart) -> None:
    docs = render(chart)
    service = find(docs, "Service", FULLNAME)
    assert service["spec"]["type"] == "ClusterIP"
    assert service["spec"]["ports"] == [
        {"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}
    ]
    assert selects(service["spec"]["selector"], pod_labels(web(docs)))
    assert not selects(service["spec"]["selector"], pod_labels(worker(docs)))


def test_disruption_budgets_never_block_a_drain_by_default(chart: helm.Chart) -> None:
    docs = render(chart)
    for component, deployment in (("web", web(docs)), ("worker", worker(docs))):
        pdb = find(docs, "PodDisruptionBudget", f"{FULLNAME}-{component}")
        assert pdb["spec"]["maxUnavailable"] == 1 and "minAvailable" not in pdb["spec"]
        assert (
            pdb["spec"]["selector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]
        )
    docs = render(chart, {"web": {"podDisruptionBudget": {"minAvailable": "50%"}}})
    spec = find(docs, "PodDisruptionBudget", f"{FULLNAME}-web")["spec"]
    assert spec["minAvailable"] == "50%" and "maxUnavailable" not in spec


# --------------------------------------------------------------------------- migrations


def test_migrations_run_as_a_hook_before_install_and_upgrade(chart: helm.Chart) -> None:
    docs = render(chart)
    job = find(docs, "Job", f"{FULLNAME}-migrate")
    annotations = job["metadata"]["annotations"]
    assert set(annotations["helm.sh/hook"].split(",")) == {"pre-install", "pre-upgrade"}
    assert set(annotations["helm.sh/hook-delete-policy"].split(",")) == {
        "before-hook-creation",
        "hook-succeeded",
    }
    pod = job["spec"]["template"]["spec"]
    migrate = pod["containers"][0]
    assert migrate["command"] == ["roulette-bot", "migrate"]
    # The same secrets and settings as serve (the per-component ones aside: the migration
    # needs one connection).
    serve_env = env_of(container(web(docs)))
    for name in ("WEBHOOK_WORKERS", "DATABASE_POOL_SIZE", "DATABASE_MAX_OVERFLOW"):
        serve_env.pop(name)
    assert env_of(migrate) == serve_env

    # Pre-install hooks run before the release's own objects exist: whatever the Job
    # needs must itself be a hook, created before it (a lower weight).
    weight = int(annotations["helm.sh/hook-weight"])
    config_volume = next(v for v in pod["volumes"] if "configMap" in v)
    needed = [
        find(docs, "ConfigMap", config_volume["configMap"]["name"]),
        find(docs, "ServiceAccount", pod["serviceAccountName"]),
    ]
    for obj in needed:
        hook = obj["metadata"].get("annotations", {})
        assert set(hook.get("helm.sh/hook", "").split(",")) >= {"pre-install", "pre-upgrade"}
        assert int(hook["helm.sh/hook-weight"]) < weight
    hook_config = needed[0]["data"]["config.yaml"]
    assert hook_config == find(docs, "ConfigMap", f"{FULLNAME}-config")["data"]["config.yaml"]

    docs = render(chart, {"migrations": {"enabled": False}})
    assert not [d for d in docs if "helm.sh/hook" in d["metadata"].get("annotations", {})]


# --------------------------------------------------------------------------- optional objects


def kinds(docs: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return sorted((d["kind"], d["metadata"]["name"]) for d in docs)


def test_optional_objects_appear_only_when_enabled(chart: helm.Chart) -> None:
    assert kinds(render(chart)) == sorted(
        [
            ("ConfigMap", f"{FULLNAME}-config"),
            ("ConfigMap", f"{FULLNAME}-migrate"),
            ("Deployment", f"{FULLNAME}-web"),
            ("Deployment", f"{FULLNAME}-worker"),
            ("HorizontalPodAutoscaler", f"{FULLNAME}-web"),
            ("Job", f"{FULLNAME}-migrate"),
            ("PodDisruptionBudget", f"{FULLNAME}-web"),
            ("PodDisruptionBudget", f"{FULLNAME}-worker"),
            ("Service", FULLNAME),
            ("ServiceAccount", FULLNAME),
            ("ServiceAccount", f"{FULLNAME}-migrate"),
        ]
    )
    added = set(kinds(render(chart, EVERYTHING_ON))) - set(kinds(render(chart)))
    assert added == {
        ("ConfigMap", f"{FULLNAME}-dashboard"),
        ("HorizontalPodAutoscaler", f"{FULLNAME}-worker"),
        ("Ingress", FULLNAME),
        ("PrometheusRule", FULLNAME),
        ("Service", f"{FULLNAME}-metrics"),
        ("ServiceMonitor", FULLNAME),
    }


def test_metrics_are_scraped_from_web_and_worker_pods(chart: helm.Chart) -> None:
    docs = render(chart, EVERYTHING_ON)
    metrics = find(docs, "Service", f"{FULLNAME}-metrics")
    assert metrics["spec"]["clusterIP"] == "None"
    assert selects(metrics["spec"]["selector"], pod_labels(web(docs)))
    assert selects(metrics["spec"]["selector"], pod_labels(worker(docs)))
    monitor = find(docs, "ServiceMonitor", FULLNAME)
    assert selects(monitor["spec"]["selector"]["matchLabels"], metrics["metadata"]["labels"])
    assert not selects(
        monitor["spec"]["selector"]["matchLabels"],
        find(docs, "Service", FULLNAME)["metadata"]["labels"],
    ), "the web Service would be scraped twice"
    (endpoint,) = monitor["spec"]["endpoints"]
    assert (endpoint["port"], endpoint["path"]) == ("http", "/metrics")


def test_the_ingress_routes_to_the_web_service(chart: helm.Chart) -> None:
    docs = render(chart, production_values())
    ingress = find(docs, "Ingress", FULLNAME)
    (rule,) = ingress["spec"]["rules"]
    assert rule["host"] == "roulette.example.com"
    backend = rule["http"]["paths"][0]["backend"]["service"]
    assert backend == {"name": FULLNAME, "port": {"name": "http"}}
    assert ingress["spec"]["tls"][0]["secretName"] == "roulette-example-com-tls"


def test_the_dashboard_config_map_carries_the_sidecar_label(chart: helm.Chart) -> None:
    docs = render(
        chart, {"grafanaDashboard": {"enabled": True, "annotations": {"grafana_folder": "Reviews"}}}
    )
    config_map = find(docs, "ConfigMap", f"{FULLNAME}-dashboard")
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert config_map["metadata"]["annotations"] == {"grafana_folder": "Reviews"}
    shipped = (CHART / "dashboards" / "reviewer-roulette.json").read_text()
    assert config_map["data"]["reviewer-roulette.json"] == shipped.rstrip("\n")
    docs = render(
        chart,
        {"grafanaDashboard": {"enabled": True, "label": "dashboards", "labelValue": "grafana"}},
    )
    labels = find(docs, "ConfigMap", f"{FULLNAME}-dashboard")["metadata"]["labels"]
    assert labels["dashboards"] == "grafana" and "grafana_dashboard" not in labels


# --------------------------------------------------------------------------- bad values


@pytest.mark.parametrize(
    ("values", "named"),
    [
        ({"web": {"replicas": "two"}}, "/web/replicas"),
        ({"web": {"replica": 2}}, "replica"),
        ({"wokrer": {}}, "wokrer"),
        ({"settings": {"logLevel": "loud"}}, "/settings/logLevel"),
        ({"settings": {"shutdownTimeout": 61}}, "/settings/shutdownTimeout"),
        ({"settings": {"publicUrl": "roulette.example.com"}}, "/settings/publicUrl"),
        ({"worker": {"webhookWorkers": 0}}, "/worker/webhookWorkers"),
        ({"secret": {"keys": {"GITLAB_TOKN": "x"}}}, "GITLAB_TOKN"),
        ({"image": {"pullPolicy": "Sometimes"}}, "/image/pullPolicy"),
        ({"metrics": {"serviceMonitor": {"interval": "30 seconds"}}}, "interval"),
    ],
)
def test_a_bad_value_is_refused_naming_it(
    chart: helm.Chart, values: dict[str, Any], named: str
) -> None:
    with pytest.raises(helm.HelmValuesError, match=named):
        chart.validate_schema(values)
    with pytest.raises(helm.HelmValuesError, match=named):
        render(chart, values)
    report = helm.lint(CHART, values, namespace=NAMESPACE)
    assert any(named in m["error"] for m in report["messages"] if m["severity"] == 3), report


def test_an_autoscaler_with_min_above_max_is_refused(chart: helm.Chart) -> None:
    with pytest.raises(helm.HelmRenderError, match="minReplicas"):
        render(chart, {"web": {"autoscaling": {"minReplicas": 5, "maxReplicas": 3}}})


def test_the_chart_matches_the_image(chart: helm.Chart) -> None:
    # The Dockerfile's user, port, entrypoint and volume are what the pods assume.
    instructions = [
        line.split(maxsplit=1)
        for line in (ROOT / "Dockerfile").read_text().splitlines()
        if line and not line.startswith((" ", "#"))
    ]
    last = {name: value for name, value in instructions}
    docs = render(chart)
    pod = web(docs)["spec"]["template"]["spec"]
    user, _, group = last["USER"].partition(":")
    assert int(user) == pod["securityContext"]["runAsUser"] == 10001
    assert int(group) == pod["securityContext"]["runAsGroup"]
    assert int(last["EXPOSE"]) == container(web(docs))["ports"][0]["containerPort"]
    assert yaml.safe_load(last["ENTRYPOINT"]) == container(web(docs))["command"]
    assert yaml.safe_load(last["VOLUME"]) == ["/data"]
    mounts = {m["mountPath"] for m in container(web(docs))["volumeMounts"]}
    assert {"/data", "/tmp"} <= mounts
