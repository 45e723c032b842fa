/* Minimal embedding of the vla-edge runtime from C: load a pack, run one inference on a
 * synthetic gradient image, print the first rows of the (normalised) action chunk.
 * Usage: vla_edge_example PACK_DIR [threads] [token ...] */
#include <stdio.h>
#include <stdlib.h>

#include "vla_edge.h"

int main(int argc, char** argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s PACK_DIR [threads] [token ...]\n", argv[0]);
        return 2;
    }
    vla_edge_options opt;
    vla_edge_default_options(&opt);
    if (argc > 2) opt.n_threads = atoi(argv[2]);
    vla_edge_runtime* rt = vla_edge_create(argv[1], &opt);
    if (!rt) {
        fprintf(stderr, "create failed: %s\n", vla_edge_last_error());
        return 1;
    }
    const int s = vla_edge_image_size(rt);
    unsigned char* rgb = malloc((size_t)s * s * 3);
    for (int i = 0; i < s * s * 3; ++i) rgb[i] = (unsigned char)((i * 7 + i / 3) % 251);
    vla_edge_image image = {rgb, s, s};
    int n_tokens = argc > 3 ? argc - 3 : 4;
    int32_t* tokens = malloc(sizeof(int32_t) * n_tokens);
    for (int i = 0; i < n_tokens; ++i) tokens[i] = argc > 3 ? atoi(argv[3 + i]) : 2 + 5 * i;
    int rc = vla_edge_infer(rt, &image, 1, tokens, n_tokens, NULL, 42);
    if (rc != VLA_EDGE_OK) {
        fprintf(stderr, "infer failed (%d): %s\n", rc, vla_edge_last_error());
    } else {
        int horizon, dim;
        vla_edge_chunk_shape(rt, &horizon, &dim);
        float* chunk = malloc(sizeof(float) * horizon * dim);
        rc = vla_edge_read_chunk(rt, chunk, (size_t)horizon * dim);
        printf("chunk %d x %d\n", horizon, dim);
        for (int t = 0; t < horizon && t < 3; ++t) {
            for (int d = 0; d < dim && d < 6; ++d) printf("%+.5f ", chunk[t * dim + d]);
            printf("\n");
        }
        free(chunk);
    }
    free(tokens);
    free(rgb);
    vla_edge_destroy(rt);
    return rc == VLA_EDGE_OK ? 0 : 1;
}
