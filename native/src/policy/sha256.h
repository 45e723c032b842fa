// SHA-256 of a file (FIPS 180-4), for the pack's per-file checksums. Written from the standard;
// no crypto library is needed for an integrity check against pack.yaml.
#pragma once

#include <cstddef>
#include <string>

namespace vla_edge::policy {

// Lower-case hex digest of the file's bytes; throws std::runtime_error if it cannot be read.
std::string sha256_file(const std::string& path);
// Lower-case hex digest of `size` bytes (tests check it against hashlib).
std::string sha256_bytes(const void* data, size_t size);

}  // namespace vla_edge::policy
