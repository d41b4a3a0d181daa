"""Runs inside the KServe SDK's own virtualenv: the SDK's InferenceRESTClient (V1 and V2), unmodified,
against a Kubepredict base URL. Prints one JSON object of what each call returned.

Usage: python kserve_client.py BASE_URL MODEL_NAME '["feature", ...]' '[row values...]' [TOKEN]
"""

import asyncio
import json
import sys

import httpx
import numpy as np
from kserve import InferenceRESTClient, InferInput, InferRequest, RESTConfig


async def failure(call):
    try:
        await call
    except httpx.HTTPStatusError as exc:
        return [exc.response.status_code, exc.response.json()]
    return None


async def main(base, model, features, row, token):
    headers = {"Authorization": f"Bearer {token}"} if token else None
    out = {}
    v1 = InferenceRESTClient(RESTConfig(protocol="v1"))
    # (V1 is_server_live GETs the bare base URL, "/", which is the gateway's redirect to the web page.)
    out["v1_model_ready"] = await v1.is_model_ready(base, model, headers=headers)
    out["v1_lists"] = await v1.infer(base, {"instances": [row, row]}, model_name=model, headers=headers)
    out["v1_objects"] = await v1.infer(
        base, {"instances": [dict(zip(features, row, strict=True))]}, model_name=model, headers=headers
    )
    out["v1_bad_width"] = await failure(v1.infer(base, {"instances": [row[:-1]]}, model_name=model, headers=headers))
    out["v1_unknown_model"] = await failure(
        v1.infer(base, {"instances": [row]}, model_name="no-such-model", headers=headers)
    )

    v2 = InferenceRESTClient(RESTConfig(protocol="v2"))
    out["v2_live"] = await v2.is_server_live(base)
    out["v2_ready"] = await v2.is_server_ready(base)
    out["v2_model_ready"] = await v2.is_model_ready(base, model, headers=headers)
    out["v2_unknown_ready"] = await v2.is_model_ready(base, "no-such-model", headers=headers)
    columns = []
    for name, value in zip(features, row, strict=True):
        tensor = InferInput(name, [1], "FP32")
        tensor.set_data_from_numpy(np.array([value], dtype=np.float32))  # binary tensor data (the default)
        columns.append(tensor)
    res = await v2.infer(
        base,
        InferRequest(model_name=model, infer_inputs=columns, request_id="kserve-1"),
        model_name=model,
        headers=headers,
    )
    out["v2_columns"] = {
        "id": res.id,
        "outputs": {o.name: o.as_numpy().tolist() for o in res.outputs},
        "classes": [o.parameters for o in res.outputs if o.name == "predict_proba"],
    }
    matrix = InferInput("input-0", [2, len(features)], "FP64")
    matrix.set_data_from_numpy(np.array([row, row], dtype=np.float64), binary_data=False)
    res = await v2.infer(base, InferRequest(model_name=model, infer_inputs=[matrix]), model_name=model, headers=headers)
    out["v2_matrix"] = {o.name: o.as_numpy().tolist() for o in res.outputs}
    short = InferInput("input-0", [1, len(features) - 1], "FP64")
    short.set_data_from_numpy(np.array([row[:-1]], dtype=np.float64), binary_data=False)
    out["v2_bad_width"] = await failure(
        v2.infer(base, InferRequest(model_name=model, infer_inputs=[short]), model_name=model, headers=headers)
    )
    await v1.close()
    await v2.close()
    print(json.dumps(out))


if __name__ == "__main__":
    asyncio.run(
        main(
            sys.argv[1],
            sys.argv[2],
            json.loads(sys.argv[3]),
            json.loads(sys.argv[4]),
            sys.argv[5] if len(sys.argv) > 5 else None,
        )
    )
