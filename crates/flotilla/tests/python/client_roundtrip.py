"""Drives a Flotilla API server with the official Python `kubernetes` client.

Usage: client_roundtrip.py KUBECONFIG NAMESPACE

Lists namespaces, creates a ConfigMap and a Deployment, patches both (strategic merge,
JSON merge and JSON patch), watches a ConfigMap through ADDED/MODIFIED/DELETED, deletes,
and checks that a get then answers 404. Each step prints one "ok <step>" line; the first
failed expectation prints "FAIL <step>: <why>" and exits 1, so the Rust test can name the
step that broke.
"""

import sys
import threading
import time

from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException

WATCH_DEADLINE_SECONDS = 20
MERGE_PATCH = "application/merge-patch+json"


class Failure(Exception):
    pass


def expect(cond, step, why):
    if not cond:
        raise Failure(f"{step}: {why}")


def list_namespaces(core):
    names = {ns.metadata.name for ns in core.list_namespace().items}
    expect({"default", "kube-system"} <= names, "list-namespaces", f"got {sorted(names)}")


def create_namespace(core, ns):
    body = client.V1Namespace(metadata=client.V1ObjectMeta(name=ns))
    created = core.create_namespace(body)
    expect(created.metadata.name == ns, "create-namespace", created.metadata.name)


def configmap_roundtrip(core, ns):
    cm = client.V1ConfigMap(
        metadata=client.V1ObjectMeta(name="settings", labels={"app": "demo"}),
        data={"colour": "blue", "size": "3"},
    )
    created = core.create_namespaced_config_map(ns, cm)
    expect(created.metadata.uid, "create-configmap", "no uid")
    expect(created.metadata.resource_version, "create-configmap", "no resourceVersion")
    expect(created.data == {"colour": "blue", "size": "3"}, "create-configmap", created.data)

    # The client sends dict patches as strategic merge patches for built-in kinds.
    patched = core.patch_namespaced_config_map(
        "settings", ns, {"data": {"colour": "green"}, "metadata": {"labels": {"tier": "web"}}}
    )
    expect(patched.data == {"colour": "green", "size": "3"}, "strategic-patch-configmap", patched.data)
    expect(patched.metadata.labels == {"app": "demo", "tier": "web"}, "strategic-patch-configmap",
           patched.metadata.labels)

    # A JSON merge patch: null removes a key.
    merged = core.patch_namespaced_config_map("settings", ns, {"data": {"size": None, "shape": "round"}},
                                              _content_type=MERGE_PATCH)
    expect(merged.data == {"colour": "green", "shape": "round"}, "merge-patch-configmap", merged.data)

    # A JSON patch (a list of operations); a failed "test" op must refuse the whole patch.
    ops = [{"op": "test", "path": "/data/colour", "value": "green"},
           {"op": "add", "path": "/data/extra", "value": "x"},
           {"op": "remove", "path": "/data/extra"}]
    merged = core.patch_namespaced_config_map("settings", ns, ops)
    expect(merged.data == {"colour": "green", "shape": "round"}, "json-patch-configmap", merged.data)
    try:
        core.patch_namespaced_config_map("settings", ns, [{"op": "test", "path": "/data/colour", "value": "red"}])
        raise Failure("json-patch-configmap: a failing test op was accepted")
    except ApiException as e:
        expect(400 <= e.status < 500, "json-patch-configmap", f"failing test op: status {e.status}")

    got = core.read_namespaced_config_map("settings", ns)
    expect(got.data == merged.data, "get-configmap", got.data)
    expect(got.metadata.resource_version == merged.metadata.resource_version, "get-configmap",
           "resourceVersion differs from the patch answer")

    listed = core.list_namespaced_config_map(ns, label_selector="tier=web")
    expect([c.metadata.name for c in listed.items] == ["settings"], "list-configmaps-by-label",
           [c.metadata.name for c in listed.items])


def deployment_roundtrip(apps, ns):
    dep = client.V1Deployment(
        metadata=client.V1ObjectMeta(name="web"),
        spec=client.V1DeploymentSpec(
            replicas=2,
            selector=client.V1LabelSelector(match_labels={"app": "web"}),
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels={"app": "web"}),
                spec=client.V1PodSpec(containers=[
                    client.V1Container(name="main", image="registry.local/web:1",
                                       env=[client.V1EnvVar(name="MODE", value="a")]),
                    client.V1Container(name="sidecar", image="registry.local/side:1"),
                ]),
            ),
        ),
    )
    created = apps.create_namespaced_deployment(ns, dep)
    expect(created.spec.replicas == 2, "create-deployment", created.spec.replicas)
    # Defaults from the server, as kube-apiserver applies them.
    expect(created.spec.strategy is not None and created.spec.strategy.type == "RollingUpdate",
           "create-deployment", f"strategy {created.spec.strategy}")
    expect(created.metadata.generation == 1, "create-deployment", f"generation {created.metadata.generation}")

    # Strategic merge: containers merge by name, so only "main" changes and "sidecar" stays.
    patch = {"spec": {"replicas": 3, "template": {"spec": {"containers": [
        {"name": "main", "image": "registry.local/web:2"}]}}}}
    patched = apps.patch_namespaced_deployment("web", ns, patch)
    containers = {c.name: c.image for c in patched.spec.template.spec.containers}
    expect(containers == {"main": "registry.local/web:2", "sidecar": "registry.local/side:1"},
           "strategic-patch-deployment", containers)
    expect(patched.spec.replicas == 3, "strategic-patch-deployment", patched.spec.replicas)
    main = next(c for c in patched.spec.template.spec.containers if c.name == "main")
    expect([(e.name, e.value) for e in main.env or []] == [("MODE", "a")], "strategic-patch-deployment",
           f"env {main.env}")
    expect(patched.metadata.generation == 2, "strategic-patch-deployment",
           f"generation {patched.metadata.generation}")

    # A merge patch replaces lists whole.
    merged = apps.patch_namespaced_deployment("web", ns, {"spec": {"template": {"spec": {"containers": [
        {"name": "only", "image": "registry.local/only:1"}]}}}}, _content_type=MERGE_PATCH)
    names = [c.name for c in merged.spec.template.spec.containers]
    expect(names == ["only"], "merge-patch-deployment", names)

    scale = apps.read_namespaced_deployment_scale("web", ns)
    expect(scale.spec.replicas == 3, "read-scale", scale.spec.replicas)

    apps.delete_namespaced_deployment("web", ns)
    try:
        apps.read_namespaced_deployment("web", ns)
        raise Failure("get-deleted-deployment: still there")
    except ApiException as e:
        expect(e.status == 404, "get-deleted-deployment", f"status {e.status}")


def watch_configmap(core, ns):
    """Watches one ConfigMap from the collection's current resourceVersion while another
    thread creates, modifies and deletes it; the watch must see all three in order."""
    rv = core.list_namespaced_config_map(ns).metadata.resource_version
    expect(rv, "watch", "the list carries no resourceVersion")
    seen = []
    errors = []
    w = watch.Watch()

    def consume():
        try:
            for ev in w.stream(core.list_namespaced_config_map, ns, resource_version=rv,
                               field_selector="metadata.name=watched",
                               timeout_seconds=WATCH_DEADLINE_SECONDS,
                               _request_timeout=WATCH_DEADLINE_SECONDS + 5):
                seen.append((ev["type"], ev["object"].metadata.name,
                             (ev["object"].data or {}).get("step")))
                if ev["type"] == "DELETED":
                    w.stop()
        except Exception as e:  # reported by the main thread
            errors.append(repr(e))

    t = threading.Thread(target=consume, daemon=True)
    t.start()
    cm = client.V1ConfigMap(metadata=client.V1ObjectMeta(name="watched"), data={"step": "1"})
    core.create_namespaced_config_map(ns, cm)
    core.patch_namespaced_config_map("watched", ns, {"data": {"step": "2"}})
    core.delete_namespaced_config_map("watched", ns)
    t.join(WATCH_DEADLINE_SECONDS + 10)
    expect(not t.is_alive(), "watch", f"no DELETED event within the deadline; seen {seen}")
    expect(not errors, "watch", errors)
    expect(seen == [("ADDED", "watched", "1"), ("MODIFIED", "watched", "2"), ("DELETED", "watched", "2")],
           "watch", seen)


def delete_configmap(core, ns):
    core.delete_namespaced_config_map("settings", ns)
    try:
        core.read_namespaced_config_map("settings", ns)
        raise Failure("get-deleted-configmap: still there")
    except ApiException as e:
        expect(e.status == 404, "get-deleted-configmap", f"status {e.status}")
        expect('"reason":"NotFound"' in e.body.replace(" ", ""), "get-deleted-configmap", e.body)


def main():
    kubeconfig, ns = sys.argv[1], sys.argv[2]
    config.load_kube_config(config_file=kubeconfig)
    core = client.CoreV1Api()
    apps = client.AppsV1Api()
    steps = [
        ("list-namespaces", lambda: list_namespaces(core)),
        ("create-namespace", lambda: create_namespace(core, ns)),
        ("configmap", lambda: configmap_roundtrip(core, ns)),
        ("deployment", lambda: deployment_roundtrip(apps, ns)),
        ("watch", lambda: watch_configmap(core, ns)),
        ("delete-configmap", lambda: delete_configmap(core, ns)),
    ]
    for name, step in steps:
        started = time.monotonic()
        try:
            step()
        except Failure as f:
            print(f"FAIL {f}", flush=True)
            return 1
        except ApiException as e:
            print(f"FAIL {name}: HTTP {e.status} {e.reason}: {e.body}", flush=True)
            return 1
        print(f"ok {name} {1000 * (time.monotonic() - started):.0f}ms", flush=True)
    print("all steps passed", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
