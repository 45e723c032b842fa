/* vla-edge Policy C ABI: a whole pack, from camera images + state + prompt to actions in the
 * robot's units, without Python. The stable boundary for vendor robot software (C and C++).
 *
 * What it does is what Python's `load_policy(pack, target="x86")` + `Policy.infer` do, with the
 * same C++ code for every step Python runs too (native/src/policy): pack.yaml read and every
 * listed file's size + sha256 checked, resize-with-pad of each camera image to the model size,
 * state quantile-normalisation and its 256 bins written into the prompt, SentencePiece
 * tokenisation, the model (pi0.5 on ggml, the `x86` target), un-normalisation and crop to the
 * robot's action dimensions (+ state for delta dimensions).
 *
 * Errors: every function returns VLA_EDGE_OK (0) or a negative VLA_EDGE_ERR_* code; then
 * vla_edge_policy_last_error() names the file, manifest field or observation field and what was
 * expected, e.g. "observation field 'state': expected length 6, got length 5". No C++ exception
 * crosses the ABI. On error nothing is written to your output buffers.
 *
 * Ownership: every pointer you pass is borrowed for the call only (the policy copies what it
 * keeps). vla_edge_policy_open gives you a handle; release it with vla_edge_policy_close.
 * Strings returned by the describe functions belong to the handle and live until it is closed.
 * vla_edge_policy_last_error() is per thread and valid until your next call on that thread.
 *
 * Threads: a handle may be used from several threads; calls on one handle are serialised by a
 * lock inside it (one inference at a time per handle; the model itself runs on n_threads
 * threads). Different handles are independent.
 */
#ifndef VLA_EDGE_POLICY_H
#define VLA_EDGE_POLICY_H

#include <stddef.h>
#include <stdint.h>

#include "vla_edge.h" /* VLA_EDGE_API, VLA_EDGE_OK and the error codes below, the safety filter */

#ifdef __cplusplus
extern "C" {
#endif

enum {
    /* VLA_EDGE_ERR_ARGUMENT (-1): a NULL pointer, a too-small output buffer, an unknown option.
     * VLA_EDGE_ERR_PACK (-2): the pack is missing, malformed, or a file fails its size/sha256.
     * VLA_EDGE_ERR_RUNTIME (-3): the computation failed. */
    VLA_EDGE_ERR_OBSERVATION = -4, /* an image / state / prompt / noise does not fit the pack */
    VLA_EDGE_ERR_TARGET = -5,      /* the target is unknown, not built here, or not in the pack */
};

typedef struct vla_edge_policy vla_edge_policy;

typedef struct {
    const char* target; /* "x86" (the only target of the C ABI; others are refused by name) */
    int n_threads;      /* model threads; 0 = every CPU this process may run on */
    const char* check;  /* file checks at open: "auto" (sha256 up to 2 GiB, size above), "sha256", "size" */
    uint64_t seed;      /* noise generator seed, used when vla_edge_policy_infer gets noise = NULL */
} vla_edge_policy_options;

typedef struct {
    const char* name;   /* pack name */
    const char* target; /* "x86" */
    int horizon;        /* actions per chunk */
    int action_dim;     /* robot action dimensions (length of one action row) */
    int state_dim;      /* robot state length infer expects */
    int n_cameras;      /* cameras the pack maps to model slots */
    int image_size;     /* model image side; any input size is resized-with-pad to it */
    int noise_rows, noise_cols; /* shape of the optional noise (horizon x model action width) */
    double control_period_s;    /* time between consecutive action rows */
} vla_edge_policy_info;

/* One camera image: height x width x 3 uint8, row-major RGB, any size. */
typedef struct {
    const char* name; /* the robot camera name the pack maps (vla_edge_policy_camera) */
    const uint8_t* rgb;
    int height;
    int width;
} vla_edge_camera_image;

/* Wall time of one stage of the last inference, milliseconds. */
typedef struct {
    const char* stage; /* "preprocess", the model's stages, "postprocess", "total"; valid until the next infer */
    double ms;
} vla_edge_stage_time;

VLA_EDGE_API void vla_edge_policy_default_options(vla_edge_policy_options* options);

/* Open and check a pack directory (as load_policy does) and load it on the target. */
VLA_EDGE_API int vla_edge_policy_open(const char* pack_dir, const vla_edge_policy_options* options,
                                      vla_edge_policy** out);

VLA_EDGE_API int vla_edge_policy_describe(const vla_edge_policy* policy, vla_edge_policy_info* info);
/* i-th name/unit (NULL when i is out of range). */
VLA_EDGE_API const char* vla_edge_policy_action_name(const vla_edge_policy* policy, int i);
VLA_EDGE_API const char* vla_edge_policy_action_unit(const vla_edge_policy* policy, int i);
VLA_EDGE_API const char* vla_edge_policy_state_name(const vla_edge_policy* policy, int i);
VLA_EDGE_API const char* vla_edge_policy_state_unit(const vla_edge_policy* policy, int i);
/* i-th camera (robot name) in the model's slot order, its model slot, and whether it is required
 * (optional cameras may be left out of an inference). */
VLA_EDGE_API const char* vla_edge_policy_camera(const vla_edge_policy* policy, int i);
VLA_EDGE_API const char* vla_edge_policy_camera_slot(const vla_edge_policy* policy, int i);
VLA_EDGE_API int vla_edge_policy_camera_required(const vla_edge_policy* policy, int i);
/* The pack's default prompt ("" if none). */
VLA_EDGE_API const char* vla_edge_policy_default_prompt(const vla_edge_policy* policy);

/* One inference. images: the cameras you have (every required one; names must be the pack's);
 * state: state_dim values in robot units; prompt: UTF-8 instruction; noise: noise_rows x
 * noise_cols floats (the flow's start, for reproducible results) or NULL to draw N(0, 1) from
 * the handle's generator. actions: capacity floats; receives horizon x action_dim, row-major, in
 * the robot's units. times (optional, may be NULL): up to max_times stage times; n_times
 * receives how many were written. */
VLA_EDGE_API int vla_edge_policy_infer(vla_edge_policy* policy, const vla_edge_camera_image* images, int n_images,
                                       const double* state, int state_len, const char* prompt, const float* noise,
                                       float* actions, size_t capacity, vla_edge_stage_time* times, int max_times,
                                       int* n_times);

VLA_EDGE_API const char* vla_edge_policy_last_error(void);

VLA_EDGE_API void vla_edge_policy_close(vla_edge_policy* policy);

#ifdef __cplusplus
}
#endif

#endif /* VLA_EDGE_POLICY_H */
