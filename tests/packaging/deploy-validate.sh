#!/usr/bin/env bash
# The DaemonSet manifests, the Helm chart and the k3s HelmChart (issue 14), offline in
# seconds:
#   - Helm: no helm CLI is installable here (not in Debian, nor as a binary on PyPI, npm or
#     crates.io), so the chart is rendered and linted by Helm v4's own Go packages (chart
#     loader, template engine, values schema, `helm lint --strict`) through helm-python-sdk
#     (PyPI; deploy/tools/requirements.txt; a venv in /var/cache/smarter-cni-build);
#   - the chart's version and appVersion are Cargo.toml's version;
#   - drift: deploy/kubernetes/*.yaml and deploy/k3s/*.yaml equal a new render
#     (deploy/generate.sh --check);
#   - helm lint --strict of both modes for each Kubernetes version in KUBE_VERSIONS;
#   - kubernetes-validate --strict (its bundled OpenAPI schemas) of every rendered document,
#     both modes and a render with the other values flipped, for each of KUBE_VERSIONS;
#   - the contract's properties in the rendered YAML, per mode (hostNetwork, not
#     privileged, capabilities, user, probe command, volumes and their types, rolling
#     update, node selector, tolerations, no RBAC, no token);
#   - the k3s HelmChart: its fields, and its chartContent is the chart and renders the same
#     DaemonSet as the plain manifest;
#   - negative checks that each of these can fail: a misspelled field and a wrong type are
#     rejected by the validator, bad values by the chart's schema, a broken template by
#     lint, a privileged or capability-adding manifest by the property checks, a stale
#     manifest by the drift check.
# Usage: tests/packaging/deploy-validate.sh   (Debian 12; PyPI once for the venv).
# Prints "deploy-validate: N passed, M failed" and its duration.
set -uo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)
# shellcheck source=../../deploy/tools/venv.sh
source "$REPO/deploy/tools/venv.sh"
started=$(date +%s%N)
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

# Kubernetes versions: every minor that kubernetes-validate 1.37.0 bundles. k3s's current
# lines are v1.37 (v1.37.2+k3s1, Nov 2026), v1.36 and v1.35; older minors are for fleets
# that have not upgraded their server yet (the chart says kubeVersion >=1.25).
KUBE_VERSIONS=(1.25.0 1.26.0 1.27.0 1.28.0 1.29.0 1.30.0 1.31.0 1.32.0 1.33.0 1.34.0 1.35.0 1.36.0 1.37.0)
MANIFESTS=("$REPO/deploy/kubernetes/smarter-cni-docker.yaml" "$REPO/deploy/kubernetes/smarter-cni-bridge.yaml")
HELMCHART=$REPO/deploy/k3s/smarter-cni-helmchart.yaml

passed=0
failed=0
pass() { printf 'ok   %s\n' "$1"; passed=$((passed + 1)); }
fail() { printf 'FAIL %s\n' "$1"; shift; [ $# -eq 0 ] || printf '%s\n' "$@" | sed 's/^/     /'; failed=$((failed + 1)); }
finish() {
  local ms=$((($(date +%s%N) - started) / 1000000))
  printf 'deploy-validate: took %d.%01d s\n' $((ms / 1000)) $((ms % 1000 / 100))
  echo "deploy-validate: $passed passed, $failed failed"
  [[ $failed == 0 ]]
  exit
}
# expect_ok <name> <command...>: passes when the command succeeds; its output on failure.
expect_ok() {
  local name=$1 out
  shift
  if out=$("$@" 2>&1); then pass "$name"; else fail "$name" "$(tail -n 20 <<<"$out")"; fi
}
# expect_fail <name> <pattern> <command...>: passes when the command fails AND says pattern.
expect_fail() {
  local name=$1 pattern=$2 out
  shift 2
  if out=$("$@" 2>&1); then
    fail "$name (accepted)" "$(tail -n 10 <<<"$out")"
  elif grep -qE -- "$pattern" <<<"$out"; then
    pass "$name"
  else
    fail "$name (failed, but not with /$pattern/)" "$(tail -n 10 <<<"$out")"
  fi
}

if ! deploy_venv "$REPO"; then
  fail "tools: the venv of deploy/tools/requirements.txt"
  finish
fi
PY=$DEPLOY_VENV/bin/python
KV=$DEPLOY_VENV/bin/kubernetes-validate
render() { "$PY" "$REPO/deploy/tools/render.py" "$@"; }
helm_version=$("$PY" -c 'from helm_python import _native as n; print(n.helm_sdk_version())' 2>&1) ||
  { fail "tools: helm-python-sdk loads" "$helm_version"; finish; }
echo "deploy-validate: Helm $helm_version (Go SDK via helm-python-sdk; no helm CLI here), $("$KV" --version 2>&1 | tail -n1)"

# ---------------------------------------------------------------- version and drift
cargo_version=$(sed -n 's/^version = "\(.*\)"/\1/p' "$REPO/Cargo.toml" | head -n1)
chart_version=$(sed -n 's/^version: *//p' "$REPO/deploy/helm/smarter-cni/Chart.yaml")
app_version=$(sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\}/\1/p' "$REPO/deploy/helm/smarter-cni/Chart.yaml")
if [[ $chart_version == "$cargo_version" && $app_version == "$cargo_version" ]]; then
  pass "Chart.yaml version and appVersion = Cargo.toml's $cargo_version"
else
  fail "Chart.yaml version ($chart_version) and appVersion ($app_version) = Cargo.toml's $cargo_version"
fi
expect_ok "drift: deploy/kubernetes and deploy/k3s equal a new render (deploy/generate.sh --check)" \
  "$REPO/deploy/generate.sh" --check

# The drift check itself fails on a stale file: a copy of deploy/ with one edited line.
mkdir -p "$WORK/stale"
cp -a "$REPO/deploy" "$WORK/stale/"
sed -i 's/periodSeconds: 30/periodSeconds: 31/' "$WORK/stale/deploy/kubernetes/smarter-cni-bridge.yaml"
expect_fail "negative: the drift check rejects an edited manifest" "stale: deploy/kubernetes/smarter-cni-bridge.yaml" \
  "$WORK/stale/deploy/generate.sh" --check

# ---------------------------------------------------------------- helm lint
kube_args=()
for v in "${KUBE_VERSIONS[@]}"; do kube_args+=(--kube-version "v$v"); done
for mode in docker bridge; do
  if out=$(render lint --values "{\"mode\": \"$mode\", \"createNamespace\": true}" "${kube_args[@]}" 2>&1); then
    pass "helm lint --strict, $mode mode, Kubernetes ${KUBE_VERSIONS[0]}..${KUBE_VERSIONS[-1]}"
  else
    fail "helm lint --strict, $mode mode" "$(grep -v 'INFO' <<<"$out" | head -n 10)"
  fi
done
# Lint can fail: a template that dereferences a value that does not exist.
cp -a "$REPO/deploy/helm/smarter-cni" "$WORK/broken-chart"
printf '{{ .Values.image.nosuch.deeper }}\n' >>"$WORK/broken-chart/templates/serviceaccount.yaml"
expect_fail "negative: helm lint rejects a broken template" "ERROR .*nil pointer evaluating .*deeper" render lint --chart "$WORK/broken-chart"

# ---------------------------------------------------------------- the chart's values
expect_fail "negative: the chart rejects mode=foo (values schema)" "mode" render render --values '{"mode": "foo"}'
expect_fail "negative: the chart rejects maxUnavailable=0 (a DaemonSet without surge needs >= 1)" "maxUnavailable" \
  render render --values '{"maxUnavailable": 0}'
expect_fail "negative: the chart rejects a misspelled value (nodeSelektor)" "nodeSelektor" \
  render render --values '{"nodeSelektor": {"a": "b"}}'
# A render with the optional parts flipped, validated below with the rest.
variant='{"mode": "bridge", "createNamespace": true, "podSecurityLevel": "", "serviceAccount": {"create": false},
  "priorityClassName": "", "podLabels": {"fleet": "eu-1"}, "podAnnotations": {"a": "b"}, "maxUnavailable": 25,
  "runSetup": false, "healthRequire": "config loopback network dns-records", "retryFailed": true,
  "image": {"repository": "registry.local:5000/smarter-cni/installer", "tag": "0.2.0", "pullPolicy": "Always"}}'
if out=$(render render --values "$variant" 2>&1 >"$WORK/variant.yaml"); then
  pass "render with the other settings (no ServiceAccount, no priority class, pod labels, maxUnavailable 25, ...)"
else
  fail "render with the other settings" "$out"
fi

# ---------------------------------------------------------------- schema validation
# The k3s file's Namespace (its HelmChart is a custom resource: checked further down).
"$PY" - "$HELMCHART" >"$WORK/k3s-namespace.yaml" <<'EOF'
import sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
yaml.safe_dump_all([d for d in docs if d["kind"] != "HelmChart"], sys.stdout)
EOF
to_validate=("${MANIFESTS[@]}" "$WORK/k3s-namespace.yaml")
[[ -s $WORK/variant.yaml ]] && to_validate+=("$WORK/variant.yaml")
for v in "${KUBE_VERSIONS[@]}"; do
  out=$("$KV" --strict --quiet -k "$v" "${to_validate[@]}" 2>&1)
  rc=$?
  if [[ $rc == 0 ]] && ! grep -q . <<<"$out"; then
    pass "kubernetes-validate --strict -k $v: $(basename -a "${to_validate[@]}" | tr '\n' ' ')"
  else
    fail "kubernetes-validate --strict -k $v" "$out"
  fi
done
# The validator can fail: a misspelled field, a wrong type, a string for a command list.
sed 's/hostNetwork: true/hostNetwrok: true/' "${MANIFESTS[0]}" >"$WORK/misspelled.yaml"
expect_fail "negative: kubernetes-validate --strict rejects a misspelled field (hostNetwrok)" "hostNetwrok" \
  "$KV" --strict -k 1.37.0 "$WORK/misspelled.yaml"
sed 's/hostNetwork: true/hostNetwork: "yes"/' "${MANIFESTS[0]}" >"$WORK/wrongtype.yaml"
expect_fail "negative: kubernetes-validate rejects a wrong type (hostNetwork: \"yes\")" "is not of type 'boolean'" \
  "$KV" --strict -k 1.37.0 "$WORK/wrongtype.yaml"
sed 's|command: \["/smarter-cni", "status".*|command: "/smarter-cni status"|' "${MANIFESTS[1]}" >"$WORK/probe-string.yaml"
expect_fail "negative: kubernetes-validate rejects a probe command that is a string" "is not of type 'array'" \
  "$KV" --strict -k 1.35.0 "$WORK/probe-string.yaml"

# ---------------------------------------------------------------- the contract's properties
# check_properties <file> <mode>: one line per property; exit status = number failed.
check_properties() {
  "$PY" - "$1" "$2" "$cargo_version" <<'EOF'
import sys, yaml
path, mode, version = sys.argv[1:4]
docs = [d for d in yaml.safe_load_all(open(path)) if d]
bad = 0
def check(what, ok, detail=""):
    global bad
    print(("ok   " if ok else "FAIL ") + what + ("" if ok else f": {detail}"))
    bad += not ok
kinds = sorted(d["kind"] for d in docs)
check("objects: Namespace, ServiceAccount, DaemonSet only (no RBAC)", kinds == ["DaemonSet", "Namespace", "ServiceAccount"], kinds)
ns = next(d for d in docs if d["kind"] == "Namespace")
check("Namespace smarter-cni, Pod Security level privileged",
      ns["metadata"]["name"] == "smarter-cni" and ns["metadata"]["labels"].get("pod-security.kubernetes.io/enforce") == "privileged", ns["metadata"])
sa = next(d for d in docs if d["kind"] == "ServiceAccount")
check("ServiceAccount: automountServiceAccountToken false", sa.get("automountServiceAccountToken") is False, sa)
ds = next(d for d in docs if d["kind"] == "DaemonSet")
check("DaemonSet smarter-cni in namespace smarter-cni", (ds["metadata"]["name"], ds["metadata"]["namespace"]) == ("smarter-cni", "smarter-cni"), ds["metadata"])
spec = ds["spec"]
pod = spec["template"]["spec"]
check("updateStrategy RollingUpdate, maxUnavailable 10%, maxSurge 0",
      spec["updateStrategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "10%", "maxSurge": 0}}, spec["updateStrategy"])
check("minReadySeconds 60", spec.get("minReadySeconds") == 60, spec.get("minReadySeconds"))
check("selector labels are in the pod template",
      all(spec["template"]["metadata"]["labels"].get(k) == v for k, v in spec["selector"]["matchLabels"].items()), spec["selector"])
check("hostNetwork true, dnsPolicy Default", pod.get("hostNetwork") is True and pod.get("dnsPolicy") == "Default", (pod.get("hostNetwork"), pod.get("dnsPolicy")))
check("no hostPID, hostIPC", not pod.get("hostPID") and not pod.get("hostIPC"))
check("pod: automountServiceAccountToken false, ServiceAccount smarter-cni",
      pod.get("automountServiceAccountToken") is False and pod.get("serviceAccountName") == "smarter-cni")
check("nodeSelector smarter-cni.io/installer: \"true\"", pod.get("nodeSelector", {}).get("smarter-cni.io/installer") == "true", pod.get("nodeSelector"))
check("tolerations: [operator: Exists] (every taint)", pod.get("tolerations") == [{"operator": "Exists"}], pod.get("tolerations"))
check("priorityClassName system-node-critical", pod.get("priorityClassName") == "system-node-critical", pod.get("priorityClassName"))
check("terminationGracePeriodSeconds <= 10", 0 <= pod.get("terminationGracePeriodSeconds", 30) <= 10, pod.get("terminationGracePeriodSeconds"))
check("seccompProfile RuntimeDefault", pod.get("securityContext", {}).get("seccompProfile") == {"type": "RuntimeDefault"}, pod.get("securityContext"))
check("one container, no init containers", len(pod["containers"]) == 1 and not pod.get("initContainers"))
c = pod["containers"][0]
check("container installer, image smarter-cni/installer:" + version + ", IfNotPresent",
      (c["name"], c["image"], c.get("imagePullPolicy")) == ("installer", f"smarter-cni/installer:{version}", "IfNotPresent"), (c["name"], c["image"], c.get("imagePullPolicy")))
check(f"command /smarter-cni install --mode {mode}", c.get("command") == ["/smarter-cni", "install"] and c.get("args") == ["--mode", mode], (c.get("command"), c.get("args")))
env = {e["name"]: e.get("value") for e in c.get("env", [])}
# Bridge mode also requires what the gateway OS's setup does that the pod cannot (nft, sysctls).
require = "config loopback network" + (" forwarding nat" if mode == "bridge" else "")
check(f"env SMARTER_CNI_HEALTH_REQUIRE=\"{require}\", SMARTER_CNI_SETUP=yes",
      env.get("SMARTER_CNI_HEALTH_REQUIRE") == require and env.get("SMARTER_CNI_SETUP") == "yes", env)
rp = c.get("readinessProbe", {})
# The probe also waits for the activation record: the pod is Ready only once it finished.
probe = require.replace(" ", ",") + ",activation,release"
check(f"readinessProbe exec [/smarter-cni, status, --require, {probe}], period 30 s, timeout 10 s",
      rp.get("exec", {}).get("command") == ["/smarter-cni", "status", "--require", probe]
      and rp.get("periodSeconds") == 30 and rp.get("timeoutSeconds") == 10, rp)
check("no liveness or startup probe", "livenessProbe" not in c and "startupProbe" not in c)
sc = c.get("securityContext", {})
caps_add = sorted(sc.get("capabilities", {}).get("add", []))
want_add = ["NET_ADMIN"] if mode == "bridge" else []
check("not privileged", sc.get("privileged") in (None, False) and not any(x.get("securityContext", {}).get("privileged") for x in pod["containers"]), sc.get("privileged"))
check("runAsUser 0, runAsNonRoot false, allowPrivilegeEscalation false, readOnlyRootFilesystem true",
      (sc.get("runAsUser"), sc.get("runAsNonRoot"), sc.get("allowPrivilegeEscalation"), sc.get("readOnlyRootFilesystem")) == (0, False, False, True), sc)
check(f"capabilities drop ALL, add {want_add or 'nothing'}", sc.get("capabilities", {}).get("drop") == ["ALL"] and caps_add == want_add, sc.get("capabilities"))
check("memory limit set, small requests", "memory" in c.get("resources", {}).get("limits", {}) and "cpu" in c.get("resources", {}).get("requests", {}), c.get("resources"))
want = {"/opt/cni/bin": "DirectoryOrCreate", "/etc/cni/net.d": "DirectoryOrCreate", "/etc/smarter-cni": "DirectoryOrCreate",
        "/var/lib/smarter-cni": "DirectoryOrCreate", "/run/smarter-cni": "DirectoryOrCreate"}
if mode == "docker":
    want["/var/run/docker.sock"] = "Socket"
vols = {v["name"]: v for v in pod.get("volumes", [])}
got = {v["hostPath"]["path"]: v["hostPath"].get("type") for v in vols.values() if "hostPath" in v}
check("volumes: exactly the contract's hostPaths, with their types", got == want and len(vols) == len(want), got)
mounts = {m["mountPath"]: vols.get(m["name"], {}).get("hostPath", {}).get("path") for m in c.get("volumeMounts", [])}
check("every host path mounted at the same path inside", mounts == {p: p for p in want} and not any(m.get("subPath") for m in c.get("volumeMounts", [])), mounts)
sys.exit(bad)
EOF
}
for i in 0 1; do
  mode=$([[ $i == 0 ]] && echo docker || echo bridge)
  if out=$(check_properties "${MANIFESTS[$i]}" "$mode" 2>&1); then
    pass "contract properties, $mode mode ($(grep -c '^ok' <<<"$out") checks)"
  else
    fail "contract properties, $mode mode" "$(grep -v '^ok' <<<"$out")"
  fi
done
# The property checks can fail: privileged, an extra capability, a second host path.
sed 's/privileged: false/privileged: true/' "${MANIFESTS[0]}" >"$WORK/privileged.yaml"
expect_fail "negative: the property checks reject privileged: true" "FAIL not privileged" check_properties "$WORK/privileged.yaml" docker
sed 's/drop: \["ALL"\]/drop: ["ALL"]\n              add: ["SYS_ADMIN"]/' "${MANIFESTS[0]}" >"$WORK/sysadmin.yaml"
expect_fail "negative: the property checks reject an added capability (SYS_ADMIN in docker mode)" "FAIL capabilities" \
  check_properties "$WORK/sysadmin.yaml" docker
expect_fail "negative: the property checks reject the Docker socket in bridge mode" "FAIL volumes" \
  check_properties "${MANIFESTS[0]}" bridge

# ---------------------------------------------------------------- the k3s HelmChart
expect_ok "k3s HelmChart: fields, chartContent = the chart archive, same DaemonSet as the docker manifest" \
  "$PY" - "$HELMCHART" "${MANIFESTS[0]}" "$REPO/deploy/tools" <<'EOF'
import base64, io, sys, tarfile, yaml
helmchart, plain, tools = sys.argv[1:4]
sys.path.insert(0, tools)
import render
from helm_python import Chart
docs = [d for d in yaml.safe_load_all(open(helmchart)) if d]
assert [d["kind"] for d in docs] == ["Namespace", "HelmChart"], [d["kind"] for d in docs]
hc = docs[1]
assert hc["apiVersion"] == "helm.cattle.io/v1", hc["apiVersion"]
assert hc["metadata"] == {"name": "smarter-cni", "namespace": "kube-system"}, hc["metadata"]
spec = hc["spec"]
# helm-controller's HelmChartSpec fields (k3s-io/helm-controller pkg/apis/helm.cattle.io/v1).
known = {"targetNamespace", "createNamespace", "chart", "version", "repo", "repoCA", "repoCAConfigMap", "set",
         "valuesContent", "helmVersion", "bootstrap", "chartContent", "jobImage", "backOffLimit", "timeout",
         "failurePolicy", "authSecret", "authPassCredentials", "insecureSkipTLSVerify", "plainHTTP",
         "dockerRegistrySecret", "podSecurityContext", "securityContext"}
assert set(spec) <= known, set(spec) - known
assert spec["targetNamespace"] == "smarter-cni" and spec["bootstrap"] is True and spec["failurePolicy"] == "abort", spec
assert "chart" not in spec and "repo" not in spec, "air-gapped: no chart repository"
archive = base64.b64decode(spec["chartContent"], validate=True)
assert archive == render.chart_archive(), "chartContent is not the archive of deploy/helm/smarter-cni"
names = tarfile.open(fileobj=io.BytesIO(archive)).getnames()
assert all(n.startswith("smarter-cni/") for n in names) and "smarter-cni/Chart.yaml" in names, names
values = yaml.safe_load(spec["valuesContent"])
assert values == {"mode": "docker", "createNamespace": False}, values
from_k3s = render.render_docs(Chart.load_archive(archive), values)
from_plain = [d for d in yaml.safe_load_all(open(plain)) if d and d["kind"] != "Namespace"]
got = [yaml.safe_load(t) for _, t in from_k3s]
assert got == from_plain, "the HelmChart renders other objects than deploy/kubernetes/smarter-cni-docker.yaml"
print(f"chartContent: {len(archive)} bytes, {len(names)} files")
EOF

finish
