// vla_edge._native: the C++ runtime and ggml's quantisers for Python. C++ exceptions become
// Python exceptions with the same text (pybind11 maps std::invalid_argument to ValueError,
// std::runtime_error to RuntimeError); nothing returns a status code.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstring>
#include <memory>
#include <optional>
#include <stdexcept>

#include "ggml-cpu.h"
#include "bench.h"
#include "gelu_kernels.h"
#include "pi05_runtime.h"
#include "quantize.h"

namespace py = pybind11;
using vla_edge::Pi05Runtime;

namespace {

using FloatArray = py::array_t<float, py::array::c_style | py::array::forcecast>;
using IntArray = py::array_t<int32_t, py::array::c_style | py::array::forcecast>;

// Wraps a Python callable as the runtime's matmul observer; it runs on the inference thread with
// the GIL taken back for the call (sample_actions releases it) and gets its own copy of the data.
void set_matmul_observer(Pi05Runtime& rt, py::object observer) {
    if (observer.is_none()) {
        rt.set_matmul_observer(nullptr);
        return;
    }
    auto fn = std::make_shared<py::object>(std::move(observer));
    rt.set_matmul_observer([fn](const std::string& name, const float* data, int64_t rows, int64_t cols) {
        py::gil_scoped_acquire gil;
        py::array_t<float> x({rows, cols});
        std::memcpy(x.mutable_data(), data, sizeof(float) * static_cast<size_t>(rows * cols));
        (*fn)(name, x);
    });
}

// One observation's arrays checked against the model's shapes; `which` names it in errors.
vla_edge::SampleInputs sample_inputs(const Pi05Runtime& rt, const FloatArray& images, const IntArray& tokens,
                                     const FloatArray& noise, const std::string& which) {
    const auto& hp = rt.hparams();
    const int S = hp.image_size;
    if (images.ndim() != 4 || images.shape(1) != S || images.shape(2) != S || images.shape(3) != 3) {
        throw std::invalid_argument(which + "images must be [n, " + std::to_string(S) + ", " + std::to_string(S) +
                                    ", 3] float32");
    }
    if (tokens.ndim() != 1) throw std::invalid_argument(which + "tokens must be 1-D int32");
    if (noise.ndim() != 2 || noise.shape(0) != hp.horizon || noise.shape(1) != hp.action_dim) {
        throw std::invalid_argument(which + "noise must be [" + std::to_string(hp.horizon) + ", " +
                                    std::to_string(hp.action_dim) + "] float32");
    }
    return {images.data(), static_cast<int>(images.shape(0)), tokens.data(), static_cast<int>(tokens.shape(0)),
            noise.data()};
}

py::dict timing_dict(const vla_edge::StageTimes& times) {
    py::dict timings;
    for (const auto& [name, ms] : times) timings[py::str(name)] = ms;
    return timings;
}

py::tuple sample_actions(Pi05Runtime& rt, FloatArray images, IntArray tokens, FloatArray noise, int num_steps) {
    const auto& hp = rt.hparams();
    const vla_edge::SampleInputs in = sample_inputs(rt, images, tokens, noise, "");
    py::array_t<float> out({hp.horizon, hp.action_dim});
    vla_edge::StageTimes times;
    {
        py::gil_scoped_release release;  // inference does not touch Python objects
        rt.sample_actions_batch({in}, num_steps, out.mutable_data(), &times);
    }
    return py::make_tuple(out, timing_dict(times));
}

py::tuple sample_actions_batch(Pi05Runtime& rt, const std::vector<FloatArray>& images,
                               const std::vector<IntArray>& tokens, const std::vector<FloatArray>& noise,
                               int num_steps) {
    const auto& hp = rt.hparams();
    if (images.empty() || images.size() != tokens.size() || images.size() != noise.size()) {
        throw std::invalid_argument("need one images, tokens and noise array per observation, got " +
                                    std::to_string(images.size()) + ", " + std::to_string(tokens.size()) + " and " +
                                    std::to_string(noise.size()));
    }
    std::vector<vla_edge::SampleInputs> batch;  // the arrays above keep the memory alive
    for (size_t b = 0; b < images.size(); ++b) {
        batch.push_back(sample_inputs(rt, images[b], tokens[b], noise[b], "observation " + std::to_string(b) + ": "));
    }
    py::array_t<float> out({static_cast<int>(batch.size()), hp.horizon, hp.action_dim});
    vla_edge::StageTimes times;
    {
        py::gil_scoped_release release;
        rt.sample_actions_batch(batch, num_steps, out.mutable_data(), &times);
    }
    return py::make_tuple(out, timing_dict(times));
}

py::array_t<uint8_t> quantize(FloatArray values, const std::string& type_name, std::optional<FloatArray> importance) {
    if (values.ndim() != 2) throw std::invalid_argument("quantize expects a 2-D float32 array [rows, n_per_row]");
    const ggml_type type = vla_edge::type_from_name(type_name);
    const int64_t rows = values.shape(0), n = values.shape(1);
    const float* weights = nullptr;
    if (importance) {
        if (importance->ndim() != 1 || importance->shape(0) != n) {
            throw std::invalid_argument("importance must be a 1-D float32 array of " + std::to_string(n) +
                                        " values (one per input column)");
        }
        weights = importance->data();
    }
    const size_t row_bytes = ggml_row_size(type, n);
    py::array_t<uint8_t> out({static_cast<py::ssize_t>(rows), static_cast<py::ssize_t>(row_bytes)});
    {
        py::gil_scoped_release release;
        vla_edge::quantize_rows(type, values.data(), out.mutable_data(), rows, n, weights);
    }
    return out;
}

py::array_t<uint16_t> widen(py::array_t<uint8_t, py::array::c_style | py::array::forcecast> rows,
                             const std::string& type_name, int64_t n_per_row, int threads, const std::string& to_name) {
    const ggml_type type = vla_edge::type_from_name(type_name);
    const ggml_type to = vla_edge::type_from_name(to_name);
    if (rows.ndim() != 2 || static_cast<size_t>(rows.shape(1)) != ggml_row_size(type, n_per_row)) {
        throw std::invalid_argument("widen: " + type_name + " rows of " + std::to_string(n_per_row) + " values take " +
                                    std::to_string(ggml_row_size(type, n_per_row)) + " bytes, got a " +
                                    std::to_string(rows.ndim()) + "-D array" +
                                    (rows.ndim() == 2 ? " of " + std::to_string(rows.shape(1)) + "-byte rows" : ""));
    }
    const int64_t n_rows = rows.shape(0);
    py::array_t<uint16_t> out({static_cast<py::ssize_t>(n_rows), static_cast<py::ssize_t>(n_per_row)});
    {
        py::gil_scoped_release release;
        vla_edge::widen_rows(type, rows.data(), to, out.mutable_data(), n_rows, n_per_row, threads);
    }
    return out;
}

std::string system_info() {
    std::string s = "ggml cpu:";
    auto add = [&](const char* name, int on) {
        if (on) s += std::string(" ") + name;
    };
    add("AVX", ggml_cpu_has_avx());
    add("AVX2", ggml_cpu_has_avx2());
    add("AVX512F", ggml_cpu_has_avx512());
    add("FMA", ggml_cpu_has_fma());
    add("F16C", ggml_cpu_has_f16c());
    add("NEON", ggml_cpu_has_neon());
#ifdef VLA_EDGE_WITH_CUDA
    s += " | CUDA backend built";
#endif
    return s;
}

}  // namespace

PYBIND11_MODULE(_native, m) {
    m.doc() = "vla-edge native core (ggml)";
    py::class_<Pi05Runtime>(m, "Pi05Runtime")
        .def(py::init([](const std::string& path, int n_threads, const std::string& device, bool unfused_ops,
                         const std::string& expert_graph, const std::string& device_weights,
                         const std::string& cpu_weights, const std::string& attention, const std::string& fused_matrices) {
                 vla_edge::RuntimeOptions o;
                 o.n_threads = n_threads;
                 o.device = device;
                 o.unfused_ops = unfused_ops;
                 o.expert_graph = expert_graph;
                 o.device_weights = device_weights;
                 o.cpu_weights = cpu_weights;
                 o.attention = attention;
                 o.fused_matrices = fused_matrices;
                 return std::make_unique<Pi05Runtime>(path, o);
             }),
             py::arg("path"), py::arg("n_threads") = 4, py::arg("device") = "cpu", py::arg("unfused_ops") = false,
             py::arg("expert_graph") = "auto", py::arg("device_weights") = "auto",
             py::arg("cpu_weights") = "mapped", py::arg("attention") = "auto",
             py::arg("fused_matrices") = "auto")
        .def_property_readonly("cpu_weights", [](const Pi05Runtime& r) { return vla_edge::to_string(r.weights().cpu_weights()); })
        .def_property_readonly("repacked_bytes", [](const Pi05Runtime& r) { return r.weights().repacked_bytes(); })
        .def_property_readonly("repacked_tensors", [](const Pi05Runtime& r) { return r.weights().repacked_tensors(); })
        .def_property_readonly("fused_ops", [](const Pi05Runtime& r) { return r.hparams().fused_cpu_ops; })
        .def_property_readonly("adjacent_norm_chains", &Pi05Runtime::adjacent_norm_chains)
        .def_property_readonly("adjacent_rope_set_rows", &Pi05Runtime::adjacent_rope_set_rows)
        .def_property_readonly("shape_markers", &Pi05Runtime::shape_markers)
        .def_property_readonly("expert_kv_pad", &Pi05Runtime::expert_kv_pad)
        .def_property_readonly("constant_tensors", &Pi05Runtime::constant_tensors)
        .def_property_readonly("constants", &Pi05Runtime::constants_note)
        .def_property_readonly("expert_loop", &Pi05Runtime::expert_loop)
        .def_property_readonly("prefix_loop", &Pi05Runtime::prefix_loop)
        .def_property_readonly("vision_loop", &Pi05Runtime::vision_loop)
        .def("sample_actions", &sample_actions, py::arg("images"), py::arg("tokens"), py::arg("noise"),
             py::arg("num_steps"))
        .def("sample_actions_batch", &sample_actions_batch, py::arg("images"), py::arg("tokens"), py::arg("noise"),
             py::arg("num_steps"),
             "Several observations in one forward pass per stage: lists of per-observation images [n, S, S, 3], "
             "tokens [n] and noise [horizon, action_dim]; returns ([B, horizon, action_dim], stage ms of the batch).")
        .def_property_readonly("horizon", [](const Pi05Runtime& r) { return r.hparams().horizon; })
        .def_property_readonly("action_dim", [](const Pi05Runtime& r) { return r.hparams().action_dim; })
        .def_property_readonly("image_size", [](const Pi05Runtime& r) { return r.hparams().image_size; })
        .def_property_readonly("weight_bytes", &Pi05Runtime::weight_bytes)
        .def_property_readonly("device_weight_bytes", &Pi05Runtime::device_weight_bytes)
        .def_property_readonly("expert_graph", &Pi05Runtime::expert_graph)
        .def_property_readonly("attention", &Pi05Runtime::attention)
        .def_property_readonly("gelu_ops", &Pi05Runtime::gelu_ops)
        .def_property_readonly("fused_matrices", &Pi05Runtime::fused_matrices)
        .def_property_readonly("device_weights", &Pi05Runtime::device_weights)
        .def_property_readonly("compute_buffer_bytes", &Pi05Runtime::compute_buffer_bytes)
        .def_property_readonly("graph_builds", &Pi05Runtime::graph_builds)
        .def_property_readonly("n_threads", &Pi05Runtime::n_threads)
        .def_property_readonly("backend", &Pi05Runtime::backend_name)
        .def("set_matmul_observer", &set_matmul_observer, py::arg("observer"),
             "observer(weight_name, x [rows, cols] float32) after every graph, or None to stop; graphs are rebuilt");
    m.def(
        "automatic_widening",
        [](size_t widened, size_t free, size_t total, bool discrete, int compute_capability) {
            std::string note;
            const ggml_type to = vla_edge::automatic_widening(widened, free, total, discrete, compute_capability, &note);
            return py::make_tuple(to == GGML_TYPE_COUNT ? "stored" : ggml_type_name(to), note);
        },
        py::arg("widened_bytes"), py::arg("free_bytes"), py::arg("total_bytes"), py::arg("discrete_gpu"),
        py::arg("compute_capability"),
        "device_weights='auto''s rule off the CPU: ('bf16' / 'f16' / 'stored', why); compute capability as 90 for 9.0.");
    m.def(
        "gelu_tanh",
        [](FloatArray x) {
            FloatArray y(x.request().shape);
            vla_edge::gelu_tanh_f32(x.data(), y.mutable_data(), x.size());
            return y;
        },
        py::arg("x"), "The CPU graph's vectorised GELU (tanh form) over a float32 array, for tests.");
    m.def("widen", &widen, py::arg("rows"), py::arg("type"), py::arg("n_per_row"), py::arg("threads"),
          py::arg("to") = "F16",
          "Stored rows [rows, row bytes] decoded to F16 or BF16 (as uint16 bits), as GPU device weights are widened.");
    m.def("quantize", &quantize, py::arg("values"), py::arg("type"), py::arg("importance") = py::none(),
          "Quantise a [rows, n] float32 array with ggml's quantiser; returns [rows, row_bytes] uint8. "
          "importance: optional [n] float32 per-column weights (imatrix) for the K-quant quantisers.");
    m.def("system_info", &system_info);
    m.def(
        "bench_matmul",
        [](const std::string& type, int n_out, int n_in, int n_tokens, int threads, int reps, const std::string& layout) {
            py::gil_scoped_release release;
            return vla_edge::bench_matmul(type, n_out, n_in, n_tokens, threads, reps, layout);
        },
        py::arg("type_name"), py::arg("n_out"), py::arg("n_in"), py::arg("n_tokens"), py::arg("threads"),
        py::arg("reps"), py::arg("layout") = "stored",
        "Mean seconds per ggml mul_mat of an [n_out, n_in] weight with [n_in, n_tokens] F32; layout 'stored' or "
        "'repacked' (ggml's interleaved layout; -1 when ggml has none for this type/shape here).");
}
