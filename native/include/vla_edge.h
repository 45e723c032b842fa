/* vla-edge C ABI: embed the pi0.5 runtime in robot software without Python.
 *
 * Ownership: every pointer you pass is borrowed for the duration of the call only; the runtime
 * copies what it keeps. vla_edge_create returns a handle you own and must pass to
 * vla_edge_destroy. Strings returned by vla_edge_last_error belong to the library and stay valid
 * until the next call on the same thread.
 *
 * Errors: functions return 0 (VLA_EDGE_OK) on success and a negative code otherwise;
 * vla_edge_create returns NULL. vla_edge_last_error() then describes the problem (file, tensor,
 * field, expected vs got). Nothing is ever partially written to your output buffers on error.
 *
 * Scope: the runtime executes the model graph. Images must already be at the model's size
 * (vla_edge_image_size(); resize-with-pad is the caller's job, as documented in docs/x86.md), the
 * prompt (with the discretised state, for pi0.5) must already be tokenised, and the chunk you read
 * is in the model's normalised action space (un-normalise with the pack's norm_stats.json).
 */
#ifndef VLA_EDGE_H
#define VLA_EDGE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32)
#define VLA_EDGE_API __declspec(dllexport)
#else
#define VLA_EDGE_API __attribute__((visibility("default")))
#endif

enum {
    VLA_EDGE_OK = 0,
    VLA_EDGE_ERR_ARGUMENT = -1, /* a pointer/size/count you passed is invalid */
    VLA_EDGE_ERR_PACK = -2,     /* the pack or weights file cannot be used */
    VLA_EDGE_ERR_RUNTIME = -3,  /* computation failed */
};

typedef struct vla_edge_runtime vla_edge_runtime;

typedef struct {
    int n_threads;      /* >= 1 */
    int num_flow_steps; /* >= 1; pi0.5 uses 10 */
    const char* device; /* "cpu" (default) or "cuda[:N]" in CUDA builds */
} vla_edge_options;

typedef struct {
    const uint8_t* rgb; /* height * width * 3 bytes, row-major RGB */
    int width;
    int height;
} vla_edge_image;

VLA_EDGE_API void vla_edge_default_options(vla_edge_options* options);

/* path: a pack directory (its pi05.gguf is used) or a .gguf file. NULL on error. */
VLA_EDGE_API vla_edge_runtime* vla_edge_create(const char* path, const vla_edge_options* options);

VLA_EDGE_API int vla_edge_image_size(const vla_edge_runtime* rt);
VLA_EDGE_API int vla_edge_chunk_shape(const vla_edge_runtime* rt, int* horizon, int* action_dim);

/* images: the cameras present, in the model's slot order (1..3); tokens: prompt token ids;
 * noise: horizon*action_dim floats (initial sample at t=1) or NULL to draw N(0,1) from `seed`. */
VLA_EDGE_API int vla_edge_infer(vla_edge_runtime* rt, const vla_edge_image* images, int n_images,
                                const int32_t* tokens, int n_tokens, const float* noise, uint64_t seed);

/* Copy the last chunk (horizon x action_dim, row-major) into out[capacity]. */
VLA_EDGE_API int vla_edge_read_chunk(const vla_edge_runtime* rt, float* out, size_t capacity);

VLA_EDGE_API const char* vla_edge_last_error(void);

VLA_EDGE_API void vla_edge_destroy(vla_edge_runtime* rt);

#ifdef __cplusplus
}
#endif

/* The safety filter (libvla_edge_safety, linked by libvla_edge): put every command through it. */
#include "vla_edge_safety.h"

#endif /* VLA_EDGE_H */
