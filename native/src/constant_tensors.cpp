#include "constant_tensors.h"

#include <stdexcept>

namespace vla_edge {

void ConstantTensors::compute(ggml_backend_t backend, size_t max_nodes,
                              const std::function<Definition(ggml_context*)>& define) {
    release();
    std::vector<uint8_t> meta(ggml_tensor_overhead() * max_nodes + ggml_graph_overhead_custom(max_nodes, false));
    ggml_init_params gp{meta.size(), meta.data(), /*no_alloc=*/true};
    ggml_context* graph_ctx = ggml_init(gp);
    ggml_gallocr_t alloc = nullptr;
    try {
        ggml_cgraph* gf = ggml_new_graph_custom(graph_ctx, max_nodes, false);
        const Definition def = define(graph_ctx);
        ggml_init_params cp{ggml_tensor_overhead() * (def.constants.size() + 1), nullptr, /*no_alloc=*/true};
        ctx_ = ggml_init(cp);
        std::vector<ggml_tensor*> kept;
        for (const Constant& c : def.constants) {
            ggml_tensor* t = ggml_new_tensor(ctx_, c.type, ggml_n_dims(c.value), c.value->ne);
            ggml_set_name(t, c.name.c_str());
            kept.push_back(t);
            by_name_[c.name] = t;
        }
        buffer_ = ggml_backend_alloc_ctx_tensors(ctx_, backend);
        if (!buffer_ && !def.constants.empty()) throw std::runtime_error("cannot allocate device memory for constant tensors");
        for (size_t i = 0; i < kept.size(); ++i) {
            ggml_build_forward_expand(gf, ggml_cpy(graph_ctx, def.constants[i].value, kept[i]));
        }
        alloc = ggml_gallocr_new(ggml_backend_get_default_buffer_type(backend));
        if (!ggml_gallocr_alloc_graph(alloc, gf)) throw std::runtime_error("cannot allocate compute memory for constant tensors");
        for (const Input& in : def.inputs) ggml_backend_tensor_set(in.tensor, in.data, 0, ggml_nbytes(in.tensor));
        if (ggml_backend_graph_compute(backend, gf) != GGML_STATUS_SUCCESS) {
            throw std::runtime_error("computing constant tensors failed on backend " + std::string(ggml_backend_name(backend)));
        }
        ggml_backend_synchronize(backend);
    } catch (...) {
        if (alloc) ggml_gallocr_free(alloc);
        ggml_free(graph_ctx);
        release();
        throw;
    }
    ggml_gallocr_free(alloc);
    ggml_free(graph_ctx);
}

ggml_tensor* ConstantTensors::find(const std::string& name) const {
    auto it = by_name_.find(name);
    return it == by_name_.end() ? nullptr : it->second;
}

ggml_tensor* ConstantTensors::get(const std::string& name) const {
    ggml_tensor* t = find(name);
    if (!t) throw std::runtime_error("constant tensor '" + name + "' was not computed");
    return t;
}

void ConstantTensors::release() {
    by_name_.clear();
    if (buffer_) ggml_backend_buffer_free(buffer_);
    if (ctx_) ggml_free(ctx_);
    buffer_ = nullptr;
    ctx_ = nullptr;
}

}  // namespace vla_edge
