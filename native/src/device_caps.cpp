#include "device_caps.h"

#ifdef VLA_EDGE_WITH_CUDA
#include <cuda.h>
#endif

namespace vla_edge {

int cuda_compute_capability(ggml_backend_t backend) {
#ifdef VLA_EDGE_WITH_CUDA
    ggml_backend_dev_t dev = ggml_backend_get_device(backend);
    if (!dev || ggml_backend_dev_type(dev) == GGML_BACKEND_DEVICE_TYPE_CPU) return 0;
    ggml_backend_dev_props props{};
    ggml_backend_dev_get_props(dev, &props);
    CUdevice cu_dev;
    int major = 0, minor = 0;
    if (!props.device_id || cuInit(0) != CUDA_SUCCESS || cuDeviceGetByPCIBusId(&cu_dev, props.device_id) != CUDA_SUCCESS ||
        cuDeviceGetAttribute(&major, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, cu_dev) != CUDA_SUCCESS ||
        cuDeviceGetAttribute(&minor, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, cu_dev) != CUDA_SUCCESS) {
        return 0;
    }
    return major * 10 + minor;
#else
    (void)backend;
    return 0;
#endif
}

}  // namespace vla_edge
