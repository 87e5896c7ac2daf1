"""Static checks of the deployment files: infra/docker/Dockerfile and infra/k8s/*.yaml.

Nothing here needs Docker or Kubernetes. The manifests are checked against the KubeRay CRD
fields they may use (RayCluster, RayJob, RayCronJob as of KubeRay 1.6 and 1.7), against each
other (names they refer to exist, the nightly RayJob spec is the same in every scheduler), and
against the code (every entry point exists, its ``--help`` runs, its flags parse, its config
validates and fits the worker pods it is given).
"""

from __future__ import annotations

import fnmatch
import re
import shlex
import subprocess
import sys
import tomllib
import zoneinfo
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from beardnet.infer import sizing

ROOT = Path(__file__).resolve().parents[1]
K8S = ROOT / "infra" / "k8s"
DOCKERFILE = ROOT / "infra" / "docker" / "Dockerfile"
#: where the Dockerfile puts the repository (WORKDIR); entry points are absolute under it
IMAGE_HOME = "/home/ray/beardnet"
#: where the Ray pods mount the ConfigMap beardnet-job-configs
CONFIG_MOUNT = "/etc/beardnet"

# --- KubeRay fields, from the CRDs / Go types (ray.io/v1) ------------------------------------
#: RayJobSpec (ray-operator/apis/ray/v1/rayjob_types.go)
RAYJOB_SPEC_FIELDS = {
    "activeDeadlineSeconds", "backoffLimit", "rayClusterSpec", "submitterPodTemplate",
    "metadata", "clusterSelector", "submitterConfig", "managedBy", "deletionStrategy",
    "entrypoint", "runtimeEnvYAML", "jobId", "submissionMode", "entrypointResources",
    "entrypointNumCpus", "entrypointNumGpus", "ttlSecondsAfterFinished",
    "shutdownAfterJobFinishes", "suspend",
}
SUBMISSION_MODES = {"K8sJobMode", "HTTPMode", "InteractiveMode", "SidecarMode"}
#: RayClusterSpec keys this project uses (a subset of the CRD's)
RAYCLUSTER_SPEC_FIELDS = {
    "rayVersion", "enableInTreeAutoscaling", "autoscalerOptions", "headGroupSpec",
    "workerGroupSpecs", "headServiceAnnotations", "suspend", "gcsFaultToleranceOptions",
    "authOptions", "managedBy",
}
#: RayCronJobSpec, KubeRay 1.7 (raycronjob_types.go: JobTemplate RayJobTemplateSpec{metadata,
#: spec}, Schedule, TimeZone, Suspend) and KubeRay 1.6.0 (JobTemplate = RayJobSpec inline,
#: Schedule, Suspend). Neither has concurrencyPolicy.
RAYCRONJOB_FIELDS_17 = {"jobTemplate", "schedule", "timeZone", "suspend"}
RAYCRONJOB_FIELDS_16 = {"jobTemplate", "schedule", "suspend"}
CRONJOB_SPEC_FIELDS = {
    "concurrencyPolicy", "failedJobsHistoryLimit", "jobTemplate", "schedule",
    "startingDeadlineSeconds", "successfulJobsHistoryLimit", "suspend", "timeZone",
}


# --- helpers ---------------------------------------------------------------------------------
def _manifest_files() -> list[Path]:
    return sorted(K8S.glob("*.yaml"))


def _docs() -> Iterator[tuple[Path, dict[str, Any]]]:
    for path in _manifest_files():
        for doc in yaml.safe_load_all(path.read_text()):
            if doc is not None:
                yield path, doc


def _by_kind(kind: str) -> list[tuple[Path, dict[str, Any]]]:
    return [(p, d) for p, d in _docs() if d.get("kind") == kind]


def _one(path: str, kind: str) -> dict[str, Any]:
    found = [d for p, d in _docs() if p.name == path and d["kind"] == kind]
    assert len(found) == 1, f"{path}: expected one {kind}, found {len(found)}"
    return found[0]


def _pyproject() -> dict[str, Any]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _pin(name: str) -> str:
    """The version spec of dependency ``name`` in pyproject.toml, e.g. '==2.13.0'."""
    for dep in _pyproject()["project"]["dependencies"]:
        m = re.match(r"^([A-Za-z0-9_.-]+)(\[[^\]]*\])?\s*(.*)$", dep)
        if m and m.group(1).lower() == name.lower():
            return m.group(3).strip()
    raise AssertionError(f"{name} is not a dependency in pyproject.toml")


def _rayjob_specs() -> list[tuple[str, dict[str, Any]]]:
    """Every RayJob spec in the manifests: RayJobs, RayCronJob templates, embedded RayJobs."""
    out: list[tuple[str, dict[str, Any]]] = []
    for p, d in _docs():
        if d["kind"] == "RayJob":
            out.append((f"{p.name}:RayJob", d["spec"]))
        elif d["kind"] == "RayCronJob":
            jt = d["spec"]["jobTemplate"]
            spec = jt.get("spec", jt)
            out.append((f"{p.name}:RayCronJob", spec))
        elif d["kind"] == "ConfigMap":
            for key, text in (d.get("data") or {}).items():
                if key.endswith(".yaml"):
                    inner = yaml.safe_load(text)
                    if isinstance(inner, dict) and inner.get("kind") == "RayJob":
                        out.append((f"{p.name}:{key}", inner["spec"]))
    return out


def _ray_clusters() -> list[tuple[str, dict[str, Any]]]:
    out = [(f"{p.name}:RayCluster", d["spec"]) for p, d in _by_kind("RayCluster")]
    out += [(where, spec["rayClusterSpec"]) for where, spec in _rayjob_specs()]
    return out


def _pod_specs(cluster: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(group name, rayStartParams, pod spec) for the head and every worker group."""
    head = cluster["headGroupSpec"]
    yield "head", head.get("rayStartParams") or {}, head["template"]["spec"]
    for g in cluster.get("workerGroupSpecs") or []:
        yield g["groupName"], g.get("rayStartParams") or {}, g["template"]["spec"]


def _config_map_data() -> dict[str, str]:
    return _one("configmap-jobs.yaml", "ConfigMap")["data"]


def _entrypoint(spec: dict[str, Any]) -> tuple[str, list[str]]:
    """(repo-relative script, its arguments) of a RayJob entrypoint `python /home/ray/...`."""
    argv = shlex.split(spec["entrypoint"])
    assert argv[0] == "python", f"entrypoint must run python: {argv}"
    script = argv[1]
    assert script.startswith(IMAGE_HOME + "/"), f"{script} is not under the image's {IMAGE_HOME}"
    return script[len(IMAGE_HOME) + 1:], argv[2:]


def _subcommand_of(script: str) -> str:
    """The beardnet subcommand a jobs/*.py entry point runs (it calls cli.main([sub, ...]))."""
    text = (ROOT / script).read_text()
    m = re.search(r'main\(\[\s*"([a-z0-9_-]+)"', text)
    assert m, f"{script} does not call beardnet.cli.main([<subcommand>, ...])"
    return m.group(1)


def _config_path(args: list[str]) -> str:
    assert "--config" in args, f"entrypoint passes no --config: {args}"
    return args[args.index("--config") + 1]


def _sets(args: list[str]) -> list[str]:
    return [args[i + 1] for i, a in enumerate(args) if a == "--set"]


# --- cron ----------------------------------------------------------------------------------
_CRON_FIELDS = (
    ("minute", 0, 59, {}),
    ("hour", 0, 23, {}),
    ("day of month", 1, 31, {}),
    ("month", 1, 12, {m: i + 1 for i, m in enumerate(
        ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"])}),
    ("day of week", 0, 7,
     {d: i for i, d in enumerate(["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"])}),
)
_MACROS = {"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"}


def cron_errors(expr: str) -> list[str]:
    """Problems of a standard 5-field cron expression (as Kubernetes and KubeRay parse it);
    [] when valid. Supports ``*``, ``?`` (day fields), ranges, steps, lists and names."""
    expr = expr.strip()
    if expr in _MACROS:
        return []
    if "TZ=" in expr:
        return ["CRON_TZ/TZ inside the schedule is not supported: use spec.timeZone"]
    fields = expr.split()
    if len(fields) != 5:
        return [f"{len(fields)} fields, need 5"]
    errors: list[str] = []
    for text, (name, lo, hi, names) in zip(fields, _CRON_FIELDS):
        for item in text.split(","):
            base, _, step = item.partition("/")
            if step and (not step.isdigit() or int(step) == 0):
                errors.append(f"{name}: bad step in {item!r}")
            if base in ("*", "?"):
                if base == "?" and name not in ("day of month", "day of week"):
                    errors.append(f"{name}: '?' only in day fields")
                continue
            ends = base.split("-")
            if len(ends) > 2 or not all(ends):
                errors.append(f"{name}: bad item {item!r}")
                continue
            vals = []
            for e in ends:
                v = names.get(e.upper()) if not e.isdigit() else int(e)
                if v is None or not lo <= v <= hi:
                    errors.append(f"{name}: {e!r} outside {lo}-{hi}")
                vals.append(v)
            if len(vals) == 2 and None not in vals and vals[0] > vals[1]:
                errors.append(f"{name}: empty range {item!r}")
    return errors


@pytest.mark.parametrize(
    "expr", ["30 1 * * *", "*/15 * * * *", "0 2 * * MON-FRI", "0 0 1,15 * ?", "5 4 * JAN-MAR 7",
             "@daily", "0 22 * * 1-5"],
)
def test_cron_validator_accepts(expr: str) -> None:
    assert cron_errors(expr) == []


@pytest.mark.parametrize(
    "expr", ["30 1 * *", "60 1 * * *", "0 24 * * *", "0 0 0 * *", "0 0 * 13 *", "0 0 * * 8",
             "*/0 * * * *", "0 5-2 * * *", "0 0 * * FUN", "TZ=UTC 0 0 * * *", "0 0 * * * *",
             "1- * * * *"],
)
def test_cron_validator_rejects(expr: str) -> None:
    assert cron_errors(expr)


# --- YAML: every document parses and has what its kind needs -----------------------------------
def test_manifests_exist_and_parse() -> None:
    files = _manifest_files()
    names = {p.name for p in files}
    for needed in ("raycluster.yaml", "rayjob-train.yaml", "raycronjob-transform.yaml",
                   "cronjob-transform.yaml", "configmap-jobs.yaml", "serviceaccount.yaml",
                   "secret-s3.example.yaml"):
        assert needed in names, f"infra/k8s/{needed} is missing"
    kinds = []
    for path, doc in _docs():
        assert isinstance(doc, dict), f"{path.name}: a document is not a mapping"
        for key in ("apiVersion", "kind", "metadata"):
            assert key in doc, f"{path.name}: {doc.get('kind')} has no {key}"
        assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", doc["metadata"]["name"]), (
            f"{path.name}: bad name {doc['metadata']['name']!r}"
        )
        assert "namespace" not in doc["metadata"], f"{path.name}: namespace is chosen with -n"
        kinds.append(doc["kind"])
    for kind in ("RayCluster", "RayJob", "RayCronJob", "CronJob", "ConfigMap", "Secret",
                 "ServiceAccount", "Role", "RoleBinding"):
        assert kind in kinds, f"no {kind} among the manifests"


def test_api_versions() -> None:
    expected = {
        "RayCluster": "ray.io/v1", "RayJob": "ray.io/v1", "RayCronJob": "ray.io/v1",
        "CronJob": "batch/v1", "ConfigMap": "v1", "Secret": "v1", "ServiceAccount": "v1",
        "Role": "rbac.authorization.k8s.io/v1", "RoleBinding": "rbac.authorization.k8s.io/v1",
    }
    for path, doc in _docs():
        assert doc["apiVersion"] == expected[doc["kind"]], f"{path.name}: {doc['kind']}"


def _check_cluster(where: str, spec: dict[str, Any]) -> None:
    unknown = set(spec) - RAYCLUSTER_SPEC_FIELDS
    assert not unknown, f"{where}: unknown RayCluster fields {unknown}"
    ray_pin = _pin("ray")  # e.g. ==2.60.*
    assert re.fullmatch(r"\d+\.\d+\.\d+", spec["rayVersion"]), where
    assert spec["rayVersion"].startswith(ray_pin.lstrip("=").rstrip("*").rstrip(".")), (
        f"{where}: rayVersion {spec['rayVersion']} does not match ray{ray_pin}"
    )
    assert spec["headGroupSpec"]["template"]["spec"]["containers"], where
    assert spec.get("workerGroupSpecs"), f"{where}: no worker group"
    for g in spec["workerGroupSpecs"]:
        assert g["groupName"] and g["template"]["spec"]["containers"], where
        assert g["minReplicas"] <= g["replicas"] <= g["maxReplicas"], f"{where}: {g['groupName']}"
    for group, params, pod in _pod_specs(spec):
        for k, v in params.items():
            assert isinstance(v, str), f"{where}: rayStartParams {group}.{k} must be a string"
        c = pod["containers"][0]
        req, lim = c["resources"]["requests"], c["resources"]["limits"]
        assert "cpu" in req and "memory" in req and "memory" in lim, f"{where}: {group} sizing"
        assert pod.get("securityContext", {}).get("runAsNonRoot") is True, f"{where}: {group}"
        if group != "head":
            assert params["num-cpus"] == str(lim["cpu"]), (
                f"{where}: {group} num-cpus {params['num-cpus']} != cpu limit {lim['cpu']}"
            )
    assert spec["headGroupSpec"]["rayStartParams"].get("num-cpus") == "0", (
        f"{where}: the head should hold drivers only (num-cpus 0)"
    )


def test_rayclusters() -> None:
    clusters = _ray_clusters()
    assert len(clusters) >= 5
    for where, spec in clusters:
        _check_cluster(where, spec)


def test_rayjobs() -> None:
    specs = _rayjob_specs()
    assert {w.split(":")[0] for w, _ in specs} >= {
        "rayjob-train.yaml", "raycronjob-transform.yaml", "cronjob-transform.yaml"
    }
    for where, spec in specs:
        unknown = set(spec) - RAYJOB_SPEC_FIELDS
        assert not unknown, f"{where}: unknown RayJob fields {unknown}"
        assert spec["entrypoint"].strip(), where
        assert spec["shutdownAfterJobFinishes"] is True, where
        assert isinstance(spec["ttlSecondsAfterFinished"], int)
        assert spec["ttlSecondsAfterFinished"] >= 0, where
        assert isinstance(spec["activeDeadlineSeconds"], int)
        assert spec["activeDeadlineSeconds"] > 0, where
        assert isinstance(spec["backoffLimit"], int) and spec["backoffLimit"] >= 0, where
        assert spec.get("submissionMode", "K8sJobMode") in SUBMISSION_MODES, where
        assert "rayClusterSpec" in spec, f"{where}: every RayJob brings its own cluster"


def test_raycronjob_fields_match_kuberay() -> None:
    crons = {p.name: d for p, d in _by_kind("RayCronJob")}
    assert set(crons) == {"raycronjob-transform.yaml", "raycronjob-transform.v1.6.yaml"}
    new, old = crons["raycronjob-transform.yaml"]["spec"], crons["raycronjob-transform.v1.6.yaml"]["spec"]
    assert set(new) <= RAYCRONJOB_FIELDS_17 and {"jobTemplate", "schedule", "timeZone"} <= set(new)
    assert set(new["jobTemplate"]) <= {"metadata", "spec"} and "spec" in new["jobTemplate"]
    assert set(old) <= RAYCRONJOB_FIELDS_16 and {"jobTemplate", "schedule"} <= set(old)
    assert "entrypoint" in old["jobTemplate"], "1.6: jobTemplate is the RayJob spec itself"
    for spec in (new, old):
        assert "concurrencyPolicy" not in spec, "RayCronJob has no concurrencyPolicy field"


def test_schedules_are_valid_cron_with_time_zones() -> None:
    scheduled = _by_kind("RayCronJob") + _by_kind("CronJob")
    assert len(scheduled) == 3
    for path, doc in scheduled:
        spec = doc["spec"]
        assert cron_errors(spec["schedule"]) == [], f"{path.name}: {cron_errors(spec['schedule'])}"
        if "timeZone" in spec:
            zoneinfo.ZoneInfo(spec["timeZone"])  # raises for a name not in the tz database
    schedules = {d["spec"]["schedule"] for _, d in scheduled}
    assert len(schedules) == 1, f"the three schedulers disagree: {schedules}"


def test_cronjob_for_older_operators() -> None:
    cj = _one("cronjob-transform.yaml", "CronJob")["spec"]
    assert set(cj) <= CRONJOB_SPEC_FIELDS
    assert cj["concurrencyPolicy"] == "Forbid"
    job = cj["jobTemplate"]["spec"]
    pod = job["template"]["spec"]
    assert pod["restartPolicy"] in ("Never", "OnFailure")
    assert job["activeDeadlineSeconds"] > 0
    cm = _one("cronjob-transform.yaml", "ConfigMap")
    script = cm["data"]["run-rayjob.sh"]
    mount = pod["containers"][0]["volumeMounts"][0]["mountPath"]
    assert pod["containers"][0]["command"][-1] == f"{mount}/run-rayjob.sh"
    assert f"{mount}/rayjob.yaml" in script
    rj = yaml.safe_load(cm["data"]["rayjob.yaml"])
    assert rj["kind"] == "RayJob" and rj["metadata"]["generateName"].endswith("-")
    # the script is valid POSIX sh and gives the job's verdict as its exit code
    r = subprocess.run(
        ["sh", "-n"], input=script, text=True, capture_output=True, check=False
    )
    assert r.returncode == 0, r.stderr
    assert "Complete/SUCCEEDED" in script and "exit 1" in script
    # RBAC: the pod's ServiceAccount may create and watch RayJobs, nothing more
    role = _one("cronjob-transform.yaml", "Role")
    binding = _one("cronjob-transform.yaml", "RoleBinding")
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"][0]["name"] == pod["serviceAccountName"]
    rules = role["rules"]
    assert rules == [{"apiGroups": ["ray.io"], "resources": ["rayjobs"],
                      "verbs": ["create", "get", "list", "watch"]}]


def test_nightly_rayjob_is_the_same_in_every_scheduler() -> None:
    specs = {w: s for w, s in _rayjob_specs() if "transform" in w}
    assert len(specs) == 3, list(specs)
    first = next(iter(specs.values()))
    for where, spec in specs.items():
        assert spec == first, f"{where} differs from the other nightly RayJob specs"


def test_every_referenced_object_exists() -> None:
    names: dict[str, set[str]] = {}
    for _, d in _docs():
        names.setdefault(d["kind"], set()).add(d["metadata"]["name"])
    for where, cluster in _ray_clusters():
        for group, _, pod in _pod_specs(cluster):
            assert pod["serviceAccountName"] in names["ServiceAccount"], f"{where}: {group}"
            for c in pod["containers"]:
                for ef in c.get("envFrom", []):
                    ref = ef["secretRef"]
                    assert ref["name"] in names["Secret"], f"{where}: {group}"
                    assert ref.get("optional") is True, (
                        f"{where}: {group}: the S3 Secret must be optional (workload identity)"
                    )
            for v in pod.get("volumes", []):
                if "configMap" in v:
                    assert v["configMap"]["name"] in names["ConfigMap"], f"{where}: {group}"
    for _, d in _by_kind("CronJob"):
        pod = d["spec"]["jobTemplate"]["spec"]["template"]["spec"]
        assert pod["serviceAccountName"] in names["ServiceAccount"]
        for v in pod["volumes"]:
            assert v["configMap"]["name"] in names["ConfigMap"]


def test_no_credentials_in_manifests() -> None:
    secret = _one("secret-s3.example.yaml", "Secret")
    for key, value in secret["stringData"].items():
        assert value.startswith("REPLACE_ME") or key == "AWS_REGION", f"{key} holds a value"
    for path, doc in _docs():
        if doc["kind"] == "Secret":
            continue
        text = yaml.safe_dump(doc)
        assert not re.search(r"AKIA[0-9A-Z]{16}", text), path.name
        for m in re.finditer(r"name:\s*(AWS_SECRET_ACCESS_KEY|AWS_ACCESS_KEY_ID)\s*\n\s*value:",
                             text):
            raise AssertionError(f"{path.name}: inline {m.group(1)}; use the Secret")


def test_images_match_the_project_version() -> None:
    version = _pyproject()["project"]["version"]
    for where, cluster in _ray_clusters():
        images = set()
        for group, _, pod in _pod_specs(cluster):
            image = pod["containers"][0]["image"]
            images.add(image)
            assert re.fullmatch(rf"(.+/)?beardnet:{re.escape(version)}-(cpu|gpu)", image), (
                f"{where}: {group} runs {image}"
            )
            if pod["containers"][0]["resources"]["limits"].get("nvidia.com/gpu"):
                assert image.endswith("-gpu"), f"{where}: {group} has GPUs but a CPU image"
        assert len(images) == 1, f"{where}: head and workers must run one image: {images}"


# --- entry points, configs and sizing -----------------------------------------------------
def _entrypoints() -> list[tuple[str, dict[str, Any]]]:
    return _rayjob_specs()


def test_entrypoints_and_configs_exist() -> None:
    data = _config_map_data()
    for where, spec in _entrypoints():
        script, args = _entrypoint(spec)
        assert (ROOT / script).is_file(), f"{where}: {script} is not in the repository"
        cfg = _config_path(args)
        assert cfg.startswith(CONFIG_MOUNT + "/"), f"{where}: {cfg}"
        assert cfg[len(CONFIG_MOUNT) + 1:] in data, f"{where}: {cfg} is not in the ConfigMap"
        head = spec["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]
        mounts = {m["mountPath"]: m["name"] for m in head["containers"][0]["volumeMounts"]}
        vols = {v["name"]: v for v in head["volumes"]}
        assert vols[mounts[CONFIG_MOUNT]]["configMap"]["name"] == "beardnet-job-configs", where


def test_configmap_copies_the_repository_configs() -> None:
    data = _config_map_data()
    repo_configs = {p.name: p for p in (ROOT / "jobs" / "configs").iterdir()}
    assert "transform_nightly.toml" in data
    for name, text in data.items():
        if name in repo_configs:
            assert text == repo_configs[name].read_text(), (
                f"configmap-jobs.yaml: {name} differs from jobs/configs/{name}; regenerate it"
            )
        tomllib.loads(text)


@pytest.mark.parametrize("script", ["jobs/train.py", "jobs/transform.py"])
def test_entry_point_help_runs(script: str) -> None:
    r = subprocess.run(
        [sys.executable, str(ROOT / script), "--help"],
        capture_output=True, text=True, timeout=120, cwd=ROOT, check=False,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    assert "--config" in r.stdout and "usage" in r.stdout.lower()


def test_entrypoint_flags_parse() -> None:
    from beardnet.cli import build_parser

    for where, spec in _entrypoints():
        script, args = _entrypoint(spec)
        sub = _subcommand_of(script)
        parser = build_parser(sub)
        ns = parser.parse_args([sub, *args])  # SystemExit(2) on an unknown flag
        assert getattr(ns, "_import_error", None) is None, f"{where}: {ns._import_error}"


def _transform_config(args: list[str]):
    """The TransformConfig an entrypoint runs with: its flags parsed by the real CLI and
    turned into overrides the way ``beardnet transform`` does, on the ConfigMap's file."""
    from beardnet.cli import build_parser
    from beardnet.config import load_config
    from beardnet.infer.cli import overrides_from_args
    from beardnet.infer.config import TransformConfig

    ns = build_parser("transform").parse_args(["transform", *args])
    text = _config_map_data()[_config_path(args)[len(CONFIG_MOUNT) + 1:]]
    return _load_text(load_config, TransformConfig, text, overrides_from_args(ns))


def _load_text(load_config, cls, text: str, sets: list[str]):
    import tempfile

    with tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False) as f:
        f.write(text)
    try:
        return load_config(cls, f.name, sets)
    finally:
        Path(f.name).unlink()


def _worker_cpus(cluster: dict[str, Any]) -> list[tuple[int, dict[str, Any]]]:
    """(num-cpus, limits) per worker pod, one entry per replica."""
    out = []
    for g in cluster["workerGroupSpecs"]:
        lim = g["template"]["spec"]["containers"][0]["resources"]["limits"]
        out += [(int(g["rayStartParams"]["num-cpus"]), lim)] * int(g["replicas"])
    return out


def test_transform_config_fits_its_cluster() -> None:
    for where, spec in _entrypoints():
        script, args = _entrypoint(spec)
        if _subcommand_of(script) != "transform":
            continue
        cfg = _transform_config(args)
        cfg.check_paths()
        assert cfg.job.incremental, f"{where}: a scheduled run must be --incremental"
        assert cfg.job.input.startswith("s3://") and cfg.job.output.startswith("s3://"), where
        assert cfg.ray.progress == "off", f"{where}: no progress bar in a pod"
        pods = _worker_cpus(spec["rayClusterSpec"])
        total = sum(c for c, _ in pods)
        per_actor = cfg.ray.network_num_cpus or sizing.network_cpus(
            total, sizing.DEFAULT_NETWORK_SHARE, cfg.ray.network_actors, cfg.ray.read_num_cpus,
            cfg.ray.write_num_cpus)  # unset: sized at run time, from the default share at first
        actors = cfg.ray.network_actors * per_actor
        # an actor pool taking every CPU starves the read tasks
        assert actors + cfg.ray.read_num_cpus + cfg.ray.write_num_cpus <= total, where
        assert actors <= 0.75 * total, f"{where}: leave CPUs for read/locate tasks"
        assert per_actor <= min(c for c, _ in pods), where
        lease_ttl = cfg.job.lease_ttl_s
        assert lease_ttl < spec["activeDeadlineSeconds"], where


def test_train_config_fits_its_cluster() -> None:
    from beardnet.config import load_config
    from beardnet.train.config import TrainConfig

    seen = 0
    for where, spec in _entrypoints():
        script, args = _entrypoint(spec)
        if _subcommand_of(script) != "train":
            continue
        seen += 1
        text = _config_map_data()[_config_path(args)[len(CONFIG_MOUNT) + 1:]]
        cfg = _load_text(load_config, TrainConfig, text, _sets(args))
        assert cfg.run.storage.startswith("s3://"), f"{where}: checkpoints must go to S3"
        assert cfg.data.uri.startswith("s3://"), where
        assert cfg.run.progress == "off", where
        pods = _worker_cpus(spec["rayClusterSpec"])
        fitting = [
            lim for cpus, lim in pods
            if cpus >= cfg.scaling.cpus_per_worker
            and (not cfg.scaling.use_gpu or int(lim.get("nvidia.com/gpu", 0)) >= 1)
        ]
        assert len(fitting) >= cfg.scaling.num_workers, (
            f"{where}: {cfg.scaling.num_workers} workers x {cfg.scaling.cpus_per_worker} CPUs"
            f"{' + 1 GPU' if cfg.scaling.use_gpu else ''} do not fit the worker pods {pods}"
        )
        assert cfg.scaling.max_failures >= 1, f"{where}: a lost worker should resume"
    assert seen == 2


# --- Dockerfile ------------------------------------------------------------------------------
def parse_dockerfile(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs; comments dropped, continuation lines joined."""
    out: list[tuple[str, str]] = []
    buf = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not buf and (not line or line.startswith("#")):
            continue
        if buf and line.startswith("#"):
            continue
        if line.endswith("\\"):
            buf += line[:-1].rstrip() + " "
            continue
        buf += line
        if buf.strip():
            instr, _, rest = buf.strip().partition(" ")
            out.append((instr.upper(), rest.strip()))
        buf = ""
    assert not buf.strip(), "Dockerfile ends inside a continued line"
    return out


def _args(instrs: list[tuple[str, str]]) -> dict[str, str]:
    out = {}
    for instr, rest in instrs:
        if instr == "ARG":
            name, _, default = rest.partition("=")
            out[name] = default.strip().strip('"')
    return out


def test_dockerfile_parser_handles_continuations() -> None:
    instrs = parse_dockerfile("# c\nFROM a:1\nRUN echo 1 \\\n  && echo 2\n\nUSER ray\n")
    assert instrs == [("FROM", "a:1"), ("RUN", "echo 1 && echo 2"), ("USER", "ray")]


def test_dockerfile_base_image_and_user() -> None:
    instrs = parse_dockerfile(DOCKERFILE.read_text())
    known = {"ARG", "FROM", "USER", "WORKDIR", "COPY", "RUN", "ENV", "CMD", "LABEL",
             "ENTRYPOINT", "EXPOSE"}
    assert {i for i, _ in instrs} <= known
    args = _args(instrs)
    froms = [rest for i, rest in instrs if i == "FROM"]
    assert froms == ["${RAY_IMAGE}"]
    base = args["RAY_IMAGE"]
    m = re.fullmatch(r"rayproject/ray:(\d+\.\d+\.\d+)-py(\d)(\d+)-cpu", base)
    assert m, f"CPU base image expected, got {base}"
    ray_pin = _pin("ray").lstrip("=").rstrip("*").rstrip(".")
    assert m.group(1).startswith(ray_pin), f"{base} vs ray{_pin('ray')}"
    req_py = _pyproject()["project"]["requires-python"]
    assert f"{m.group(2)}.{m.group(3)}" in req_py, f"{base} vs requires-python {req_py}"
    for _, cluster in _ray_clusters():
        assert cluster["rayVersion"] == m.group(1)
    users = [rest for i, rest in instrs if i == "USER"]
    assert users and users[-1] not in ("root", "0"), "the image must end as a non-root user"
    runs = " ".join(rest for i, rest in instrs if i == "RUN")
    for lib in ("libgl1", "libglib2.0-0"):
        assert lib in runs, f"{lib} (OpenCV/MediaPipe) is not installed"


def test_dockerfile_installs_the_pinned_project() -> None:
    instrs = parse_dockerfile(DOCKERFILE.read_text())
    args = _args(instrs)
    torch_pin = _pin("torch")
    assert torch_pin.startswith("=="), "torch must be pinned exactly in pyproject.toml"
    assert args["TORCH_VERSION"] == torch_pin[2:], (
        f"Dockerfile TORCH_VERSION {args['TORCH_VERSION']} != pyproject torch{torch_pin}"
    )
    runs = [rest for i, rest in instrs if i == "RUN"]
    pip = [r for r in runs if "pip install" in r]
    assert any(re.search(r'"torch==\$\{TORCH_VERSION\}"', r) for r in pip)
    assert any(re.search(r"pip install[^&;]*\s\.(\s|$)", r) for r in pip), "no `pip install .`"
    assert not any(re.search(r"pip install[^&;]*\s-e\s", r) for r in pip), "no editable install"
    workdir = [rest for i, rest in instrs if i == "WORKDIR"][-1]
    assert workdir == IMAGE_HOME, "entry points in infra/k8s assume this WORKDIR"


def test_dockerfile_copies_existing_files_and_no_secrets() -> None:
    instrs = parse_dockerfile(DOCKERFILE.read_text())
    ignore = [
        line.strip().rstrip("/") for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for needed in (".venv", ".git", "tests"):
        assert needed in ignore, f".dockerignore should exclude {needed}"
    copied = set()
    for instr, rest in instrs:
        if instr in ("COPY", "ADD"):
            assert instr == "COPY", "use COPY, not ADD"
            parts = [p for p in rest.split() if not p.startswith("--")]
            for src in parts[:-1]:
                path = ROOT / src
                assert path.exists(), f"COPY source {src} does not exist"
                rel = src.rstrip("/")
                assert not any(fnmatch.fnmatch(rel, pat) for pat in ignore), (
                    f"COPY source {src} is excluded by .dockerignore"
                )
                copied.add(rel)
    assert {"pyproject.toml", "README.md", "beardnet", "jobs"} <= copied
    for instr, rest in instrs:
        if instr in ("ENV", "ARG"):
            assert not re.search(r"(SECRET|PASSWORD|TOKEN|ACCESS_KEY)", rest, re.IGNORECASE), rest


def test_operator_readme_names_every_manifest() -> None:
    readme = (K8S / "README.md").read_text()
    for path in _manifest_files():
        assert path.name in readme, f"infra/k8s/README.md does not mention {path.name}"
    for code in ("75", "--incremental", "_beardnet/runs/", "ray job submit"):
        assert code in readme, f"README lacks {code!r}"
