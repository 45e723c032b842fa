// Tensors that depend on the weights (and fixed settings) only, computed once on the backend and
// then read by every call's graph as constants instead of being recomputed in each graph.
#pragma once

#include <functional>
#include <string>
#include <unordered_map>
#include <vector>

#include "ggml-alloc.h"
#include "ggml-backend.h"
#include "ggml.h"

namespace vla_edge {

class ConstantTensors {
  public:
    // One constant: `value`, a node of the definition graph, kept under `name` as `type`.
    struct Constant {
        std::string name;
        ggml_tensor* value;
        ggml_type type;
    };
    // An input of the definition graph and the host bytes it is set from before the one compute.
    struct Input {
        ggml_tensor* tensor;
        const void* data;
    };
    struct Definition {
        std::vector<Constant> constants;
        std::vector<Input> inputs;
    };

    ConstantTensors() = default;
    ConstantTensors(const ConstantTensors&) = delete;
    ConstantTensors& operator=(const ConstantTensors&) = delete;
    ~ConstantTensors() { release(); }

    // Replaces what was held: `define` adds the constants' graph to a fresh context (no_alloc, room
    // for `max_nodes` nodes); each constant is copied (and converted) into memory of `backend` that
    // lives until release(), the graph runs once and its working memory is freed again.
    void compute(ggml_backend_t backend, size_t max_nodes, const std::function<Definition(ggml_context*)>& define);
    ggml_tensor* find(const std::string& name) const;  // nullptr if absent
    ggml_tensor* get(const std::string& name) const;   // throws naming the constant if absent
    bool empty() const { return by_name_.empty(); }
    size_t size() const { return by_name_.size(); }
    void release();

  private:
    ggml_context* ctx_ = nullptr;
    ggml_backend_buffer_t buffer_ = nullptr;
    std::unordered_map<std::string, ggml_tensor*> by_name_;
};

}  // namespace vla_edge
