// The floor under every softmax exponent the kernels take (vector and scalar alike).
#pragma once

namespace tierlm {

// Exponents below this are taken as it (Exp512) or as zero weight (the scalar merges):
// e^-86 = 4.5e-38 is a normal float, and no float arithmetic on a weight that small next to
// the maximum's 1 can change a sum it joins. Above the floor nothing is subnormal, and
// subnormals cost a microcode assist per instruction on Intel cores (a fold step whose keys
// scored 100 below the running maximum, as beside an attention sink, ran 60x slower).
inline constexpr float kExpFloor = -86.0f;

}  // namespace tierlm
