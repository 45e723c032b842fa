#include <sys/stat.h>

#include <exception>
#include <memory>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "c_api_guard.h"
#include "pi05_runtime.h"
#include "vla_edge.h"

struct vla_edge_runtime {
    std::unique_ptr<vla_edge::Pi05Runtime> rt;
    int steps = 10;
    std::vector<float> chunk;
    std::vector<float> images;
};

namespace {

thread_local std::string g_last_error;

int set_error(int code, const std::string& what) {
    g_last_error = what;
    return code;
}

std::string weights_path(const std::string& path) {
    struct stat st {};
    if (::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) return path + "/pi05.gguf";
    return path;
}

template <typename F>
int guarded(F&& f) {
    return vla_edge::guarded_call(g_last_error, std::forward<F>(f), [](const std::exception& e) -> int {
        const bool argument = dynamic_cast<const std::invalid_argument*>(&e) || dynamic_cast<const std::out_of_range*>(&e);
        return argument ? VLA_EDGE_ERR_ARGUMENT : VLA_EDGE_ERR_RUNTIME;
    });
}

}  // namespace

extern "C" {

void vla_edge_default_options(vla_edge_options* o) {
    if (!o) return;
    o->n_threads = 4;
    o->num_flow_steps = 10;
    o->device = "cpu";
}

vla_edge_runtime* vla_edge_create(const char* path, const vla_edge_options* options) {
    if (!path) {
        set_error(VLA_EDGE_ERR_ARGUMENT, "path is NULL");
        return nullptr;
    }
    vla_edge_options o;
    vla_edge_default_options(&o);
    if (options) o = *options;
    if (o.num_flow_steps < 1) {
        set_error(VLA_EDGE_ERR_ARGUMENT, "num_flow_steps must be >= 1, got " + std::to_string(o.num_flow_steps));
        return nullptr;
    }
    try {
        auto handle = std::make_unique<vla_edge_runtime>();
        vla_edge::RuntimeOptions ro;
        ro.n_threads = o.n_threads;
        ro.device = o.device ? o.device : "cpu";
        handle->rt = std::make_unique<vla_edge::Pi05Runtime>(weights_path(path), ro);
        handle->steps = o.num_flow_steps;
        g_last_error.clear();
        return handle.release();
    } catch (const std::invalid_argument& e) {
        set_error(VLA_EDGE_ERR_ARGUMENT, e.what());
    } catch (const std::exception& e) {
        set_error(VLA_EDGE_ERR_PACK, e.what());
    }
    return nullptr;
}

int vla_edge_image_size(const vla_edge_runtime* rt) { return rt ? rt->rt->hparams().image_size : -1; }

int vla_edge_chunk_shape(const vla_edge_runtime* rt, int* horizon, int* action_dim) {
    if (!rt || !horizon || !action_dim) return set_error(VLA_EDGE_ERR_ARGUMENT, "NULL argument");
    *horizon = rt->rt->hparams().horizon;
    *action_dim = rt->rt->hparams().action_dim;
    return VLA_EDGE_OK;
}

int vla_edge_infer(vla_edge_runtime* rt, const vla_edge_image* images, int n_images, const int32_t* tokens,
                   int n_tokens, const float* noise, uint64_t seed) {
    if (!rt || !images || !tokens) return set_error(VLA_EDGE_ERR_ARGUMENT, "NULL runtime, images or tokens");
    return guarded([&] {
        const auto& hp = rt->rt->hparams();
        const int S = hp.image_size;
        if (n_images < 1 || n_images > 3) throw std::invalid_argument("n_images must be 1..3, got " + std::to_string(n_images));
        rt->images.resize(static_cast<size_t>(n_images) * S * S * 3);
        for (int i = 0; i < n_images; ++i) {
            const vla_edge_image& im = images[i];
            if (!im.rgb) throw std::invalid_argument("image " + std::to_string(i) + " has a NULL buffer");
            if (im.width != S || im.height != S) {
                throw std::invalid_argument("image " + std::to_string(i) + " is " + std::to_string(im.width) + "x" +
                                            std::to_string(im.height) + ", expected " + std::to_string(S) + "x" +
                                            std::to_string(S) + " (resize-with-pad first)");
            }
            float* dst = rt->images.data() + static_cast<size_t>(i) * S * S * 3;
            for (size_t k = 0; k < static_cast<size_t>(S) * S * 3; ++k) dst[k] = im.rgb[k] / 255.0f * 2.0f - 1.0f;
        }
        const size_t n = static_cast<size_t>(hp.horizon) * hp.action_dim;
        std::vector<float> start(n);
        if (noise) {
            start.assign(noise, noise + n);
        } else {
            std::mt19937_64 gen(seed);
            std::normal_distribution<float> normal(0.0f, 1.0f);
            for (float& v : start) v = normal(gen);
        }
        std::vector<float> out(n);
        rt->rt->sample_actions(rt->images.data(), n_images, tokens, n_tokens, start.data(), rt->steps, out.data(), nullptr);
        rt->chunk.swap(out);
    });
}

int vla_edge_read_chunk(const vla_edge_runtime* rt, float* out, size_t capacity) {
    if (!rt || !out) return set_error(VLA_EDGE_ERR_ARGUMENT, "NULL runtime or output buffer");
    if (rt->chunk.empty()) return set_error(VLA_EDGE_ERR_ARGUMENT, "no chunk yet: call vla_edge_infer first");
    if (capacity < rt->chunk.size()) {
        return set_error(VLA_EDGE_ERR_ARGUMENT, "output buffer holds " + std::to_string(capacity) + " floats, chunk has " +
                                                    std::to_string(rt->chunk.size()));
    }
    std::copy(rt->chunk.begin(), rt->chunk.end(), out);
    return VLA_EDGE_OK;
}

const char* vla_edge_last_error(void) { return g_last_error.c_str(); }

void vla_edge_destroy(vla_edge_runtime* rt) { delete rt; }

}  // extern "C"
