// RedisProcess: a redis-server of a test's own, on a free loopback port.
//
//   RedisProcess redis;                       // or RedisProcess redis({"--requirepass", "pw"})
//   ASSERT_TRUE(redis.Start().ok());          // a Status naming what went wrong
//   auto tier = RedisBlockTier::Open({.url = redis.url()});   // "redis://127.0.0.1:P"
//
// Start runs `redis-server --port P --bind 127.0.0.1 --save "" --appendonly no
// --daemonize no` plus the extra arguments (fork and exec; its output goes to log()) and
// waits until it answers PING. The first Start picks the port (binds port 0 to find a free
// one, and tries another should redis-server lose it to someone else); later Starts reuse
// it, so a test can Stop the server (SIGKILL: a crash, nothing saved) and Start it again
// where clients expect it. Pause and Resume send SIGSTOP and SIGCONT: a server that
// accepts connections and never answers. The destructor kills and reaps the server, which
// also dies with the thread that started it (PR_SET_PDEATHSIG), so a crashed test leaves
// none behind.
//
// A missing redis-server is an error from Start naming it, never a skip: CI installs it.
#pragma once

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "core/status.h"

namespace tierlm::testing {

class RedisProcess {
 public:
  explicit RedisProcess(std::vector<std::string> extra_args = {}) : extra_args_(std::move(extra_args)) {
    static int count = 0;
    log_ = (std::filesystem::temp_directory_path() /
            ("tierlm-redis-" + std::to_string(::getpid()) + "-" + std::to_string(++count) + ".log"))
               .string();
  }
  ~RedisProcess() {
    (void)Stop();
    std::error_code ec;
    std::filesystem::remove(log_, ec);
  }
  RedisProcess(const RedisProcess&) = delete;
  RedisProcess& operator=(const RedisProcess&) = delete;

  // Starts the server (on the port of the last Start, if any) and waits until it answers
  // PING, at most `timeout_s`. Ok when it is already running. A failure is also printed
  // to stderr, so that a bare ASSERT_TRUE(Start().ok()) says why.
  Status Start(double timeout_s = 10) {
    Status st = StartServer(timeout_s);
    if (!st.ok()) std::fprintf(stderr, "RedisProcess: %s\n", st.ToString().c_str());
    return st;
  }

  // Kills the server (SIGKILL, so nothing is saved or flushed) and reaps it.
  Status Stop() {
    if (pid_ <= 0) return Status::Ok();
    kill(pid_, SIGKILL);
    int status = 0;
    while (waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
    pid_ = -1;
    return Status::Ok();
  }

  // SIGSTOP: connections are still accepted (by the kernel) but nothing is answered.
  Status Pause() { return Signal(SIGSTOP, "SIGSTOP"); }
  Status Resume() { return Signal(SIGCONT, "SIGCONT"); }

  bool running() const { return pid_ > 0; }
  int port() const { return port_; }
  std::string url() const { return "redis://127.0.0.1:" + std::to_string(port_); }
  // What the server printed (all its runs).
  std::string Log() const {
    std::ifstream in(log_);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }

 private:
  Status StartServer(double timeout_s) {
    if (pid_ > 0) return Status::Ok();
    const std::string binary = FindRedisServer();
    if (binary.empty())
      return Status::NotFound(
          "redis-server is not installed (not on PATH, not /usr/bin/redis-server): the Redis tests need it "
          "(Debian: apt-get install redis-server; `make deps` does)");
    const bool fixed_port = port_ != 0;
    for (int attempt = 0; attempt < (fixed_port ? 1 : 5); ++attempt) {
      if (!fixed_port) {
        port_ = FreePort();
        if (port_ == 0) return Status::IoError("redis test server: no free loopback port");
      }
      Status st = Launch(binary, timeout_s);
      if (st.ok() || fixed_port) return st;
      if (Log().find("Address already in use") == std::string::npos) return st;
    }
    return Status::IoError("redis test server: every port tried was taken; log:\n" + Log());
  }

  static std::string FindRedisServer() {
    std::vector<std::string> dirs;
    if (const char* path = std::getenv("PATH")) {
      std::stringstream ss(path);
      for (std::string dir; std::getline(ss, dir, ':');)
        if (!dir.empty()) dirs.push_back(dir);
    }
    dirs.push_back("/usr/bin");
    dirs.push_back("/usr/sbin");
    for (const auto& dir : dirs) {
      const std::string candidate = dir + "/redis-server";
      if (access(candidate.c_str(), X_OK) == 0) return candidate;
    }
    return "";
  }

  // A loopback port nobody listens on now (the kernel's pick for port 0).
  static int FreePort() {
    const int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return 0;
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = 0;
    socklen_t len = sizeof addr;
    int port = 0;
    if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 &&
        getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0)
      port = ntohs(addr.sin_port);
    close(fd);
    return port;
  }

  Status Launch(const std::string& binary, double timeout_s) {
    std::vector<std::string> args = {binary,          "--port",       std::to_string(port_), "--bind",
                                     "127.0.0.1",     "--save",       "",                    "--appendonly",
                                     "no",            "--daemonize",  "no"};
    args.insert(args.end(), extra_args_.begin(), extra_args_.end());
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    const pid_t parent = getpid();
    const pid_t pid = fork();
    if (pid < 0) return Status::IoError(std::string("redis test server: fork: ") + std::strerror(errno));
    if (pid == 0) {
      // Only async-signal-safe calls until exec.
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (getppid() != parent) _exit(126);
      const int fd = open(log_.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
      if (fd >= 0) {
        dup2(fd, 1);
        dup2(fd, 2);
      }
      close_range(3, ~0U, 0);  // the test's sockets stay the test's
      execv(argv[0], argv.data());
      _exit(127);
    }
    pid_ = pid;
    const auto until = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s);
    while (std::chrono::steady_clock::now() < until) {
      int status = 0;
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        return Status::IoError("redis test server (" + binary + ") on port " + std::to_string(port_) +
                               " exited with status " + std::to_string(WIFEXITED(status) ? WEXITSTATUS(status) : -1) +
                               "; log:\n" + Log());
      }
      if (Answers()) return Status::Ok();
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    (void)Stop();
    return Status::IoError("redis test server on port " + std::to_string(port_) + " did not answer PING within " +
                           std::to_string(timeout_s) + " s; log:\n" + Log());
  }

  // Whether the server answers PING (PONG, or NOAUTH when it wants a password).
  bool Answers() const {
    const int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return false;
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(static_cast<uint16_t>(port_));
    bool ok = false;
    if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 &&
        send(fd, "PING\r\n", 6, MSG_NOSIGNAL) == 6) {
      pollfd p{fd, POLLIN, 0};
      char buf[64] = {};
      if (poll(&p, 1, 500) == 1) {
        const ssize_t n = recv(fd, buf, sizeof buf - 1, 0);
        const std::string reply(buf, n > 0 ? static_cast<size_t>(n) : 0);
        ok = reply.rfind("+PONG", 0) == 0 || reply.rfind("-NOAUTH", 0) == 0;
      }
    }
    close(fd);
    return ok;
  }

  Status Signal(int sig, const char* name) {
    if (pid_ <= 0) return Status::InvalidArgument(std::string("redis test server: ") + name + " while not running");
    if (kill(pid_, sig) != 0) return Status::IoError(std::string("redis test server: ") + name + ": " + std::strerror(errno));
    return Status::Ok();
  }

  std::vector<std::string> extra_args_;
  std::string log_;
  pid_t pid_ = -1;
  int port_ = 0;
};

}  // namespace tierlm::testing
