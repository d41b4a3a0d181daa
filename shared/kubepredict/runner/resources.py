"""A job request's ``resources``: Kubernetes quantities, checked completely when the job is submitted.

``{"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"cpu": "2", "memory": "4Gi"}}`` — the same
shape and quantity syntax as a Kubernetes container's ``resources``, for both runners: the Kubernetes
runner puts it into the pod (runner/k8s_manifest.py), the local runner turns the limits into a memory
limit and a CPU allowance for the worker process (runner/limits.py).
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

from ..errors import InvalidInput

SECTIONS = ("requests", "limits")
RESOURCE_NAMES = ("cpu", "memory", "ephemeral-storage")
#: The most a request may ask for on Kubernetes (the pod runs wherever the cluster places it).
K8S_MAX_RESOURCES = {"cpu": "8", "memory": "32Gi", "ephemeral-storage": "20Gi"}

_SUFFIXES: dict[str, int | Decimal] = {
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
    "Pi": 2**50,
    "Ei": 2**60,
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "k": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "P": 10**15,
    "E": 10**18,
}
_QUANTITY = re.compile(r"([+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?)([a-zA-Z]{0,2})")
_MAX_QUANTITY = Decimal(2) ** 64  # far beyond any machine; keeps the arithmetic finite


def parse_quantity(value: object, *, field: str = "quantity") -> Decimal:
    """Parse a Kubernetes quantity ("500m", "2Gi", 1.5) into a Decimal; raise InvalidInput if malformed."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise InvalidInput(
            f"{field} must be a Kubernetes quantity such as '500m' or '2Gi', got {value!r}",
            code="invalid_resources",
            details={"field": field},
        )
    text = str(value).strip()
    match = _QUANTITY.fullmatch(text)
    if not match or (match.group(2) and match.group(2) not in _SUFFIXES):
        raise InvalidInput(
            f"{field} must be a Kubernetes quantity such as '500m' or '2Gi', got {value!r}",
            code="invalid_resources",
            details={"field": field, "quantity": text[:100]},
        )
    try:
        number = Decimal(match.group(1)) * Decimal(_SUFFIXES.get(match.group(2), 1))
    except InvalidOperation as exc:
        raise InvalidInput(
            f"{field} is not a Kubernetes quantity: {value!r}", code="invalid_resources", details={"field": field}
        ) from exc
    if not number.is_finite() or number > _MAX_QUANTITY:
        raise InvalidInput(f"{field} is out of range: {value!r}", code="invalid_resources", details={"field": field})
    return number


def format_bytes(n: float) -> str:
    """``2147483648`` -> ``"2 GiB"``, ``1610612736`` -> ``"1.5 GiB"`` (for messages people read)."""
    for unit, size in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            return f"{n / size:.1f}".removesuffix(".0") + f" {unit}"
    return f"{int(n)} B"


def check_resources(resources: object, maximum: dict | None = None) -> dict:
    """Validate a request's ``resources`` and return it as ``{section: {name: str}}``.

    Only ``requests``/``limits`` holding ``cpu``/``memory``/``ephemeral-storage``, each a positive
    Kubernetes quantity, at most ``maximum[name]``, and a request given together with its limit
    not above it. Raises InvalidInput naming the field (``details.field``, e.g. ``resources.limits.cpu``).
    """
    if resources is None:
        return {}
    if not isinstance(resources, dict):
        raise InvalidInput(
            "'resources' must be a JSON object", code="invalid_resources", details={"field": "resources"}
        )
    unknown = sorted(set(resources) - set(SECTIONS))
    if unknown:
        raise InvalidInput(
            f"resources accept only 'requests' and 'limits', got {unknown}",
            code="invalid_resources",
            details={"field": f"resources.{unknown[0]}", "allowed": list(SECTIONS)},
        )
    out: dict = {}
    parsed: dict = {}
    for section in SECTIONS:
        given = resources.get(section)
        if given is None:
            continue
        if not isinstance(given, dict):
            raise InvalidInput(
                f"resources.{section} must be an object",
                code="invalid_resources",
                details={"field": f"resources.{section}"},
            )
        for name, value in given.items():
            field = f"resources.{section}.{name}"
            if name not in RESOURCE_NAMES:
                raise InvalidInput(
                    f"unsupported resource {name!r} in resources.{section}; allowed: {', '.join(RESOURCE_NAMES)}",
                    code="invalid_resources",
                    details={"field": field, "allowed": list(RESOURCE_NAMES)},
                )
            quantity = parse_quantity(value, field=field)
            if quantity <= 0:
                raise InvalidInput(
                    f"{field} must be positive, got {value!r}", code="invalid_resources", details={"field": field}
                )
            bound = (maximum or {}).get(name)
            if bound is not None and quantity > parse_quantity(bound):
                raise InvalidInput(
                    f"{field}={value} exceeds the maximum {bound}",
                    code="invalid_resources",
                    details={"field": field, "resource": name, "requested": str(value), "maximum": str(bound)},
                )
            parsed[section, name] = quantity
            out.setdefault(section, {})[name] = str(value)
    for name in RESOURCE_NAMES:
        request, limit = parsed.get(("requests", name)), parsed.get(("limits", name))
        if request is not None and limit is not None and request > limit:
            raise InvalidInput(
                f"resources.requests.{name}={out['requests'][name]} is above "
                f"resources.limits.{name}={out['limits'][name]}",
                code="invalid_resources",
                details={"field": f"resources.requests.{name}"},
            )
    return out


def maximums(settings) -> dict:
    """What a request's resources may ask for at most with the configured runner."""
    if settings.runner == "kubernetes":
        return dict(K8S_MAX_RESOURCES)
    # Local: memory up to the configured maximum; a CPU ask above this machine's cores is clamped, not refused.
    return {"memory": settings.job_max_memory}
