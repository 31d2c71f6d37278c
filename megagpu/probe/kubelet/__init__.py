r"""The kubelet's gRPC APIs that the probe's device plugin speaks, as generated Python stubs.

``deviceplugin.proto`` and ``podresources.proto`` are copied unchanged from the Go module
``k8s.io/kubelet`` v0.36.3 (``pkg/apis/deviceplugin/v1beta1/api.proto`` and
``pkg/apis/podresources/v1/api.proto``). The ``*_pb2*.py`` files are generated from them and
committed, so that installing megagpu needs no protoc; regenerate them from the repository root
(``tests/probe/test_kubelet_stubs.py`` fails when they are stale)::

    python -m grpc_tools.protoc -I . --python_out=. --grpc_python_out=. \
        megagpu/probe/kubelet/deviceplugin.proto megagpu/probe/kubelet/podresources.proto
"""
