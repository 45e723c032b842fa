// vla_edge._policy_io: the Policy's C++ pre/post-processing and pack reading for Python, the same
// code the C ABI (vla_edge_policy.h) runs. FieldError becomes vla_edge.errors.ObservationError and
// PackFault becomes vla_edge.errors.PackError (same fields), so Python callers see one error family.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstring>
#include <string>
#include <vector>

#include "errors.h"
#include "images.h"
#include "normalize.h"
#include "pack_reader.h"
#include "processor.h"
#include "prompt.h"
#include "sha256.h"

namespace py = pybind11;
namespace vp = vla_edge::policy;

namespace {

using U8Array = py::array_t<uint8_t, py::array::c_style>;
using F32Array = py::array_t<float, py::array::c_style | py::array::forcecast>;
using F64Array = py::array_t<double, py::array::c_style | py::array::forcecast>;

template <typename T>
py::array_t<T> to_array(const std::vector<T>& v, std::vector<py::ssize_t> shape) {
    py::array_t<T> out(shape);
    std::memcpy(out.mutable_data(), v.data(), sizeof(T) * v.size());
    return out;
}

U8Array resize_with_pad(U8Array image, int size) {
    if (image.ndim() != 3 || image.shape(2) != 3) throw std::invalid_argument("image must be HxWx3 uint8");
    std::vector<uint8_t> out;
    {
        py::gil_scoped_release release;
        out = vp::resize_with_pad(image.data(), static_cast<int>(image.shape(0)), static_cast<int>(image.shape(1)), size);
    }
    return to_array(out, {size, size, 3});
}

U8Array resize_bilinear(U8Array image, int new_h, int new_w) {
    if (image.ndim() != 3 || image.shape(2) != 3) throw std::invalid_argument("image must be HxWx3 uint8");
    const auto out = vp::resize_bilinear(image.data(), static_cast<int>(image.shape(0)), static_cast<int>(image.shape(1)), new_h, new_w);
    return to_array(out, {new_h, new_w, 3});
}

py::array_t<float> to_model_range(U8Array image) {
    py::array_t<float> out(std::vector<py::ssize_t>(image.shape(), image.shape() + image.ndim()));
    vp::to_model_range(image.data(), static_cast<size_t>(image.size()), out.mutable_data());
    return out;
}

vp::QuantileStats quantiles(F64Array q01, F64Array q99) {
    vp::QuantileStats s;
    s.q01.assign(q01.data(), q01.data() + q01.size());
    s.q99.assign(q99.data(), q99.data() + q99.size());
    return s;
}

// x: [..., dim] float64 -> float32 of the same shape.
template <bool kInverse>
py::array_t<float> quantile_map(F64Array q01, F64Array q99, F64Array x) {
    if (x.ndim() < 1) throw std::invalid_argument("values must have at least one dimension");
    const size_t dim = static_cast<size_t>(x.shape(x.ndim() - 1));
    const size_t rows = dim ? static_cast<size_t>(x.size()) / dim : 0;
    py::array_t<float> out(std::vector<py::ssize_t>(x.shape(), x.shape() + x.ndim()));
    const vp::QuantileStats s = quantiles(q01, q99);
    if (kInverse) s.unnormalize(x.data(), rows, dim, out.mutable_data());
    else s.normalize(x.data(), rows, dim, out.mutable_data());
    return out;
}

py::array_t<int64_t> discretize_state(F64Array normalized) {
    const auto bins = vp::discretize_state(normalized.data(), static_cast<size_t>(normalized.size()));
    return to_array(std::vector<int64_t>(bins.begin(), bins.end()), {static_cast<py::ssize_t>(bins.size())});
}

py::array_t<int32_t> encode(const vp::PromptTokenizer& tok, const std::string& prompt, py::object state) {
    std::vector<int32_t> ids;
    if (state.is_none()) {
        ids = tok.encode(prompt, nullptr, 0);
    } else {
        F32Array s = py::cast<F32Array>(state);
        ids = tok.encode(prompt, s.data(), static_cast<size_t>(s.size()));
    }
    return to_array(ids, {static_cast<py::ssize_t>(ids.size())});
}

vp::ProcessorSpec spec_from_dict(const py::dict& d) {
    vp::ProcessorSpec s;
    s.image_size = d["image_size"].cast<int>();
    s.slot_cameras = d["slot_cameras"].cast<std::vector<std::pair<std::string, std::string>>>();
    s.required_cameras = d["required_cameras"].cast<std::vector<std::string>>();
    s.state_dim = d["state_dim"].cast<int>();
    s.action_dim = d["action_dim"].cast<int>();
    s.model_action_dim = d["model_action_dim"].cast<int>();
    s.horizon = d["horizon"].cast<int>();
    s.delta_mask = d["delta_mask"].cast<std::vector<bool>>();
    s.state_stats = quantiles(d["state_q01"].cast<F64Array>(), d["state_q99"].cast<F64Array>());
    s.action_stats = quantiles(d["action_q01"].cast<F64Array>(), d["action_q99"].cast<F64Array>());
    s.tokenizer_path = d["tokenizer_path"].cast<std::string>();
    s.max_token_len = d["max_token_len"].cast<int>();
    s.discrete_state = d["discrete_state"].cast<bool>();
    s.bos_id = d["bos_id"].cast<int>();
    s.model_vocab_size = d["model_vocab_size"].cast<int>();
    s.reject_unknown_cameras = d.contains("reject_unknown_cameras") && d["reject_unknown_cameras"].cast<bool>();
    return s;
}

py::tuple prepare(const vp::ObservationProcessor& proc, const py::dict& cameras, F64Array state, const std::string& prompt) {
    std::vector<U8Array> held;
    std::vector<vp::CameraView> views;
    for (const auto& [key, value] : cameras) {
        const std::string name = py::cast<std::string>(key);
        U8Array image = py::cast<U8Array>(value);
        vp::CameraView v{name, image.data(), image.ndim() >= 1 ? static_cast<int>(image.shape(0)) : 0,
                         image.ndim() >= 2 ? static_cast<int>(image.shape(1)) : 0,
                         image.ndim() == 3 ? static_cast<int>(image.shape(2)) : 0};
        held.push_back(std::move(image));
        views.push_back(v);
    }
    if (state.ndim() != 1) throw vp::FieldError("state", "1-D float array", "ndim " + std::to_string(state.ndim()));
    vp::ModelInputs in;
    {
        py::gil_scoped_release release;
        in = proc.prepare(views, state.data(), static_cast<size_t>(state.size()), prompt);
    }
    const py::ssize_t S = proc.spec().image_size;
    const py::ssize_t n = static_cast<py::ssize_t>(in.slots.size());
    return py::make_tuple(to_array(in.images, {n, S, S, 3}), py::tuple(py::cast(in.slots)),
                          to_array(in.tokens, {static_cast<py::ssize_t>(in.tokens.size())}));
}

py::array_t<float> finish(const vp::ObservationProcessor& proc, F32Array model_actions, F64Array state) {
    if (model_actions.ndim() != 2) throw std::invalid_argument("model actions must be [horizon, action_dim]");
    const auto out = proc.finish(model_actions.data(), model_actions.shape(0), model_actions.shape(1), state.data(),
                                 static_cast<size_t>(state.size()));
    return to_array(out, {model_actions.shape(0), proc.spec().action_dim});
}

// model_actions [horizon, cols] -> robot actions [horizon, len(delta_mask or q01)] (Family.postprocess).
py::array_t<float> actions_to_robot(F64Array q01, F64Array q99, std::vector<bool> delta_mask, int action_dim,
                                    F32Array model_actions, F64Array state) {
    if (model_actions.ndim() != 2) throw std::invalid_argument("model actions must be [horizon, action_dim]");
    const auto out = vp::actions_to_robot(quantiles(q01, q99), delta_mask, static_cast<size_t>(action_dim),
                                          model_actions.data(), model_actions.shape(0), model_actions.shape(1),
                                          state.data(), static_cast<size_t>(state.size()));
    return to_array(out, {model_actions.shape(0), action_dim});
}

py::dict pack_dict(const vp::PackInfo& p) {
    py::dict d;
    d["name"] = p.name;
    d["family"] = p.family;
    d["image_size"] = p.image_size;
    d["horizon"] = p.horizon;
    d["model_action_dim"] = p.model_action_dim;
    d["num_flow_steps"] = p.num_flow_steps;
    d["targets"] = p.targets;
    d["state_names"] = p.state_names;
    d["state_units"] = p.state_units;
    d["action_names"] = p.action_names;
    d["action_units"] = p.action_units;
    d["control_period_s"] = p.control_period_s;
    d["cameras"] = p.cameras;
    d["required_cameras"] = p.required_cameras;
    d["state_q01"] = p.state_stats.q01;
    d["action_q99"] = p.action_stats.q99;
    return d;
}

void raise_python(const char* cls, py::tuple args) {
    py::object error = py::module_::import("vla_edge.errors").attr(cls)(*args);
    PyErr_SetObject(reinterpret_cast<PyObject*>(Py_TYPE(error.ptr())), error.ptr());
}

}  // namespace

PYBIND11_MODULE(_policy_io, m) {
    m.doc() = "pi0.5 pre/post-processing and pack reading in C++ (shared with the C ABI)";
    py::register_exception_translator([](std::exception_ptr p) {
        try {
            if (p) std::rethrow_exception(p);
        } catch (const vp::FieldError& e) {
            raise_python("ObservationError", py::make_tuple(e.field(), e.expected(), e.got()));
        } catch (const vp::PackFault& e) {
            raise_python("PackError", py::make_tuple(e.where(), e.problem()));
        }
    });
    m.def("resize_with_pad", &resize_with_pad, py::arg("image"), py::arg("size"));
    m.def("resize_bilinear", &resize_bilinear, py::arg("image"), py::arg("height"), py::arg("width"));
    m.def("to_model_range", &to_model_range, py::arg("image"));
    m.def("normalize", &quantile_map<false>, py::arg("q01"), py::arg("q99"), py::arg("x"));
    m.def("unnormalize", &quantile_map<true>, py::arg("q01"), py::arg("q99"), py::arg("y"));
    m.def("discretize_state", &discretize_state, py::arg("normalized"));
    m.def("actions_to_robot", &actions_to_robot, py::arg("q01"), py::arg("q99"), py::arg("delta_mask"),
          py::arg("action_dim"), py::arg("model_actions"), py::arg("state"));
    m.def("clean_prompt", &vp::clean_prompt, py::arg("prompt"));
    m.def("sha256_file", &vp::sha256_file, py::arg("path"));
    py::class_<vp::PromptTokenizer>(m, "PromptTokenizer")
        .def(py::init<const std::string&, int, bool, int>(), py::arg("model_path"), py::arg("max_len"),
             py::arg("discrete_state"), py::arg("bos_id"))
        .def_property_readonly("vocab_size", &vp::PromptTokenizer::vocab_size)
        .def("encode", &encode, py::arg("prompt"), py::arg("normalized_state"));
    py::class_<vp::ObservationProcessor>(m, "ObservationProcessor")
        .def(py::init([](const py::dict& spec) { return new vp::ObservationProcessor(spec_from_dict(spec)); }),
             py::arg("spec"))
        .def_property_readonly("tokenizer_vocab_size", &vp::ObservationProcessor::tokenizer_vocab_size)
        .def("prepare", &prepare, py::arg("cameras"), py::arg("state"), py::arg("prompt"))
        .def("check_noise", [](const vp::ObservationProcessor& p, F32Array noise) { p.check_noise(noise.data(), noise.size()); },
             py::arg("noise"))
        .def("finish", &finish, py::arg("model_actions"), py::arg("state"));
    m.def("read_pack", [](const std::string& dir, const std::string& check) {
        const vp::Check c = check == "sha256" ? vp::Check::kSha256 : check == "size" ? vp::Check::kSize : vp::Check::kAuto;
        return pack_dict(vp::read_pack(dir, c));
    }, py::arg("directory"), py::arg("check") = "auto");
}
