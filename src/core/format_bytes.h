// Human-readable byte counts for messages and reports: "1.50 GiB", "12.0 MiB", "512 B".
#pragma once

#include <cstdint>
#include <string>

namespace tierlm {

std::string FormatBytes(uint64_t bytes);

}  // namespace tierlm
