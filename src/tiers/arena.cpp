#include "tiers/arena.h"

#include <string>
#include <utility>

namespace tierlm {

Result<std::unique_ptr<Arena>> Arena::Create(uint64_t capacity_bytes) {
  const uint64_t cap = capacity_bytes / kGranule * kGranule;
  if (cap == 0)
    return Status::InvalidArgument("memory budget of " + std::to_string(capacity_bytes) +
                                   " bytes is below one 4096-byte page");
  TIERLM_ASSIGN_OR_RETURN(MappedMemory mem, MappedMemory::Create(cap, "a memory arena", /*no_reserve=*/true));
  return std::unique_ptr<Arena>(new Arena(std::move(mem), cap));
}

}  // namespace tierlm
