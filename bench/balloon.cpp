// tierlm-balloon: takes memory away from everything else, to benchmark engines as if the
// machine had less RAM. It mlock()s anonymous memory until only the requested amount of
// MemAvailable is left (or locks a fixed size), then sleeps until killed.
//
//   tierlm-balloon --leave 3G     # lock all but 3 GiB of available memory
//   tierlm-balloon --lock 10G     # lock exactly 10 GiB
//
// Prints "ready" on stdout once the memory is locked.
#include <sys/mman.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>

namespace {

long long ParseSize(const char* s) {
  char* end = nullptr;
  double v = std::strtod(s, &end);
  switch (*end) {
    case 'K': case 'k': v *= 1024.0; break;
    case 'M': case 'm': v *= 1024.0 * 1024; break;
    case 'G': case 'g': v *= 1024.0 * 1024 * 1024; break;
    case '\0': break;
    default: return -1;
  }
  return static_cast<long long>(v);
}

long long MemAvailable() {
  std::ifstream in("/proc/meminfo");
  std::string key;
  long long kb;
  std::string unit;
  while (in >> key >> kb >> unit)
    if (key == "MemAvailable:") return kb * 1024;
  return -1;
}

volatile std::sig_atomic_t g_stop = 0;
void OnSignal(int) { g_stop = 1; }

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3 || (std::strcmp(argv[1], "--leave") && std::strcmp(argv[1], "--lock"))) {
    std::fprintf(stderr, "usage: tierlm-balloon --leave SIZE | --lock SIZE   (SIZE like 3G, 512M)\n");
    return 2;
  }
  const long long size = ParseSize(argv[2]);
  if (size < 0) {
    std::fprintf(stderr, "error: bad size '%s'\n", argv[2]);
    return 2;
  }
  long long lock = size;
  if (!std::strcmp(argv[1], "--leave")) {
    const long long avail = MemAvailable();
    if (avail < 0) {
      std::fprintf(stderr, "error: cannot read MemAvailable from /proc/meminfo\n");
      return 1;
    }
    lock = avail - size;
    if (lock <= 0) {
      std::fprintf(stderr, "error: only %.2f GiB available, cannot leave %.2f GiB\n", avail / 1073741824.0,
                   size / 1073741824.0);
      return 1;
    }
  }
  // The balloon stands for memory the machine does not have: if memory runs out, the
  // engine under test should be the one to fail, not the balloon.
  if (FILE* f = std::fopen("/proc/self/oom_score_adj", "w")) {
    std::fputs("-1000", f);
    std::fclose(f);
  }
  std::signal(SIGTERM, OnSignal);
  std::signal(SIGINT, OnSignal);
  // Lock in 256 MiB chunks so a failure leaves a clear message of how much was taken.
  const long long chunk = 256ll << 20;
  long long locked = 0;
  while (locked < lock) {
    const long long n = std::min(chunk, lock - locked);
    void* p = mmap(nullptr, static_cast<size_t>(n), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED || mlock(p, static_cast<size_t>(n)) != 0) {
      std::fprintf(stderr, "error: locked %.2f GiB, then: %s\n", locked / 1073741824.0, std::strerror(errno));
      return 1;
    }
    std::memset(p, 1, static_cast<size_t>(n));
    locked += n;
  }
  std::printf("ready: locked %.2f GiB, %.2f GiB available\n", locked / 1073741824.0, MemAvailable() / 1073741824.0);
  std::fflush(stdout);
  while (!g_stop) pause();
  return 0;
}
