import pytest
from hypothesis import given
from hypothesis import strategies as st

from megagpu.core import model, visibility


def variables(backend, devices, **extra):
    env = {"MEGAGPU_BACKEND": backend, "MEGAGPU_DEVICES": devices, **extra}
    return visibility.runtime_variables(visibility.parse_assignment(env), env)


def test_cuda_lists_the_indices_in_nvml_order():
    assert variables("cuda", "2,0") == {
        "CUDA_VISIBLE_DEVICES": "2,0",
        "CUDA_DEVICE_ORDER": "PCI_BUS_ID",
    }


@pytest.mark.parametrize("given", ["all", "none", "void", "", " ALL "])
def test_cuda_uses_node_indices_when_the_runtime_did_not_narrow_the_container(given):
    assert variables("cuda", "3", NVIDIA_VISIBLE_DEVICES=given)["CUDA_VISIBLE_DEVICES"] == "3"


def test_cuda_renumbers_from_zero_inside_a_container_narrowed_by_the_nvidia_runtime():
    got = variables("cuda", "5,7", NVIDIA_VISIBLE_DEVICES="GPU-aaa,GPU-bbb")
    assert got["CUDA_VISIBLE_DEVICES"] == "0,1"


def test_cuda_refuses_a_narrowed_container_with_another_number_of_gpus():
    with pytest.raises(visibility.AssignmentError, match="gives this container 1 GPU.*assigns 2"):
        variables("cuda", "0,1", NVIDIA_VISIBLE_DEVICES="GPU-aaa")


def test_vulkan_sets_ggml_and_leaves_mesa_alone():
    assert variables("vulkan", "1") == {"GGML_VK_VISIBLE_DEVICES": "1"}


@pytest.mark.parametrize("backend", ["cuda", "vulkan"])
def test_no_devices_hides_every_device_of_a_gpu_backend(backend):
    got = variables(backend, "")
    name = "CUDA_VISIBLE_DEVICES" if backend == "cuda" else "GGML_VK_VISIBLE_DEVICES"
    assert got[name] == ""


@pytest.mark.parametrize("devices", ["", "0"])
def test_metal_sets_nothing(devices):
    assert variables("metal", devices) == {}


def test_metal_refuses_more_than_one_device():
    with pytest.raises(visibility.AssignmentError, match="2 devices to metal"):
        variables("metal", "0,1")


@pytest.mark.parametrize("devices", ["", "0,1"])
def test_cpu_sets_nothing(devices):
    assert variables("cpu", devices) == {}


def test_spaces_around_items_are_tolerated():
    assert visibility.parse_assignment(
        {"MEGAGPU_BACKEND": " cuda\n", "MEGAGPU_DEVICES": " 0 , 1 "}
    ) == visibility.Assignment("cuda", (0, 1))


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"MEGAGPU_DEVICES": "0"}, "MEGAGPU_BACKEND is not set: megagpu exec runs inside a pod"),
        (
            {"MEGAGPU_BACKEND": "", "MEGAGPU_DEVICES": ""},
            "MEGAGPU_BACKEND is empty: the pod has no",
        ),
        ({"MEGAGPU_BACKEND": "rocm", "MEGAGPU_DEVICES": "0"}, "'rocm' is not a backend.*cuda"),
        ({"MEGAGPU_BACKEND": "cuda"}, "MEGAGPU_DEVICES is not set"),
        ({"MEGAGPU_BACKEND": "cuda", "MEGAGPU_DEVICES": "0,x"}, "'x' is not a device index"),
        ({"MEGAGPU_BACKEND": "cuda", "MEGAGPU_DEVICES": "0,,1"}, "empty item"),
        ({"MEGAGPU_BACKEND": "cuda", "MEGAGPU_DEVICES": "-1"}, "'-1' is not a device index"),
        ({"MEGAGPU_BACKEND": "cuda", "MEGAGPU_DEVICES": "GPU-1f2e"}, "not a device index"),
        ({"MEGAGPU_BACKEND": "cuda", "MEGAGPU_DEVICES": "1,0,1"}, "names device 1 twice"),
        ({"MEGAGPU_BACKEND": "cuda", "MEGAGPU_DEVICES": "4294967296"}, "larger than any device"),
        ({"MEGAGPU_BACKEND": "cuda", "MEGAGPU_DEVICES": "٣"}, "not a device index"),
    ],
)
def test_missing_or_malformed_variables_say_what_is_wrong(env, message):
    with pytest.raises(visibility.AssignmentError, match=message):
        visibility.parse_assignment(env)


@given(st.lists(st.integers(0, visibility.MAX_INDEX), unique=True, max_size=16))
def test_indices_come_back_as_written_by_bind(devices):
    text = ",".join(str(d) for d in devices)
    env = {"MEGAGPU_BACKEND": "cuda", "MEGAGPU_DEVICES": text}
    assignment = visibility.parse_assignment(env)
    assert assignment.devices == tuple(devices)
    assert visibility.runtime_variables(assignment, {})["CUDA_VISIBLE_DEVICES"] == text


@given(st.sampled_from(model.BACKENDS), st.text(max_size=40), st.text(max_size=40))
def test_any_text_parses_or_raises_an_assignment_error(backend, devices, nvidia):
    env = {"MEGAGPU_BACKEND": backend, "MEGAGPU_DEVICES": devices, "NVIDIA_VISIBLE_DEVICES": nvidia}
    try:
        got = visibility.runtime_variables(visibility.parse_assignment(env), env)
    except visibility.AssignmentError as e:
        assert "MEGAGPU_DEVICES" in str(e)
    else:
        assert all(isinstance(v, str) for v in got.values())
