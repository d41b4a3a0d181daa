#!/usr/bin/env bash
# Package each function for Kubeless: build/kubeless/<fn>.zip (handler.py + the kubepredict package,
# zip siblings import as top-level modules) and build/kubeless/<fn>.yaml (triggers/functions/<fn>.yaml
# with function = base64 zip, checksum = sha256, deps = requirements). Zips are reproducible.
# Usage: scripts/package-kubeless.sh [fn ...]   (default: upload train predict result)
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PYTHON:-${REPO}/.venv/bin/python}"
[[ -x "${PY}" ]] || PY="$(command -v python3)"
OUT="${REPO}/build/kubeless"
mkdir -p "${OUT}"
FUNCTIONS=("$@")
[[ ${#FUNCTIONS[@]} -gt 0 ]] || FUNCTIONS=(upload train predict result)

for fn in "${FUNCTIONS[@]}"; do
  "${PY}" - "${REPO}" "${fn}" "${OUT}" <<'PYEOF'
import base64, hashlib, io, pathlib, sys, zipfile
import yaml

repo, fn, out = pathlib.Path(sys.argv[1]), sys.argv[2], pathlib.Path(sys.argv[3])
MAX_INLINE = 1_500_000  # Kubeless keeps the function in the CR: about 1.5 MiB at most


def add(zf, path, arcname):
    info = zipfile.ZipInfo(arcname, date_time=(1980, 1, 1, 0, 0, 0))
    info.external_attr = 0o644 << 16
    info.compress_type = zipfile.ZIP_DEFLATED
    zf.writestr(info, path.read_bytes())


buf = io.BytesIO()
with zipfile.ZipFile(buf, "w") as zf:
    add(zf, repo / "functions" / fn / "handler.py", "handler.py")
    pkg = repo / "shared" / "kubepredict"
    for path in sorted(pkg.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts and path.suffix not in (".pyc", ".pyo"):
            add(zf, path, "kubepredict/" + path.relative_to(pkg).as_posix())
data = buf.getvalue()
(out / f"{fn}.zip").write_bytes(data)

deps = []
# The runtime pins only (shared/constraints.txt: what the images install), not the test and lint tools
# requirements.txt also pins.
for req in (repo / "shared" / "constraints.txt", repo / "functions" / fn / "requirements.txt"):
    if req.is_file():
        for line in req.read_text().splitlines():
            name = line.split("#", 1)[0].strip()
            # kubepredict ships inside the zip; test tools and -r/-e lines do not belong in the Function CR.
            if name and not name.lower().startswith(("kubepredict", "pytest", "-r", "-e", "./", "../")) and name not in deps:
                deps.append(name)

doc = yaml.safe_load((repo / "triggers" / "functions" / f"{fn}.yaml").read_text())
encoded = base64.b64encode(data).decode()
if len(encoded) > MAX_INLINE:
    sys.exit(f"{fn}: {len(encoded)} bytes base64 is above Kubeless' ~1.5 MiB limit; host the zip and use url+zip")
doc["spec"]["function"] = encoded
doc["spec"]["checksum"] = "sha256:" + hashlib.sha256(data).hexdigest()
doc["spec"]["deps"] = "\n".join(deps) + ("\n" if deps else "")
with open(out / f"{fn}.yaml", "w") as f:
    yaml.safe_dump(doc, f, sort_keys=False, width=110)
print(f"{fn}: build/kubeless/{fn}.zip ({len(data)} bytes), build/kubeless/{fn}.yaml, {len(deps)} deps")
PYEOF
done
