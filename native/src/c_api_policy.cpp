// The Policy C ABI (vla_edge_policy.h): pack reading and pre/post-processing from
// native/src/policy (the code Python's Policy runs through vla_edge._policy_io) around the
// ggml runtime. Every entry point catches everything: no exception crosses the boundary.
#include <sched.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <exception>
#include <memory>
#include <mutex>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "c_api_guard.h"
#include "errors.h"
#include "pack_reader.h"
#include "pi05_runtime.h"
#include "processor.h"
#include "vla_edge_policy.h"

namespace vp = vla_edge::policy;

struct vla_edge_policy {
    vp::PackInfo pack;
    std::unique_ptr<vp::ObservationProcessor> processor;
    std::unique_ptr<vla_edge::Pi05Runtime> runtime;
    std::mt19937_64 rng;
    std::string target = "x86";
    std::vector<std::string> stage_names;  // storage for the last inference's vla_edge_stage_time.stage
    std::mutex lock;
};

namespace {

thread_local std::string g_last_error;

// The pack does not list the target asked for.
struct TargetError : std::runtime_error {
    using std::runtime_error::runtime_error;
};

int fail(int code, const std::string& what) {
    g_last_error = what;
    return code;
}

// Maps what the C++ side throws to the ABI's codes, keeping its text.
template <typename F>
int guarded(F&& f) {
    return vla_edge::guarded_call(g_last_error, std::forward<F>(f), [](const std::exception& e) -> int {
        if (dynamic_cast<const vp::FieldError*>(&e)) return VLA_EDGE_ERR_OBSERVATION;
        if (dynamic_cast<const vp::PackFault*>(&e)) return VLA_EDGE_ERR_PACK;
        if (dynamic_cast<const TargetError*>(&e)) return VLA_EDGE_ERR_TARGET;
        if (dynamic_cast<const std::invalid_argument*>(&e)) return VLA_EDGE_ERR_ARGUMENT;
        return VLA_EDGE_ERR_RUNTIME;
    });
}

int available_cpus() {
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof(set), &set) == 0) return std::max(1, CPU_COUNT(&set));
    return 1;
}

std::string list(const std::vector<std::string>& v) {
    std::string out = "[";
    for (size_t i = 0; i < v.size(); ++i) out += (i ? ", '" : "'") + v[i] + "'";
    return out + "]";
}

const char* at(const std::vector<std::string>& v, int i) {
    return (i >= 0 && static_cast<size_t>(i) < v.size()) ? v[i].c_str() : nullptr;
}

double ms_since(std::chrono::steady_clock::time_point t) {
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t).count();
}

}  // namespace

extern "C" {

void vla_edge_policy_default_options(vla_edge_policy_options* o) {
    if (!o) return;
    o->target = "x86";
    o->n_threads = 0;
    o->check = "auto";
    o->seed = 0;
}

int vla_edge_policy_open(const char* pack_dir, const vla_edge_policy_options* options, vla_edge_policy** out) {
    if (!pack_dir || !out) return fail(VLA_EDGE_ERR_ARGUMENT, "pack_dir and out must not be NULL");
    *out = nullptr;
    vla_edge_policy_options o;
    vla_edge_policy_default_options(&o);
    if (options) o = *options;
    const std::string target = o.target ? o.target : "x86";
    if (target != "x86") {
        return fail(VLA_EDGE_ERR_TARGET, "target '" + target + "' is not available through the C ABI (it runs the "
                                         "'x86' target; load other targets from Python with load_policy)");
    }
    const std::string check = o.check ? o.check : "auto";
    if (check != "auto" && check != "sha256" && check != "size") {
        return fail(VLA_EDGE_ERR_ARGUMENT, "check must be 'auto', 'sha256' or 'size', got '" + check + "'");
    }
    if (o.n_threads < 0) return fail(VLA_EDGE_ERR_ARGUMENT, "n_threads must be >= 0 (0 = all CPUs), got " + std::to_string(o.n_threads));
    auto handle = std::make_unique<vla_edge_policy>();
    const int rc = guarded([&] {
        handle->pack = vp::read_pack(pack_dir, check == "sha256" ? vp::Check::kSha256
                                               : check == "size" ? vp::Check::kSize : vp::Check::kAuto);
        const auto& targets = handle->pack.targets;
        if (std::find(targets.begin(), targets.end(), target) == targets.end()) {
            throw TargetError("pack '" + handle->pack.name + "' does not list target '" + target + "' (it supports " +
                              list(targets) + ")");
        }
        handle->processor = std::make_unique<vp::ObservationProcessor>([&] {
            vp::ProcessorSpec spec = vp::processor_spec(handle->pack);
            spec.reject_unknown_cameras = true;  // a misspelt camera must not be dropped silently
            return spec;
        }());
        vla_edge::RuntimeOptions ro;
        ro.n_threads = o.n_threads == 0 ? available_cpus() : o.n_threads;
        const std::string weights = handle->pack.path("weights");
        try {
            handle->runtime = std::make_unique<vla_edge::Pi05Runtime>(weights, ro);
        } catch (const std::invalid_argument&) {
            throw;
        } catch (const std::exception& e) {
            throw vp::PackFault(weights, e.what());
        }
        const auto& hp = handle->runtime->hparams();
        if (hp.horizon != handle->pack.horizon || hp.action_dim != handle->pack.model_action_dim ||
            hp.image_size != handle->pack.image_size) {
            throw vp::PackFault(weights, "GGUF metadata disagrees with pack.yaml on horizon/action_dim/image_size");
        }
        handle->rng.seed(o.seed);
    });
    if (rc != VLA_EDGE_OK) return rc;
    *out = handle.release();
    return VLA_EDGE_OK;
}

int vla_edge_policy_describe(const vla_edge_policy* p, vla_edge_policy_info* info) {
    if (!p || !info) return fail(VLA_EDGE_ERR_ARGUMENT, "policy and info must not be NULL");
    info->name = p->pack.name.c_str();
    info->target = p->target.c_str();
    info->horizon = p->pack.horizon;
    info->action_dim = static_cast<int>(p->pack.action_names.size());
    info->state_dim = static_cast<int>(p->pack.state_names.size());
    info->n_cameras = static_cast<int>(p->processor->spec().slot_cameras.size());
    info->image_size = p->pack.image_size;
    info->noise_rows = p->pack.horizon;
    info->noise_cols = p->pack.model_action_dim;
    info->control_period_s = p->pack.control_period_s;
    g_last_error.clear();
    return VLA_EDGE_OK;
}

const char* vla_edge_policy_action_name(const vla_edge_policy* p, int i) { return p ? at(p->pack.action_names, i) : nullptr; }
const char* vla_edge_policy_action_unit(const vla_edge_policy* p, int i) { return p ? at(p->pack.action_units, i) : nullptr; }
const char* vla_edge_policy_state_name(const vla_edge_policy* p, int i) { return p ? at(p->pack.state_names, i) : nullptr; }
const char* vla_edge_policy_state_unit(const vla_edge_policy* p, int i) { return p ? at(p->pack.state_units, i) : nullptr; }

const char* vla_edge_policy_camera(const vla_edge_policy* p, int i) {
    if (!p) return nullptr;
    const auto& sc = p->processor->spec().slot_cameras;
    return (i >= 0 && static_cast<size_t>(i) < sc.size()) ? sc[i].second.c_str() : nullptr;
}

const char* vla_edge_policy_camera_slot(const vla_edge_policy* p, int i) {
    if (!p) return nullptr;
    const auto& sc = p->processor->spec().slot_cameras;
    return (i >= 0 && static_cast<size_t>(i) < sc.size()) ? sc[i].first.c_str() : nullptr;
}

int vla_edge_policy_camera_required(const vla_edge_policy* p, int i) {
    const char* cam = vla_edge_policy_camera(p, i);
    if (!cam) return 0;
    const auto& req = p->pack.required_cameras;
    return std::find(req.begin(), req.end(), std::string(cam)) != req.end();
}

const char* vla_edge_policy_default_prompt(const vla_edge_policy* p) { return p ? p->pack.default_prompt.c_str() : nullptr; }

int vla_edge_policy_infer(vla_edge_policy* p, const vla_edge_camera_image* images, int n_images, const double* state,
                          int state_len, const char* prompt, const float* noise, float* actions, size_t capacity,
                          vla_edge_stage_time* times, int max_times, int* n_times) {
    if (!p || !actions || !prompt) return fail(VLA_EDGE_ERR_ARGUMENT, "policy, actions and prompt must not be NULL");
    if (n_images < 0 || (n_images > 0 && !images)) return fail(VLA_EDGE_ERR_ARGUMENT, "images is NULL or n_images < 0");
    if (state_len < 0) return fail(VLA_EDGE_ERR_ARGUMENT, "state_len must be >= 0");
    if (times && max_times > 0 && !n_times) return fail(VLA_EDGE_ERR_ARGUMENT, "n_times must not be NULL when times is given");
    std::lock_guard<std::mutex> guard(p->lock);
    const size_t n_out = static_cast<size_t>(p->pack.horizon) * p->pack.action_names.size();
    if (capacity < n_out) {
        return fail(VLA_EDGE_ERR_ARGUMENT, "actions holds " + std::to_string(capacity) + " floats, a chunk is " +
                                               std::to_string(p->pack.horizon) + " x " +
                                               std::to_string(p->pack.action_names.size()) + " = " + std::to_string(n_out));
    }
    return guarded([&] {
        const auto t0 = std::chrono::steady_clock::now();
        std::vector<vp::CameraView> views;
        for (int i = 0; i < n_images; ++i) {
            const vla_edge_camera_image& im = images[i];
            if (!im.name) throw vp::FieldError("cameras", "a name for every image", "NULL name for image " + std::to_string(i));
            for (const auto& v : views) {
                if (v.name == im.name) throw vp::FieldError(std::string("cameras.") + im.name, "one image per camera", "two");
            }
            views.push_back({im.name, im.rgb, im.height, im.width, 3});
        }
        const size_t n_noise = static_cast<size_t>(p->pack.horizon) * p->pack.model_action_dim;
        std::vector<float> start(n_noise);
        if (noise) {
            start.assign(noise, noise + n_noise);
            p->processor->check_noise(start.data(), start.size());
        } else {
            std::normal_distribution<float> normal(0.0f, 1.0f);
            for (float& v : start) v = normal(p->rng);
        }
        const vp::ModelInputs in = p->processor->prepare(views, state, static_cast<size_t>(state_len), prompt);
        const double pre_ms = ms_since(t0);
        std::vector<float> model(n_noise);
        vla_edge::StageTimes stages;
        p->runtime->sample_actions(in.images.data(), static_cast<int>(in.slots.size()), in.tokens.data(),
                                   static_cast<int>(in.tokens.size()), start.data(), p->pack.num_flow_steps,
                                   model.data(), &stages);
        const auto t2 = std::chrono::steady_clock::now();
        const std::vector<float> out = p->processor->finish(model.data(), p->pack.horizon, p->pack.model_action_dim,
                                                            state, static_cast<size_t>(state_len));
        const double post_ms = ms_since(t2);
        std::copy(out.begin(), out.end(), actions);
        if (times && max_times > 0) {
            stages.insert(stages.begin(), {"preprocess", pre_ms});
            stages.emplace_back("postprocess", post_ms);
            stages.emplace_back("total", ms_since(t0));
            p->stage_names.clear();
            for (const auto& s : stages) p->stage_names.push_back(s.first);
            const int n = std::min<int>(max_times, static_cast<int>(stages.size()));
            for (int i = 0; i < n; ++i) times[i] = {p->stage_names[i].c_str(), stages[i].second};
            *n_times = n;
        }
    });
}

const char* vla_edge_policy_last_error(void) { return g_last_error.c_str(); }

void vla_edge_policy_close(vla_edge_policy* p) { delete p; }

}  // extern "C"
