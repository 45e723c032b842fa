// How the C ABIs turn C++ exceptions into error codes: one place, so every entry point of every
// ABI catches everything (nothing crosses the boundary) and keeps the text for its last_error.
#pragma once

#include <exception>
#include <new>
#include <string>
#include <utility>

#include "vla_edge.h"

namespace vla_edge {

// Runs f; on success clears last_error and returns VLA_EDGE_OK. Whatever f throws is stored in
// last_error and mapped to a code: classify(e) for a std::exception (most specific type first),
// VLA_EDGE_ERR_RUNTIME otherwise.
template <typename F, typename Classify>
int guarded_call(std::string& last_error, F&& f, Classify&& classify) {
    try {
        std::forward<F>(f)();
        last_error.clear();
        return VLA_EDGE_OK;
    } catch (const std::bad_alloc&) {
        last_error = "out of memory";
        return VLA_EDGE_ERR_RUNTIME;
    } catch (const std::exception& e) {
        last_error = e.what();
        return classify(e);
    } catch (...) {
        last_error = "unknown error";
        return VLA_EDGE_ERR_RUNTIME;
    }
}

}  // namespace vla_edge
