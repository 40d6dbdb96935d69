// Admit: the answer of a tier asked to take bytes (mistral.rs AllocStatus).
// A full tier is back-pressure, not an error.
#pragma once

#include <cstdint>

namespace tierlm {

enum class Admit : uint8_t {
  kOk,          // admitted (a read was started, or the entry is already resident / in flight)
  kLater,       // no room now; room frees as pins drop and reads complete
  kImpossible,  // will never fit: larger than the tier less its pinned-forever entries
};

const char* AdmitName(Admit a);

}  // namespace tierlm
